"""The C export of token classifiers and taggers: edgernn.export.c.token_classifier, the C engine
(edgernn.runtimes.token_c.CClassifierEngine behind load_classifier(dir, "c")), export_classifier / classifier_parity
with C artifacts, and the CLI / pipeline wiring."""

from __future__ import annotations

import ctypes
import json

import numpy as np
import pytest
from click.testing import CliRunner

from edgernn.cli import main


def _classify_data(path, n: int = 400):
    """The label is decided by the letters used (tests/test_tokens.py's classifier data)."""
    rng = np.random.default_rng(1)
    lines = []
    for _ in range(n):
        label = rng.choice(["low", "high"])
        letters = list("abcdef") if label == "low" else list("uvwxyz")
        word = "".join(rng.choice(letters + list("mno"), size=rng.integers(3, 8)))
        lines.append(json.dumps({"text": word, "label": str(label)}))
    path.write_text("\n".join(lines) + "\n")
    return path


def _tag_data(path, n: int = 300):
    """A word after 'not' is NEG, else POS ('not' itself O): the tag needs context."""
    rng = np.random.default_rng(2)
    words = ["red", "big", "fast", "cold", "new", "old", "dark", "loud"]
    lines = ["text\ttags"]
    for _ in range(n):
        toks, tags = [], []
        for _ in range(rng.integers(2, 6)):
            if rng.random() < 0.4:
                toks += ["not", str(rng.choice(words))]
                tags += ["O", "NEG"]
            else:
                toks.append(str(rng.choice(words)))
                tags.append("POS")
        lines.append(" ".join(toks) + "\t" + " ".join(tags))
    path.write_text("\n".join(lines) + "\n")
    return path


def _train(out, data, **kw):
    from edgernn.tokens.train import TokenTrainConfig, train_tokens

    train_tokens(TokenTrainConfig(dataset=str(data), hidden=16, embed=8, threads=1, **kw), out, progress=False)
    return out


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """A bidirectional GRU classifier exported by the pipeline's export stage and a bidirectional LSTM tagger
    exported by `edgernn export --format onnx,c`: onnx + c, float + int8 each."""
    pytest.importorskip("torch")
    pytest.importorskip("onnxruntime")
    from edgernn.tokens.pipeline import run_token_pipeline

    tmp = tmp_path_factory.mktemp("clsc")
    clf = _train(tmp / "pipe" / "gru", _classify_data(tmp / "words.jsonl"), epochs=12)
    run_token_pipeline(tmp / "pipe", str(tmp / "words.jsonl"), cells=("gru",), stages=("export",),
                       formats=("onnx", "c"), progress=False, echo=lambda *a: None)
    tagger = _train(tmp / "tagger", _tag_data(tmp / "tags.tsv"), cell="lstm", tokenizer="words", epochs=25, lr=0.01)
    r = CliRunner().invoke(main, ["export", str(tagger), "--format", "onnx,c", "-q"])
    assert r.exit_code == 0 and "tagger-int8.h" in r.output and "skipped" not in r.output, r.output
    return {"classifier": clf, "tagger": tagger}


def _texts(run_dir, n: int = 60) -> list:
    from edgernn.tokens.run import load_token_run

    return load_token_run(run_dir).data()["src_test"][:n]


@pytest.mark.parametrize("part", ["classifier", "tagger"])
def test_c_float_logits_are_onnx_and_labels_equal(runs, part):
    """C float logits equal ONNX float's (1e-4 x the largest logit) on held-out texts, and so do the labels / tags;
    the header compiled cleanly on every installed compiler and int8 tables shrink the Cortex-M4 flash."""
    from edgernn.runtimes.token_session import load_classifier

    arts = runs[part] / "artifacts"
    c, onnx = load_classifier(arts, "c", "float"), load_classifier(arts, "onnx", "float")
    assert c.manifest["part"] == part and c.manifest["format"] == "c"
    for text in _texts(runs[part]):
        a, b = c.logits(c.source_ids(text)), onnx.logits(onnx.source_ids(text))
        assert a.shape == b.shape and np.abs(a - b).max() <= 1e-4 * max(1.0, float(np.abs(b).max())), text
        if part == "tagger":
            assert c.tag(text) == onnx.tag(text)
        else:
            assert c.classify(text)[0] == onnx.classify(text)[0]
    m = {p: json.loads((arts / f"{part}-{p}.h.json").read_text()) for p in ("float", "int8")}
    assert m["float"]["checked"]["max_diff_vs_torch"] < 1e-5
    for man in m.values():
        checks = man["c"]["compile_checks"]
        assert checks["gcc"]["clean"] and all(v.get("clean", True) for v in checks.values()), checks
    flash = {p: m[p]["c"]["targets"]["cortex-m4"].get("flash_bytes") for p in m}
    if flash["float"]:
        assert flash["int8"] < flash["float"], flash
    assert m["int8"]["quantization"]["compute"]["recurrent"] == "weights-int8"


