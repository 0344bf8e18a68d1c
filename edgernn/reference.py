"""
The float PyTorch reference that parity and bench compare against. Imports torch and the run
directory, so it lives outside edgernn.runtimes and is never pushed to a device.

    ref = torch_outputs(load_run("runs/gru"), X_raw)   # float outputs on raw windows (parity)

    s = TorchSession("runs/gru", threads=1)
    s.predict(window)             # raw window [T, C] or [B, T, C]; run normalization applied
    st = s.stream()               # unidirectional models: StepModel frame by frame
    y = st.step(frame)
"""

from __future__ import annotations

import numpy as np

from edgernn.errors import ConfigError, require
from edgernn.runtimes.session import Session
from edgernn.runtimes.tensor import Tensor


def _manifest(run, mode: str) -> dict:
    cfg = run.config
    C = cfg.input_size
    model_pt = run.path / "model.pt"
    if mode == "sequence":
        inputs = [{"name": "x", "shape": [None, None, C], "role": "x"}]
        outputs = [{"name": "y", "shape": None, "role": "y"}]
    else:
        inputs = [{"name": "x", "shape": [1, C], "role": "x"}]
        inputs += [{"name": n, "shape": shape, "role": "state"} for n, shape in cfg.step_states(1)]
        outputs = [{"name": "y", "shape": [1, cfg.num_outputs], "role": "y"}]
        outputs += [{"name": f"{n}_out", "shape": shape, "role": "state", "next": n} for n, shape in cfg.step_states(1)]
    return {
        "artifact": "torch-eager", "format": "torch", "runtime": "torch", "precision": "float", "mode": mode,
        "task": run.task, "model": cfg.to_dict(), "inputs": inputs, "outputs": outputs,
        "sequence_length": None, "preprocessing": run.preprocessing(), "labels": list(run.labels),
        "size_bytes": model_pt.stat().st_size if model_pt.is_file() else 0,
        "quantization": {"recipe": "none", "compute": {"recurrent": "float", "head": "float"}, "int8_ops": [],
                         "float_ops": [], "note": "PyTorch eager float32 reference"},
        "source": {"run": run.path.name},
    }


class TorchSession(Session):
    runtime_name = "torch"

    def __init__(self, run_dir, threads: int = 1, mode: str = "sequence"):
        from edgernn.rundir import load_run

        if mode not in ("sequence", "step"):
            raise ConfigError(f"unknown mode {mode!r}; choose sequence or step")
        self.run = load_run(run_dir)
        if mode == "step" and self.run.config.bidirectional:
            raise ConfigError("bidirectional models cannot stream: the backward direction needs the whole "
                              "future sequence; use predict(window)")
        super().__init__(self.run.path / "model.pt", _manifest(self.run, mode), threads)

    def _open(self, threads: int) -> None:
        torch = require("torch", "train")
        self._torch = torch
        self.runtime_version = torch.__version__
        self.runtime_package = "torch"
        torch.set_num_threads(threads)
        model = self.run.load_model()
        if self.mode == "step":
            from edgernn.models import StepModel

            model = StepModel(model)
        self._model = model
        self.inputs = [Tensor(s, np.float32) for s in self.manifest["inputs"]]
        self.outputs = [Tensor(s, np.float32) for s in self.manifest["outputs"]]

    def _invoke(self, feeds: list) -> list:
        torch = self._torch
        with torch.inference_mode():
            out = self._model(*[torch.from_numpy(np.ascontiguousarray(f)) for f in feeds])
        if not isinstance(out, tuple):
            out = (out,)
        return [o.numpy() for o in out]

    def stream(self, warn: bool = True):
        if self.mode == "step":
            return super().stream(warn)
        if not hasattr(self, "_stepper"):
            self._stepper = TorchSession(self.run.path, self.threads, mode="step")
        return self._stepper.stream(warn)

    def close(self) -> None:
        self._model = None


def output_units(run, out: np.ndarray) -> np.ndarray:
    """Model outputs -> the units a deployed artifact returns: forecasts de-normalized (y * std + mean)."""
    pre = run.preprocessing().get("output")
    if not pre:
        return out
    return out * np.asarray(pre["std"], np.float32) + np.asarray(pre["mean"], np.float32)


def torch_outputs(run, X_raw: np.ndarray, model=None) -> np.ndarray:
    """Float PyTorch outputs of the run's model (or `model`, e.g. one with perturbed weights) on raw windows,
    in the artifacts' output units."""
    torch = require("torch", "train")
    model = model if model is not None else run.load_model()
    x = torch.from_numpy(run.normalize(X_raw))
    with torch.no_grad():
        if run.mask_padding:  # the real frames of each window alone (what the runtimes run)
            from edgernn.data.padding import infer_lengths
            from edgernn.models import forward_real

            return output_units(run, forward_real(model, x, infer_lengths(X_raw, run.pad_value)).numpy())
        return output_units(run, model(x).numpy())


