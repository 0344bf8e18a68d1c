"""int8 recipes (edgernn.export.recipes): the fallback order, pinning, the held-out gate, and the ONNX
recipes (GRU weights stored int8; integer-matmul GRU). Real converters and runtimes throughout; a recipe
is made to fail for real by calibrating it on windows 50x quieter than the data (int8 ranges too small,
so the real data saturates), not by faking the gate."""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner

from edgernn.errors import ConfigError, ExportError
from edgernn.rundir import load_run
from edgernn.runtimes.manifest import read_manifest

pytestmark = pytest.mark.slow


def test_fallback_takes_the_next_recipe_when_the_first_fails(run_copy, quiet_calibration):
    from edgernn.export import export_run
    from edgernn.parity import check_parity

    run_dir = run_copy(cell="gru", hidden=16)
    [res] = export_run(run_dir, formats="tflite", precisions="int8")
    q = read_manifest(res.path)["quantization"]
    sel = q["selection"]
    assert q["recipe"] == "dynamic" and sel["order"] == ["full-int8", "int16x8", "dynamic"]
    assert [r["recipe"] for r in sel["rejected"]] == ["full-int8", "int16x8"]
    full, i16 = sel["rejected"]  # full int8 is rejected by the gate on held-out windows, with the numbers;
    assert full["reason"].startswith("failed on 25 held-out windows") and not full["gate"]["passed"]
    # once its held-out windows failed, the stress set is not run for it (most of the gate's time at long T),
    # and the line says so; the kept recipe went through all of it
    assert "stress" not in full["gate"] and "not run: the stress set" in full["reason"]
    assert sel["gate"]["stress"]["windows"] > 0 and "not_run" not in sel["gate"]
    # int16x8 cannot calibrate the GRU's WHILE loop (an int8 GRU sequence is always the loop), and says why
    assert i16["reason"].startswith("could not be built") and "min/max" in i16["reason"]
    assert sel["gate"]["passed"] and sel["gate"]["held_out"]
    # only the kept artifact reaches the artifacts dir: no candidates or scratch dirs left behind
    assert sorted(p.name for p in res.path.parent.iterdir()) == ["sequence-int8.tflite", "sequence-int8.tflite.json"]
    report = check_parity(run_dir, write=False)
    assert report["passed"], report["failed"]


def test_pinned_recipe_is_kept_and_the_manifest_says_it_failed(run_copy, quiet_calibration):
    from edgernn.export import export_run

    run_dir = run_copy(cell="gru", hidden=16)
    [res] = export_run(run_dir, formats="tflite", precisions="int8", recipe="full-int8")
    q = read_manifest(res.path)["quantization"]
    assert q["recipe"] == "full-int8" and q["selection"]["pinned"] and not q["selection"]["gate"]["passed"]
    assert "FAILED the parity gate" in q["note"] and q["compute"] == {"recurrent": "full-int8", "head": "full-int8"}


def test_pinned_recipe_that_cannot_build_one_mode_skips_it_and_builds_the_other(run_copy):
    """int16x8 cannot build a sequence LSTM (the fused op has no 16x8 kernel) but builds its step graph: the
    export writes the step, lists the sequence as skipped with the converter's reason, and exits 0 from the
    CLI; when the pinned recipe can build nothing at all (a GRU sequence: 16x8 cannot calibrate its loop) it
    is an error that says why, and no file is left."""
    from edgernn.cli import main
    from edgernn.export import export_run

    run_dir = run_copy(cell="lstm", hidden=16)
    r = CliRunner().invoke(main, ["export", str(run_dir), "--format", "tflite", "--precision", "int8",
                                  "--recipe", "int16x8", "--streaming", "--json", "-q"])
    assert r.exit_code == 0, r.output
    seq, step = sorted(json.loads(r.output[r.output.index("["):]), key=lambda d: d["mode"])
    assert seq["path"] is None and seq["skipped"].startswith("--recipe int16x8: cannot build tflite sequence-int8")
    assert "16x8" in seq["skipped"] and "UNIDIRECTIONAL_SEQUENCE_LSTM" in seq["skipped"]
    assert step["path"] and step["recipe"] == "int16x8"
    gru_dir = run_copy(cell="gru", hidden=16)
    with pytest.raises(ExportError, match="--recipe int16x8 could not build any int8 artifact: .*min/max"):
        export_run(gru_dir, formats="tflite", precisions="int8", recipe="int16x8")
    assert not list((gru_dir / "artifacts").glob("*int8*"))


