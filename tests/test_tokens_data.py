"""
Token data: the user's own files (edgernn.data.token_files), the bundled `names` set (edgernn.data.names) and the
baselines a token classifier must beat (edgernn.tokens.baselines). Small tmp_path files; the whole file runs in
a few seconds.
"""

from __future__ import annotations

import json
from collections import Counter

import numpy as np
import pytest

from edgernn.data.names import MIN_REGION, NAMES_COUNTS, REGIONS, names
from edgernn.data.token_files import load_token_file
from edgernn.data.tokens import TokenDataset
from edgernn.errors import DataError, MissingDependencyError
from edgernn.runtimes.vocab import UNK, Vocab
from edgernn.tokens.baselines import bag_of_tokens, majority


def write(tmp_path, name: str, text: str):
    p = tmp_path / name
    p.write_text(text, encoding="utf-8")
    return p


def write_jsonl(tmp_path, name: str, objs: list):
    return write(tmp_path, name, "".join(json.dumps(o) + "\n" for o in objs))


def classify_rows(n: int = 40) -> list:
    return [(f"text number {i} {'good' if i % 2 else 'bad'}", "pos" if i % 2 else "neg") for i in range(n)]


def refuses(path, match: list, **kw) -> str:
    """load_token_file raises a one-line DataError naming the file and every string in match."""
    with pytest.raises(DataError) as err:
        load_token_file(path, **kw)
    msg = str(err.value)
    assert "\n" not in msg
    assert str(path) in msg, msg
    for m in match:
        assert m in msg, msg
    return msg


# ---------------------------------------------------------------------------------------------------------
# formats -> tasks


def test_csv_text_label_is_classify(tmp_path):
    rows = classify_rows()
    p = write(tmp_path, "reviews.csv", "text,label\n" + "".join(f"{t},{y}\n" for t, y in rows))
    ds = load_token_file(p, tokenizer="words", test_frac=0.25)
    assert isinstance(ds, TokenDataset)
    assert (ds.task, ds.name, ds.tokenizer, ds.source) == ("classify", "reviews", "words", str(p))
    assert ds.labels == ["neg", "pos"]
    assert len(ds.src_train) + len(ds.src_test) == 40 and len(ds.src_test) == 10
    assert set(ds.tgt_train) == {"neg", "pos"} and ds.tgt_vocab is None
    assert "classify" in ds.description and "words" in ds.description
    assert ds.label_ids("test").shape == (10,)


def test_csv_quoted_comma_and_header_case(tmp_path):
    p = write(tmp_path, "q.csv", 'Text , LABEL\n"a, b",x\nc d,y\ne,x\nf,y\n')
    ds = load_token_file(p, test_frac=0.25)
    assert ["a", ",", " ", "b"] in ds.src_train + ds.src_test


def test_tsv_text_tags_is_tag(tmp_path):
    lines = ["text\ttags"] + [f"the {w} runs\tDET {t} VERB" for w, t in
                              [("dog", "NOUN"), ("cat", "NOUN"), ("big", "ADJ"), ("man", "NOUN"), ("\"fox\"", "NOUN")]]
    lines.append('"the" fox\tDET NOUN')
    p = write(tmp_path, "pos.tsv", "\n".join(lines) + "\n")
    ds = load_token_file(p, tokenizer="words", test_frac=0.2)
    assert ds.task == "tag"
    assert ds.labels == sorted({"DET", "NOUN", "ADJ", "VERB"} & {t for tags in ds.tgt_train for t in tags})
    for src, tags in zip(ds.src_train + ds.src_test, ds.tgt_train + ds.tgt_test):
        assert len(src) == len(tags)
    assert ['the', '"fox"', 'runs'] in ds.src_train + ds.src_test  # .tsv: quotes are text, not quoting
    assert ['"the"', 'fox'] in ds.src_train + ds.src_test


