"""
C export (`--format c`): a dependency-free C99 library per artifact, float or int8, sequence or step.

    from edgernn.export.c.export import export_c
    path = export_c(load_run("runs/gru"), Path("runs/gru/artifacts"), "int8", "step", ExportOptions())
    # -> runs/gru/artifacts/step-int8.h + step-int8.h.json

The artifact is ONE header-only file (stb style; edgernn.export.c.source writes it): an app defines
<PREFIX>_IMPLEMENTATION in one .c file and includes it. The prefix (default `<run>_<mode>_<precision>`,
e.g. gru_step_int8, or --c-prefix) names every symbol, so several models link into one program.

This module reads the weights out of the torch model, builds the generator's Spec, checks and publishes
the artifact with its manifest. int8 (compute label int16x8, recipe "int16x8": int8 weights per output
row, int16 activations and state, int32 accumulators) is built by the recipe's builder,
recipes.builder("int16x8", "c") = edgernn.export.c.quantize.int16x8, which says how and why.

Before it is kept, every artifact is compiled with the system C compiler and run on calibration windows
against the float PyTorch model (float: within the float parity gate; int8: the recipe gate decides).
"""

from __future__ import annotations

import re
import tempfile
import time
from pathlib import Path

import numpy as np

from edgernn.errors import ConfigError, ExportError
from edgernn.export import recipes
from edgernn.export.c import source as c_source
from edgernn.export.c.source import Spec
from edgernn.export.c.tables import Q_OUT
from edgernn.export.formats import ExportOptions, check_combination

N_CHECK = 64  # calibration windows every artifact runs at export, against the float model
C_KEYWORDS = set("auto break case char const continue default do double else enum extern float for goto if "
                 "inline int long register restrict return short signed sizeof static struct switch typedef "
                 "union unsigned void volatile while".split())


def default_prefix(run, mode: str, precision: str) -> str:
    name = re.sub(r"[^0-9a-zA-Z_]", "_", Path(run.path).name).strip("_").lower() or "model"
    if name[0].isdigit():
        name = "m" + name
    return f"{name}_{mode}_{precision}"


def check_prefix(prefix: str) -> str:
    if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]{0,39}", prefix or "") or prefix in C_KEYWORDS:
        raise ConfigError(f"--c-prefix {prefix!r} is not a usable C identifier: letters, digits and _, not "
                          "starting with a digit, at most 40 characters, not a C keyword (e.g. gru_kws)")
    return prefix


# ---- weights -------------------------------------------------------------------------------------------
def float_layers(model) -> list[dict]:
    """Per layer and direction (l0d0, l0d1, l1d0, ...): W_ih [GH, in], W_hh [GH, H], b_ih, b_hh (float64)."""
    cfg = model.cfg
    out = []
    for layer in range(cfg.layers):
        for d in range(cfg.directions):
            sfx = f"l{layer}" + ("_reverse" if d else "")
            out.append({k: getattr(model.rnn, f"{name}_{sfx}").detach().double().numpy()
                        for k, name in (("w_ih", "weight_ih"), ("w_hh", "weight_hh"), ("b_ih", "bias_ih"),
                                        ("b_hh", "bias_hh"))})
    return out


def _float_spec_layers(cell: str, layers: list[dict]) -> list[dict]:
    out = []
    for lay in layers:
        e = {"wx": lay["w_ih"].T.astype(np.float32), "wh": lay["w_hh"].T.astype(np.float32)}
        if cell == "gru":
            e["bx"], e["bh"] = lay["b_ih"], lay["b_hh"]
        else:
            e["bx"] = lay["b_ih"] + lay["b_hh"]
        out.append(e)
    return out


def build_spec(run, model, precision: str, mode: str, prefix: str) -> tuple[Spec, dict]:
    cfg = run.config
    layers = float_layers(model)
    head_w = model.head.weight.detach().double().numpy()
    head_b = model.head.bias.detach().double().numpy()
    pre = run.preprocessing()
    out_pre = pre.get("output")
    fe = cfg.front_end()  # audio: the front end (its own normalization inside) feeds layer 0 its features
    kw = dict(prefix=prefix, cell=cfg.cell, C=cfg.features, H=cfg.hidden, L=cfg.layers, D=cfg.directions,
              K=cfg.num_outputs, task=cfg.head, seq_len=run.seq_len, precision=precision, fe=fe,
              mean=np.zeros(cfg.features) if fe is not None else np.asarray(pre["mean"]),
              std=np.ones(cfg.features) if fe is not None else np.asarray(pre["std"]),
              out_mean=np.asarray(out_pre["mean"]) if out_pre else None,
              out_std=np.asarray(out_pre["std"]) if out_pre else None,
              labels=list(run.labels) if cfg.head != "forecast" else [])
    if precision == "float":
        kw.update(layers=_float_spec_layers(cfg.cell, layers), head_wb={"w": head_w.astype(np.float32), "b": head_b})
        facts = {}
    else:
        int8_fields, facts = recipes.builder("int16x8", "c")(run, layers, head_w, head_b)  # c.quantize.int16x8
        kw.update(int8_fields)
    kw["comment"] = _comment(run, precision, mode, prefix)
    return Spec(**kw), facts