def test_default_order_keeps_full_int8_when_it_passes(tmp_path):
    """A real model on a bundled set where full int8 holds (measured: japanese-vowels LSTM h32 keeps
    full-int8 for sequence and step; the synthetic fixtures' sines fail the x0.25-amplitude stress copies):
    the first recipe is kept, nothing rejected, and every part of the gate was run."""
    from edgernn.cli import main
    from edgernn.export import export_run

    run_dir = tmp_path / "jv"
    r = CliRunner().invoke(main, ["train", "--dataset", "japanese-vowels", "--cell", "lstm", "--hidden", "32",
                                  "--out", str(run_dir), "--epochs", "60", "-q"])
    assert r.exit_code == 0, r.output
    [res] = export_run(run_dir, formats="tflite", precisions="int8", streaming=True)[1:]
    q = read_manifest(res.path)["quantization"]
    assert res.mode == "step" and q["recipe"] == "full-int8" and q["selection"]["rejected"] == [], q["selection"]
    g = q["selection"]["gate"]
    assert g["passed"] and g["long_stream"]["passed"] and g["stress"]["windows"] == 5 * 200
    assert g["stress"]["gross_errors"] == 0 and g["held_out"] and g["windows"] == 64


def test_recipe_choices_are_checked(run_copy):
    from edgernn.cli import main
    from edgernn.export import export_run

    run_dir = run_copy(cell="gru", hidden=16)
    with pytest.raises(ConfigError, match="recipe 'int16x8' is for --format tflite"):
        export_run(run_dir, formats="onnx", precisions="int8", recipe="int16x8")
    with pytest.raises(ConfigError, match="add int8 to --precision"):
        export_run(run_dir, formats="tflite", precisions="float", recipe="dynamic")
    r = CliRunner().invoke(main, ["export", str(run_dir), "--recipe", "int4"])
    assert r.exit_code == 2 and "int4" in r.output and "Traceback" not in r.output
    assert not (run_dir / "artifacts").exists()


def test_onnx_int8_gru_stores_its_weights_int8(run_copy):
    from edgernn.export import export_run

    run_dir = run_copy(cell="gru", hidden=64)
    res = {r.precision: r.path for r in export_run(run_dir, formats="onnx", precisions="float,int8")}
    q = read_manifest(res["int8"])["quantization"]
    assert q["recipe"] == "dynamic" and q["compute"] == {"recurrent": "weights-int8", "head": "dynamic-int8"}
    assert res["int8"].stat().st_size <= 0.5 * res["float"].stat().st_size


def test_onnx_integer_matmul_gru_multiplies_in_int8(run_copy):
    from edgernn.export import export_run
    from edgernn.export.onnx.convert import onnx_op_types
    from edgernn.gates import Gates
    from edgernn.parity import check_parity

    run_dir = run_copy(cell="gru", hidden=16)
    results = export_run(run_dir, formats="onnx,ort", precisions="int8", streaming=True, recipe="integer-matmul")
    for r in results:
        q = read_manifest(r.path)["quantization"]
        assert q["recipe"] == "integer-matmul" and q["compute"] == {"recurrent": "dynamic-int8",
                                                                     "head": "dynamic-int8"}, (r.path.name, q)
        lat = q["latency_us"]
        assert lat["this_us"] > 0 and lat["float_op_us"] > 0 and lat["faster"] in ("float GRU op", "integer-matmul")
    seq = next(r.path for r in results if r.format == "onnx" and r.mode == "sequence")
    ops = onnx_op_types(seq)
    assert "Loop" in ops and "GRU" not in ops and ops.count("MatMulInteger") >= 3  # input proj, in loop, head
    # a 400-frame long stream: this tiny GRU's int8 step drifts in the default 20,000-frame soak (as its
    # dynamic-int8 step does: tests/test_parity_stream.py), which is the model's, not this recipe's, limit
    report = check_parity(run_dir, write=False, gates=Gates(stream_frames=400))
    assert report["passed"], json.dumps([a for a in report["artifacts"] if not a["passed"]])[:2000]


