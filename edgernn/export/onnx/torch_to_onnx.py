"""
torch -> ONNX graph, and the onnxruntime checks every exported graph passes before it is kept: the float
graph against torch (torch_export + validate_against_torch), an int8 graph for shape and finiteness
(check_runs). Shared by the float export (edgernn.export.onnx.convert) and the int8 recipes that export a
rewritten torch module (edgernn.export.onnx.quantize).

    torch_export(torch, net, cfg, "sequence", path, run.seq_len)          # TorchScript exporter, opset 17
    validate_against_torch(torch, net, model, cfg, "sequence", path, run.seq_len)   # ExportError if off
    check_runs(int8_path, cfg, "sequence", run.seq_len)
    feeds = random_feeds(session(ort, path), batch=1, T=run.seq_len, seed=0)

Checked sizes (check_sizes): the example shape, then a shorter and a longer window at other batch sizes,
so a time or batch axis the exporter froze is caught. Every failure says "no file written": the caller
exports into a scratch directory and removes it.
"""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np

from edgernn.errors import ExportError, require

OPSET = 17
TOLERANCE = 1e-4  # max|diff| allowed between the exported graph and torch (float) / .ort and .onnx
EXAMPLE_BATCH = 2


def describe(cfg, mode) -> str:
    bi = " bidirectional" if cfg.bidirectional else ""
    return f"{cfg.cell} h{cfg.hidden} x{cfg.layers}{bi} {mode}"


def state_names(cfg):
    return tuple(n for n, _ in cfg.step_states())


def _zero_states(cfg, batch) -> dict:
    return {n: np.zeros(shape, np.float32) for n, shape in cfg.step_states(batch)}


def torch_export(torch, net, cfg, mode, path: Path, seq_len: int) -> None:
    g = torch.Generator().manual_seed(0)
    if mode == "sequence":
        args = (torch.randn(EXAMPLE_BATCH, seq_len, cfg.input_size, generator=g),)
        inames, onames = ["x"], ["y"]
        y_axes = {0: "batch", 1: "time"} if cfg.head == "tag" else {0: "batch"}
        dyn = {"x": {0: "batch", 1: "time"}, "y": y_axes}
    else:
        x = torch.randn(EXAMPLE_BATCH, cfg.input_size, generator=g)
        states = tuple(torch.from_numpy(v) for v in _zero_states(cfg, EXAMPLE_BATCH).values())
        args = (x,) + states
        inames = ["x", *state_names(cfg)]
        onames = ["y", *[f"{s}_out" for s in state_names(cfg)]]
        dyn = {"x": {0: "batch"}, "y": {0: "batch"}}
        for n, shape in cfg.step_states(None):
            dyn[n] = dyn[f"{n}_out"] = {shape.index(None): "batch"}
    with warnings.catch_warnings():
        # the TorchScript exporter is "legacy" in torch 2.13 but is the one that keeps RNNs dynamic
        warnings.simplefilter("ignore")
        try:
            with torch.no_grad():
                torch.onnx.export(net, args, str(path), dynamo=False, opset_version=OPSET, input_names=inames,
                                  output_names=onames, dynamic_axes=dyn, do_constant_folding=True)
        except Exception as exc:
            raise ExportError(f"torch.onnx.export failed for {describe(cfg, mode)}: "
                              f"{str(exc).splitlines()[0] if str(exc) else type(exc).__name__}") from exc


def max_diff(a, b) -> float:
    a = np.asarray(a, dtype=np.float64)
    b = np.asarray(b, dtype=np.float64)
    if a.shape != b.shape:
        return float("inf")
    if a.size == 0:
        return 0.0
    return float(np.max(np.abs(a - b)))


def session_options(ort):
    so = ort.SessionOptions()
    so.intra_op_num_threads = 1
    so.inter_op_num_threads = 1
    so.log_severity_level = 3
    return so


def session(ort, path):
    return ort.InferenceSession(str(path), session_options(ort), providers=["CPUExecutionProvider"])