def test_jsonl_source_target_is_seq2seq(tmp_path):
    words = ["cat", "dog", "bird", "fish", "cow", "hen", "pig", "ant", "bee", "elk"]
    p = write_jsonl(tmp_path, "g2p.jsonl", [{"source": w, "target": " ".join(w.upper())} for w in words])
    ds = load_token_file(p, test_frac=0.2)
    assert ds.task == "seq2seq" and ds.tokenizer == "chars"
    assert sorted(ds.src_train + ds.src_test) == sorted(list(w) for w in words) and len(ds.src_test) == 2
    assert all(t == [c.upper() for c in s] for s, t in zip(ds.src_train + ds.src_test, ds.tgt_train + ds.tgt_test))
    assert ds.tgt_vocab is not None and ds.tgt_vocab != ds.src_vocab
    assert ds.refs_test == [[t] for t in ds.tgt_test]
    tin, tout = ds.target_ids("train")
    assert tin.shape == tout.shape


def test_jsonl_text_only_is_next_token_and_lists_accepted(tmp_path):
    p = write_jsonl(tmp_path, "lm.jsonl", [{"text": f"line {i}"} for i in range(10)])
    ds = load_token_file(p)
    assert ds.task == "next-token"
    assert all(t == [] for t in ds.tgt_train + ds.tgt_test)
    p2 = write_jsonl(tmp_path, "tags.jsonl", [{"text": "a b", "tags": ["X", "Y"], "split": "train"},
                                              {"text": "b a", "tags": "Y X", "split": "test"}])
    ds2 = load_token_file(p2, tokenizer="words")
    assert ds2.task == "tag" and ds2.tgt_test == [["Y", "X"]]


def test_vocab_from_training_split_only(tmp_path):
    p = write(tmp_path, "v.csv", "text,label,split\nab,x,train\nba,y,train\nabz,x,test\n")
    ds = load_token_file(p)
    assert "z" not in ds.src_vocab.tokens
    assert ds.src_vocab.encode(ds.src_test[0])[-1] == UNK
    assert ds.source_ids("test")[0][0, 2] == UNK
    p2 = write_jsonl(tmp_path, "v.jsonl", [{"source": "ab", "target": "A B", "split": "train"},
                                           {"source": "ba", "target": "B A", "split": "train"},
                                           {"source": "ab", "target": "A Q", "split": "test"}])
    ds2 = load_token_file(p2)
    assert "Q" not in ds2.tgt_vocab.tokens and ds2.tgt_vocab.encode(["Q"]) == [UNK]
    capped = load_token_file(write(tmp_path, "c.csv", "text,label\n" + "aaab,x\nab,y\nac,x\nad,y\n"), max_vocab=5)
    assert len(capped.src_vocab) == 5 and capped.src_vocab.tokens[4] == "a"


def test_split_column_honoured(tmp_path):
    rows = [("one", "x", "train"), ("two", "y", "test"), ("three", "y", "train"), ("four", "x", "test"),
            ("five", "x", "train")]
    p = write(tmp_path, "s.csv", "label,split,text\n" + "".join(f"{y},{s.upper()},{t}\n" for t, y, s in rows))
    ds = load_token_file(p, tokenizer="words")
    assert ds.src_train == [["one"], ["three"], ["five"]] and ds.tgt_train == ["x", "y", "x"]
    assert ds.src_test == [["two"], ["four"]] and ds.tgt_test == ["y", "x"]
    assert "split column" in ds.description


def test_seeded_split_deterministic_and_disjoint_by_text(tmp_path):
    rows = [(f"sentence {i % 30}", "a" if i % 3 else "b") for i in range(90)]  # each text 3 times
    p = write(tmp_path, "d.csv", "text,label\n" + "".join(f"{t},{y}\n" for t, y in rows))
    a = load_token_file(p, seed=1, tokenizer="words", test_frac=0.2)
    b = load_token_file(p, seed=1, tokenizer="words", test_frac=0.2)
    c = load_token_file(p, seed=2, tokenizer="words", test_frac=0.2)
    assert a.src_test == b.src_test and a.src_train == b.src_train and a.src_vocab == b.src_vocab
    assert a.src_test != c.src_test
    train_texts, test_texts = {tuple(s) for s in a.src_train}, {tuple(s) for s in a.src_test}
    assert not train_texts & test_texts
    assert len(test_texts) == 6 and len(a.src_test) == 18  # 20% of the 30 distinct texts, every copy