@pytest.mark.parametrize("cell", ["gru", "lstm"])
def test_onnx_order_tries_integer_matmul_before_int8_head(run_copy, monkeypatch, cell):
    """The ONNX order is dynamic -> integer-matmul -> int8-head: int8-head keeps the recurrent weights float
    (a file as large as the float one), so the int8-sized GRU recipe comes first. Every candidate is made to
    fail the real gate by allowing no stress error at all (every int8 rounding is then a gross error, and no
    copy is excused as fragile); the last one, int8-head, is kept and marked failed. An LSTM cannot be
    rewritten and says so."""
    from edgernn import gates
    from edgernn.export import export_run

    monkeypatch.setattr(gates, "STRESS_GROSS", 0.0)
    monkeypatch.setattr(gates, "FRAGILE_DRAWS", 0)
    run_dir = run_copy(cell=cell, hidden=16)
    [res] = export_run(run_dir, formats="onnx", precisions="int8")
    q = read_manifest(res.path)["quantization"]
    sel = q["selection"]
    assert sel["order"] == ["dynamic", "integer-matmul", "weights-int8", "int8-head"] and q["recipe"] == "int8-head"
    assert not sel["gate"]["passed"] and "FAILED the parity gate" in q["note"]
    reasons = {r["recipe"]: r["reason"] for r in sel["rejected"]}
    assert list(reasons) == ["dynamic", "integer-matmul", "weights-int8"]
    assert reasons["dynamic"].startswith("failed on")
    if cell == "gru":  # integer-matmul is built and gated; weights-int8 is what dynamic already was
        assert reasons["integer-matmul"].startswith("failed on") and "gross errors" in reasons["integer-matmul"]
        assert reasons["weights-int8"].startswith("could not be built") and "dynamic recipe" in reasons["weights-int8"]
    else:  # an LSTM cannot be rewritten as MatMuls; its weights-int8 file is built and gated
        assert reasons["integer-matmul"].startswith("could not be built")
        assert "rewrites GRU/RNN" in reasons["integer-matmul"]
        assert reasons["weights-int8"].startswith("failed on")


def test_onnx_lstm_weights_int8_stores_int8_and_computes_float(run_copy):
    """weights-int8: the LSTM op keeps float compute (where DynamicQuantizeLSTM lost accuracy) with its W and
    R stored int8 behind DequantizeLinear: at h64 the file is at most half the float one, and it agrees with
    float on the test windows."""
    from edgernn.export import export_run
    from edgernn.export.onnx.convert import onnx_op_types
    from edgernn.parity import check_parity

    run_dir = run_copy(cell="lstm", hidden=64)
    res = {(r.format, r.precision): r.path for r in
           export_run(run_dir, formats="onnx,ort", precisions="float,int8", recipe="weights-int8")}
    for fmt in ("onnx", "ort"):
        q = read_manifest(res[(fmt, "int8")])["quantization"]
        assert q["recipe"] == "weights-int8" and q["compute"] == {"recurrent": "weights-int8", "head": "dynamic-int8"}
        assert "LSTM" in q["float_ops"] and "--recipe dynamic" in q["note"], q["note"]
    ops = onnx_op_types(res[("onnx", "int8")])
    assert "LSTM" in ops and "DynamicQuantizeLSTM" not in ops and ops.count("DequantizeLinear") == 2
    assert res[("onnx", "int8")].stat().st_size <= 0.5 * res[("onnx", "float")].stat().st_size
    report = check_parity(run_dir, write=False)
    assert report["passed"], report["failed"]


def test_integer_matmul_refuses_an_lstm(run_copy):
    from edgernn.export import export_run

    run_dir = run_copy(cell="lstm", hidden=16)
    with pytest.raises(ExportError, match="--recipe integer-matmul could not build any int8 artifact: "
                                          "cannot build onnx sequence-int8: integer-matmul rewrites"):
        export_run(run_dir, formats="onnx", precisions="int8", recipe="integer-matmul")
    assert not list((run_dir / "artifacts").glob("*")), "nothing written"


def _unresolved_builders(recipes) -> list[str]:
    """Every RECIPES[name].builders entry that does not import to a callable, with the reason."""
    bad = []
    for name, r in recipes.RECIPES.items():
        for fmt, target in r.builders.items():
            try:
                fn = recipes.builder(name, fmt)
            except (ImportError, AttributeError, ValueError) as exc:
                bad.append(f"{name}/{fmt} {target}: {type(exc).__name__}")
                continue
            if not callable(fn):
                bad.append(f"{name}/{fmt} {target}: not callable")
    return bad


