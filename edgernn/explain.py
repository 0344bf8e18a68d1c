"""
Why does a quantized artifact lose against the float model? `edgernn parity RUN --explain ARTIFACT`.

    rep = explain("runs/gru", "sequence-int8.tflite")     # also writes RUN/explain/<artifact>.{json,png}
    print(format_explain(rep))

For the test windows where the artifact's top-1 differs from the float model (or, for forecasting and
when nothing differs, the windows with the largest output error) it measures:
  - error against frame index: sequence artifacts run on every left-padded prefix of the window, step
    artifacts stream it frame by frame; both against the float model on exactly the same input. An
    error that grows along the window points at the recurrence (state precision); an error that is
    there from the first frames points at input / weight quantization.
  - how fragile the FLOAT model is there: the share of N copies of the window, each with uniform noise
    of half the artifact's input quantization step added, on which the float model itself changes its
    answer. If the float model flips that often, int8 cannot be blamed: no recipe makes a quantized
    model steadier than the float one (retrain, e.g. with input-noise augmentation).
  - per-tensor error (TFLite artifacts whose float twin `<mode>-float.tflite` is beside them): every
    intermediate tensor of both graphs on the worst window, compared after dequantization
    (tensor_errors below): the worst tensor is named, with the recipe that gives it finer steps.
and names the passing alternatives of the same format and mode from parity.json (the recipe to use).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from edgernn.errors import ConfigError
from edgernn.rundir import load_run
from edgernn.runtimes.files import atomic_write_json

MAX_WINDOWS = 5
FRAGILE = 0.10  # float flip rate under quantization-sized input noise above which the model is "fragile"


def _input_step(manifest: dict, run) -> float:
    """The artifact's input quantization step in normalized units (int8 input), else the step an int8
    input calibrated on the training windows would have (range / 255)."""
    x = next((t for t in manifest["inputs"] if t.get("role") == "x"), manifest["inputs"][0])
    if x.get("quant"):
        return float(x["quant"]["scale"])
    from edgernn.reference import int8_input_step

    return int8_input_step(run)[0]


def _padded_prefixes(window: np.ndarray, pad_value: float, points: int = 25):
    """(frame indices, raw windows [k, T, C]): the first t frames of `window`, left-padded to T."""
    T = len(window)
    ts = np.unique(np.linspace(1, T, min(points, T)).round().astype(int))
    out = np.full((len(ts), T, window.shape[1]), pad_value, np.float32)
    for i, t in enumerate(ts):
        out[i, T - t:] = window[:t]
    return ts, out


def _frame_error(run, session, manifest, window: np.ndarray) -> tuple[list, list]:
    """|artifact - float| (max over outputs) against frame index for one raw window."""
    from edgernn.reference import torch_outputs, torch_stream_outputs

    if manifest["mode"] == "step":
        st = session.stream(warn=False)
        out = np.stack([np.asarray(st.step(f), np.float32).reshape(-1) for f in window])
        ref = torch_stream_outputs(run, window)
        err = np.abs(out - ref).max(-1)
        return list(range(1, len(window) + 1)), [float(e) for e in err]
    ts, prefixes = _padded_prefixes(window, run.pad_value)
    out = np.asarray(session.predict(prefixes), np.float32)
    ref = torch_outputs(run, prefixes)
    if out.ndim == 3:  # tag: the output at the last frame of each prefix
        out, ref = out[:, -1], ref[:, -1]
    return [int(t) for t in ts], [float(e) for e in np.abs(out - ref).max(-1)]


def _flip_rate(run, model, window: np.ndarray, step_norm: float, trials: int, rng) -> float:
    """Share of noisy copies (uniform +-step/2 in normalized units) on which the float model's top-1
    differs from its answer on the clean window (tag: at the last frame)."""
    import torch

    xn = run.normalize(window[None])
    noisy = xn + rng.uniform(-step_norm / 2, step_norm / 2, (trials, *xn.shape[1:])).astype(np.float32)
    with torch.no_grad():
        clean = model(torch.from_numpy(xn)).numpy()
        out = model(torch.from_numpy(noisy)).numpy()
    if out.ndim == 3:
        clean, out = clean[:, -1], out[:, -1]
    return float((out.argmax(-1) != clean.argmax(-1)).mean())


def _verdict(flip: float | None, err: list) -> tuple[str, str]:
    if flip is not None and flip >= FRAGILE:
        return ("fragile float model", f"the float model itself changes its answer on {flip:.0%} of noisy copies "
                "(noise = half an int8 input step): no quantization recipe can be steadier; retrain (more data, "
                "input-noise augmentation) or accept the loss")
    k = max(1, len(err) // 4)
    early, late = max(err[:k]), max(err[-k:])
    if late > 3 * early + 1e-6:
        return ("error accumulates through the recurrence", f"error grows from {early:.3g} (first quarter) to "
                f"{late:.3g} (last quarter): keep the state in higher precision (dynamic-range or 16-bit "
                "activations recipe)")
    return ("error from the first frames", f"error is already {early:.3g} in the first quarter of the window: "
            "input or weight quantization (per-channel weights, a wider calibration set, or dynamic range)")


def explain(run_dir, artifact, trials: int = 100, out_dir: Path | None = None, plot: bool = True) -> dict:
    """Diagnose one artifact of a run (a path, or a file name in RUN/artifacts); writes
    OUT/explain-<artifact>.json (+ .png), OUT defaulting to RUN/explain."""
    from edgernn.reference import torch_outputs
    from edgernn.runtimes import load
    from edgernn.runtimes.manifest import read_manifest

    run = load_run(run_dir)
    path = Path(artifact)
    if not path.exists() and (run.artifacts_dir / path.name).exists():
        path = run.artifacts_dir / path.name
    manifest = read_manifest(path)
    run.check_artifact(path, manifest)
    if manifest["precision"] == "float":
        raise ConfigError(f"{path.name} is a float artifact; --explain diagnoses quantized ones (int8, dynamic)")
    session = load(path)
    model = run.load_model()
    d = run.data()
    X = d["X_test"].astype(np.float32)
    ref = torch_outputs(run, X)
    from edgernn.gates import run_artifact

    out, _ = run_artifact(session, X, manifest["mode"], run.task)
    o, r = (out[:, -1], ref[:, -1]) if out.ndim == 3 else (out, ref)
    diff = np.abs(o - r).max(-1)
    if run.task == "forecast":
        bad = list(np.argsort(-diff)[:MAX_WINDOWS])
    else:
        bad = [int(i) for i in np.flatnonzero(o.argmax(-1) != r.argmax(-1))]
        bad = sorted(bad, key=lambda i: -diff[i])[:MAX_WINDOWS] or list(np.argsort(-diff)[:1])
    step = _input_step(manifest, run)
    rng = np.random.default_rng(0)
    windows = []
    for i in bad:
        i = int(i)
        frames, err = _frame_error(run, session, manifest, X[i])
        flip = None if run.task == "forecast" else _flip_rate(run, model, X[i], step, trials, rng)
        kind, why = _verdict(flip, err)
        margin = None
        if run.task != "forecast":
            top = np.sort(r[i])[::-1]
            margin = float(top[0] - top[1])
        windows.append({"window": i, "label": d["y_test"][i].tolist() if run.task == "classify" else None,
                        "float_top1": int(r[i].argmax()) if run.task != "forecast" else None,
                        "artifact_top1": int(o[i].argmax()) if run.task != "forecast" else None,
                        "float_margin": margin, "max_abs_diff": float(diff[i]), "float_flip_rate": flip,
                        "frames": frames, "frame_error": err, "verdict": kind, "why": why})
    alternatives = _alternatives(run, manifest, path.name)
    tensors, tensor_note = _tensors(run, path, manifest, X[int(bad[0])] if len(bad) else None)
    rep = {"run": str(run.path), "artifact": path.name, "format": manifest["format"],
           "precision": manifest["precision"], "mode": manifest["mode"],
           "compute": manifest["quantization"]["compute"], "input_step": step, "noise_trials": trials,
           "n_test": int(len(X)), "disagreeing_windows": int((o.argmax(-1) != r.argmax(-1)).sum())
           if run.task != "forecast" else None,
           "windows": windows, "passing_alternatives": alternatives,
           "tensors": tensors, "tensor_note": tensor_note}
    rep["summary"] = _summary(rep)
    out_dir = Path(out_dir) if out_dir else run.path / "explain"
    out_dir.mkdir(parents=True, exist_ok=True)
    stem = f"explain-{path.name}"
    if plot:
        png = _plot(rep, out_dir / f"{stem}.png")
        if png:
            rep["plot"] = str(png)
    atomic_write_json(out_dir / f"{stem}.json", rep)
    rep["json"] = str(out_dir / f"{stem}.json")
    session.close()
    return rep


TOP_TENSORS = 8


def _tensors(run, path: Path, manifest: dict, window) -> tuple[list, str]:
    """(worst tensors, one sentence naming the worst and the recipe that would fix it)."""
    if manifest["format"] != "tflite":
        return [], ("per-tensor error: TFLite artifacts only (onnxruntime's int8 here is dynamic: activations "
                    "are quantized per call, there are no calibrated tensor ranges to blame)")
    twin = path.with_name(f"{manifest['mode']}-float.tflite")
    if not twin.exists() or window is None:
        return [], f"per-tensor error: needs {twin.name} beside the artifact (export --precision float too)"
    rows = tensor_errors(path, twin, run.normalize(window[None])[0])
    if not rows:
        if "WHILE" in (manifest.get("graph") or {}).get("op_types", []):
            step = path.with_name(path.name.replace("sequence-", "step-", 1))
            return [], ("per-tensor error: this is a WHILE loop (GRU/RNN int8 at any T) whose body tensors the "
                        "interpreter does not expose; the step artifact computes the same cell one frame at a "
                        f"time with every tensor visible: --explain {step.name}"
                        + ("" if step.exists() else " (export with --streaming)"))
        return [], "per-tensor error: no tensor names in common with the float graph"
    w, first = rows[0], onset(rows)
    recipe = (manifest.get("quantization") or {}).get("recipe")
    if w["dtype"] == "int8":
        fix = ("--recipe int16x8 gives activations 256x finer steps (same calibrated ranges); --recipe dynamic "
               "keeps activations float")
    elif w["dtype"] == "int16":
        fix = "--recipe dynamic keeps activations float"
    else:
        fix = "it is float: the error arrives from quantized tensors upstream"
    steps = f", {w['steps']:.1f} quantization steps" if w.get("steps") else ""
    text = (f"worst tensor {w['tensor']} ({w['op']} #{w['op_index']}, {w['dtype']}"
            f"{f', recipe {recipe}' if recipe else ''}): rmse {w['rmse']:.3g} = {w['relative']:.1%} of its float "
            f"range{steps}")
    if w.get("steps") and w["steps"] > 3:
        text += " - far beyond rounding noise (~0.3 steps): error amplified along the graph, or a clipped range"
    if first and first["tensor"] != w["tensor"]:
        text += (f"; the error takes off at {first['tensor']} ({first['op']} #{first['op_index']} of the graph, "
                 f"{first['relative']:.1%} of range)")
    return rows[:TOP_TENSORS], text + f"; {fix}"


def _alternatives(run, manifest: dict, name: str) -> list:
    """Artifacts of the same mode that passed parity (from parity.json), float last."""
    import json

    p = run.path / "parity.json"
    if not p.is_file():
        return []
    try:
        rows = json.loads(p.read_text()).get("artifacts", [])
    except json.JSONDecodeError:
        return []
    ok = [a for a in rows if a.get("passed") and a["mode"] == manifest["mode"] and a["artifact"] != name]
    ok.sort(key=lambda a: (a["precision"] == "float", a["format"] != manifest["format"], a["size_bytes"]))
    return [{"artifact": a["artifact"], "compute_label": a.get("compute_label"), "size_bytes": a["size_bytes"]}
            for a in ok]


def _summary(rep: dict) -> str:
    kinds = [w["verdict"] for w in rep["windows"]]
    if not kinds:
        return "nothing to explain: no window differs"
    main = max(set(kinds), key=kinds.count)
    text = f"{kinds.count(main)} of {len(kinds)} examined windows: {main}"
    alt = [a for a in rep["passing_alternatives"] if not a["artifact"].split("-", 1)[1].startswith("float")]
    if alt:
        text += f"; passing quantized alternative: {alt[0]['artifact']} ({alt[0]['compute_label']})"
    return text


def _plot(rep: dict, path: Path):
    try:
        import matplotlib

        matplotlib.use("Agg")
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure
    except ImportError:
        return None
    fig = Figure(figsize=(8, 4.2))
    FigureCanvasAgg(fig)
    ax = fig.add_subplot(1, 1, 1)
    for w in rep["windows"]:
        flip = "" if w["float_flip_rate"] is None else f", float flips {w['float_flip_rate']:.0%}"
        ax.plot(w["frames"], w["frame_error"], marker="o", ms=3,
                label=f"window {w['window']}: {w['verdict']}{flip}")
    ax.set_yscale("log")
    unit = "frame streamed" if rep["mode"] == "step" else "frames in the (left-padded) prefix"
    ax.set_xlabel(f"frame index ({unit})")
    ax.set_ylabel("max |artifact - float| output")
    ax.set_title(f"{rep['artifact']} ({', '.join(f'{k} {v}' for k, v in rep['compute'].items())}): "
                 "error against frame index", fontsize=9)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, loc="best")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    return path


def format_explain(rep: dict) -> str:
    lines = [f"explain {rep['artifact']} ({rep['precision']}, {rep['mode']}; "
             f"{', '.join(f'{k} {v}' for k, v in rep['compute'].items())}): {rep['summary']}"]
    if rep.get("disagreeing_windows") is not None:
        lines.append(f"top-1 differs from float on {rep['disagreeing_windows']} of {rep['n_test']} test windows; "
                     f"input step {rep['input_step']:.3g} (normalized units), {rep['noise_trials']} noisy copies each")
    for w in rep["windows"]:
        margin = "" if w["float_margin"] is None else f", float margin {w['float_margin']:.2f}"
        flip = "" if w["float_flip_rate"] is None else f", float flips on {w['float_flip_rate']:.0%} of noisy copies"
        err = w["frame_error"]
        lines.append(f"  window {w['window']}: max|diff| {w['max_abs_diff']:.3g}{margin}{flip}; error first "
                     f"{err[0]:.3g} -> last {err[-1]:.3g}: {w['verdict']}: {w['why']}")
    if rep["passing_alternatives"]:
        alts = rep["passing_alternatives"][:4]
        lines.append("passing alternatives: " + ", ".join(
            f"{a['artifact']} ({a['compute_label']}, {a['size_bytes'] / 1024:.1f} KB)" for a in alts))
    lines.append(rep["tensor_note"])
    for t in rep["tensors"][1:4]:
        steps = f", {t['steps']:.1f} steps" if t.get("steps") else ""
        lines.append(f"  then {t['tensor']} ({t['op']}, {t['dtype']}): {t['relative']:.1%} of range{steps}")
    if rep.get("plot"):
        lines.append(f"wrote {rep['json']}, {rep['plot']}")
    return "\n".join(lines)


# ---- per-tensor error ------------------------------------------------------------------------------
# Per-tensor quantization error of a TFLite artifact against its float twin, for `parity --explain`.
#
#     rows = tensor_errors(int8_path, float_path, window_normalized, mode)   # worst first
#     rows[0] -> {"tensor": "model/gru0/gru_cell/add_2", "op": "ADD", "rmse": 0.41, "relative": 0.08,
#                 "steps": 9.7, "dtype": "int8", "scale": 0.042}
#
# Both artifacts are run with every intermediate tensor preserved (LiteRT's
# experimental_preserve_all_tensors) on the same normalized window - one invoke for sequence artifacts,
# frame by frame for step artifacts (explicit state fed back, or the interpreter's own variable state) -
# and every tensor present in both graphs under the same name is compared after dequantization:
#   rmse      root-mean-square |quantized - float| over the window (and all frames)
#   relative  rmse / (max - min of the float tensor): comparable between tensors
#   steps     rmse / the tensor's quantization scale (what TFLite's QuantizationDebugger calls rmse/scale:
#             ~0.29 is plain rounding noise; much more means error arriving from upstream or clipping)
# The graphs come from one Keras model, so names match for most activations; constants are skipped.
# The error is cumulative (each graph runs on its own upstream values), so in a recurrence the worst
# tensors are late ones; `onset` finds the first tensor in execution order whose error crosses a threshold.

def _interpreter(path: Path):
    """Builtin kernels only (no XNNPACK: a delegate hides the ops and their intermediate tensors)."""
    import warnings

    try:
        from ai_edge_litert.interpreter import Interpreter, OpResolverType
    except ImportError:  # pragma: no cover
        import tensorflow as tf

        Interpreter, OpResolverType = tf.lite.Interpreter, tf.lite.experimental.OpResolverType
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # "preserve_all_tensors is for debugging": that is what this is
        it = Interpreter(model_path=str(path), num_threads=1, experimental_preserve_all_tensors=True,
                         experimental_op_resolver_type=OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES)
    it.allocate_tensors()
    return it


def _tensor(d: dict):
    """The runtime's Tensor (edgernn.runtimes.tensor) for an interpreter tensor detail: its (de)quantization."""
    from edgernn.runtimes.tensor import Tensor

    scale, zp = d["quantization"]
    return Tensor({"name": d["name"]}, d["dtype"], scale, zp)