# ---------------------------------------------------------------------------------------------------------
# refusals: one line, the file, the row / line, the fix


def test_refuses_missing_file_and_extension(tmp_path):
    refuses(tmp_path / "nope.csv", ["file not found"])
    p = write(tmp_path, "data.txt", "text,label\na,b\n")
    refuses(p, ["'.txt'", ".csv", ".tsv", ".jsonl"])


def test_refuses_empty_and_header_only(tmp_path):
    refuses(write(tmp_path, "e.csv", ""), ["empty file", "text,label"])
    refuses(write(tmp_path, "h.csv", "text,label\n\n"), ["no data rows"])
    refuses(write(tmp_path, "e.jsonl", "\n\n"), ["no data lines"])


def test_refuses_unknown_header(tmp_path):
    msg = refuses(write(tmp_path, "u.csv", "sentence,label\na,b\n"), ["sentence,label"])
    for accepted in ("text,label", "text,tags", "source,target", "split"):
        assert accepted in msg
    refuses(write_jsonl(tmp_path, "u.jsonl", [{"text": "a", "lbl": "b"}]), ["line 1", "text,label"])
    refuses(write(tmp_path, "ragged.csv", "text,label\na,x\nb,c,y\n"), ["row 2", "3 fields", "quote"])
    refuses(write(tmp_path, "quote.csv", 'text,label\n"multi\nline",x\nb,y\n"c"d,x\n'), ["row 3", "line 5", "quote"])
    refuses(write_jsonl(tmp_path, "keys.jsonl", [{"text": "a", "label": "x"}, {"text": "b", "label": "y", "n": 1}]),
            ["line 2", "differ from line 1"])


def test_refuses_empty_text_and_label(tmp_path):
    refuses(write(tmp_path, "t.csv", "text,label\nab,x\n  ,y\n"), ["row 2", "empty text"])
    refuses(write(tmp_path, "l.csv", "text,label\nab,x\ncd,y\nef,\n"), ["row 3", "label"])
    refuses(write_jsonl(tmp_path, "l.jsonl", [{"text": "ab", "label": "x"}, {"text": "cd"}]),
            ["line 2", "missing 'label'"])
    refuses(write_jsonl(tmp_path, "n.jsonl", [{"text": "ab", "label": "x"}, {"text": "cd", "label": None}]),
            ["line 2", "empty or missing label"])
    refuses(write_jsonl(tmp_path, "s.jsonl", [{"source": "ab", "target": "A B"}, {"source": "cd", "target": " "}]),
            ["line 2", "empty or missing target"])


def test_refuses_tag_count_mismatch(tmp_path):
    p = write(tmp_path, "t.tsv", "text\ttags\nthe dog\tDET NOUN\nthe big dog\tDET NOUN\n")
    refuses(p, ["row 2", "2 tags for 3 tokens", "one"], tokenizer="words")


def test_refuses_too_long(tmp_path):
    p = write(tmp_path, "long.csv", "text,label\nabc,x\n" + "a" * 70 + ",y\nb,x\nc,y\nd,x\ne,y\n")
    refuses(p, ["row 2", "70 tokens", "limit 64", "--max-len"])
    assert load_token_file(p, max_len=70).max_src_len == 70
    p2 = write_jsonl(tmp_path, "long.jsonl", [{"source": "ab", "target": "A B"},
                                              {"source": "cd", "target": " ".join(["X"] * 9)}])
    refuses(p2, ["line 2", "target has 9 tokens", "limit 8", "--max-len"], max_len=8)


