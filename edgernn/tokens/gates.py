"""
The gates token artifacts are judged by, and the soak both token judges run: one long generation through the
step, the float model's logits beside the artifact's (edgernn.tokens.parity for encoder-decoders,
edgernn.tokens.lm_parity for next-token models; the thresholds are documented there).

    tokens, ref = reference_soak(step, state, 20_000)   # the float model's greedy tokens (<eos> masked) + logits
    got = artifact_soak(artifact_step, artifact_state, tokens)
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from edgernn.runtimes.vocab import BOS, EOS


@dataclass
class TokenGates:
    float_min_agreement: float = 0.995
    float_soak_tol: float = 1e-3
    max_per_increase: float = 0.005  # int8: +0.5 points of phoneme error rate over float (the goal)
    max_wer_increase: float = 0.02
    min_soak_agreement: float = 0.95
    max_perplexity_increase: float = 0.02  # next-token int8: perplexity <= float x 1.02
    min_top1_agreement: float = 0.97  # next-token int8: the same most likely next token as float on 97% of steps
    soak_tokens: int = 20_000
    sources: int = 0  # held-out sources decoded per artifact; 0 = all


def reference_soak(step, state, steps: int) -> tuple[list[int], np.ndarray]:
    """The float model's long generation from (step, state) - edgernn.tokens.reference.torch_decoder or
    torch_lm_step: its greedy tokens with <eos> masked out, and its logits per step."""
    tokens, logits, token = [], [], BOS
    for _ in range(steps):
        tokens.append(token)
        out, state = step(token, state)
        logits.append(out)
        masked = np.array(out, copy=True)
        masked[[0, 1, BOS, EOS]] = -np.inf
        token = int(np.argmax(masked))
    return tokens, np.stack(logits)


def artifact_soak(step, state, tokens: list[int]) -> np.ndarray:
    """An artifact's logits per step, fed the float model's soak tokens from its first state."""
    out = []
    for t in tokens:
        logits, state = step(t, state)
        out.append(logits)
    return np.stack(out)