def _comment(run, precision: str, mode: str, prefix: str) -> str:
    from edgernn import __version__

    cfg = run.config
    P = prefix.upper()
    what = (f"{cfg.cell.upper()} h{cfg.hidden}, {cfg.layers} layer(s){', bidirectional' if cfg.bidirectional else ''}, "
            f"{cfg.head} head, {cfg.input_size} channels in, {cfg.num_outputs} outputs")
    lines = [f"{mode}-{precision}.h: {what}; {precision} C99, generated by edgernn {__version__} from run "
             f"{Path(run.path).name} (model sha256 {run.identity['sha256'][:16]}). Do not edit: re-export.",
             "",
             f"In ONE .c file:  #define {P}_IMPLEMENTATION  then  #include \"{mode}-{precision}.h\"",
             "Elsewhere include it without the define. No heap, no global mutable state, no libm.",
             "Inputs are RAW frames (the training normalization is applied inside); outputs are "
             + (f"logits (argmax = class; the class names are {prefix}_labels)." if cfg.head != "forecast"
                else "forecasts in raw units."),
             ]
    if precision == "int8":
        lines += ["int8: int8 weights, int16 activations/state, int32 accumulators, table sigmoid/tanh;",
                  f"{prefix}_step_q() is integer-only (float only in {prefix}_quantize_frame and the output scale)."]
    if cfg.bidirectional:
        lines += [f"Bidirectional: only {prefix}_run(); it buffers 2 x T x 2H values on the stack (T <= {P}_MAX_T)."]
    return "\n".join(lines)