def torch_stream_outputs(run, frames_raw: np.ndarray, model=None) -> np.ndarray:
    """Float PyTorch outputs after every frame of ONE raw stream [N, C] fed from a zero state (what a
    streaming device must reproduce), in the artifacts' output units. [N, K]. The recurrence runs as one
    call over the whole stream (the same arithmetic as stepping frame by frame, ~100x faster on a
    20,000-frame soak); the head is applied to the output after every frame. `model`: as in torch_outputs."""
    from edgernn.models import StepModel

    torch = require("torch", "train")
    model = model if model is not None else run.load_model()
    StepModel(model)  # refuses bidirectional models, which cannot stream
    xn = torch.from_numpy(run.normalize(frames_raw))[None].to(next(model.parameters()).dtype)
    with torch.inference_mode():
        if model.frontend is not None:  # audio: the stream's hops through the front end, then the recurrence
            xn = model.frontend(xn)
        seq, _ = model.rnn(xn)
        return output_units(run, model.head(seq[0]).numpy())


def rounding_models(run, draws: int, step: float):
    """Yield copies of the run's float model that differ from it the way two correct float implementations
    do: the model in float64, then `draws` seeded float32 copies with every weight moved by up to `step` of
    itself (relative; edgernn.gates.IMPLEMENTATION_STEP). Where these copies drift apart over a long stream,
    the model itself amplifies small differences, and no artifact can be expected to follow the torch
    stream there."""
    torch = require("torch", "train")
    yield run.load_model().double()
    model = run.load_model()
    clean = {k: v.clone() for k, v in model.state_dict().items()}
    gen = torch.Generator().manual_seed(1)
    for _ in range(draws):
        model.load_state_dict({k: v * (1 + step * (2 * torch.rand(v.shape, generator=gen) - 1))
                               if v.is_floating_point() else v for k, v in clean.items()})
        yield model


def weight_noise_models(run, draws: int):
    """Yield `draws` copies of the run's float model (one model object, reloaded per draw), each weight
    matrix (recurrent, input, head) perturbed by uniform noise of half an int8 step: its row's max|w| / 127
    / 2, what storing it in int8 does. Seeded: the same run gives the same copies. Where such a copy moves
    the output grossly, the float model itself is FRAGILE, and an int8 artifact's gross error there is a
    lottery rather than a broken artifact (the recipe gate's stress set, the parity soak)."""
    torch = require("torch", "train")
    model = run.load_model()
    clean = {k: v.clone() for k, v in model.state_dict().items()}
    gen = torch.Generator().manual_seed(0)
    for _ in range(draws):
        noisy = {}
        for k, v in clean.items():
            if v.ndim == 2 and v.is_floating_point():
                half_step = v.abs().amax(1, keepdim=True) / 127 / 2
                v = v + half_step * (2 * torch.rand(v.shape, generator=gen, dtype=v.dtype) - 1)
            noisy[k] = v
        model.load_state_dict(noisy)
        yield model


def int8_input_step(run, calib: np.ndarray | None = None) -> tuple[float, float]:
    """(scale, low end) of the int8 grid a calibrated int8 input of this run has, in normalized units: TFLite's
    min/max calibration over the raw windows `calib` (the export's: edgernn.gates.calibration_windows; default
    all saved training windows), the range widened to hold 0, split in 255 steps."""
    xn = run.normalize(run.data()["X_calib"] if calib is None else calib)
    lo, hi = min(float(xn.min()), 0.0), max(float(xn.max()), 0.0)
    scale = (hi - lo) / 255.0 or 1.0
    return scale, lo


def input_grid_copies(run, X: np.ndarray, draws: int, calib: np.ndarray | None = None):
    """Yield `draws` copies of raw windows X whose normalized frames are ROUNDED to an int8 input grid (no
    clipping): first the grid int8_input_step gives (what a full-int8 artifact's input quantization does),
    then the same step with seeded random offsets. Where the float model moves grossly on such a copy, its
    answer hangs on input differences below one int8 step: FRAGILE like under weight noise (measured on
    basic-motions GRU h64, amplitude x0.25/x0.5 stress copies: the float model fed the full-int8 artifact's
    rounded input was off by 7.2-7.7 of a 15.1 output range on the same 3 of 200 copies where the artifact
    was, 0.07 elsewhere; a grid 2.5x finer or coarser moved other copies as far). Padding frames of a
    --mask-padding run are left as they are (they mark where the window starts). X: [..., C] raw."""
    scale, lo = int8_input_step(run, calib)
    pre = run.preprocessing()
    mean, std = (np.asarray(pre[k], np.float32) for k in ("mean", "std"))
    xn = (np.asarray(X, np.float32) - mean) / std
    keep = (np.all(X == run.pad_value, axis=-1, keepdims=True) if run.mask_padding
            else np.zeros(X.shape[:-1] + (1,), bool))
    rng = np.random.default_rng(0)
    for k in range(draws):
        offset = lo if k == 0 else lo + scale * rng.uniform()
        q = np.round((xn - offset) / scale) * scale + offset
        yield np.where(keep, X, q * std + mean).astype(np.float32)


if __name__ == "__main__":  # the benchmark worker for the torch eager row: edgernn.runtimes.bench_worker + torch
    import sys

    from edgernn.runtimes import bench_worker

    sys.exit(bench_worker.main(torch_session=TorchSession))
