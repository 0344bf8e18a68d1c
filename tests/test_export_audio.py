"""Audio models in every format that carries the front end (ONNX, ORT, C): raw PCM in, the front end inside,
compared with the float PyTorch model (front end included); C warning-free on the four compilers; the
front end alone in C against the training (numpy) front end."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

COMPILERS = ("gcc", "clang", "aarch64-linux-gnu-gcc", "arm-none-eabi-gcc")


def audio_run(path: Path, cell="gru", hidden=8, seed=0, **fe_kw) -> Path:
    """An untrained audio run: random weights, a front end with statistics from random speech-like PCM."""
    import torch

    from edgernn.frontends import FrontEnd
    from edgernn.models import ModelConfig, build_model
    from edgernn.rundir import save_run

    fe = FrontEnd(**fe_kw)
    rng = np.random.default_rng(seed)
    N, T = 16, 12
    X = (rng.standard_normal((N, T, fe.hop)) * np.geomspace(1e-4, 0.3, N)[:, None, None]).astype(np.float32)
    X[:, :, ::7] += 0.2 * np.sin(np.arange(fe.hop)[::7] / 3.0).astype(np.float32)  # tonal parts
    X[0] = 0.0  # digital silence: every band at log(eps)
    F = fe.features(X)
    fe = fe.with_stats(F.mean((0, 1)), F.std((0, 1)))
    cfg = ModelConfig(cell=cell, input_size=fe.hop, hidden=hidden, num_outputs=3, frontend=fe.to_dict())
    torch.manual_seed(seed)
    model = build_model(cfg)
    y = np.arange(N) % 3
    save_run(path, model, cfg, {}, {"name": "a", "task": "classify", "seq_len": T}, ["yes", "no", "_silence_"],
             np.zeros(fe.hop, np.float32), np.ones(fe.hop, np.float32),
             {"X_calib": X, "y_calib": y, "X_test": X[:8], "y_test": y[:8]})
    return path


@pytest.mark.slow
@pytest.mark.parametrize("fe_kw", [{}, {"mfcc": 10}, {"frame_ms": 20, "hop_ms": 20, "mels": 24}],
                         ids=["logmel-30-20", "mfcc", "no-overlap"])
def test_c_front_end_compiles_clean_and_matches_torch(tmp_path, fe_kw):
    from edgernn.devices.compilers import compile_checks
    from edgernn.export import ExportOptions
    from edgernn.export.c.export import export_c
    from edgernn.gates import Gates, float_limit
    from edgernn.reference import torch_outputs
    from edgernn.rundir import load_run
    from edgernn.runtimes import load

    missing = [c for c in COMPILERS if not shutil.which(c)]
    assert not missing, f"install {missing} (make system-deps)"
    run = load_run(audio_run(tmp_path / "run", **fe_kw))
    X = run.data()["X_test"]
    ref = torch_outputs(run, X)
    for precision in ("float", "int8"):
        for mode in ("sequence", "step"):
            path = export_c(run, run.path / "artifacts", precision, mode, ExportOptions())
            man = json.loads(Path(str(path) + ".json").read_text())
            checks = compile_checks(path, man["c"]["prefix"])
            for name in COMPILERS:
                assert checks[name].get("clean"), f"{precision} {mode}: {name}: {checks[name]}"
            s = load(path)
            if mode == "sequence":
                got = s.predict(X)
            else:
                got = []
                for w in X:
                    st = s.stream()
                    for hop in w:
                        y = st.step(hop)
                    got.append(y)
                got = np.stack(got)
            diff = float(np.abs(got - ref).max())
            limit = (float_limit(ref, Gates().float_tol, Gates().float_rtol)[0] if precision == "float"
                     else 0.05 * float(ref.max() - ref.min()))
            assert diff <= limit, f"{precision} {mode}: max|diff| {diff:.3g} > {limit:.3g}"
            assert man["model"]["frontend"]["hop"] if "hop" in man["model"]["frontend"] else True
            assert man["preprocessing"]["frontend"]["integer_arithmetic"].startswith("none")
            if mode == "step":
                assert man["c"]["state_bytes"] >= 4 * run.config.front_end().tail


@pytest.mark.slow
@pytest.mark.parametrize("cell", ["lstm", "gru"])
def test_onnx_ort_and_tflite_carry_the_front_end(tmp_path, cell):
    """Float ONNX, ORT and TFLite (GRU: the WHILE loop over the features; LSTM: Keras with the front end as
    a layer) from raw PCM, against torch; quantized TFLite is skipped with its reason."""
    from edgernn.export import export_run
    from edgernn.reference import torch_outputs
    from edgernn.rundir import load_run
    from edgernn.runtimes import load

    run = load_run(audio_run(tmp_path / "run", cell=cell))
    res = export_run(run.path, formats=("onnx", "ort", "tflite"), precisions=("float", "dynamic"), streaming=True)
    skipped = {(r.format, r.precision): r.skipped for r in res if r.skipped}
    assert "front end's DFT matrices in int8" in skipped[("tflite", "dynamic")]
    assert {(r.format, r.mode) for r in res if r.path} == {(f, m) for f in ("onnx", "ort", "tflite")
                                                          for m in ("sequence", "step")}
    X = run.data()["X_test"]
    ref = torch_outputs(run, X)
    for r in res:
        if r.path is None:
            continue
        s = load(r.path)
        if r.mode == "sequence":
            assert np.abs(s.predict(X) - ref).max() < 1e-3, r.name
        else:
            st = s.stream()
            for hop in X[3]:
                y = st.step(hop)
            assert np.abs(y - ref[3]).max() < 1e-3, r.name


HARNESS = r"""
#include <stdio.h>
#define {P}_IMPLEMENTATION
#include "model.h"
int main(int argc, char **argv)
{
    {p}_detector d;
    {p}_state a, b;
    float x[{HOP}], y1[{K}], y2[{K}];
    int16_t pcm[{HOP}];
    int n;
    for (n = 0; n < {HOP}; n++) {
        pcm[n] = (int16_t)((n * 7919) % 65536 - 32768);
        x[n] = (float)pcm[n] / 32768.0f;
    }
    {p}_reset(&a);
    {p}_reset(&b);
    {p}_step(&a, x, y1);
    {p}_step_pcm16(&b, pcm, y2);
    for (n = 0; n < {K}; n++)
        if (y1[n] != y2[n])
            return 3;  /* the int16 entry must compute exactly what the float one does */
    float logits[{K}];
    double score;
    long t = 0;
    FILE *f = fopen(argv[1], "rb");
    (void)argc;
    {p}_detector_reset(&d);
    while (fread(logits, sizeof(float), {K}, f) == {K}) {
        int k = {p}_detect(&d, logits, &score);
        if (k >= 0)
            printf("%ld %d %.17g\n", t, k, score);
        t++;
    }
    fclose(f);
    return 0;
}
"""


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    """An untrained audio run exported to ONNX and C, float and int8, sequence and step (shared: slow)."""
    from edgernn.export import export_run

    run_dir = audio_run(tmp_path_factory.mktemp("audio") / "run")
    export_run(run_dir, formats=("onnx", "c"), precisions=("float", "int8"), streaming=True)
    return run_dir


@pytest.mark.slow
def test_c_detector_fires_where_the_python_detector_does(exported, tmp_path):
    """The detector compiled into a C step artifact (thresholds chosen at export) against the runtime's Python
    Detector on the same logits: the same events, frame for frame, with the same scores."""
    import subprocess

    from edgernn.runtimes.detector import Detector

    step = exported / "artifacts" / "step-float.h"
    man = json.loads(Path(str(step) + ".json").read_text())
    assert man["detector"]["thresholds"] and "_detect" in " ".join(man["c"]["api"])
    rng = np.random.default_rng(0)
    K = 3
    logits = rng.normal(0, 1, (6000, K)).astype(np.float32)
    for t in rng.integers(0, 6000, 120):  # keyword-like bursts of confident frames
        logits[t:t + rng.integers(3, 30), rng.integers(0, 2)] += rng.uniform(2, 9)
    (tmp_path / "logits.bin").write_bytes(logits.tobytes())
    shutil.copy(step, tmp_path / "model.h")
    p = man["c"]["prefix"]
    (tmp_path / "h.c").write_text(HARNESS.replace("{P}", p.upper()).replace("{p}", p).replace("{K}", str(K))
                                  .replace("{HOP}", str(man["model"]["input_size"])))
    subprocess.run(["gcc", "-std=c99", "-Wall", "-Wextra", "-Werror", "-pedantic", "-O2", "-o", str(tmp_path / "h"),
                    str(tmp_path / "h.c")], check=True, capture_output=True)
    out = subprocess.run([str(tmp_path / "h"), str(tmp_path / "logits.bin")], check=True, capture_output=True,
                         text=True).stdout.split("\n")
    c_events = [(int(a), int(b), float(c)) for a, b, c in (ln.split() for ln in out if ln.strip())]
    det = Detector.from_dict(man["detector"], man["labels"])
    py_events = [(e.frame, e.index, e.score) for e in det.run(Detector.softmax(logits))]
    assert len(py_events) > 20
    assert [e[:2] for e in c_events] == [e[:2] for e in py_events]
    assert max(abs(a[2] - b[2]) for a, b in zip(c_events, py_events)) < 1e-12


@pytest.mark.slow
def test_parity_checks_the_front_end_alone_and_the_keyword_stream(exported):
    """parity on an audio run: each artifact's features against the training front end (ONNX int8 included:
    its front end stays float), and the keyword stream for every step artifact, with the detection gate."""
    from edgernn.parity import check_parity, format_table

    rep = check_parity(exported, stream_minutes=3)
    fe = {r["artifact"]: r for r in rep["frontend"]["rows"]}
    assert set(fe) == {f"{m}-{p}.{x}" for m in ("sequence", "step") for p in ("float", "int8") for x in ("onnx", "h")}
    assert all(r["passed"] and r["max_abs_diff"] < 1e-3 for r in fe.values()), fe
    det = rep["detection"]
    assert [r["artifact"] for r in det["rows"]][0] == "torch float"
    assert {r["artifact"] for r in det["rows"][1:]} == {"step-float.onnx", "step-int8.onnx", "step-float.h",
                                                        "step-int8.h"}
    assert det["seconds"] == pytest.approx(180, abs=1) and len(det["rows"][0]["det"]["threshold"]) > 10
    text = format_table(rep)
    assert "front end:" in text and "keyword stream:" in text
