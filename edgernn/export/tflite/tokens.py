"""
TFLite (LiteRT) export of a token encoder-decoder: two graphs, the encoder (a source padded to max_src + its mask
in; encoder outputs + the decoder's first state out) and the decoder step (one token + state + encoder outputs +
mask in; logits + new state out). Run by edgernn.runtimes.token_litert.LiteRTSeq2SeqEngine.

    weights = {k: v.numpy() for k, v in model.state_dict().items()}
    built = export_token_tflite(run.config, weights, max_src=32, calib=[ids, ...], out_dir=Path("tmp"),
                                precision="int8")
    built["paths"]      # {"encoder": tmp/encoder-int8.tflite, "decoder": tmp/decoder-int8.tflite}
    built["recipe"], built["compute"], built["selection"], built["max_diff"]

TensorFlow runs in a child process (token_worker.py: TF's import is slow, its converter can crash or hang),
killed after `timeout` seconds; any failure is an ExportError of one line and leaves nothing in out_dir (the files
are built in a scratch directory and copied once both are good). The graphs are plain TF ops built from the
numpy weights, unrolled over max_src steps; a padded step leaves the state as it was, so the backward direction
starts at the last real token as torch's packed sequence does.

precision "float": one conversion, checked against a float64 numpy rendering of the model (reference_outputs,
the torch layouts and gate orders) within FLOAT_TOL. precision "int8": the candidates full-int8 (int8
activations, calibrated on the encoder inputs of `calib` and on decoder steps along the float graph's greedy
paths), int16x8 (int16 activations, int8 weights) and dynamic (int8 weights, activations quantized on the fly)
are tried in that order; the first whose greedy outputs equal the float graph's on >= AGREEMENT_MIN of the
calibration sources is kept, and "selection" says for each candidate its agreement or why it was rejected.
Input and output tensors stay float32 (ids int32) whatever the recipe; "compute" says what the converted graphs
compute, read from the op and tensor types of the flatbuffers.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
from contextlib import contextmanager
from pathlib import Path

import numpy as np

from edgernn.errors import ConfigError, ExportError
from edgernn.runtimes.vocab import BOS

# greedy-decoding agreement with the float graph an int8 recipe needs on the calibration sources (whole outputs
# identical): below it, more than 1 word in 33 comes out differently. Measured on h16 g2p runs (2-12 epochs, 256
# sources): int16x8 0.977-0.996, dynamic 0.94-0.98, full-int8 0.81-0.95 (its int8 logits step by ~0.06, where 10%
# of the float graph's argmax margins are below 0.04-0.14)
AGREEMENT_MIN = 0.97
INT8_RECIPES = ("full-int8", "int16x8", "dynamic")
FLOAT_TOL = 1e-4  # max |diff| of the float graphs vs the float64 reference (encoder outputs, logits, states)
# how far below the best real attention score padded positions sit (their weight <= exp(-20) = 2e-9 of the
# best's: 0 at float32 precision, as torch's -1e9 gives); a bounded value keeps int8/int16 scales fine
ATTENTION_PAD = 20.0
CHECK_SOURCES = 24  # sources the kept graphs are compared with the float64 reference on (shortest, longest, spread)
CHECK_STEPS = 6  # decoder steps per source in that comparison
WORKER = "edgernn.export.tflite.token_worker"  # the child process's module (python -m)

# ---------------------------------------------------------------- the float64 reference


def max_len(src_len: int) -> int:
    """Generated outputs stop at <eos> or this many tokens (edgernn.tokens.reference.max_target_len)."""
    return int(src_len) + 10


def _sig(x):
    return 1.0 / (1.0 + np.exp(-x))


def _cell(cell: str, x, h, c, wih, bih, whh, bhh):
    gi, gh = wih @ x + bih, whh @ h + bhh
    if cell == "gru":
        H = h.shape[0]
        r, z = _sig(gi[:H] + gh[:H]), _sig(gi[H:2 * H] + gh[H:2 * H])
        n = np.tanh(gi[2 * H:] + r * gh[2 * H:])
        return (1 - z) * n + z * h, c
    i, f, g, o = np.split(gi + gh, 4)
    c2 = _sig(f) * c + _sig(i) * np.tanh(g)
    return _sig(o) * np.tanh(c2), c2


def reference_outputs(cfg: dict, w: dict, ids: list[int], steps: int = CHECK_STEPS) -> tuple[list, list]:
    """The model on one unpadded source in float64 numpy: ([enc [n, Hd], h, (c) (the last encoder layer's), then
    per decoder step logits, h, (c)], the tokens fed to those steps: <bos>, then its own greedy argmaxes)."""
    w = {k: np.asarray(v, np.float64) for k, v in w.items()}
    lstm, H, n = cfg["cell"] == "lstm", int(cfg["hidden"]), len(ids)
    x = w["src_embed.weight"][ids]
    for layer in range(int(cfg.get("layers", 1) or 1)):  # stacked: layer l reads layer l - 1's outputs
        outs, hs, cs = [], [], []
        for d, sfx in enumerate(("", "_reverse")[: 2 if cfg["bidirectional"] else 1]):
            p = [w[f"encoder.{k}_l{layer}{sfx}"] for k in ("weight_ih", "bias_ih", "weight_hh", "bias_hh")]
            h, c, seq = np.zeros(H), np.zeros(H), [None] * n
            for t in (range(n) if d == 0 else range(n - 1, -1, -1)):
                h, c = _cell(cfg["cell"], x[t], h, c, *p)
                seq[t] = h
            outs.append(np.stack(seq))
            hs.append(h)
            cs.append(c)
        x = np.concatenate(outs, axis=1)
    enc, h, c = x, np.concatenate(hs), np.concatenate(cs)
    res = [enc, h] + ([c] if lstm else [])
    p = [w[f"decoder.{k}_l0"] for k in ("weight_ih", "bias_ih", "weight_hh", "bias_hh")]
    token, tokens = BOS, []
    for _ in range(steps):
        tokens.append(token)
        h, c = _cell(cfg["cell"], w["tgt_embed.weight"][token], h, c, *p)
        out = h
        if cfg["attention"]:
            s = enc @ h
            a = np.exp(s - s.max())
            out = np.concatenate([h, (a / a.sum()) @ enc])
        logits = w["out.weight"] @ out + w["out.bias"]
        res += [logits, h] + ([c] if lstm else [])
        token = int(np.argmax(logits))
    return res, tokens


def engine_outputs(engine, ids: list[int], tokens: list[int]) -> list:
    """An engine's outputs in reference_outputs' order, its decoder fed the reference's tokens."""
    state = engine.encode(ids)
    *st, enc, _mask = state
    res = [np.asarray(enc, np.float64)[0, :len(ids)]] + [np.asarray(s, np.float64)[0] for s in st]
    for token in tokens:
        logits, state = engine.step(token, state)
        res += [np.asarray(logits, np.float64)] + [np.asarray(s, np.float64) for s in engine.state_arrays(state)]
    return res


def check_sources(sources: list, n: int = CHECK_SOURCES) -> list:
    """Up to n sources of different lengths, the shortest and the longest included."""
    srcs = sorted(sources, key=len)
    if len(srcs) <= n:
        return srcs
    return [srcs[0], srcs[-1]] + srcs[:: max(1, len(srcs) // (n - 2))][: n - 2]


# ---------------------------------------------------------------- the export


def _cfg_dict(cfg) -> dict:
    d = dict(cfg.to_dict() if hasattr(cfg, "to_dict") else cfg)
    d["dec_hidden"] = int(d["hidden"]) * (2 if d.get("bidirectional", True) else 1)
    return d


def _validate(cfg: dict, weights: dict, max_src: int, calib: list, precision: str) -> list:
    if precision not in ("float", "int8"):
        raise ConfigError(f"token TFLite precisions are float and int8, not {precision!r}")
    if cfg.get("kind", "seq2seq") != "seq2seq":
        raise ConfigError(f"only encoder-decoder token models export to TFLite, not a {cfg['kind']} model")
    if int(max_src) < 1:
        raise ConfigError(f"max_src must be >= 1, got {max_src}")
    need = ["src_embed.weight", "tgt_embed.weight", "encoder.weight_ih_l0", "decoder.weight_ih_l0", "out.weight"]
    missing = [k for k in need if k not in weights]
    if missing:
        raise ConfigError(f"the weights lack {', '.join(missing)}: pass model.state_dict() as numpy arrays")
    sources = [[int(t) for t in s] for s in calib if 1 <= len(s) <= int(max_src)]
    if not sources:
        raise ConfigError(f"no calibration source of 1..{max_src} tokens: pass the run's calibration sources")
    return sources


def _worker(spec_path: Path, tmp: Path, timeout: float, what: str, module: str = WORKER) -> dict:
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", "CUDA_VISIBLE_DEVICES": "", "TMPDIR": str(tmp)}
    root = str(Path(__file__).resolve().parents[3])  # the directory that holds edgernn/
    env["PYTHONPATH"] = root + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    from edgernn.export.tflite.convert import _tail
    from edgernn.interrupts import die_with_parent

    try:
        proc = subprocess.run([sys.executable, "-m", module, str(spec_path)],
                              capture_output=True, text=True, timeout=timeout, env=env, cwd=str(tmp),
                              preexec_fn=die_with_parent)
    except subprocess.TimeoutExpired:
        raise ExportError(f"TFLite conversion of the {what} did not finish within {timeout:.0f} s and was "
                          "stopped; nothing was written (give it a larger timeout)") from None
    tail = _tail(proc.stderr)
    if proc.returncode < 0:
        try:
            name = signal.Signals(-proc.returncode).name
        except ValueError:
            name = "unknown signal"
        raise ExportError(f"the TFLite converter crashed ({name}) building the {what}; nothing was written"
                          + (f" (last output: {tail})" if tail else ""), detail=(proc.stderr or "")[-4000:])
    try:
        report = json.loads((tmp / "report.json").read_text())
    except (OSError, ValueError):
        raise ExportError(f"the TFLite token worker for the {what} exited with code {proc.returncode} without a "
                          "report; nothing was written" + (f" (last output: {tail})" if tail else "")) from None
    if not report.get("ok"):
        raise ExportError(f"TFLite export of the {what} failed: {report.get('error', 'unknown error')}; "
                          "nothing was written", detail=report.get("traceback", ""))
    return report


@contextmanager
def worker_run(spec: dict, weights: dict, timeout: float, what: str, module: str = WORKER):
    """Run a token worker (python -m module SPEC.json) on spec + weights (the torch state_dict as numpy) in a
    scratch directory, stopped after `timeout` seconds; yields its report (its graphs are in that directory, which
    is removed on leaving the block). Raises ExportError (one line) when the worker fails, crashes or hangs."""
    tmp = Path(tempfile.mkdtemp(prefix="edgernn-tokens-tflite-"))
    try:
        np.savez(tmp / "weights.npz", **{k: np.asarray(v, np.float32) for k, v in weights.items()})
        spec = {**spec, "weights": str(tmp / "weights.npz"), "dir": str(tmp), "report": str(tmp / "report.json")}
        (tmp / "spec.json").write_text(json.dumps(spec))
        yield _worker(tmp / "spec.json", tmp, float(timeout), what, module)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def export_token_tflite(cfg, weights: dict, max_src: int, calib: list, out_dir: Path, precision: str,
                        timeout: float = 600, recipes: tuple = INT8_RECIPES) -> dict:
    """Write out_dir/encoder-PREC.tflite and out_dir/decoder-PREC.tflite and return {"paths", "compute", "recipe",
    "max_diff" (vs reference_outputs), "selection" (per int8 candidate: agreement, accepted, why), "compute_shares",
    "sizes", "ops", "max_src", "tensorflow"}. cfg: a TokenModelConfig (or its dict); weights: model.state_dict() as
    numpy; calib: source id lists (those of 1..max_src tokens are used). Raises ExportError (nothing written) when
    the converter fails, crashes or runs past `timeout` seconds, when float misses FLOAT_TOL or when no int8
    recipe keeps AGREEMENT_MIN of the float graph's greedy outputs; ConfigError for bad arguments."""
    cfg = _cfg_dict(cfg)
    sources = _validate(cfg, weights, max_src, calib, precision)
    bad = [r for r in recipes if r not in INT8_RECIPES]
    if bad or not recipes:
        raise ConfigError(f"the token TFLite int8 recipes are {', '.join(INT8_RECIPES)}, not {bad or 'none'}")
    what = f"{cfg['cell']} encoder-decoder ({precision})"
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    spec = {"cfg": cfg, "max_src": int(max_src), "calib": sources, "precision": precision, "recipes": list(recipes)}
    with worker_run(spec, weights, timeout, what) as report:
        if precision == "float" and not report["max_diff"] <= FLOAT_TOL:
            raise ExportError(f"the float TFLite {what} differs from the model by {report['max_diff']:.2e} > "
                              f"{FLOAT_TOL:.0e}; nothing was written - this is an exporter bug, please report it")
        paths = {}
        try:
            for part in ("encoder", "decoder"):
                paths[part] = out_dir / f"{part}-{precision}.tflite"
                part_tmp = out_dir / f".{part}-{precision}.tflite.part"
                shutil.copyfile(report["paths"][part], part_tmp)
                os.replace(part_tmp, paths[part])
        except BaseException:
            for part in ("encoder", "decoder"):
                (out_dir / f"{part}-{precision}.tflite").unlink(missing_ok=True)
                (out_dir / f".{part}-{precision}.tflite.part").unlink(missing_ok=True)
            raise
        return {"paths": paths, "recipe": report["recipe"], "max_diff": report["max_diff"], "max_src": int(max_src),
                **{k: report[k] for k in ("compute", "compute_shares", "selection", "sizes", "ops", "tensorflow")}}
