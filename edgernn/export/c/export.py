"""
C export (`--format c`): a dependency-free C99 library per artifact, float or int8, sequence or step.

    from edgernn.export.c.export import export_c
    path = export_c(load_run("runs/gru"), Path("runs/gru/artifacts"), "int8", "step", ExportOptions())
    # -> runs/gru/artifacts/step-int8.h + step-int8.h.json

The artifact is ONE header-only file (stb style; edgernn/export/c_source.py writes it): an app defines
<PREFIX>_IMPLEMENTATION in one .c file and includes it. The prefix (default `<run>_<mode>_<precision>`,
e.g. gru_step_int8, or --c-prefix) names every symbol, so several models link into one program.

int8 here (compute label int16x8, recipe "int16x8"): weights int8 with one scale per output row
(symmetric, scale = max|row| / 127, the input scale folded in), activations and state int16 (hidden
state Q15; the LSTM cell state Q(k) per unit, with 2^(15-k) >= 2 x that unit's largest magnitude over the calibration windows
streamed back to back, rounded up to a power of two as TinyNeuralNetwork does), int32 accumulators,
requantization by an int32 multiplier and a shift, table sigmoid/tanh. The input's int16 scale per
channel is 4 x the largest normalized calibration value (2 bits of headroom for louder field data).
Overflow is ruled out by construction: an int32 sum of n int8 x int16 products stays below 2^31 when
n <= 516 (n x 127 x 32767), so a larger fan-in (hidden > 516) is refused with that reason.

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
from edgernn.export.c import source as c_source
from edgernn.export.c.source import Q_OUT, Q_PRE, Spec
from edgernn.export.formats import ExportOptions, check_combination

MAX_FAN_IN = (2 ** 31 - 1) // (127 * 32767)  # 516: int32 sums of int8 x int16 products cannot overflow
INPUT_HEADROOM = 4.0  # int16 input range = this x the largest normalized calibration value per channel
CELL_HEADROOM = 2.0  # LSTM cell state range >= this x its largest calibration magnitude (power of two)
STREAM_FRAMES = 20000  # calibration windows streamed back to back for the LSTM cell-state range
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


def fan_in_problem(cfg) -> str | None:
    """Why int8 C cannot hold this model without int32 overflow (None = it can)."""
    H, D = cfg.hidden, cfg.directions
    fans = [("input", cfg.input_size), ("hidden", H)]
    if cfg.layers > 1:
        fans.append(("layer input (directions x hidden)", D * H))
    fans.append(("head input", D * H))
    for what, n in fans:
        if n > MAX_FAN_IN:
            return (f"int8 C keeps activations and state in int16 and sums int8 x int16 products in int32: a {what} "
                    f"fan-in of {n} can reach {n} x 127 x 32767 = {n * 127 * 32767:.3g} > 2^31 - 1; the largest "
                    f"fan-in it takes is {MAX_FAN_IN} (hidden <= {MAX_FAN_IN // D}"
                    f"{' for this bidirectional model' if D > 1 else ''}): export float C, or train a smaller model")
    return None


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


def multiplier(real: float) -> tuple[int, int]:
    """A positive real multiplier as (m, n): real ~ m / 2^n with m < 2^31 as large as n <= 62 allows."""
    if not real > 0 or not np.isfinite(real):
        return 0, 1
    n = min(62, int(np.floor(np.log2((2 ** 31 - 1) / real))))
    if n < 1:
        raise ExportError(f"int8 C: a requantization multiplier of {real:.3g} is too large for int32 fixed point "
                          "(weights or inputs far outside their usual range); export float C")
    m = int(round(real * 2.0 ** n))
    if m >= 2 ** 31:
        n -= 1
        m = int(round(real * 2.0 ** n))
    return m, n


def quantize_rows(w: np.ndarray, in_scale, out_bits: int, feats: np.ndarray | None = None):
    """w [rows, fan-in] real weights, in_scale (scalar or [fan-in]) the real value of one input step ->
    (int8 weights transposed [fan-in, rows], multipliers, shifts) such that
    sum_j q[j, r] x_q[j] * m[r] / 2^n[r] ~ (w @ x)[r] * 2^out_bits. One scale per row: max |row| / 127 in
    the quantized-input domain. With `feats` (real inputs [N, fan-in] the layer saw) the codes are rounded
    by gptq_round, else to nearest."""
    s_in = np.broadcast_to(np.asarray(in_scale, np.float64), (w.shape[1],))
    amax = np.abs(w * s_in[None, :]).max(axis=1)
    scale = np.where(amax > 0, amax / 127.0, 0.0)  # real value of one code x one input step, per row
    step = scale[:, None] / s_in[None, :]  # real weight per code
    if feats is not None and len(feats):
        q = gptq_round(w, step, feats)
    else:
        safe = np.where(step > 0, step, 1.0)
        q = np.where(step > 0, np.clip(np.round(w / safe), -127, 127), 0.0)
    mn = [multiplier(s * 2.0 ** out_bits) for s in scale]
    return q.T.astype(np.int8), [m for m, _ in mn], [n for _, n in mn]


def _np_sigmoid(x):
    return 1.0 / (1.0 + np.exp(-x))


def simulate(cell_layers: list[dict], cfg, xn_windows: np.ndarray) -> list[dict]:
    """The float model in numpy (float64) over the calibration windows, each from a zero state and
    (unidirectional) all of them streamed back to back without reset, as a device streams. Per layer and
    direction: "x" / "h" = the inputs its two matvecs saw (frames [N, fan-in]), "c_peak" = largest |c| per
    unit (LSTM; the long stream is where a cell state grows past what one window shows); plus, last,
    {"head": features the head saw}."""
    H, D, cell = cfg.hidden, cfg.directions, cfg.cell
    rec = [{"x": [], "h": [], "c_peak": np.zeros(H)} for _ in cell_layers]
    head = []

    def run_layer(i, xs, reverse):
        lay, r = cell_layers[i], rec[i]
        h, c = np.zeros(H), np.zeros(H)
        outs = np.zeros((len(xs), H))
        gi_all = xs @ lay["w_ih"].T + lay["b_ih"]
        hs = np.zeros((len(xs), H))
        order = range(len(xs) - 1, -1, -1) if reverse else range(len(xs))
        for t in order:
            hs[t] = h
            gi, gh = gi_all[t], lay["w_hh"] @ h + lay["b_hh"]
            if cell == "gru":
                rg, zg = _np_sigmoid(gi[:H] + gh[:H]), _np_sigmoid(gi[H:2 * H] + gh[H:2 * H])
                n = np.tanh(gi[2 * H:] + rg * gh[2 * H:])
                h = (1 - zg) * n + zg * h
            elif cell == "lstm":
                g = gi + gh
                c = _np_sigmoid(g[H:2 * H]) * c + _np_sigmoid(g[:H]) * np.tanh(g[2 * H:3 * H])
                h = _np_sigmoid(g[3 * H:]) * np.tanh(c)
                np.maximum(r["c_peak"], np.abs(c), out=r["c_peak"])
            else:
                h = np.tanh(gi + gh)
            outs[t] = h
        r["x"].append(xs)
        r["h"].append(hs)
        return outs

    def run_model(seq):
        x = seq
        for layer in range(cfg.layers):
            x = np.concatenate([run_layer(layer * D + d, x, bool(d)) for d in range(D)], axis=1)
        head.append(x)

    for w in xn_windows:
        run_model(w.astype(np.float64))
    if D == 1 and len(xn_windows) > 1:
        n = max(1, -(-STREAM_FRAMES // xn_windows.shape[1]))
        idx = np.arange(n) % len(xn_windows)
        run_model(np.concatenate([xn_windows[i] for i in idx]).astype(np.float64))
    for r in rec:
        r["x"], r["h"] = np.concatenate(r["x"]), np.concatenate(r["h"])
    return rec + [{"head": np.concatenate(head)}]


def gptq_round(w: np.ndarray, step: np.ndarray, feats: np.ndarray, damp: float = 0.01) -> np.ndarray:
    """int8 codes for w [rows, n] with per-element step sizes (real weight per code), rounded column by
    column while the rounding error is pushed onto the columns not yet rounded, weighted by the inverse
    Hessian of the inputs the layer saw (GPTQ, Frantar et al. 2022): the error of w @ x on calibration
    inputs, not of the weights one by one, is what it minimizes. Measured on the demo LSTM h32: half the
    gate error of round-to-nearest (rms 0.0018 vs 0.0037)."""
    n = w.shape[1]
    hess = feats.T @ feats / max(1, len(feats))
    hess = hess + damp * max(float(np.mean(np.diag(hess))), 1e-12) * np.eye(n)
    try:
        hinv = np.linalg.cholesky(np.linalg.inv(hess)).T
    except np.linalg.LinAlgError:
        hinv = np.eye(n)
    w = w.copy()
    codes = np.zeros_like(w)
    safe = np.where(step > 0, step, 1.0)
    for j in range(n):
        q = np.where(step[:, j] > 0, np.clip(np.round(w[:, j] / safe[:, j]), -127, 127), 0.0)
        codes[:, j] = q
        err = (w[:, j] - q * step[:, j]) / hinv[j, j]
        w[:, j + 1:] -= np.outer(err, hinv[j, j + 1:])
    return codes


def int8_spec_parts(run, layers: list[dict]) -> tuple[list[dict], dict, np.ndarray, np.ndarray]:
    """(spec layers, calibration facts, input 1/(std*scale), the head's calibration inputs) for int8 C."""
    from edgernn.gates import calibration_windows

    cfg = run.config
    D = cfg.directions
    xn = run.normalize(calibration_windows(run))
    absmax = np.abs(xn).reshape(-1, cfg.input_size).max(axis=0)
    in_scale = np.maximum(absmax * INPUT_HEADROOM, 1e-6) / 32767.0
    cfs = [None] * len(layers)
    sim = simulate(layers, cfg, xn)
    peaks = None
    if cfg.cell == "lstm":
        peaks = [r["c_peak"] for r in sim[:-1]]
        cfs = [np.minimum(15, 15 - np.ceil(np.log2(np.maximum(CELL_HEADROOM * p, 1e-9)))).astype(np.int64)
               for p in peaks]
        if min(int(c.min()) for c in cfs) < 0:
            raise ExportError(f"int8 C: an LSTM cell state reaches {max(float(p.max()) for p in peaks):.3g} on the "
                              "calibration windows, beyond what int16 holds; export float C")
    out = []
    for i, lay in enumerate(layers):
        s_in = in_scale if i < D else 2.0 ** -15
        wx, mx, nx = quantize_rows(lay["w_ih"], s_in, Q_PRE, _sample(sim[i]["x"]))
        wh, mh, nh = quantize_rows(lay["w_hh"], 2.0 ** -15, Q_PRE, _sample(sim[i]["h"]))
        e = {"wx": wx, "wh": wh, "mx": mx, "nx": nx, "mh": mh, "nh": nh}
        q12 = lambda b: np.round(b * 2.0 ** Q_PRE).astype(np.int64)  # noqa: E731
        if cfg.cell == "gru":
            e["bx"], e["bh"] = q12(lay["b_ih"]), q12(lay["b_hh"])
        else:
            e["bx"] = q12(lay["b_ih"] + lay["b_hh"])
        if cfg.cell == "lstm":
            e["cf"] = cfs[i]
        out.append(e)
    facts = {"input_scale": [float(v) for v in in_scale], "input_headroom": INPUT_HEADROOM}
    if peaks is not None:
        facts["cell_state"] = [{"layer": i // D, "direction": i % D, "calibration_absmax": round(float(p.max()), 5),
                                "fraction_bits_min": int(cfs[i].min()), "fraction_bits_max": int(cfs[i].max()),
                                "largest_range": 2.0 ** (15 - int(cfs[i].min()))} for i, p in enumerate(peaks)]
    facts["weight_rounding"] = "GPTQ (error-compensating, inverse Hessian of the calibration inputs)"
    return out, facts, (1.0 / (run.std.astype(np.float64) * in_scale)), _sample(sim[-1]["head"])


def _sample(feats: np.ndarray, n: int = 20000) -> np.ndarray:
    """At most n rows, evenly spaced (the Hessian needs the spread, not every frame)."""
    return feats if len(feats) <= n else feats[np.linspace(0, len(feats) - 1, n).astype(int)]


def build_spec(run, model, precision: str, mode: str, prefix: str) -> tuple[Spec, dict]:
    cfg = run.config
    layers = float_layers(model)
    head_w = model.head.weight.detach().double().numpy()
    head_b = model.head.bias.detach().double().numpy()
    pre = run.preprocessing()
    out_pre = pre.get("output")
    kw = dict(prefix=prefix, cell=cfg.cell, C=cfg.input_size, H=cfg.hidden, L=cfg.layers, D=cfg.directions,
              K=cfg.num_outputs, task=cfg.head, seq_len=run.seq_len, precision=precision,
              mean=np.asarray(pre["mean"]), std=np.asarray(pre["std"]),
              out_mean=np.asarray(out_pre["mean"]) if out_pre else None,
              out_std=np.asarray(out_pre["std"]) if out_pre else None)
    if precision == "float":
        kw.update(layers=_float_spec_layers(cfg.cell, layers), head_wb={"w": head_w.astype(np.float32), "b": head_b})
        facts = {}
    else:
        why = fan_in_problem(cfg)
        if why:
            raise ExportError(why)
        spec_layers, facts, qinv, head_feats = int8_spec_parts(run, layers)
        hw, hm, hn = quantize_rows(head_w, 2.0 ** -15, Q_OUT, head_feats)
        kw.update(layers=spec_layers, in_qinv=qinv,
                  head_wb={"w": hw.T, "b": np.round(head_b * 2.0 ** Q_OUT).astype(np.int64), "m": hm, "n": hn})
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
             + ("logits (argmax = class)." if cfg.head != "forecast" else "forecasts in raw units."),
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
    if options.recipe not in (None, "int16x8"):
        raise ConfigError(f"int8 C has one recipe, int16x8 (not {options.recipe})")
    find_compiler()  # every artifact is compiled and run before it is kept: say now if that cannot happen
    prefix = check_prefix(options.c_prefix) if options.c_prefix else default_prefix(run, mode, precision)
    t0 = time.perf_counter()
    model = run.load_model()
    spec, facts = build_spec(run, model, precision, mode, prefix)
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
    state_bytes = cfg.layers * cfg.hidden * elem * (2 if cfg.cell == "lstm" else 1) if spec.streaming else 0
    api = ([f"{prefix}_reset", f"{prefix}_step"] if spec.streaming else []) + [f"{prefix}_run"]
    if precision == "int8" and spec.streaming:
        api += [f"{prefix}_quantize_frame", f"{prefix}_step_q"]
    c_block = {"prefix": prefix, "language": "C99", "header_only": True,
               "implementation_macro": f"{prefix.upper()}_IMPLEMENTATION", "api": api,
               "state_type": f"{prefix}_state" if spec.streaming else None, "state_bytes": state_bytes,
               "streaming": spec.streaming, "max_t": None if spec.streaming else run.seq_len,
               "stack_note": (f"run() keeps 2 x T x {2 * cfg.hidden} {'int16' if elem == 2 else 'float'} values on "
                              "the stack" if not spec.streaming else "no buffers beyond a few gate vectors")}
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