# ---- the exporter -------------------------------------------------------------------------------------
def export_c(run, out_dir: Path, precision: str = "float", mode: str = "sequence",
             options: ExportOptions | None = None) -> Path:
    """Write out_dir/f"{mode}-{precision}.h" + manifest; return the artifact path."""
    from edgernn.devices.compilers import target_sizes
    from edgernn.export.manifest import base_fields, publish
    from edgernn.runtimes.c_backend import find_compiler
    from edgernn.runtimes.files import writable_dir_problem

    options = options or ExportOptions()
    check_combination("c", precision, mode)
    cfg = run.config
    if mode == "step" and cfg.bidirectional:
        raise ConfigError("bidirectional models cannot stream: export --format c without --streaming")
    if cfg.frontend is not None and cfg.bidirectional:
        raise ConfigError("C for a bidirectional audio model is not supported: train it unidirectional (a keyword "
                          "spotter streams) or export --format onnx")
    if options.recipe not in (None, "int16x8"):
        raise ConfigError(f"int8 C has one recipe, int16x8 (not {options.recipe})")
    find_compiler()  # every artifact is compiled and run before it is kept: say now if that cannot happen
    prefix = check_prefix(options.c_prefix) if options.c_prefix else default_prefix(run, mode, precision)
    t0 = time.perf_counter()
    model = run.load_model()
    spec, facts = build_spec(run, model, precision, mode, prefix)
    spec.detector = options.detector if cfg.head == "classify" else None
    text = c_source.generate(spec)
    name = f"{mode}-{precision}.h"
    fields = base_fields(run, "c", precision, mode)
    K = cfg.num_outputs
    if mode == "step":
        inputs = [{"name": "frame", "shape": [1, cfg.input_size], "role": "x", "dtype": "float32"}]
        outputs = [{"name": "out", "shape": [1, K], "role": "y", "dtype": "float32"}]
    else:
        inputs = [{"name": "x", "shape": [None, None, cfg.input_size], "role": "x", "dtype": "float32"}]
        outputs = [{"name": "out", "shape": [None, None, K] if cfg.head == "tag" else [None, K], "role": "y",
                    "dtype": "float32"}]
    elem = 2 if precision == "int8" else 4
    fe = spec.fe
    tail = fe.tail if fe is not None else 0
    state_bytes = (cfg.layers * cfg.hidden * elem * (2 if cfg.cell == "lstm" else 1) + 4 * tail
                   if spec.streaming else 0)
    api = ([f"{prefix}_reset", f"{prefix}_step"] if spec.streaming else []) + [f"{prefix}_run"]
    if precision == "int8" and spec.streaming:
        api += [f"{prefix}_quantize_frame", f"{prefix}_step_q"]
    if spec.fe is not None and spec.streaming:
        api += [f"{prefix}_step_pcm16", f"{prefix}_features"]
    if spec.detector and spec.streaming:
        api += [f"{prefix}_detector_reset", f"{prefix}_detect"]
    c_block = {"prefix": prefix, "language": "C99", "header_only": True,
               "implementation_macro": f"{prefix.upper()}_IMPLEMENTATION", "api": api,
               "state_type": f"{prefix}_state" if spec.streaming else None, "state_bytes": state_bytes,
               "streaming": spec.streaming, "max_t": None if spec.streaming else run.seq_len,
               "stack_note": (f"run() keeps 2 x T x {2 * cfg.hidden} {'int16' if elem == 2 else 'float'} values on "
                              "the stack" if not spec.streaming else "no buffers beyond a few gate vectors")}
    if fe is not None:
        from edgernn.export.c.frontend import table_bytes

        c_block["frontend"] = {"describe": fe.describe(), "arithmetic": "float32 (an FPU makes it cheap: Cortex-M4F "
                               "and up)", "table_bytes": table_bytes(fe),
                               "stack_bytes": 4 * (fe.n_fft + fe.bins + fe.mels),
                               "api": f"{prefix}_step takes one hop of {fe.hop} PCM samples (float, [-1, 1]); the "
                                      f"state keeps the last {tail} samples for the next frame"}
    if precision == "int8":
        c_block["int8"] = {**facts, "weights": "int8, one scale per output row (symmetric)",
                           "activations": "int16 (hidden state Q15)", "accumulators": "int32",
                           "requantization": "int32 multiplier + shift per row", "outputs": f"int32 Q{Q_OUT}",
                           "sigmoid_tanh": "513 / 1025-entry Q15 tables, linear interpolation",
                           "float_used": f"only in {prefix}_quantize_frame (raw frame -> int16) and the output "
                                         f"scale; {prefix}_step_q is integer-only" if spec.streaming else
                                         "only where raw frames enter and outputs leave"}
        q = {"recipe": "int16x8", "compute": {"recurrent": "int16x8", "head": "int16x8"},
             "int8_ops": ["recurrent weights (int8 x int16 -> int32)", "head weights"],
             "float_ops": ["input normalization + quantization", "output scaling"],
             "note": "int8 C: int8 weights per output row, int16 activations and state, int32 accumulators, "
                     "fixed-point requantization and table sigmoid/tanh; integer from the quantized frame to the "
                     "int32 outputs"}
    else:
        q = {"recipe": "none", "compute": {"recurrent": "float", "head": "float"}, "int8_ops": [], "float_ops": ["all"],
             "note": "float C: float32 weights and arithmetic, rational sigmoid/tanh (max error 4e-7)"}
    fields.update({"quantization": q, "inputs": inputs, "outputs": outputs,
                   "sequence_length": None if spec.streaming else run.seq_len, "c": c_block})
    if mode == "step":
        fields["stateful_interpreter"] = True
        fields["state_layout"] = (f"{prefix}_state: h[{cfg.layers}][{cfg.hidden}]"
                                  + (f", c[{cfg.layers}][{cfg.hidden}]" if cfg.cell == "lstm" else "")
                                  + (f", tail[{tail}] (float audio samples)" if tail else "")
                                  + f" ({'int16' if elem == 2 else 'float'}), owned by the caller")
    out_dir = Path(out_dir)
    problem = writable_dir_problem(out_dir)
    if problem:
        raise ExportError(f"cannot write C artifacts to {out_dir}: {problem}; choose a writable directory with --out")
    out_dir.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="edgernn-c-") as tmp:
        src = Path(tmp) / name
        src.write_text(text)
        c_block["export_check"] = _check(run, model, src, fields, precision)
        c_block["export_seconds"] = round(time.perf_counter() - t0, 2)
        c_block["targets"] = target_sizes(src, prefix)
        return publish(src, out_dir / name, fields)


def _check(run, model, src: Path, fields: dict, precision: str) -> dict:
    """Compile the source and run N_CHECK calibration windows through it against the float model; a float
    artifact must pass the float gate (an int8 one is judged by the recipe gate on held-out windows)."""
    from edgernn.gates import Gates, calibration_windows, float_limit
    from edgernn.reference import torch_outputs
    from edgernn.runtimes.c_backend import compile_and_open

    X = calibration_windows(run)[:N_CHECK].astype(np.float32)
    ref = torch_outputs(run, X)
    manifest = dict(fields, artifact=src.name, sha256="export-check", size_bytes=src.stat().st_size)
    with compile_and_open(src, manifest) as session:
        if fields["mode"] == "step":
            outs = []
            for w in X:
                w = session.real_frames(w)  # masked padding: a stream sees the real frames only
                st = session.stream(warn=False)
                ys = [st.step(f) for f in w]
                outs.append(np.stack(ys) if run.task == "tag" else ys[-1])
            got = np.stack(outs)
        else:
            got = session.predict(X)
        compiler = session.runtime_version
    diff = float(np.abs(got - ref).max())
    out = {"windows": int(len(X)), "reference": "float PyTorch on calibration windows", "max_abs_diff": diff,
           "compiler": compiler}
    if precision == "float":
        g = Gates()
        limit, text = float_limit(ref, g.float_tol, g.float_rtol)
        out.update(gate=text, passed=diff <= limit)
        if diff > limit:
            raise ExportError(f"float C {fields['mode']} differs from the float model by {diff:.3g} (> {limit:.3g}) on "
                              f"{len(X)} calibration windows: a code generation bug; please report it")
    return out
