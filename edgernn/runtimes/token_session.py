"""
Running exported token models on a device: an encoder-decoder generates a target sequence from text, a token
classifier labels text. Standard library + numpy + one runtime: device apps embed this file.

    g2p = load_seq2seq("runs/g2p/artifacts", fmt="onnx", precision="float")   # encoder + decoder + manifests
    g2p.generate("edgernn")                          # ['EH', 'JH', ...]: beam search as the manifest says
    g2p.generate("edgernn", method="greedy")         # or "top-k" with top_k=5, seed=0
    load_classifier("runs/names/artifacts").classify("ingrid")   # ('nordic', probabilities)
    enc_state = g2p.encode(g2p.source_ids("edge"))   # the loop yourself: one decoder step per token
    logits, state = g2p.step(token_id, enc_state)

The decoder artifact takes one token id, the decoder state and the encoder outputs, and returns the logits
and the new state; the loops of edgernn.runtimes.generate drive it, the same loops that decode the float model
parity compares against.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from edgernn.errors import ArtifactError
from edgernn.runtimes import generate as gen
from edgernn.runtimes.manifest import FORMAT_EXT
from edgernn.runtimes.token_manifest import read_token_manifest
from edgernn.runtimes.vocab import Vocab, tokenize


class _OrtGraph:
    """One ONNX / ORT graph run with feeds by name (what the token parts need: several int and float inputs)."""

    def __init__(self, path: Path, manifest: dict, threads: int = 1):
        from edgernn.runtimes.ort_backend import _import_ort

        ort = _import_ort()
        so = ort.SessionOptions()
        so.intra_op_num_threads = int(threads)
        so.inter_op_num_threads = 1
        so.log_severity_level = 3
        try:
            self.sess = ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"])
        except Exception as exc:
            raise ArtifactError(f"onnxruntime {ort.__version__} cannot load {path.name} "
                                f"({str(exc).splitlines()[0][:200]}); re-export the run") from exc
        self.runtime_version = ort.__version__
        self.in_names = [t["name"] for t in manifest["inputs"]]
        self.out_names = [t["name"] for t in manifest["outputs"]]
        have = {t.name for t in self.sess.get_inputs()}
        if set(self.in_names) != have:
            raise ArtifactError(f"{path.name} takes {sorted(have)}, its manifest says {self.in_names}; re-export")

    def __call__(self, *arrays) -> list:
        return self.sess.run(self.out_names, dict(zip(self.in_names, arrays)))


class _OrtEngine:
    """An ONNX / ORT encoder + decoder step pair."""

    runtime_name = "onnxruntime"

    def __init__(self, encoder: Path, decoder: Path, enc_manifest: dict, manifest: dict, threads: int = 1):
        self.encoder = _OrtGraph(encoder, enc_manifest, threads)
        self.decoder = _OrtGraph(decoder, manifest, threads)
        self.runtime_version = self.decoder.runtime_version

    def encode(self, ids: list[int]):
        outs = self.encoder(np.asarray([ids], dtype=np.int64))
        return tuple(outs[1:]) + (outs[0],)

    def step(self, token: int, state):
        enc = state[-1]
        outs = self.decoder(np.asarray([token], dtype=np.int64), *state[:-1], enc)
        return outs[0][0], tuple(outs[1:]) + (enc,)

    def state_arrays(self, state) -> list[np.ndarray]:
        return [np.asarray(s).reshape(-1) for s in state[:-1]]


class Seq2Seq:
    """An exported encoder-decoder (an encoder + decoder step pair, or one C library) and the loops that
    generate from it."""

    def __init__(self, engine, manifest: dict):
        self.engine = engine
        self.manifest = manifest
        voc = manifest["vocab"]
        self.tokenizer = voc["tokenizer"]
        self.lower = bool(voc.get("lower"))
        self.src_vocab = Vocab.from_dict(voc["src"])
        self.tgt_vocab = Vocab.from_dict(voc["tgt"])
        self.decoding = manifest["decoding"]
        self.runtime_version = getattr(engine, "runtime_version", "")

    def source_ids(self, text_or_tokens) -> list[int]:
        if isinstance(text_or_tokens, str):
            text = text_or_tokens.lower() if self.lower else text_or_tokens
            return self.src_vocab.encode(tokenize(text, self.tokenizer))
        return self.src_vocab.encode(list(text_or_tokens))

    def encode(self, ids: list[int]):
        """The decoder's first state (opaque: pass it to step)."""
        if not ids:
            raise ValueError("nothing to encode: the text has no tokens")
        return self.engine.encode(list(ids))

    def step(self, token: int, state):
        """One decoder step: token id + state -> logits [V], new state."""
        return self.engine.step(token, state)

    def generate_ids(self, ids: list[int], method: str | None = None, width: int | None = None, top_k: int = 5,
                     seed: int = 0, temperature: float = 1.0, max_len: int | None = None) -> list[int]:
        d = self.decoding
        limit = max_len if max_len is not None else len(ids) + int(d.get("max_extra", 10))
        return gen.decode(self.step, self.encode(ids), d["bos"], d["eos"], limit, method or d.get("method", "greedy"),
                          width=width or int(d.get("width", 4)), top_k=top_k, seed=seed, temperature=temperature)

    def generate(self, text_or_tokens, **kw) -> list[str]:
        return self.tgt_vocab.decode(self.generate_ids(self.source_ids(text_or_tokens), **kw))


