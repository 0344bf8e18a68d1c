"""
Quantization-aware fine-tuning: a trained run's model fine-tuned through a forward pass that rounds like
integer-only int8 inference, so that the int8 artifacts exported from it lose less than post-training
quantization of the float model does.

    metrics = finetune_qat("runs/gru", "runs/gru-qat")       # a run directory like any other
    edgernn finetune runs/gru --qat --out runs/gru-qat          # the same from the shell
    edgernn export runs/gru-qat --format tflite,c --precision int8 --integer-only --streaming

The simulated arithmetic (fake quantization with straight-through gradients - for activations the clipped
kind, zero where a value falls outside its range; the weights stay float and are what the run saves, so every
exporter and its calibration work unchanged):
- weights: int8, symmetric, one scale per output row (what TFLite full int8 and edgernn's int8 C store);
- activations: int8, asymmetric, per tensor, with ranges observed as training goes (exponential moving
  average of min/max, as TensorFlow's QAT does): the normalized input, both matrix products (a GRU's per gate),
  the reset-gated recurrent product (GRU), the new hidden state, the head's input and output;
- sigmoid outputs on [0, 1] and tanh outputs on [-1, 1] in 256 steps (TFLite's fixed int8 scales);
- the LSTM cell state in int16 (TFLite's fused LSTM keeps it in int16).
This is int8 throughout, stricter than int16x8 and edgernn's C (int16 activations), so a model that holds
up here holds up there. The converter and the C quantizer still calibrate their own ranges on the
training windows; they see the same data the observers saw, but the ranges are not handed over (said in
the run's config).

The fine-tuned run's float model is the reference its artifacts are gated against, as for any run; its
metrics.json keeps the source run's float accuracy beside its own, so the cost of the fine-tuning is shown.
Bidirectional models and audio front ends are refused (not simulated yet).
"""

from __future__ import annotations

import json
import shutil
import time
from pathlib import Path

import numpy as np

from edgernn.errors import ConfigError, require
from edgernn.rundir import load_run

MOMENTUM = 0.9  # EMA of observed ranges
COPY = ("config.json", "normalization.json", "labels.json", "data.npz", "history.json")


def _ste(torch, x, xq):
    """xq forward, the identity's gradient backward (straight-through)."""
    return x + (xq - x).detach()


class Quantizer:
    """Fake quantization of one activation tensor: a range observed as training goes, frozen in eval."""

    def __init__(self, bits: int = 8, fixed: tuple | None = None):
        self.bits, self.fixed = bits, fixed
        self.lo = self.hi = None

    def __call__(self, torch, x, training: bool):
        if self.fixed is not None:
            lo, hi = self.fixed
        else:
            if training or self.lo is None:
                mn, mx = (float(v) for v in torch.aminmax(x.detach()))
                if self.lo is None:
                    self.lo, self.hi = min(mn, 0.0), max(mx, 0.0)
                else:
                    self.lo = MOMENTUM * self.lo + (1 - MOMENTUM) * min(mn, 0.0)
                    self.hi = MOMENTUM * self.hi + (1 - MOMENTUM) * max(mx, 0.0)
            lo, hi = self.lo, self.hi
        levels = 2 ** self.bits - 1
        scale = max(hi - lo, 1e-8) / levels
        # one fused op forward and backward (the gradient passes inside [lo, hi], is zero where the value clips):
        # the Python version (round, clamp and a straight-through sum) took half of an LSTM's fine-tuning time
        return torch.fake_quantize_per_tensor_affine(x, scale, int(round(-lo / scale)), 0, levels)


def fake_weight(torch, w):
    """int8 symmetric, one scale per output row."""
    scale = w.detach().abs().amax(dim=1, keepdim=True).clamp(min=1e-8) / 127.0
    return _ste(torch, w, torch.clamp(torch.round(w / scale), -127, 127) * scale)


