"""
Running an exported next-token (language) model on a device: word completion and generation from a prompt, one
token at a time through the step artifact. Standard library + numpy + one runtime: device apps embed this file.

    lm = load_lm("runs/words/gru/artifacts", fmt="onnx", precision="float")   # lm-float.onnx + its manifest
    lm.complete("edg")                        # 'edgers': greedy until <eos> (or beam / top-k, as generate says)
    lm.generate("edg", method="top-k", top_k=5, seed=1)   # the continuation's tokens
    lm.next_tokens("th", k=3)                 # [('e', 0.31), ('o', 0.18), ('i', 0.14)]: what a keyboard suggests
    lm.score("edge")                          # (11.89, 5): summed -log p of e d g e <eos>, and the count
    token, state = lm.prime(lm.ids("edg"))    # the loop yourself: state after <bos> e d, next input g
    logits, state = lm.step(token, state)

The step artifact takes one token id and the state and returns the logits of the next token and the new state;
the first state is zeros (shapes from the manifest). A prompt is fed through the step (teacher forcing), then the
loops of edgernn.runtimes.generate continue from its last token: the same loops decode the float model.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from edgernn.errors import ArtifactError
from edgernn.runtimes import generate as gen
from edgernn.runtimes.manifest import FORMAT_EXT
from edgernn.runtimes.token_manifest import read_token_manifest, zero_state
from edgernn.runtimes.vocab import BOS, EOS, Vocab, tokenize

LM_PART = "lm"  # artifact file names: lm-float.onnx, lm-int8.tflite, lm-float.h
GENERATE_EXTRA = 10  # generation stops after the longest training text + this many tokens (if <eos> never comes)


class OrtLMEngine:
    """An ONNX / ORT step graph: token [1] int64 + state -> logits [1, V] + new state."""

    runtime_name = "onnxruntime"

    def __init__(self, path: Path, manifest: dict, threads: int = 1):
        from edgernn.runtimes.token_session import _OrtGraph

        self.graph = _OrtGraph(path, manifest, threads)
        self.runtime_version = self.graph.runtime_version
        self.first = zero_state(manifest)

    def zero_state(self):
        return self.first

    def step(self, token: int, state):
        outs = self.graph(np.asarray([token], dtype=np.int64), *state)
        return outs[0][0], tuple(outs[1:])

    def state_arrays(self, state) -> list[np.ndarray]:
        return [np.asarray(s).reshape(-1) for s in state]


class NextToken:
    """An exported next-token model and the loops that complete and generate with it."""

    def __init__(self, engine, manifest: dict):
        self.engine, self.manifest = engine, manifest
        voc = manifest["vocab"]
        self.tokenizer, self.lower = voc["tokenizer"], bool(voc.get("lower"))
        self.vocab = Vocab.from_dict(voc["src"])
        self.decoding = manifest["decoding"]
        self.runtime_version = getattr(engine, "runtime_version", "")

    def ids(self, text_or_tokens) -> list[int]:
        if isinstance(text_or_tokens, str):
            text = text_or_tokens.lower() if self.lower else text_or_tokens
            return self.vocab.encode(tokenize(text, self.tokenizer)) if text.strip() else []
        return self.vocab.encode(list(text_or_tokens))

    def step(self, token: int, state):
        """One step: token id + state -> logits of the next token [V], new state."""
        return self.engine.step(int(token), state)

    def prime(self, ids: list[int]) -> tuple[int, object]:
        """(the next input token, the state before it): <bos> and the prompt but its last token go through the
        step; an empty prompt gives (<bos>, the zero state)."""
        state, seq = self.engine.zero_state(), [BOS] + list(ids)
        for t in seq[:-1]:
            _, state = self.step(t, state)
        return seq[-1], state

    def generate_ids(self, ids: list[int], method: str | None = None, width: int | None = None, top_k: int = 5,
                     seed: int = 0, temperature: float = 1.0, max_len: int | None = None) -> list[int]:
        """The continuation of the prompt ids (without them, without <eos>)."""
        d = self.decoding
        token, state = self.prime(ids)
        limit = max_len if max_len is not None else int(d.get("max_len", 32))
        return gen.decode(self.step, state, token, d["eos"], limit, method or d.get("method", "greedy"),
                          width=width or int(d.get("width", 4)), top_k=top_k, seed=seed, temperature=temperature)

    def generate(self, prompt="", **kw) -> list[str]:
        return self.vocab.decode(self.generate_ids(self.ids(prompt), **kw))

    def complete(self, prompt="", **kw) -> str:
        """The prompt and its continuation as text (characters joined, words joined by spaces)."""
        toks = ([] if not prompt else tokenize(prompt.lower() if self.lower else prompt, self.tokenizer))
        out = toks + self.generate(prompt, **kw)
        return "".join(out) if self.tokenizer == "chars" else " ".join(out)

    def next_tokens(self, prompt="", k: int = 5) -> list[tuple[str, float]]:
        """The k most likely next tokens after the prompt and their probabilities ('<eos>': the text ends)."""
        token, state = self.prime(self.ids(prompt))
        lp = gen.log_softmax(self.step(token, state)[0])
        top = np.argsort(-lp, kind="stable")[: max(1, int(k))]
        return [(self.vocab.tokens[i], float(np.exp(lp[i]))) for i in top]

    def score(self, text_or_tokens) -> tuple[float, int]:
        """(summed negative log-likelihood of the text's tokens and <eos>, number of predicted tokens)."""
        seq = [BOS] + self.ids(text_or_tokens) + [EOS]
        state, nll = self.engine.zero_state(), 0.0
        for cur, nxt in zip(seq[:-1], seq[1:]):
            logits, state = self.step(cur, state)
            nll -= float(gen.log_softmax(logits)[nxt])
        return nll, len(seq) - 1


def lm_artifact(artifacts: Path | str, fmt: str, precision: str) -> Path:
    return Path(artifacts) / f"{LM_PART}-{precision}.{FORMAT_EXT[fmt]}"


def load_lm(artifacts: Path | str, fmt: str = "onnx", precision: str = "float", threads: int = 1) -> NextToken:
    """The next-token model exported to `fmt` at `precision` in the artifacts directory."""
    if fmt not in FORMAT_EXT:
        raise ArtifactError(f"unknown format {fmt!r}")
    path = lm_artifact(artifacts, fmt, precision)
    if not path.is_file():
        raise ArtifactError(f"{path} is missing; export the run (`edgernn export RUN --format {fmt}`)")
    m = read_token_manifest(path)
    if fmt in ("onnx", "ort"):
        return NextToken(OrtLMEngine(path, m, threads), m)
    if fmt == "c":
        from edgernn.runtimes.token_c import CLMEngine

        return NextToken(CLMEngine(path, m), m)
    if fmt == "tflite":
        from edgernn.runtimes.token_litert import LiteRTLMEngine

        return NextToken(LiteRTLMEngine(path, m, threads), m)
    raise ArtifactError(f"next-token artifacts in {fmt} cannot run here (runs: onnx, ort, tflite, c)")