class _OrtClassifier(_OrtGraph):
    def logits(self, ids: list[int]) -> np.ndarray:
        return self(np.asarray([ids], dtype=np.int64))[0][0]


class TokenClassifier:
    """An exported token classifier (text -> label) or tagger (a label per token): ONNX / ORT, TFLite or C."""

    def __init__(self, path: Path, threads: int = 1):
        self.manifest = read_token_manifest(path)
        if self.manifest["format"] == "c":
            from edgernn.runtimes.token_c import CClassifierEngine

            self.engine = CClassifierEngine(Path(path), self.manifest)
        elif self.manifest["format"] == "tflite":
            from edgernn.runtimes.token_litert import LiteRTClassifierEngine

            self.engine = LiteRTClassifierEngine(Path(path), self.manifest, threads)
        else:
            self.engine = _OrtClassifier(Path(path), self.manifest, threads)
        voc = self.manifest["vocab"]
        self.tokenizer, self.lower = voc["tokenizer"], bool(voc.get("lower"))
        self.src_vocab = Vocab.from_dict(voc["src"])
        self.labels = list(voc["labels"])

    def source_ids(self, text_or_tokens) -> list[int]:
        if isinstance(text_or_tokens, str):
            text = text_or_tokens.lower() if self.lower else text_or_tokens
            return self.src_vocab.encode(tokenize(text, self.tokenizer))
        return self.src_vocab.encode(list(text_or_tokens))

    def logits(self, ids: list[int]) -> np.ndarray:
        """[C] logits of a classifier, [S, C] of a tagger."""
        if not ids:
            raise ValueError("nothing to classify: the text has no tokens")
        return self.engine.logits(list(ids))

    def tag(self, text_or_tokens) -> list[tuple[str, str]]:
        """A tagger's (token, label) per token of the text."""
        toks = (tokenize(text_or_tokens.lower() if self.lower else text_or_tokens, self.tokenizer)
                if isinstance(text_or_tokens, str) else list(text_or_tokens))
        z = self.logits(self.src_vocab.encode(toks))
        return [(t, self.labels[int(i)]) for t, i in zip(toks, np.argmax(z.reshape(len(toks), -1), axis=-1))]

    def classify(self, text_or_tokens) -> tuple[str, np.ndarray]:
        """(label, probabilities in label order)."""
        z = self.logits(self.source_ids(text_or_tokens)).astype(np.float64)
        p = np.exp(z - z.max())
        p /= p.sum()
        return self.labels[int(np.argmax(p))], p


def load_classifier(artifacts: Path | str, fmt: str = "onnx", precision: str = "float", threads: int = 1,
                    part: str | None = None):
    """A classifier, or a tagger (part "tagger"; found by itself when the directory has no classifier)."""
    if part is None:
        part = "tagger" if (Path(artifacts) / artifact_name("tagger", precision, fmt)).is_file() else "classifier"
    path = Path(artifacts) / artifact_name(part, precision, fmt)
    if not path.is_file():
        raise ArtifactError(f"{path} is missing; export the run (`edgernn export RUN --format {fmt}`)")
    return TokenClassifier(path, threads)


def artifact_name(part: str, precision: str, fmt: str) -> str:
    return f"{part}-{precision}.{FORMAT_EXT[fmt]}"


def load_seq2seq(artifacts: Path | str, fmt: str = "onnx", precision: str = "float", threads: int = 1) -> Seq2Seq:
    """The encoder-decoder exported to `fmt` at `precision` in the artifacts directory."""
    d = Path(artifacts)
    if fmt == "c":
        path = d / artifact_name("seq2seq", precision, fmt)
        if not path.is_file():
            raise ArtifactError(f"{path} is missing; export the run (`edgernn export RUN --format c`)")
        from edgernn.runtimes.token_c import CSeq2SeqEngine

        m = read_token_manifest(path)
        return Seq2Seq(CSeq2SeqEngine(path, m), m)
    if fmt not in ("onnx", "ort", "tflite"):
        raise ArtifactError(f"token artifacts in {fmt} cannot run here yet (runs: onnx, ort, tflite, c)")
    enc, dec = d / artifact_name("encoder", precision, fmt), d / artifact_name("decoder", precision, fmt)
    for p in (enc, dec):
        if not p.is_file():
            raise ArtifactError(f"{p} is missing; export the run (`edgernn export RUN --format {fmt}`)")
    me, md = read_token_manifest(enc), read_token_manifest(dec)
    if me["source"].get("model_sha256") != md["source"].get("model_sha256"):
        raise ArtifactError(f"{enc.name} and {dec.name} come from different models; re-export the run")
    if fmt == "tflite":
        from edgernn.runtimes.token_litert import LiteRTSeq2SeqEngine

        return Seq2Seq(LiteRTSeq2SeqEngine(enc, dec, me, md, threads), md)
    return Seq2Seq(_OrtEngine(enc, dec, me, md, threads), md)