class QatForward:
    """The model's forward pass with integer-like rounding (see the module docstring), sharing its
    parameters: training through it moves the model's own weights."""

    def __init__(self, model):
        cfg = model.cfg
        if cfg.bidirectional:
            raise ConfigError("quantization-aware fine-tuning of bidirectional models is not simulated yet")
        if getattr(model, "frontend", None) is not None:
            raise ConfigError("quantization-aware fine-tuning of audio models (a front end inside) is not "
                              "simulated yet: their int8 artifacts keep the front end float anyway")
        self.model, self.cfg = model, cfg
        self.q = {}

    def _q(self, torch, name, x, bits=8, fixed=None):
        if name not in self.q:
            self.q[name] = Quantizer(bits, fixed)
        return self.q[name](torch, x, self.model.training)

    def __call__(self, x):
        torch = require("torch", "train")
        cfg, rnn = self.cfg, self.model.rnn
        B, T, _ = x.shape
        inp = self._q(torch, "input", x)
        outs = None
        for layer in range(cfg.layers):
            W_ih = fake_weight(torch, getattr(rnn, f"weight_ih_l{layer}"))
            W_hh = fake_weight(torch, getattr(rnn, f"weight_hh_l{layer}"))
            b_ih, b_hh = getattr(rnn, f"bias_ih_l{layer}"), getattr(rnn, f"bias_hh_l{layer}")
            gi_all = self._gates(torch, f"l{layer}.gi", inp @ W_ih.T + b_ih)  # the input projection of every step
            h = x.new_zeros(B, cfg.hidden)
            c = x.new_zeros(B, cfg.hidden)
            outs = []
            for t in range(T):
                gh = self._gates(torch, f"l{layer}.gh", h @ W_hh.T + b_hh)
                h, c = self._cell(torch, layer, gi_all[:, t], gh, h, c)
                outs.append(h)
            inp = torch.stack(outs, 1)
        if cfg.head == "tag":
            feat = inp
        else:
            feat = outs[-1]
        Wo = fake_weight(torch, self.model.head.weight)
        return self._q(torch, "out", feat @ Wo.T + self.model.head.bias)

    def _gates(self, torch, name, g):
        """A projection's int8 rounding: a GRU's gates each with their own range (the full-int8 TFLite loop has
        one matrix per gate: edgernn.export.tflite.while_loop), an LSTM's or RNN's one range for all."""
        if self.cfg.cell != "gru":
            return self._q(torch, name, g)
        H = self.cfg.hidden
        return torch.cat([self._q(torch, f"{name}.{k}", g[..., j * H:(j + 1) * H]) for j, k in enumerate("rzn")], -1)

    def _cell(self, torch, layer, gi, gh, h, c):
        H, cell = self.cfg.hidden, self.cfg.cell
        unit = dict(fixed=(0.0, 1.0))
        sym = dict(fixed=(-1.0, 1.0))
        L = f"l{layer}"
        if cell == "gru":
            r = self._q(torch, f"{L}.r", torch.sigmoid(gi[:, :H] + gh[:, :H]), **unit)
            z = self._q(torch, f"{L}.z", torch.sigmoid(gi[:, H:2 * H] + gh[:, H:2 * H]), **unit)
            rn = self._q(torch, f"{L}.rn", r * gh[:, 2 * H:])
            n = self._q(torch, f"{L}.n", torch.tanh(gi[:, 2 * H:] + rn), **sym)
            return self._q(torch, f"{L}.h", (1 - z) * n + z * h), c
        if cell == "lstm":
            g = gi + gh
            i = self._q(torch, f"{L}.i", torch.sigmoid(g[:, :H]), **unit)
            f = self._q(torch, f"{L}.f", torch.sigmoid(g[:, H:2 * H]), **unit)
            gg = self._q(torch, f"{L}.g", torch.tanh(g[:, 2 * H:3 * H]), **sym)
            o = self._q(torch, f"{L}.o", torch.sigmoid(g[:, 3 * H:]), **unit)
            c = self._q(torch, f"{L}.c", f * c + i * gg, bits=16)
            return self._q(torch, f"{L}.h", o * self._q(torch, f"{L}.tc", torch.tanh(c), **sym)), c
        return self._q(torch, f"{L}.h", torch.tanh(gi + gh)), c  # rnn

    def ranges(self) -> dict:
        return {k: [round(v.lo, 6), round(v.hi, 6), v.bits] for k, v in self.q.items() if v.fixed is None}


def _loss(torch, out, y, task):
    F = torch.nn.functional
    if task == "classify":
        return F.cross_entropy(out, y)
    if task == "tag":
        return F.cross_entropy(out.reshape(-1, out.shape[-1]), y.reshape(-1))
    return F.mse_loss(out, y)