def test_refuses_invalid_json_and_non_object(tmp_path):
    p = write(tmp_path, "bad.jsonl", '{"text": "a", "label": "x"}\n\n{"text": "b", "label": \n')
    refuses(p, ["line 3", "invalid JSON"])
    refuses(write(tmp_path, "arr.jsonl", '["a", "x"]\n'), ["line 1", "not an object"])


def test_refuses_single_class_and_unseen_test_label(tmp_path):
    refuses(write(tmp_path, "one.csv", "text,label\na,x\nb,x\nc,x\n"), ["every row has the label 'x'", "at least 2"])
    p = write(tmp_path, "unseen.csv", "text,label,split\na,x,train\nb,y,train\nc,z,test\n")
    refuses(p, ["row 3", "'z'", "never in training"])
    p3 = write(tmp_path, "tag.tsv", "text\ttags\tsplit\na b\tX Y\ttrain\nb a\tY Z\ttest\n")
    refuses(p3, ["row 2", "tag 'Z'", "never in training"], tokenizer="words")
    p2 = write(tmp_path, "onetrain.csv", "text,label,split\na,x,train\nb,x,train\nc,y,test\n")
    refuses(p2, ["only the label 'x'"])


def test_refuses_bad_or_empty_split(tmp_path):
    refuses(write(tmp_path, "bad.csv", "text,label,split\na,x,train\nb,y,dev\n"), ["row 2", "'dev'", "train or test"])
    refuses(write(tmp_path, "allte.csv", "text,label,split\na,x,test\nb,y,test\n"), ["split=test", "none is train"])
    refuses(write(tmp_path, "alltr.csv", "text,label,split\na,x,train\nb,y,train\n"), ["none is test"])
    refuses(write(tmp_path, "same.csv", "text,label\nab,x\nab,y\n"), ["1 distinct text", "at least 2"])


# ---------------------------------------------------------------------------------------------------------
# bundled: names


@pytest.fixture(scope="module")
def names_ds():
    return names(seed=0)


def test_names_set(names_ds):
    ds = names_ds
    assert ds.task == "classify" and ds.tokenizer == "chars"
    assert len(ds.src_train) + len(ds.src_test) > 5000
    assert len(ds.labels) >= 6 and set(ds.labels) <= set(REGIONS)
    train, test = {"".join(s) for s in ds.src_train}, {"".join(s) for s in ds.src_test}
    assert not train & test
    assert 0.15 < len(test) / (len(train) + len(test)) < 0.25
    counts = np.bincount(ds.label_ids("train"), minlength=len(ds.labels))
    assert counts.min() >= 100, dict(zip(ds.labels, counts))
    assert all(n == n.lower() for n in train)
    assert "gender-guesser" in ds.source and "nam_dict.txt" in ds.description
    known = dict(zip(["".join(s) for s in ds.src_train + ds.src_test], ds.tgt_train + ds.tgt_test))
    assert known.get("giuseppe") == "romance" and known.get("hiroshi") == "east_asian"
    assert known.get("sven") == "nordic" and known.get("mehmet") == "west_asian"
    assert "david" not in known and "jan" not in known  # top regions tie (english/west_asian, germanic/slavic)
    assert dict(Counter(known.values())) == NAMES_COUNTS  # the counts the module documents
    assert min(NAMES_COUNTS.values()) >= MIN_REGION


def test_names_regions_cover_every_country():
    from gender_guesser.detector import Detector

    grouped = [c for cs in REGIONS.values() for c in cs]
    assert len(grouped) == len(set(grouped))
    assert set(grouped) == set(Detector.COUNTRIES) - {"other_countries"}


def test_names_needs_gender_guesser(monkeypatch):
    import importlib.util

    real = importlib.util.find_spec
    hide = lambda name, *a: None if name == "gender_guesser" else real(name, *a)  # noqa: E731
    monkeypatch.setattr(importlib.util, "find_spec", hide)
    with pytest.raises(MissingDependencyError, match=r"pip install 'edgernn\[text\]'"):
        names()


