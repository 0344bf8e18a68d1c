"""
Parity gates that scale and see drift: the long-stream check (many test windows streamed with no reset,
error per block) and the float gate relative to the output range.

A "mis-scaled state" is built for real: the step ONNX graph gets a Mul on its state output, so the
state fed back on the next frame is 2% too large. Per-window streaming (reset every window) does not
notice; the soak (20,000 frames of test windows without reset) drifts and fails.
"""

from __future__ import annotations

import shutil

import numpy as np
import pytest
from click.testing import CliRunner

from edgernn.cli import main
from edgernn.gates import Gates, float_limit
from edgernn.parity import check_parity
from tests.onnx_edit import misscale_state as _misscale_state
from tests.onnx_edit import resign as _resign

pytestmark = pytest.mark.export


@pytest.fixture
def gru_step(run_copy):
    from edgernn.export.onnx.convert import export_onnx
    from edgernn.rundir import load_run

    run = run_copy(cell="gru", hidden=16)
    art = export_onnx(load_run(run), run / "artifacts", "int8", "step")
    return run, art


def test_long_stream_reports_blocks_and_passes_a_correct_artifact(gru_step):
    run, _ = gru_step
    rep = check_parity(run, write=False)
    (row,) = rep["artifacts"]
    ls = row["long_stream"]
    assert ls["windows"] == 500 and ls["frames"] == 20000 and ls["block_frames"] == 1000  # T = 40
    assert len(ls["block_max_abs_diff"]) == len(ls["block_agreement"]) == len(ls["block_mean_abs_diff"]) == 20
    assert ls["saturation"] == {"frames": 20000, "input": None, "state": None}  # dynamic int8: float I/O
    assert rep["gates"]["min_stream_agreement"] == 0.95 and rep["gates"]["stream_frames"] == 20000
    assert "fragile_blocks" not in ls or ls["passed"]  # fragile blocks are looked up only to forgive drift
    short = check_parity(run, write=False, gates=Gates(stream_frames=400))
    (row,) = short["artifacts"]
    ls = row["long_stream"]
    assert ls["windows"] == 10 and ls["frames"] == 400 and len(ls["block_max_abs_diff"]) == 1
    assert ls["passed"] and row["passed"] and ls["agreement"] >= 0.95


def test_long_stream_catches_a_misscaled_state(gru_step):
    run, art = gru_step
    _misscale_state(art, 1.02)
    rep = check_parity(run, write=False)
    (row,) = rep["artifacts"]
    # window by window (reset every window) the artifact still looks perfect ...
    assert row["accuracy"] == rep["reference"]["accuracy"] and row["agreement"] == 1.0
    # ... but streamed for 20,000 frames without a reset its state drifts away from the float model
    ls = row["long_stream"]
    assert not ls["passed"] and not row["passed"]
    assert ls["agreement"] < 0.95
    assert ls["drift_ratio"] > 2  # the same windows streamed from a reset are far closer to float
    # measured outside the blocks where weight noise alone moves this tiny float model grossly (13 of 20)
    assert 0 < len(ls["fragile_blocks"]) < 20 and "outside the" in ls["gate"]
    r = CliRunner().invoke(main, ["parity", str(run), "-q"])
    assert r.exit_code == 1
    assert "soak: 20000 frames (500 windows: the 80 test windows cycled) without reset" in r.output
    assert "parity gate failed for 1 artifact(s): step-int8.onnx" in r.output


def test_soak_forgives_drift_only_where_the_float_model_is_fragile(gru_step, monkeypatch):
    """This tiny GRU's dynamic-int8 step drifts in the 20,000-frame soak (mean|diff| 15x that of the same
    windows from a reset, 87% agreement in its worst 1,000 frames), but so does the FLOAT model once
    int8-sized noise is put on its weights: 13 of the 20 blocks are fragile. Outside them it does not
    drift and inside them it stays within 2x what weight noise causes, so it passes; with no weight-noise
    draws nothing is fragile and the same soak fails."""
    from edgernn import gates

    run, _ = gru_step
    (row,) = check_parity(run, write=False)["artifacts"]
    ls = row["long_stream"]
    assert ls["passed"] and row["passed"], ls["gate"]
    assert 0 < len(ls["fragile_blocks"]) < len(ls["block_max_abs_diff"])
    assert ls["drift_ratio"] < 2 and ls["agreement"] >= 0.95
    monkeypatch.setattr(gates, "FRAGILE_DRAWS", 0)
    (row,) = check_parity(run, write=False)["artifacts"]
    ls = row["long_stream"]
    assert not ls["passed"] and ls["fragile_blocks"] == [] and ls["drift_ratio"] > 2