def finetune_qat(run_dir, out_dir, epochs: int = 30, lr: float = 1e-3, batch_size: int = 16, seed: int = 0,
                 force: bool = False, progress: bool = True) -> dict:
    """Fine-tune RUN's model through QatForward on its training windows; write a new run directory at
    out_dir (atomically; refused if it exists and is not empty, unless force). Returns its metrics."""
    torch = require("torch", "train")
    from edgernn.progress import progressbar
    from edgernn.runtimes.files import atomic_write_bytes, atomic_write_json
    from edgernn.train import evaluate

    src = load_run(run_dir)
    out_dir = Path(out_dir)
    if out_dir.resolve() == src.path.resolve():
        raise ConfigError("--out must be a new directory: the source run stays the float reference")
    if out_dir.exists() and any(out_dir.iterdir()) and not force:
        raise ConfigError(f"--out {out_dir} is not empty; choose another or pass --force")
    if src.mask_padding:
        raise ConfigError("quantization-aware fine-tuning of --mask-padding runs is not simulated yet")
    torch.manual_seed(seed)
    torch.set_num_threads(1)
    model = src.load_model()
    qat = QatForward(model)
    d = src.data()
    X = torch.from_numpy(src.normalize(d["X_calib"]).astype(np.float32))
    task = src.task
    if task == "forecast":
        norm = src.preprocessing.get("output") or {}
        y_np = (d["y_calib"] - np.asarray(norm.get("mean", 0.0))) / np.asarray(norm.get("std", 1.0))
        y = torch.from_numpy(np.asarray(y_np, np.float32))
    else:
        y = torch.from_numpy(np.asarray(d["y_calib"]).astype(np.int64))
    Xte = src.normalize(d["X_test"]).astype(np.float32)
    lengths = d.get("len_test", np.full(len(Xte), Xte.shape[1]))
    before = evaluate(model, Xte, d["y_test"], lengths, task)
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    gen = torch.Generator().manual_seed(seed)
    t0 = time.perf_counter()
    model.train()
    with progressbar(range(epochs), label=f"qat {src.path.name}", enabled=progress) as bar:
        for _ in bar:
            order = torch.randperm(len(X), generator=gen)
            for b in range(0, len(X), batch_size):
                idx = order[b:b + batch_size]
                loss = _loss(torch, qat(X[idx]), y[idx], task)
                opt.zero_grad()
                loss.backward()
                torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
                opt.step()
    seconds = time.perf_counter() - t0
    model.eval()
    after = evaluate(model, Xte, d["y_test"], lengths, task)
    with torch.no_grad():
        simulated = qat(torch.from_numpy(Xte)).numpy()
    from edgernn.train import score_outputs

    sim = score_outputs(simulated, d["y_test"], lengths, task)
    part = out_dir.with_name(f".{out_dir.name}.part")
    shutil.rmtree(part, ignore_errors=True)
    part.mkdir(parents=True)
    try:
        for name in COPY:
            if (src.path / name).is_file():
                shutil.copyfile(src.path / name, part / name)
        import io

        buf = io.BytesIO()
        torch.save(model.state_dict(), buf)
        atomic_write_bytes(part / "model.pt", buf.getvalue())
        cfg = json.loads((src.path / "config.json").read_text())
        cfg["train"] = {**(cfg.get("train") or {}), "qat": {
            "source_run": str(src.path), "source_model": src.identity, "epochs": epochs, "lr": lr,
            "batch_size": batch_size, "seed": seed, "simulates": "int8 weights (per row) and activations (per "
            "tensor), fixed-scale sigmoid/tanh, int16 LSTM cell state", "ranges": qat.ranges(),
            "ranges_note": "observed during fine-tuning; the exporters calibrate their own on the same windows"}}
        atomic_write_json(part / "config.json", cfg)
        metrics = json.loads((src.path / "metrics.json").read_text())
        key = "accuracy" if task != "forecast" else "rmse"
        metrics["test"] = {**(metrics.get("test") or {}), **after}
        metrics["qat"] = {"source_float_test": before, "float_test": after, "simulated_int8_test": sim,
                          "finetune_seconds": round(seconds, 2),
                          "source_train_seconds": metrics.get("train_time_s"),
                          "headline": f"test {key}: source float {before.get(key, float('nan')):.4f}, fine-tuned "
                                      f"float {after.get(key, float('nan')):.4f}, simulated int8 "
                                      f"{sim.get(key, float('nan')):.4f}"}
        atomic_write_json(part / "metrics.json", metrics)
        if out_dir.exists():
            shutil.rmtree(out_dir)
        part.rename(out_dir)
    finally:
        shutil.rmtree(part, ignore_errors=True)
    return metrics
