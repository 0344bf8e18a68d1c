"""
Decoding loops that drive a decoder step, one token at a time: greedy, beam search and top-k sampling.

Standard library + numpy only: a device app embeds this file. The step is any callable
`step(token: int, state) -> (logits [V] float, new_state)`; the state is opaque to these loops (a tuple of
arrays, a C buffer), never modified in place, so a beam can keep one per hypothesis. The same loops decode the
float PyTorch model (edgernn.tokens.reference) and every exported decoder artifact, so a difference between
them is the artifact's, never the decoder's.

    ids = greedy(step, state, bos=2, eos=3, max_len=30)
    ids = beam(step, state, bos=2, eos=3, max_len=30, width=4)
    ids = sample(step, state, bos=2, eos=3, max_len=30, top_k=5, seed=0, temperature=1.0)

Each returns the generated ids without <bos> and <eos>.
"""

from __future__ import annotations

import numpy as np

METHODS = ("greedy", "beam", "top-k")


def log_softmax(logits) -> np.ndarray:
    z = np.asarray(logits, dtype=np.float64).reshape(-1)
    z = z - z.max()
    return z - np.log(np.exp(z).sum())


def greedy(step, state, bos: int, eos: int, max_len: int) -> list[int]:
    out, token = [], bos
    for _ in range(int(max_len)):
        logits, state = step(token, state)
        token = int(np.argmax(np.asarray(logits).reshape(-1)))  # first maximum: ties break to the lower id
        if token == eos:
            break
        out.append(token)
    return out


def beam(step, state, bos: int, eos: int, max_len: int, width: int = 4) -> list[int]:
    """Beam search by summed log-probability (no length normalization). A hypothesis ends at <eos>; search
    stops when no open hypothesis can beat the best finished one (log-probs only fall) or at max_len."""
    width = max(1, int(width))
    alive = [(0.0, [], bos, state)]  # (score, ids, last token, state)
    finished = []  # (score, ids)
    for _ in range(int(max_len)):
        candidates = []
        for score, ids, token, st in alive:
            logits, new = step(token, st)
            lp = log_softmax(logits)
            for t in np.argsort(-lp, kind="stable")[:width]:
                candidates.append((score + float(lp[t]), ids, int(t), new))
        candidates.sort(key=lambda c: -c[0])
        alive = []
        for score, ids, t, st in candidates:
            if t == eos:
                finished.append((score, ids))
            elif len(alive) < width:
                alive.append((score, ids + [t], t, st))
        best_done = max((s for s, _ in finished), default=-np.inf)
        if not alive or max(s for s, *_ in alive) <= best_done:
            break
    if finished:
        return max(finished, key=lambda f: f[0])[1]
    return max(alive, key=lambda a: a[0])[1]


def sample(step, state, bos: int, eos: int, max_len: int, top_k: int = 5, seed: int = 0,
           temperature: float = 1.0) -> list[int]:
    """Sample each token from the top_k most likely (softmax at `temperature`), seeded: same seed, same output."""
    rng = np.random.default_rng(seed)
    out, token = [], bos
    for _ in range(int(max_len)):
        logits, state = step(token, state)
        z = np.asarray(logits, dtype=np.float64).reshape(-1) / max(float(temperature), 1e-6)
        top = np.argsort(-z, kind="stable")[: max(1, int(top_k))]
        p = np.exp(z[top] - z[top].max())
        token = int(top[rng.choice(len(top), p=p / p.sum())])
        if token == eos:
            break
        out.append(token)
    return out


def decode(step, state, bos: int, eos: int, max_len: int, method: str = "greedy", width: int = 4,
           top_k: int = 5, seed: int = 0, temperature: float = 1.0) -> list[int]:
    if method == "greedy":
        return greedy(step, state, bos, eos, max_len)
    if method == "beam":
        return beam(step, state, bos, eos, max_len, width)
    if method == "top-k":
        return sample(step, state, bos, eos, max_len, top_k, seed, temperature)
    raise ValueError(f"unknown decoding {method!r}; choose one of: {', '.join(METHODS)}")