def test_soak_gate_holds_fragile_blocks_to_the_weight_noise_floor():
    from edgernn.gates import long_stream_gate

    res = {"frames": 2500, "block_frames": 1000, "block_mean_abs_diff": [0.01, 0.5, 0.01],
           "block_mean_abs_diff_reset": [0.01, 0.01, 0.01], "mean_abs_diff": 0.2, "mean_abs_diff_reset": 0.01,
           "max_abs_diff": 3.0, "agreement": 0.97}
    ref = np.array([[0.0, 1.0]], np.float32)  # output range 1: slack 0.001
    floor = np.array([0.005, 0.3, 0.005])  # weight noise alone: mean|diff| 0.3 in block 1

    def gate(mask, floor=floor, **kw):
        return long_stream_gate({**res, **kw}, ref, "int8", "classify", 1e-4, 1e-4, 0.95, 2.0,
                                fragile=None if mask is None else (np.array(mask), floor))

    assert not gate(None)["passed"]  # drift 20x
    ok = gate([False, True, False])
    assert ok["passed"] and ok["fragile_blocks"] == [1] and ok["fragile_floor"] == [0.3], ok["gate"]
    assert ok["drift_ratio"] == pytest.approx(1.0) and "outside the 1 of 3 blocks" in ok["gate"]
    assert not gate([True, False, False])["passed"]  # the drifting block is not fragile
    assert not gate([False, True, False], floor=np.array([0.005, 0.2, 0.005]))["passed"]  # 0.5 > 2 x 0.2
    assert not gate([False, True, False], agreement=0.9)["passed"]  # agreement: over the whole stream
    # the short last block (500 frames) weighs half as much as a full one
    assert gate([False, True, False], block_mean_abs_diff=[0.01, 0.5, 0.04])["drift_ratio"] == \
        pytest.approx((0.01 * 1000 + 0.04 * 500) / 1500 / 0.01)


def test_float_gate_scales_with_the_outputs():
    ref = np.array([[-10.0, 5.0], [2.0, 10.0]], np.float32)
    limit, text = float_limit(ref, 1e-4, 1e-4)
    assert limit == pytest.approx(1e-4 + 1e-4 * 20.0)
    assert text == "max|diff| <= 0.0021 (0.0001 + 0.0001 x output range 20)"
    assert float_limit(ref, 1e-4, 0.0)[0] == pytest.approx(1e-4)  # --float-rtol 0: the old absolute gate


