"""
Variable-length windows trained with masked padding (`train --mask-padding`): the model learns from each
window's real frames, and every runtime runs a window's real frames alone, so the window API on a padded
window, the same window without its padding, and a stream of its real frames from a reset give one answer -
the answer parity and the export gates hold every artifact to.
"""

from __future__ import annotations

import numpy as np
import pytest

from edgernn.errors import ConfigError
from edgernn.rundir import load_run
from edgernn.train import TrainConfig, train


def _variable_length_npz(path, n=96, T=48, seed=0):
    """Sines of 3 frequencies, 8..48 real frames each, left-padded with zero frames (2 channels)."""
    rng = np.random.default_rng(seed)
    X = np.zeros((n, T, 2), np.float32)
    y = rng.integers(0, 3, n)
    for i in range(n):
        L = int(rng.integers(8, T + 1))
        t = np.arange(L)
        X[i, T - L:, 0] = np.sin(0.2 * (y[i] + 1) * t + rng.uniform(0, 6)) + 0.5
        X[i, T - L:, 1] = 0.1 * rng.standard_normal(L) + 1.0
    np.savez(path, X=X[: n * 3 // 4], y=y[: n * 3 // 4], X_test=X[n * 3 // 4:], y_test=y[n * 3 // 4:])
    return path


@pytest.fixture(scope="module")
def masked_run(tmp_path_factory):
    d = tmp_path_factory.mktemp("mask")
    data = _variable_length_npz(d / "vl.npz")
    train(TrainConfig(dataset=str(data), cell="gru", hidden=16, epochs=8, min_epochs=0, mask_padding=True),
          d / "run", progress=False)
    return d / "run"


def test_the_model_answers_for_the_real_frames_only(masked_run):
    import torch

    from edgernn.data.padding import infer_lengths
    from edgernn.models import forward_real
    from edgernn.reference import torch_outputs

    run = load_run(masked_run)
    assert run.mask_padding and run.preprocessing()["mask_padding"] is True
    X = run.data()["X_test"]
    L = infer_lengths(X)
    assert L.min() < X.shape[1] - 10  # really variable length
    ref = torch_outputs(run, X)
    model = run.load_model()
    with torch.no_grad():
        alone = np.stack([model(torch.from_numpy(run.normalize(x[len(x) - n:]))[None]).numpy()[0]
                          for x, n in zip(X, L)])
        padded = model(torch.from_numpy(run.normalize(X))).numpy()
        packed = forward_real(model, torch.from_numpy(run.normalize(X)), L).numpy()
    assert np.abs(ref - alone).max() <= 1e-5 and np.abs(packed - alone).max() <= 1e-5
    assert np.abs(padded - alone).max() > 1e-3  # the padding would have changed the answer


def test_window_api_stream_and_real_frames_agree_in_every_format(masked_run, tmp_path):
    import shutil

    from edgernn.export import export_run
    from edgernn.parity import check_parity
    from edgernn.reference import torch_outputs
    from edgernn.runtimes import load

    run_dir = tmp_path / "run"
    shutil.copytree(masked_run, run_dir)
    results = export_run(run_dir, formats="onnx,tflite,c", precisions="float", streaming=True)
    run = load_run(run_dir)
    X = run.data()["X_test"][:12]
    ref = torch_outputs(run, X)
    for r in results:
        s = load(r.path)
        windows = s.predict(X)  # padded windows
        one_by_one = np.stack([s.predict(x) for x in X])
        alone = np.stack([s.predict(s.real_frames(x)) for x in X])  # the real frames, no padding at all
        if r.mode == "step":
            st = s.stream(warn=False)
            streamed = []
            for x in X:
                st.reset()
                streamed.append([st.step(f) for f in s.real_frames(x)][-1])
            assert np.abs(np.stack(streamed) - ref).max() <= 1e-4, r.path.name
        for got in (windows, one_by_one, alone):
            assert np.abs(got - ref).max() <= 1e-4, r.path.name
    # the TFLite loop keeps a dynamic time axis, verified on real frames at the median real length (not on
    # half or doubled padded windows, which this model never sees)
    from edgernn.data.padding import infer_lengths
    from edgernn.gates import calibration_windows
    from edgernn.runtimes.manifest import read_manifest

    m = read_manifest(run_dir / "artifacts" / "sequence-float.tflite")
    median = int(np.median(infer_lengths(calibration_windows(run))))
    assert m["sequence_length"] is None and set(m["export_check"]["other_lengths"]) == {f"T{median}"}
    report = check_parity(run_dir, write=False)
    assert report["passed"], report["failed"]
    vl = report["variable_length"]
    assert vl["masked"] and vl["max_length"] == 48 and vl["min_length"] >= 8 and "one answer" in vl["text"]


def test_parity_says_when_an_unmasked_model_answers_padded_windows_differently(tmp_path):
    """Without --mask-padding the artifacts are checked on padded windows; parity says how far a stream of the
    real frames from a reset is from that answer and what to do."""
    from edgernn.export import export_run
    from edgernn.parity import check_parity, format_table

    data = _variable_length_npz(tmp_path / "vl.npz")
    train(TrainConfig(dataset=str(data), cell="gru", hidden=16, epochs=8, min_epochs=0), tmp_path / "run",
          progress=False)
    export_run(tmp_path / "run", formats="onnx", precisions="float")
    report = check_parity(tmp_path / "run", write=False)
    vl = report["variable_length"]
    assert not vl["masked"] and vl["padded_vs_real_frames_max_abs_diff"] > 1e-3
    assert "retrain with --mask-padding" in format_table(report).splitlines()[-1]


def test_mask_padding_refuses_what_it_cannot_do(tmp_path):
    with pytest.raises(ConfigError, match="--mask-padding and --stream-stable"):
        TrainConfig(mask_padding=True, stream_stable=True)


def test_bench_times_the_window_api_at_the_median_and_the_longest_real_length(masked_run, tmp_path):
    import shutil

    from edgernn.bench import bench_run, format_table
    from edgernn.data.padding import infer_lengths
    from edgernn.export import export_run

    run_dir = tmp_path / "run"
    shutil.copytree(masked_run, run_dir)
    export_run(run_dir, formats="onnx", precisions="float", streaming=True)
    report = bench_run(run_dir, runs=20, warmup=2, include_torch=False, progress=False, write=False)
    L = infer_lengths(load_run(run_dir).data()["X_test"])
    rl = report["settings"]["real_lengths"]
    assert rl == {"median": int(np.median(L)), "max": int(L.max())} and rl["median"] < rl["max"]
    by_mode = {r["mode"]: r for r in report["results"]}
    seq = by_mode["sequence"]["latency_by_length"]
    assert seq["median"]["length"] == rl["median"] and seq["max"]["length"] == rl["max"]
    assert seq["median"]["p50_us"] > 0 and seq["max"]["p50_us"] == by_mode["sequence"]["latency_us"]["p50"]
    assert by_mode["sequence"]["window_shape"][0] == rl["max"]  # the table's row: the longest real length
    assert "latency_by_length" not in by_mode["step"]
    assert f"median T={rl['median']}" in format_table(report)
