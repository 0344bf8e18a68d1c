"""
How sequence outputs are scored: token (phoneme) error rate and word error rate against one or more accepted
references, for generated outputs of the float model and of every artifact.

    per, wer = error_rates(hyps, refs)   # hyps: [N] token lists; refs: [N] lists of accepted token lists

A hypothesis is scored against the reference it is closest to (a dictionary may list several
pronunciations); PER = edit operations / reference tokens summed over the set, WER = share of outputs that
match no reference exactly.
"""

from __future__ import annotations


def edit_distance(a, b) -> int:
    """Levenshtein distance between two token sequences (insertions, deletions, substitutions cost 1)."""
    a, b = list(a), list(b)
    prev = list(range(len(b) + 1))
    for i, x in enumerate(a, 1):
        cur = [i]
        for j, y in enumerate(b, 1):
            cur.append(min(prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + (x != y)))
        prev = cur
    return prev[-1]


def error_rates(hyps: list, refs: list) -> tuple[float, float]:
    """(token error rate, sequence error rate) of hyps against refs (each a list of accepted sequences)."""
    if len(hyps) != len(refs) or not hyps:
        raise ValueError(f"{len(hyps)} outputs for {len(refs)} references")
    errors = tokens = wrong = 0
    for hyp, accepted in zip(hyps, refs):
        dist, ref = min((edit_distance(hyp, r), r) for r in accepted)
        errors += dist
        tokens += len(ref)
        wrong += dist > 0
    return errors / max(tokens, 1), wrong / len(hyps)


def lm_scores(nll_sum: float, correct: int, n_tokens: int) -> dict:
    """A next-token model's scores over n_tokens predictions: perplexity (exp of the mean negative
    log-likelihood, natural log) and top-1 accuracy (the most likely token was the next one)."""
    import math

    n = max(int(n_tokens), 1)
    return {"perplexity": math.exp(nll_sum / n), "top1": correct / n, "tokens": int(n_tokens),
            "bits_per_token": nll_sum / n / math.log(2)}