def _q(d: dict, x: np.ndarray) -> np.ndarray:
    return _tensor(d).quantize(np.asarray(x, np.float32))


def _dq(d: dict, v: np.ndarray) -> np.ndarray:
    return _tensor(d).dequantize(v)


class _Runner:
    """One artifact stepping through a window, collecting every non-constant float-valued tensor."""

    def __init__(self, path: Path, manifest: dict):
        self.it = _interpreter(path)
        self.manifest = manifest
        self.details = {d["name"]: d for d in self.it.get_tensor_details()}
        self.inputs = {d["name"]: d for d in self.it.get_input_details()}
        self.outputs = {d["name"]: d for d in self.it.get_output_details()}
        ops = self.it._get_ops_details()
        self.producer, self.order = {}, {}
        for k, op in enumerate(ops):
            for i in op["outputs"]:
                if i >= 0:
                    self.producer[i] = op["op_name"]
                    self.order[i] = k

    def _x(self, x: np.ndarray):
        name = next(t["name"] for t in self.manifest["inputs"] if t["role"] == "x")
        d = self.inputs[name]
        shape = list(d["shape"])
        if list(x.shape) != shape:
            self.it.resize_tensor_input(d["index"], list(x.shape), strict=False)
            self.it.allocate_tensors()
            self.inputs = {e["name"]: e for e in self.it.get_input_details()}
            self.outputs = {e["name"]: e for e in self.it.get_output_details()}
            d = self.inputs[name]
        self.it.set_tensor(d["index"], _q(d, x))

    def _dump(self) -> dict:
        out = {}
        for name, d in self.details.items():
            if d["index"] not in self.producer:
                continue  # a constant or a graph input
            try:
                v = self.it.get_tensor(d["index"])
            except ValueError:
                continue
            if v.dtype.kind not in "fi" or v.dtype == np.int32:
                continue
            out[name] = (_dq(d, v), d)
        return out

    def run(self, window: np.ndarray) -> list[dict]:
        """Tensor dumps, one per invoke (one for a sequence window, one per frame for a step artifact)."""
        m = self.manifest
        self.it.reset_all_variables()
        if m["mode"] == "sequence":
            self._x(window[None].astype(np.float32))
            self.it.invoke()
            return [self._dump()]
        states = {t["name"]: np.zeros(self.inputs[t["name"]]["shape"], np.float32)
                  for t in m["inputs"] if t["role"] == "state"}
        dumps = []
        for frame in window:
            x = frame[None, None] if m.get("stateful_interpreter") else frame[None]
            self._x(x.astype(np.float32))
            for name, v in states.items():
                d = self.inputs[name]
                self.it.set_tensor(d["index"], _q(d, v))
            self.it.invoke()
            dumps.append(self._dump())
            for t in m["outputs"]:
                if t["role"] == "state":
                    d = self.outputs[t["name"]]
                    states[t["next"]] = _dq(d, self.it.get_tensor(d["index"]))
        return dumps