def check_sizes(seq_len: int) -> list[tuple[int, int]]:
    """(batch, time) pairs to validate: the example shape, then shorter and longer, other batch sizes."""
    return [(EXAMPLE_BATCH, seq_len), (3, max(2, seq_len // 2 - 3)), (1, 2 * seq_len + 3)]


def validate_against_torch(torch, net, model, cfg, mode, path: Path, seq_len: int) -> None:
    ort = require("onnxruntime", "onnx")
    try:
        sess = session(ort, path)
    except Exception as exc:
        raise ExportError(f"onnxruntime cannot load the exported {describe(cfg, mode)} graph: "
                          f"{str(exc).splitlines()[0]}; no file written") from exc
    rng = np.random.default_rng(1)
    for batch, T in check_sizes(seq_len):
        x = rng.standard_normal((batch, T, cfg.input_size)).astype(np.float32)
        if mode == "sequence":
            with torch.no_grad():
                want = {"y": model(torch.from_numpy(x)).numpy()}
            _compare(_run(sess, {"x": x}, cfg, mode, batch, T), want, cfg, mode, batch, T)
            continue
        # step: frame by frame vs the torch stepper (output and states at every frame); the last
        # frame must also equal the full-sequence model (classify/forecast) or its last step (tag)
        states = _zero_states(cfg, batch)
        for t in range(T):
            feeds = {"x": np.ascontiguousarray(x[:, t]), **states}
            with torch.no_grad():
                ref = net(*[torch.from_numpy(feeds[k]) for k in ["x", *state_names(cfg)]])
            want = {"y": ref[0].numpy(), **{f"{n}_out": r.numpy() for n, r in zip(state_names(cfg), ref[1:])}}
            got = _run(sess, feeds, cfg, mode, batch, T)
            _compare(got, want, cfg, mode, batch, T)
            states = {n: got[f"{n}_out"] for n in state_names(cfg)}
        with torch.no_grad():
            full = model(torch.from_numpy(x)).numpy()
        _compare({"y": got["y"]}, {"y": full[:, -1] if cfg.head == "tag" else full}, cfg, mode, batch, T)


def _run(sess, feeds, cfg, mode, batch, T) -> dict:
    try:
        outs = sess.run(None, feeds)
    except Exception as exc:
        raise ExportError(f"exported {describe(cfg, mode)} graph fails in onnxruntime at batch {batch}, T={T} "
                          f"(axes not dynamic?): {str(exc).splitlines()[0]}; no file written") from exc
    return {o.name: v for o, v in zip(sess.get_outputs(), outs)}


def _compare(got: dict, want: dict, cfg, mode, batch, T) -> None:
    bad = []
    for name, ref in want.items():
        d = max_diff(got[name], ref)
        if not d <= TOLERANCE:
            bad.append(f"{name} max|diff| {d:.3g} (shape {list(np.shape(got[name]))} vs {list(np.shape(ref))})")
    if bad:
        raise ExportError(
            f"ONNX export of {describe(cfg, mode)} does not match torch at batch {batch}, T={T}: "
            f"{'; '.join(bad)} (limit {TOLERANCE:g}); no file written"
        )


def check_runs(path: Path, cfg, mode, seq_len: int) -> None:
    """The int8 graph must load and give finite outputs of the right shape at every checked size."""
    ort = require("onnxruntime", "onnx")
    try:
        sess = session(ort, path)
    except Exception as exc:
        raise ExportError(f"onnxruntime cannot load the int8 {describe(cfg, mode)} graph: "
                          f"{str(exc).splitlines()[0]}; no file written") from exc
    for batch, T in check_sizes(seq_len):
        got = _run(sess, random_feeds(sess, batch, T, seed=T), cfg, mode, batch, T)
        y = got["y"]
        expect = _expected_y_shape(cfg, mode, batch, T)
        if list(y.shape) != expect or not np.all(np.isfinite(y)):
            raise ExportError(f"int8 {describe(cfg, mode)} graph gives y of shape {list(y.shape)} (expected "
                              f"{expect}) or non-finite values at batch {batch}, T={T}; no file written")


def _expected_y_shape(cfg, mode, batch, T):
    if mode == "sequence" and cfg.head == "tag":
        return [batch, T, cfg.num_outputs]
    return [batch, cfg.num_outputs]


def random_feeds(sess, batch: int, T: int, seed: int) -> dict:
    """Random float inputs for a session: symbolic dims named like time get T, other symbolic dims
    get batch, fixed dims stay."""
    rng = np.random.default_rng(seed)
    feeds = {}
    for inp in sess.get_inputs():
        shape = []
        for d in inp.shape:
            if isinstance(d, int):
                shape.append(d)
            elif isinstance(d, str) and "time" in d:
                shape.append(T)
            else:
                shape.append(batch)
        scale = 1.0 if inp.name == "x" else 0.5
        feeds[inp.name] = (scale * rng.standard_normal(shape)).astype(np.float32)
    return feeds
