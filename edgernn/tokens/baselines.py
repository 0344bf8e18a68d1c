"""
Baselines a token classifier or tagger must beat: if the RNN does not, its word order / context learned nothing.

    from edgernn.tokens.baselines import bag_of_tokens, majority
    majority(ds)        # {"name": "majority", "accuracy": 0.19, "description": ..., "n": ..., "class": ...}
    bag_of_tokens(ds)   # {"name": "bag_of_tokens", "accuracy": 0.55, "description": ..., "n": ...}

Both fit on ds's training split and score its test split (a TokenDataset, edgernn.data.tokens).
classify: majority predicts the most frequent training label for every text; bag_of_tokens is multinomial naive
Bayes over the text's token counts (unigrams of the source vocabulary, <unk> included; add-one smoothing).
tag: the same per token: the most frequent training tag, and naive Bayes with the token itself as the only
feature (the token's most frequent training tag, smoothed; an unseen token gets the majority tag).
Ties go to the first label in ds.labels order. Pure numpy: O(tokens + classes x vocabulary) memory.
"""

from __future__ import annotations

import numpy as np

from edgernn.errors import DataError


def majority(ds) -> dict:
    """Accuracy on the test split of predicting the most common training label (tag: per token)."""
    ytr, yte = _flat_labels(ds, "train"), _flat_labels(ds, "test")
    counts = np.bincount(ytr, minlength=len(ds.labels))
    best = int(counts.argmax())
    unit = "text" if ds.task == "classify" else "token"
    return {"name": "majority", "accuracy": _accuracy(yte == best), "n": int(len(yte)), "class": ds.labels[best],
            "description": f"the most frequent training {'label' if unit == 'text' else 'tag'} "
                           f"({ds.labels[best]!r}) for every test {unit}"}


def bag_of_tokens(ds) -> dict:
    """Multinomial naive Bayes on token counts (add-one smoothing), accuracy on the test split."""
    n_classes, V = len(ds.labels), len(ds.src_vocab)
    ytr, yte = _flat_labels(ds, "train"), _flat_labels(ds, "test")
    if ds.task == "classify":
        ids_tr, row_tr = _token_ids(ds, "train")
        ids_te, row_te = _token_ids(ds, "test")
        log_prior, log_theta = _fit(ytr, ytr[row_tr], ids_tr, n_classes, V)
        scores = np.tile(log_prior, (len(yte), 1))
        for c in range(n_classes):  # sum of log P(token | class) over each test text's tokens
            scores[:, c] += np.bincount(row_te, weights=log_theta[c, ids_te], minlength=len(yte))
        desc = "multinomial naive Bayes on token counts (unigrams, add-one smoothing)"
    else:  # tag: the token is the feature; its tag is the label
        ids_tr, _ = _token_ids(ds, "train")
        ids_te, _ = _token_ids(ds, "test")
        log_prior, log_theta = _fit(ytr, ytr, ids_tr, n_classes, V)
        scores = (log_prior[:, None] + log_theta[:, ids_te]).T
        desc = "naive Bayes tag per token: the token's most frequent training tag (add-one smoothing)"
    pred = scores.argmax(1) if len(yte) else np.zeros(0, dtype=np.int64)
    return {"name": "bag_of_tokens", "accuracy": _accuracy(pred == yte), "n": int(len(yte)), "description": desc}


def _fit(y: np.ndarray, token_class: np.ndarray, ids: np.ndarray, n_classes: int, V: int):
    """log P(class) from the examples' labels y, and log P(token | class) [C, V] from each training token's id and
    its example's class, both add-one smoothed."""
    counts = np.bincount(token_class * V + ids, minlength=n_classes * V).reshape(n_classes, V)
    log_theta = np.log(counts + 1.0) - np.log(counts.sum(1, keepdims=True) + V)
    log_prior = np.log(np.bincount(y, minlength=n_classes) + 1.0) - np.log(len(y) + n_classes)
    return log_prior, log_theta


def _flat_labels(ds, split: str) -> np.ndarray:
    """classify: [N] class ids; tag: the tag id of every real token, in order (padding dropped)."""
    if ds.task not in ("classify", "tag"):
        raise DataError(f"{ds.name} is a {ds.task} set: label baselines need a classify or tag set")
    if not ds.labels:
        raise DataError(f"{ds.name} has no labels: a baseline has nothing to predict")
    y = ds.label_ids(split)
    return y if ds.task == "classify" else y[y >= 0]


def _token_ids(ds, split: str) -> tuple[np.ndarray, np.ndarray]:
    """Every token's id in the source vocabulary (<unk> for unseen) and the index of the row it belongs to."""
    seqs = [ds.src_vocab.encode(s) for s in ds.sources(split)]
    ids = np.fromiter((i for s in seqs for i in s), dtype=np.int64)
    rows = np.repeat(np.arange(len(seqs), dtype=np.int64), [len(s) for s in seqs])
    return ids, rows


def _accuracy(hits: np.ndarray) -> float:
    return float(hits.mean()) if len(hits) else float("nan")


def ngram(ds, n: int = 2) -> dict:
    """A next-token set's n-gram model (n = 1: unigram, 2: bigram, ...; add-one smoothing over the vocabulary,
    fit on the training split; the context of the first tokens is padded with <bos>): its perplexity and top-1
    accuracy per predicted token of the test split (every token and the final <eos>), what the RNN must beat."""
    if ds.task != "next-token":
        raise DataError(f"{ds.name} is a {ds.task} set: n-gram baselines are for next-token sets")
    from collections import Counter, defaultdict

    V, n = len(ds.src_vocab), max(1, int(n))

    def events(split):
        for s in ds.sources(split):
            ids = [2] * (n - 1) + ds.src_vocab.encode(s) + [3]  # <bos> x (n-1), tokens, <eos>
            for k in range(n - 1, len(ids)):
                yield tuple(ids[k - n + 1:k]), ids[k]

    counts: dict = defaultdict(Counter)
    for ctx, tok in events("train"):
        counts[ctx][tok] += 1
    nll, total, hits = 0.0, 0, 0
    for ctx, tok in events("test"):
        c = counts.get(ctx)
        seen = sum(c.values()) if c else 0
        nll -= np.log(((c[tok] if c else 0) + 1.0) / (seen + V))
        hits += bool(c) and max(c, key=lambda t: (c[t], -t)) == tok
        total += 1
    name = {1: "unigram", 2: "bigram", 3: "trigram"}.get(n, f"{n}-gram")
    return {"name": name, "perplexity": float(np.exp(nll / max(total, 1))), "top1": hits / max(total, 1),
            "n": total, "description": f"{name} counts of the training split, add-one smoothing"}