def test_float_gate_passes_a_long_gru_and_fails_a_perturbed_weight(run_copy):
    """T = 160 (4 test windows back to back): float32 rounding grows with T, a correct GRU must still pass;
    one recurrent weight off by 0.05 must fail."""
    import onnx
    from onnx import numpy_helper

    from edgernn.export.onnx.convert import export_onnx
    from edgernn.rundir import load_run

    run = run_copy(cell="gru", hidden=16)
    with np.load(run / "data.npz") as z:
        d = {k: z[k] for k in z.files}
    n = len(d["X_test"]) // 4 * 4
    d["X_test"] = d["X_test"][:n].reshape(n // 4, 4 * d["X_test"].shape[1], -1)
    d["y_test"] = d["y_test"][3:n:4]  # the label of the last window of each group of four
    d["len_test"] = np.full(n // 4, d["X_test"].shape[1], np.int64)
    np.savez(run / "data.npz", **d)
    art = export_onnx(load_run(run), run / "artifacts", "float", "sequence")
    rep = check_parity(run, write=False)
    (row,) = rep["artifacts"]
    assert row["passed"], row
    model = onnx.load(str(art))
    for init in model.graph.initializer:
        w = numpy_helper.to_array(init).copy()
        if w.ndim == 3 and w.shape[-1] == 16:  # recurrent weights R [1, 3H, H]
            w[0, 0, 0] += 0.05
            init.CopyFrom(numpy_helper.from_array(w, init.name))
    onnx.save(model, str(art))
    _resign(art)
    (bad,) = check_parity(run, write=False)["artifacts"]
    assert not bad["passed"] and bad["max_abs_diff"] > float(bad["gate"].split("<= ")[1].split(" ")[0])


def test_gate_options_are_usage_errors(gru_step):
    run, _ = gru_step
    before = sorted(p.name for p in run.iterdir())
    for args in (["--float-tol", "-1"], ["--min-accuracy-ratio", "1.5"], ["--min-stream-agreement", "2"],
                 ["--stream-frames", "0"], ["--max-stream-drift", "0.5"], ["--min-agreement", "1.1"],
                 ["--max-rmse-ratio", "0.9"]):
        r = CliRunner().invoke(main, ["parity", str(run), *args])
        assert r.exit_code == 2, (args, r.output)
    assert sorted(p.name for p in run.iterdir()) == before  # nothing written
    shutil.rmtree(run)


# ---- a model that diverges by itself on long streams -----------------------------------------------------
def _chaotic(run_dir, gain: float = 3.0):
    """Give the run's GRU random recurrent weights of this gain: trained on 40-frame windows it still
    classifies windows, but on a long stream it amplifies small differences (measured: two implementation-size
    copies of it grow 1% of the output range apart 66 frames after a reset, up to 3.8 logits)."""
    import io

    import torch

    from edgernn.rundir import load_run

    model = load_run(run_dir).load_model()
    sd = model.state_dict()
    w = sd["rnn.weight_hh_l0"]
    sd["rnn.weight_hh_l0"] = gain * torch.randn(w.shape, generator=torch.Generator().manual_seed(0)) / w.shape[1] ** 0.5
    buf = io.BytesIO()
    torch.save(sd, buf)
    (run_dir / "model.pt").write_bytes(buf.getvalue())


@pytest.fixture
def chaotic_step(run_copy):
    from edgernn.export.onnx.convert import export_onnx
    from edgernn.rundir import load_run

    run = run_copy(cell="gru", hidden=16)
    _chaotic(run)
    return run, export_onnx(load_run(run), run / "artifacts", "float", "step")


def test_soak_knows_a_model_that_diverges_by_itself(chaotic_step, monkeypatch):
    """A correct float step artifact of a model that is itself unstable on long streams passes: the soak
    measures the model's streaming horizon, streams the way a device must (reset every horizon frames, whole
    windows) and says so. Without that (horizon and divergence lookups switched off) the same correct
    artifact fails the soak - the verdict the gate used to give."""
    from edgernn import gates

    run, _ = chaotic_step
    rep = check_parity(run, write=False)
    (row,) = rep["artifacts"]
    st = rep["stream_stability"]
    assert row["passed"], row["long_stream"]["gate"]
    assert st["horizon_frames"] is not None and 0 < st["horizon_frames"] < 1000
    assert st["reset_every"] == max(40, st["horizon_frames"] // 40 * 40)
    assert row["long_stream"]["reset_every"] == st["reset_every"]
    assert st["max_divergence"] > 1.0 and st["unstable_blocks"] and st["text"].startswith("UNSTABLE")
    r = CliRunner().invoke(main, ["parity", str(run), "-q"])
    assert r.exit_code == 0, r.output
    assert f"with a reset every {st['reset_every']} frames" in r.output
    assert f"session.stream(reset_every={st['reset_every']})" in r.output
    # the old gate: one stream without reset, held to the float limit everywhere
    monkeypatch.setattr(gates, "HORIZON_SHARE", 1e9)
    monkeypatch.setattr(gates, "unstable_blocks", lambda ref, g, p: (np.zeros(20, bool), np.zeros(20), np.zeros(20)))
    (old,) = check_parity(run, write=False)["artifacts"]
    assert not old["passed"] and old["long_stream"]["max_abs_diff"] > 0.01  # measured 0.059; float limit ~1e-3


def test_soak_still_fails_a_planted_drift_on_an_unstable_model(chaotic_step):
    """A step artifact whose fed-back state is scaled by 1.02 fails, unstable model or not."""
    run, art = chaotic_step
    _misscale_state(art, 1.02)
    (row,) = check_parity(run, write=False)["artifacts"]
    assert not row["passed"]


def test_stream_resets_every_n_frames_and_the_manifest_carries_the_horizon(chaotic_step, run_copy):
    """export --streaming records the model's horizon in every step manifest (measured on the saved training
    windows); Session.reset_every reads it and stream(reset_every=N) resets before every N-th frame."""
    from edgernn.errors import RuntimeInputError
    from edgernn.export import export_run, record_stream_horizon
    from edgernn.rundir import load_run
    from edgernn.runtimes import load

    run, art = chaotic_step
    with np.load(run / "data.npz") as z:  # calibrate on windows like the test ones, which this model diverges on
        d = {k: z[k] for k in z.files}
    np.savez(run / "data.npz", **{**d, "X_calib": d["X_test"]})
    stream = record_stream_horizon(load_run(run), [art])
    session = load(art)
    assert session.manifest["stream"] == {**stream} and stream["horizon_frames"] and stream["reset_every"] >= 40
    assert session.reset_every == stream["reset_every"]
    frames = d["X_test"][:3].reshape(-1, 6)  # 120 frames
    n = 50
    auto = session.stream(reset_every=n)
    got = np.stack([auto.step(f) for f in frames])
    fresh = session.stream()
    want = [fresh.step(f) for f in frames[:n]]
    fresh.reset()
    want = np.stack(want + [fresh.step(f) for f in frames[n:2 * n]])
    assert np.array_equal(got[:2 * n], want)
    plain = session.stream()
    assert not np.allclose(np.stack([plain.step(f) for f in frames])[n:2 * n], want[n:])  # the reset mattered
    for bad in (0, -3, 2.5, True):
        with pytest.raises(RuntimeInputError, match="reset_every"):
            session.stream(reset_every=bad)
    stable = run_copy(cell="gru", hidden=16, seed=1)
    (res,) = [r for r in export_run(stable, formats=["onnx"], precisions=["float"], streaming=True)
              if r.mode == "step"]
    m = load(res.path).manifest["stream"]
    assert m["horizon_frames"] is None and m["reset_every"] is None and load(res.path).reset_every is None
    assert m["measured_frames"] >= 20000 and m["text"].startswith("stable")