def test_names_deterministic(names_ds):
    again = names(seed=0)
    assert again.src_test == names_ds.src_test and again.tgt_test == names_ds.tgt_test
    assert again.src_vocab == names_ds.src_vocab
    other = names(seed=1)
    assert other.src_test != names_ds.src_test


# ---------------------------------------------------------------------------------------------------------
# baselines


def synthetic_classify(n_train: int = 300, n_test: int = 100, seed: int = 0) -> TokenDataset:
    """The label is decided by one token (k0/k1/k2) among random filler; class 0 is the most common."""
    rng = np.random.default_rng(seed)
    filler = [f"w{i}" for i in range(20)]

    def make(n):
        y = rng.choice(3, size=n, p=[0.5, 0.25, 0.25])
        src = [list(rng.choice(filler, size=5)) + [f"k{c}"] for c in y]
        return [list(map(str, s)) for s in src], [f"c{c}" for c in y]

    src_tr, y_tr = make(n_train)
    src_te, y_te = make(n_test)
    return TokenDataset(name="syn", task="classify", tokenizer="words", src_train=src_tr, tgt_train=y_tr,
                        src_test=src_te, tgt_test=y_te, src_vocab=Vocab.build(src_tr), labels=["c0", "c1", "c2"])


def test_bag_of_tokens_beats_majority():
    ds = synthetic_classify()
    m, b = majority(ds), bag_of_tokens(ds)
    assert m["name"] == "majority" and b["name"] == "bag_of_tokens"
    assert m["description"] and b["description"]
    assert m["accuracy"] == pytest.approx(np.mean(np.array(ds.tgt_test) == "c0"))
    assert 0.35 < m["accuracy"] < 0.65
    assert b["accuracy"] > 0.97


def test_bag_of_tokens_is_smoothed_naive_bayes():
    """Worked by hand: V = 6 (4 specials + a, b). Class A: one text, a x4 -> P(a|A) = 5/10, P(b|A) = 1/10;
    class B: two texts, a x1 b x2 -> P(a|B) = 2/9, P(b|B) = 3/9; priors (1+1)/5, (2+1)/5. Test a a a a b:
    A 0.4 * 0.5^4 * 0.1 = 0.0025 > B 0.6 * (2/9)^4 * (1/3) = 0.00049. Unsmoothed, A's P(b) = 0 would pick B."""
    src = [["a"] * 4, ["b"], ["a", "b"]]
    ds = TokenDataset(name="nb", task="classify", tokenizer="words", src_train=src, tgt_train=["A", "B", "B"],
                      src_test=[["a"] * 4 + ["b"]], tgt_test=["A"], src_vocab=Vocab.build(src), labels=["A", "B"])
    assert bag_of_tokens(ds)["accuracy"] == 1.0
    assert majority(ds)["accuracy"] == 0.0 and majority(ds)["class"] == "B"


def test_baselines_on_tags(tmp_path):
    lines = ["text\ttags"] + [f"the {w} runs\tDET {t} VERB" for w, t in
                              [("dog", "NOUN"), ("cat", "NOUN"), ("big", "ADJ"), ("man", "NOUN"), ("cow", "NOUN")]]
    lines += ["the dog\tDET NOUN", "the cat\tDET NOUN", "runs\tVERB", "the man\tDET NOUN", "big\tADJ", "a big\tDET ADJ"]
    p = write(tmp_path, "pos.tsv", "\n".join(lines) + "\n" + "the cat runs\tDET NOUN VERB\n")
    ds = load_token_file(p, tokenizer="words", test_frac=0.2, seed=3)
    m, b = majority(ds), bag_of_tokens(ds)
    assert b["n"] == m["n"] == sum(len(t) for t in ds.tgt_test)
    assert b["accuracy"] >= m["accuracy"]


def test_baselines_on_names(names_ds):
    m, b = majority(names_ds), bag_of_tokens(names_ds)
    assert m["accuracy"] < 0.25 and b["accuracy"] > m["accuracy"] + 0.15