def test_parity_judges_the_c_artifacts(runs):
    """classifier_parity has a row per C artifact, with its Cortex-M4 flash; float C agrees with the float model
    on every prediction, and every row passes."""
    from edgernn.tokens.classifier import classifier_parity, format_classifier_parity

    for part, run_dir in runs.items():
        rep = classifier_parity(run_dir, write=False)
        rows = {(a["format"], a["precision"]): a for a in rep["artifacts"]}
        assert set(rows) == {(f, p) for f in ("onnx", "c") for p in ("float", "int8")}, part
        assert rep["passed"], format_classifier_parity(rep)
        assert rows[("c", "float")]["agreement"] == 1.0
        assert rows[("c", "float")]["files"] == [f"{part}-float.h"]
        assert rows[("onnx", "float")]["cortex_m4_flash_bytes"] is None
        for p in ("float", "int8"):  # the manifest's (None when arm-none-eabi-gcc is not installed)
            m = json.loads((run_dir / "artifacts" / f"{part}-{p}.h.json").read_text())
            assert rows[("c", p)]["cortex_m4_flash_bytes"] == m["c"]["targets"]["cortex-m4"].get("flash_bytes")
        if rows[("c", "int8")]["cortex_m4_flash_bytes"]:
            assert rows[("c", "int8")]["cortex_m4_flash_bytes"] > 0
            assert "Cortex-M4 flash" in format_classifier_parity(rep)


def test_int8_c_agrees_with_float_c(runs):
    """int8 weight tables, float arithmetic: the int8 C artifact gives the float C artifact's labels on most texts
    (a tagger: tokens)."""
    from edgernn.runtimes.token_session import load_classifier

    for part, run_dir in runs.items():
        arts = run_dir / "artifacts"
        f, q = load_classifier(arts, "c", "float"), load_classifier(arts, "c", "int8")
        same = [np.array_equal(np.argmax(f.logits(f.source_ids(t)), -1), np.argmax(q.logits(q.source_ids(t)), -1))
                for t in _texts(run_dir)]
        assert np.mean(same) >= 0.9, (part, np.mean(same))
        probs = q.engine.probs(q.logits(q.source_ids(_texts(run_dir)[0])).reshape(-1, len(q.labels))[0])
        assert abs(float(probs.sum()) - 1.0) < 1e-5  # the C softmax (no libm)


def test_bad_ids_and_lengths_raise(runs):
    """The C library refuses a length outside 1..MAX_SRC (-1) and an id outside the vocabulary (-2): ValueError."""
    from edgernn.runtimes.token_session import load_classifier

    for run_dir in runs.values():
        clf = load_classifier(run_dir / "artifacts", "c", "int8")
        eng = clf.engine
        assert eng.logits([4]).shape[-1] == len(clf.labels)
        for ids, what in (([4] * (eng.max_src + 1), "texts of 1"), ([4, eng.vocab], "code -2"), ([-1], "code -2"),
                          ([4, 2 ** 40], "int32")):
            with pytest.raises(ValueError, match=what):
                eng.logits(ids)
        with pytest.raises(ValueError, match="no tokens"):
            clf.logits([])
        buf, out = np.full(eng.max_src + 1, 4, np.int32), np.zeros((eng.max_src + 1, eng.classes), np.float32)
        for n in (0, eng.max_src + 1):  # the C check itself (-1), before any output is written
            assert eng.lib.edgernn_cls_logits(buf.ctypes.data_as(ctypes.POINTER(ctypes.c_int32)), n,
                                              out.ctypes.data_as(ctypes.POINTER(ctypes.c_float))) == -1
            assert not out.any()


def test_unidirectional_cells_and_stacked_export(tmp_path):
    """A unidirectional LSTM classifier and GRU tagger export to C float (checked against torch inside the export),
    and a stacked (layers=2) model exports to ONNX and TFLite, each checked against torch inside the export."""
    pytest.importorskip("torch")
    pytest.importorskip("onnxruntime")
    from edgernn.runtimes.token_session import load_classifier
    from edgernn.tokens.classifier import export_classifier

    data = _classify_data(tmp_path / "w.jsonl", 120)
    uni = _train(tmp_path / "uni", data, cell="lstm", bidirectional=False, epochs=1)
    (path,) = export_classifier(uni, ("float",), formats=("c",))
    assert path.name == "classifier-float.h"
    assert json.loads(path.with_name(path.name + ".json").read_text())["checked"]["max_diff_vs_torch"] < 1e-5
    assert load_classifier(uni / "artifacts", "c").classify("abc")[0] in ("low", "high")
    tags = _train(tmp_path / "utag", _tag_data(tmp_path / "t.tsv", 80), bidirectional=False, tokenizer="words",
                  epochs=1)
    (path,) = export_classifier(tags, ("float",), formats=("c",))
    tagger = load_classifier(tags / "artifacts", "c")
    assert path.name == "tagger-float.h" and [t for t, _ in tagger.tag("not red big")] == ["not", "red", "big"]
    deep = _train(tmp_path / "deep", data, layers=2, epochs=1)
    written = export_classifier(deep, ("float",), formats=("onnx", "tflite"))
    assert [p.name for p in written] == ["classifier-float.onnx", "classifier-float.tflite"]
    for p in written:
        m = json.loads(p.with_name(p.name + ".json").read_text())
        assert m["model"]["layers"] == 2 and m["checked"]["max_diff_vs_torch"] < 1e-4, (p.name, m["checked"])
    tfl, onnx = (load_classifier(deep / "artifacts", f) for f in ("tflite", "onnx"))
    assert tfl.classify("abc")[0] == onnx.classify("abc")[0]