def tensor_errors(int8_path: Path, float_path: Path, window: np.ndarray, top: int | None = None) -> list[dict]:
    """Per-tensor error of int8_path against float_path on one NORMALIZED window [T, C], worst first
    (by relative error). Tensors are matched by name; those missing from either graph are skipped."""
    from edgernn.runtimes.manifest import read_manifest

    q_run = _Runner(Path(int8_path), read_manifest(int8_path))
    f_run = _Runner(Path(float_path), read_manifest(float_path))
    q_dumps, f_dumps = q_run.run(window), f_run.run(window)
    acc: dict = {}
    for qd, fd in zip(q_dumps, f_dumps):
        for name, (qv, det) in qd.items():
            if name not in fd or fd[name][0].shape != qv.shape:
                continue
            fv = fd[name][0]
            a = acc.setdefault(name, {"sq": 0.0, "n": 0, "lo": np.inf, "hi": -np.inf, "det": det})
            a["sq"] += float(np.sum((qv - fv) ** 2))
            a["n"] += int(fv.size)
            a["lo"], a["hi"] = min(a["lo"], float(fv.min())), max(a["hi"], float(fv.max()))
    rows = []
    for name, a in acc.items():
        det = a["det"]
        rmse = (a["sq"] / max(1, a["n"])) ** 0.5
        rng = a["hi"] - a["lo"]
        scale = float(det["quantization"][0]) if np.dtype(det["dtype"]).kind == "i" else None
        rows.append({"tensor": name, "op": q_run.producer.get(det["index"], "?"),
                     "op_index": q_run.order.get(det["index"], -1),
                     "dtype": np.dtype(det["dtype"]).name, "scale": scale, "rmse": rmse,
                     "relative": rmse / rng if rng > 0 else 0.0,
                     "steps": rmse / scale if scale else None})
    rows.sort(key=lambda r: -r["relative"])
    return rows[:top] if top else rows


def onset(rows: list[dict], share: float = 0.5) -> dict | None:
    """The first tensor in execution order whose relative error reaches `share` of the worst one's."""
    if not rows:
        return None
    limit = share * max(r["relative"] for r in rows)
    early = [r for r in rows if r["relative"] >= limit and r["op_index"] >= 0]
    return min(early, key=lambda r: r["op_index"]) if early else None