def test_every_recipe_builder_imports_to_a_callable(monkeypatch):
    """The registry names its builders as "module:function", imported only when a recipe is tried: a misspelt
    entry would surface as that recipe "could not be built" in some export's rejected list. Every entry is
    imported here; the same check on a scratch copy with one entry misspelt finds exactly that entry."""
    from dataclasses import replace

    from edgernn.export import recipes

    assert _unresolved_builders(recipes) == []
    assert {fmt for r in recipes.RECIPES.values() for fmt in r.builders} == {"tflite", "onnx", "c"}
    for fmt, order in recipes.ORDER.items():  # every recipe a format tries has a builder there
        assert all(fmt in recipes.RECIPES[name].builders for name in order), fmt
    broken = dict(recipes.RECIPES)
    broken["dynamic"] = replace(broken["dynamic"], builders={**broken["dynamic"].builders,
                                                             "onnx": "edgernn.export.onnx.quantize:dynamik"})
    broken["int16x8"] = replace(broken["int16x8"], builders={**broken["int16x8"].builders,
                                                             "c": "edgernn.export.c.quantise:int16x8"})
    monkeypatch.setattr(recipes, "RECIPES", broken)
    assert _unresolved_builders(recipes) == ["int16x8/c edgernn.export.c.quantise:int16x8: ModuleNotFoundError",
                                             "dynamic/onnx edgernn.export.onnx.quantize:dynamik: AttributeError"]


def test_calibration_never_sees_the_held_out_windows(make_run):
    from edgernn.gates import calibration_split

    calib, hold = calibration_split(load_run(make_run(cell="gru", hidden=16)))
    assert len(hold) == 25 and len(calib) == 75 and not set(calib) & set(hold)


def test_export_json_names_the_recipe(run_copy):
    from edgernn.cli import main

    run_dir = run_copy(cell="lstm", hidden=16)
    r = CliRunner().invoke(main, ["export", str(run_dir), "--format", "onnx", "--precision", "float,int8", "--json",
                                  "-q"])
    assert r.exit_code == 0, r.output
    rows = {row["precision"]: row for row in json.loads(r.output)}
    assert rows["float"]["recipe"] == "none" and rows["float"]["rejected_recipes"] == []
    q = read_manifest(rows["int8"]["path"])["quantization"]
    assert rows["int8"]["recipe"] == q["recipe"] in ("dynamic", "int8-head")
    assert rows["int8"]["rejected_recipes"] == [x["recipe"] for x in q["selection"]["rejected"]]


def test_stress_gate_forgives_gross_errors_only_where_the_float_model_is_fragile(run_copy):
    """A stress copy is fragile when the float model itself, with int8-sized noise on its weights, moves by
    more than the gross limit there (basic-motions LSTM h64: three such copies made every int8 LSTM a lottery).
    The mask is seeded and monotone in the limit; the gate counts a gross error on a robust copy and only
    reports one on a fragile copy. The artifact is a real int8 ONNX file (GRU weights int8); the limit is
    lowered so that it has gross errors to count."""
    import numpy as np

    from edgernn.export import export_run
    from edgernn.gates import Gates
    from edgernn.holdout import Holdout, fragile_copies

    run_dir = run_copy(cell="gru", hidden=16)
    run = load_run(run_dir)
    h = Holdout(run, Gates())
    X, ref = h.X_stress, h.ref_stress
    # the 16 weight-noise models run only when a candidate has a gross error to judge
    [res] = export_run(run_dir, formats="onnx", precisions="float")
    h.stress_limit = 1e6  # no copy can be off by that much
    st = h.gate(run, res.path, "sequence")["stress"]
    assert h._fragile is None and st["fragile_copies"] is None and st["gross_errors"] == 0 and st["passed"]
    h.stress_limit = Holdout(run, Gates()).stress_limit
    assert fragile_copies(run, X, ref, 0.0, draws=2).all()
    assert not fragile_copies(run, X, ref, 1e6, draws=2).any()
    some = fragile_copies(run, X, ref, 0.05, draws=4)
    assert np.array_equal(some, fragile_copies(run, X, ref, 0.05, draws=4))  # seeded
    assert (fragile_copies(run, X, ref, 0.02, draws=4) >= some).all()  # a lower limit: a superset
    assert not h.fragile.all()  # at the real limit most copies are robust

    [res] = export_run(run_dir, formats="onnx", precisions="int8")
    h.stress_limit = 1e-4  # rounding noise now counts as gross on (nearly) every copy
    h.fragile = np.zeros(len(X), bool)
    st = h.gate(run, res.path, "sequence")["stress"]
    assert st["gross_errors"] > len(X) // 2 and st["gross_on_fragile"] == 0 and not st["passed"], st
    h.fragile = np.ones(len(X), bool)
    st = h.gate(run, res.path, "sequence")["stress"]
    assert st["gross_errors"] == 0 and st["gross_on_fragile"] > len(X) // 2
    assert st["agreement"] == 1.0 and st["passed"]  # fragile copies are left out of the agreement too
    assert 0 <= st["agreement_all_copies"] <= 1
    assert "float model itself moves that much" in st["gate"]


