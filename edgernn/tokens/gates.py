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
    float_soak_tol: float = 1e-3  # or soak_noise_factor x the model's own float32 noise over the soak, if larger
    # two float32 implementations differ by more than float32 does from float64 (each strays on its own, in its own
    # summation order): on the words model ONNX 1.4x, C 0.7x, TFLite 4.5x that noise; a broken step is off by O(1)
    soak_noise_factor: float = 10.0
    max_per_increase: float = 0.005  # int8: +0.5 points of phoneme error rate over float (the goal)
    max_wer_increase: float = 0.02
    min_soak_agreement: float = 0.95
    max_perplexity_increase: float = 0.02  # next-token int8: perplexity <= float x 1.02
    min_top1_agreement: float = 0.97  # next-token int8: the same most likely next token as float on 97% of steps
    soak_tokens: int = 20_000
    sources: int = 0  # held-out sources decoded per artifact; 0 = all


def reference_soak(step, state, steps: int, sample_seed: int | None = None,
                   top_k: int = 5) -> tuple[list[int], np.ndarray]:
    """The float model's long generation from (step, state) - edgernn.tokens.reference.torch_decoder or
    torch_lm_step - with <eos> masked out so the state runs on: its tokens and its logits per step. Greedy, or with
    sample_seed a seeded draw from the top_k most likely tokens (softmax at temperature 1): a greedy next-token
    model falls into a loop ('s's's...) whose agreement proves little, sampled text keeps the state moving."""
    rng = np.random.default_rng(sample_seed) if sample_seed is not None else None
    tokens, logits, token = [], [], BOS
    for _ in range(steps):
        tokens.append(token)
        out, state = step(token, state)
        logits.append(out)
        masked = np.array(out, dtype=np.float64, copy=True)
        masked[[0, 1, BOS, EOS]] = -np.inf
        if rng is None:
            token = int(np.argmax(masked))
        else:
            top = np.argsort(-masked, kind="stable")[:top_k]
            p = np.exp(masked[top] - masked[top].max())
            token = int(top[rng.choice(len(top), p=p / p.sum())])
    return tokens, np.stack(logits)


def artifact_soak(step, state, tokens: list[int]) -> np.ndarray:
    """An artifact's logits per step, fed the float model's soak tokens from its first state."""
    out = []
    for t in tokens:
        logits, state = step(t, state)
        out.append(logits)
    return np.stack(out)


def float32_noise(model, make_step, tokens: list[int], ref: np.ndarray) -> float:
    """How far float32 rounding alone moves the model over the soak: max |logit diff| between the float model run in
    float64 and in float32 (ref) on the same tokens. A long generation through a recurrent state can amplify
    rounding (measured on the words model: 1e-2 at step 8,000 of 20,000, back to 1e-4 later); a float artifact is
    judged against that, not against a fixed 1e-3 its own model cannot keep. make_step(model) -> (step, state)."""
    import copy

    m64 = copy.deepcopy(model).double()
    step, state = make_step(m64)
    return float(np.abs(artifact_soak(step, state, tokens) - ref).max())


def float_soak_bound(gates: TokenGates, noise: float) -> float:
    return max(gates.float_soak_tol, gates.soak_noise_factor * noise)


def soak_summary(got: np.ndarray, ref: np.ndarray) -> dict:
    """An artifact's soak against the float model's: top-1 agreement and max |logit diff| (overall, last 1,000)."""
    return {"tokens": len(ref), "agreement": float(np.mean(got.argmax(1) == ref.argmax(1))),
            "max_diff": float(np.abs(got - ref).max()),
            "max_diff_last_1000": float(np.abs(got[-1000:] - ref[-1000:]).max())}


def soak_reasons(precision: str, soak: dict, gates: TokenGates, noise: float) -> list[str]:
    """Why a soak fails its gate: float within float_soak_bound and >= 99.9% top-1 agreement; int8 >=
    min_soak_agreement."""
    reasons = []
    if precision == "float":
        tol = float_soak_bound(gates, noise)
        if soak["max_diff"] > tol:
            reasons.append(f"soak max|diff| {soak['max_diff']:.2e} > {tol:.1e} (the larger of "
                           f"{gates.float_soak_tol:.0e} and {gates.soak_noise_factor:g} x the model's own float32 "
                           f"noise {noise:.1e})")
        if soak["agreement"] < 0.999:
            reasons.append(f"soak top-1 agreement {soak['agreement']:.4f} < 0.999")
    elif soak["agreement"] < gates.min_soak_agreement:
        reasons.append(f"soak top-1 agreement {soak['agreement']:.4f} < {gates.min_soak_agreement}")
    return reasons
