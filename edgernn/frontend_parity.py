"""
The audio front end alone, per artifact: the features an artifact computes from the test clips against the
training front end's (numpy FFT, edgernn.frontends), in normalized feature units (training standard
deviations). End-to-end parity already judges the whole model; this check says whether a difference starts
in the front end.

    rows = frontend_rows(run, paths)     # [{"artifact", "max_abs_diff", "mean_abs_diff", "passed", ...}]

How each format exposes its features: ONNX graphs are read with the front end's last Add (the normalization's
shift; nodes named under /frontend/) added as a graph output; C libraries export NAME_features (part of their
API). ORT files are converted from the ONNX graphs checked here and are not rewritten; TFLite does not carry a
front end yet.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

FRONTEND_TOL = 1e-3  # max |feature difference| in training standard deviations (float32 vs the float64 FFT)


def _onnx_features(path: Path, X: np.ndarray) -> np.ndarray | None:
    import onnx
    import onnxruntime as ort

    model = onnx.load(str(path))
    nodes = [n for n in model.graph.node if "/frontend/" in n.name and n.op_type == "Add"]
    if not nodes:
        return None
    feat = nodes[-1].output[0]  # the last Add of the front end is its normalization's shift: the features
    model.graph.output.append(onnx.helper.make_tensor_value_info(feat, onnx.TensorProto.FLOAT, None))
    so = ort.SessionOptions()
    so.log_severity_level = 3
    sess = ort.InferenceSession(model.SerializeToString(), so, providers=["CPUExecutionProvider"])
    names = [o.name for o in sess.get_outputs()]
    if "tail" in [i.name for i in sess.get_inputs()]:  # a step graph: hop by hop, its tail fed back
        out = []
        for w in X:
            feeds = {i.name: np.zeros([1 if d is None or isinstance(d, str) else d for d in i.shape], np.float32)
                     for i in sess.get_inputs()}
            rows = []
            for hop in w:
                feeds["x"] = hop[None]
                res = dict(zip(names, sess.run(None, feeds)))
                rows.append(res[feat].reshape(-1))
                for o in names:
                    if o.endswith("_out"):
                        feeds[o[:-4]] = res[o]
            out.append(np.stack(rows))
        return np.stack(out)
    return np.concatenate([sess.run([feat], {"x": X[i:i + 64]})[0] for i in range(0, len(X), 64)])


def _c_features(path: Path, X: np.ndarray) -> np.ndarray:
    from edgernn.runtimes import load

    with load(path) as s:
        return np.stack([s.features(w) for w in X])


def frontend_rows(run, paths: list, n_windows: int = 32) -> list[dict]:
    """One row per ONNX / C artifact of an audio run: its front end's features vs the training front end's
    on up to n_windows test clips."""
    fe = run.config.front_end()
    X = run.data()["X_test"][:n_windows].astype(np.float32)
    want = fe.features(X, normalize=True)
    rows = []
    for p in paths:
        p = Path(p)
        if p.suffix == ".onnx":
            got = _onnx_features(p, X)
        elif p.suffix == ".h":
            got = _c_features(p, X)
        else:
            continue
        if got is None:
            continue
        d = np.abs(got.reshape(want.shape) - want)
        rows.append({"artifact": p.name, "windows": int(len(X)), "max_abs_diff": float(d.max()),
                     "mean_abs_diff": float(d.mean()), "tolerance": FRONTEND_TOL,
                     "passed": bool(d.max() <= FRONTEND_TOL)})
    return rows