def test_a_held_out_verdict_names_every_number_its_rule_judges():
    """A LOSS line says accuracy AND agreement (a held-out gate fails on either) next to the rule."""
    from edgernn.holdout import verdict

    g = {"passed": False, "windows": 25, "accuracy": 0.4, "agreement": 0.92,
         "gate": "accuracy >= 0.3960 and agreement with float >= 0.98", "max_abs_diff": 0.3}
    line = verdict(g)
    assert line.startswith("failed on 25 held-out windows: accuracy 0.400, agreement with float 0.920, gate")


def test_integer_only_never_falls_back_to_float_activations(run_copy, quiet_calibration):
    """--integer-only: the TFLite order stops at int16x8. The synthetic GRU's int8 sequence (full int8 fails its
    gate, int16x8 cannot build a WHILE loop) and step (both fail the stress set, at 0.968 / 0.976 agreement)
    FAIL in one line naming each recipe, where the default order ships dynamic range; ONNX has no integer-only
    recipe and is skipped saying so; dynamic is refused up front. The float step TFLite Micro runs (the
    manifest's tflm field says so, with the arena it needs)."""
    from edgernn.cli import main
    from edgernn.export import export_run

    run_dir = run_copy(cell="gru", hidden=16)
    with pytest.raises(ConfigError, match="--integer-only keeps float activations out: drop precision dynamic"):
        export_run(run_dir, formats="tflite", precisions="int8,dynamic", integer_only=True)
    r = CliRunner().invoke(main, ["export", str(run_dir), "--format", "onnx,tflite", "--precision", "float,int8",
                                  "--streaming", "--integer-only", "--json", "-q"])
    assert r.exit_code == 1, r.output
    rows = {(d["format"], d["precision"], d["mode"]): d
            for d in json.loads(r.output[r.output.index("["):r.output.rindex("]") + 1])}
    assert rows[("onnx", "int8", "step")]["skipped"].startswith("--integer-only: onnx has no integer-only int8 recipe")
    for mode, first in (("sequence", "int16x8: could not be built"), ("step", "full-int8: failed on")):
        err = rows[("tflite", "int8", mode)]["error"]
        assert err.startswith(f"no integer-only int8 recipe passes the gate for tflite {mode}-int8 ("), err
        assert first in err and "full-int8: failed on" in err and "\n" not in err and "dynamic" not in err[:-120]
        assert not (run_dir / "artifacts" / f"{mode}-int8.tflite").exists()
    m = read_manifest(rows[("tflite", "float", "step")]["path"])
    assert m["tflm"]["checked"] and m["tflm"]["runs"] and 0 < m["tflm"]["arena_bytes"] < 1 << 20, m["tflm"]


