"""
A token vocabulary: tokens <-> ids, the four special tokens, and how text is split into tokens.

Standard library only: a device app embeds this file to turn text into the ids a token artifact takes and
the ids it generates back into text. Every token artifact's manifest carries its vocabularies
(`Vocab.to_dict()`), so the artifact + manifest are all a device needs.

    v = Vocab.build([list("cat"), list("act")], max_size=100)   # ids by frequency, specials first
    ids = v.encode(tokenize("cat", "chars"))                     # [.., .., ..]; unknown tokens -> <unk>
    v.decode(ids + [v.eos, v.pad])                               # ['c', 'a', 't']: stops at <eos>
    Vocab.from_dict(v.to_dict()) == v
"""

from __future__ import annotations

from collections import Counter

SPECIALS = ("<pad>", "<unk>", "<bos>", "<eos>")  # ids 0..3 in every vocabulary
PAD, UNK, BOS, EOS = range(4)
TOKENIZERS = ("chars", "words")  # chars: one token per character; words: whitespace-separated tokens


def tokenize(text: str, tokenizer: str) -> list[str]:
    """Split text the way the vocabulary was built: characters (whitespace runs kept as one space) or words."""
    if tokenizer == "chars":
        return list(" ".join(text.split()))
    if tokenizer == "words":
        return text.split()
    raise ValueError(f"unknown tokenizer {tokenizer!r}; choose one of: {', '.join(TOKENIZERS)}")


class Vocab:
    """Tokens by id; ids 0-3 are <pad> <unk> <bos> <eos>. Built from training data only."""

    pad, unk, bos, eos = PAD, UNK, BOS, EOS

    def __init__(self, tokens: list[str]):
        tokens = list(tokens)
        if tuple(tokens[:4]) != SPECIALS:
            raise ValueError(f"a vocabulary starts with {', '.join(SPECIALS)}")
        if len(set(tokens)) != len(tokens):
            raise ValueError("a vocabulary lists each token once")
        self.tokens = tokens
        self.index = {t: i for i, t in enumerate(tokens)}

    @classmethod
    def build(cls, sequences, max_size: int | None = None, min_count: int = 1) -> Vocab:
        """Most frequent tokens first (ties by token, so the same data gives the same ids); at most max_size
        ids including the four specials; tokens seen fewer than min_count times become <unk>."""
        counts = Counter(t for seq in sequences for t in seq)
        ranked = sorted((t for t, n in counts.items() if n >= min_count and t not in SPECIALS),
                        key=lambda t: (-counts[t], t))
        if max_size is not None:
            ranked = ranked[: max(0, int(max_size) - len(SPECIALS))]
        return cls(list(SPECIALS) + ranked)

    def __len__(self) -> int:
        return len(self.tokens)

    def __eq__(self, other) -> bool:
        return isinstance(other, Vocab) and other.tokens == self.tokens

    def encode(self, tokens, bos: bool = False, eos: bool = False) -> list[int]:
        ids = [self.index.get(t, UNK) for t in tokens]
        return ([BOS] if bos else []) + ids + ([EOS] if eos else [])

    def decode(self, ids) -> list[str]:
        """Tokens up to the first <eos>; <pad> and <bos> are dropped, <unk> kept as '<unk>'."""
        out = []
        for i in ids:
            i = int(i)
            if i == EOS:
                break
            if i in (PAD, BOS):
                continue
            out.append(self.tokens[i] if 0 <= i < len(self.tokens) else SPECIALS[UNK])
        return out

    def to_dict(self) -> dict:
        return {"tokens": list(self.tokens), "specials": dict(zip(SPECIALS, range(4)))}

    @classmethod
    def from_dict(cls, d: dict) -> Vocab:
        return cls(d["tokens"])