def test_input_grid_copies_make_a_copy_fragile_where_rounding_the_input_moves_the_float_model(run_copy):
    """The second kind of fragile copy: the float model fed its input rounded to an int8 grid (what a full-int8
    artifact's input quantization does) is off grossly there. The first copy lies on the grid the export's
    calibration windows give (TFLite min/max with 0 in range, 255 steps); the others on the same step at
    seeded offsets; no frame moves by more than half a step. A limit between what weight noise and what input
    rounding do to one copy flags it: the mask is the union of both."""
    import numpy as np

    from edgernn.gates import Gates, calibration_windows
    from edgernn.holdout import Holdout, fragile_copies
    from edgernn.reference import input_grid_copies, int8_input_step, torch_outputs, weight_noise_models

    run = load_run(run_copy(cell="gru", hidden=16))
    h = Holdout(run, Gates())
    X, ref = h.X_stress, h.ref_stress
    calib = calibration_windows(run)
    scale, lo = int8_input_step(run, calib)
    xc = run.normalize(calib)
    assert scale == pytest.approx((max(xc.max(), 0) - min(xc.min(), 0)) / 255, rel=1e-6) and lo <= 0
    copies = list(input_grid_copies(run, X, 3, calib))
    assert len(copies) == 3 and all(c.shape == X.shape for c in copies)
    grid = (run.normalize(copies[0]) - lo) / scale
    assert np.abs(grid - np.round(grid)).max() < 2e-3  # on the grid
    assert np.abs(run.normalize(copies[0]) - run.normalize(X)).max() <= scale / 2 + 1e-5
    assert not np.allclose(copies[1], copies[0]) and np.array_equal(copies[1], next(  # seeded offsets
        c for i, c in enumerate(input_grid_copies(run, X, 2, calib)) if i == 1))

    def moves(outputs):
        return np.max([np.abs(o - ref).reshape(len(X), -1).max(-1) for o in outputs], axis=0)

    by_weights = moves(torch_outputs(run, X, model=m) for m in weight_noise_models(run, 2))
    by_input = moves(torch_outputs(run, c) for c in input_grid_copies(run, X, 2, calib))
    i = int(np.argmax(by_input / by_weights))  # the copy rounding moves most against weight noise
    assert by_input[i] > by_weights[i]
    limit = (by_input[i] + by_weights[i]) / 2
    mask = fragile_copies(run, X, ref, limit, draws=2)
    assert mask[i] and np.array_equal(mask, (by_weights > limit) | (by_input > limit))


def test_stress_agreement_leaves_out_copies_where_noise_flips_the_float_model(run_copy, monkeypatch):
    """Where int8-sized weight noise or int8 input rounding changes the float model's OWN top-1 (Holdout.flips),
    a disagreeing artifact is not judged: the agreement is taken over the other copies (and reported over all
    of them too). The outputs of a real int8 ONNX artifact are altered on 10 copies (top-2 logits swapped: a
    stand-in for an artifact that disagrees there, as full int8 did on japanese-vowels LSTM h64)."""
    import numpy as np

    import edgernn.gates as rules
    from edgernn.export import export_run
    from edgernn.gates import Gates
    from edgernn.holdout import Holdout

    run_dir = run_copy(cell="gru", hidden=16)
    run = load_run(run_dir)
    h = Holdout(run, Gates())
    [res] = export_run(run_dir, formats="onnx", precisions="int8")
    real = rules.run_artifact
    bad = np.arange(10)

    def disagreeing(session, X, mode, task):
        out, t = real(session, X, mode, task)
        if X is not h.X_stress:  # the held-out windows stay as they are
            return out, t
        out = out.copy()
        top2 = np.argsort(out[bad], -1)[:, -2:]
        rows = bad[:, None]
        out[rows, top2] = out[rows, top2[:, ::-1]]
        return out, t

    monkeypatch.setattr(rules, "run_artifact", disagreeing)
    h.stress_limit, h.fragile = 1e6, np.zeros(len(h.X_stress), bool)  # no gross error: agreement alone
    h.flips = np.zeros(len(h.X_stress), bool)
    st = h.gate(run, res.path, "sequence")["stress"]
    assert st["agreement"] == st["agreement_all_copies"] <= 1 - 10 / len(h.X_stress) + 1e-9
    assert not st["passed"] and st["lottery_copies"] == 0
    flips = np.zeros(len(h.X_stress), bool)
    flips[bad] = True
    h.flips = flips
    st = h.gate(run, res.path, "sequence")["stress"]
    assert st["lottery_copies"] == 10 and st["agreement"] > st["agreement_all_copies"]
    assert st["passed"] == (st["agreement"] >= Gates().min_accuracy_ratio) and st["agreement"] >= 0.99, st
