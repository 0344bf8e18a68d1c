"""
Running exported token models on a device: an encoder-decoder generates a target sequence from text, a token
classifier labels text. Standard library + numpy + one runtime: device apps embed this file.

    g2p = load_seq2seq("runs/g2p/artifacts", fmt="onnx", precision="float")   # encoder + decoder + manifests
    g2p.generate("edgernn")                          # ['EH', 'JH', ...]: beam search as the manifest says
    g2p.generate("edgernn", method="greedy")         # or "top-k" with top_k=5, seed=0
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


GRAPHS = {"onnx": _OrtGraph, "ort": _OrtGraph}


def open_graph(path: Path, threads: int = 1):
    path = Path(path)
    m = read_token_manifest(path)
    try:
        cls = GRAPHS[m["format"]]
    except KeyError:
        raise ArtifactError(f"{path.name}: token artifacts in {m['format']} cannot run here yet "
                            f"(runs: {', '.join(GRAPHS)})") from None
    return cls(path, m, threads), m


class Seq2Seq:
    """An encoder + decoder pair and the loops that generate from it."""

    def __init__(self, encoder: Path, decoder: Path, threads: int = 1):
        self.encoder, self.enc_manifest = open_graph(encoder, threads)
        self.decoder, self.manifest = open_graph(decoder, threads)
        if self.enc_manifest["source"].get("model_sha256") != self.manifest["source"].get("model_sha256"):
            raise ArtifactError(f"{Path(encoder).name} and {Path(decoder).name} come from different models; "
                                "re-export the run")
        voc = self.manifest["vocab"]
        self.tokenizer = voc["tokenizer"]
        self.src_vocab = Vocab.from_dict(voc["src"])
        self.tgt_vocab = Vocab.from_dict(voc["tgt"])
        self.decoding = self.manifest["decoding"]
        self.lstm = self.manifest["model"]["cell"] == "lstm"

    def source_ids(self, text_or_tokens) -> list[int]:
        toks = tokenize(text_or_tokens, self.tokenizer) if isinstance(text_or_tokens, str) else list(text_or_tokens)
        if self.manifest["vocab"].get("lower"):
            toks = [t.lower() for t in toks]
        return self.src_vocab.encode(toks)

    def encode(self, ids: list[int]):
        """The decoder's first state: (h, (c,) encoder outputs)."""
        if not ids:
            raise ValueError("nothing to encode: the text has no tokens")
        outs = self.encoder(np.asarray([ids], dtype=np.int64))
        return tuple(outs[1:]) + (outs[0],)

    def step(self, token: int, state):
        """One decoder step: token id + state -> logits [V], new state (the encoder outputs ride along)."""
        enc = state[-1]
        outs = self.decoder(np.asarray([token], dtype=np.int64), *state[:-1], enc)
        return outs[0][0], tuple(outs[1:]) + (enc,)

    def generate_ids(self, ids: list[int], method: str | None = None, width: int | None = None, top_k: int = 5,
                     seed: int = 0, temperature: float = 1.0, max_len: int | None = None) -> list[int]:
        d = self.decoding
        limit = max_len if max_len is not None else len(ids) + int(d.get("max_extra", 10))
        return gen.decode(self.step, self.encode(ids), d["bos"], d["eos"], limit, method or d.get("method", "greedy"),
                          width=width or int(d.get("width", 4)), top_k=top_k, seed=seed, temperature=temperature)

    def generate(self, text_or_tokens, **kw) -> list[str]:
        return self.tgt_vocab.decode(self.generate_ids(self.source_ids(text_or_tokens), **kw))


def artifact_name(part: str, precision: str, fmt: str) -> str:
    return f"{part}-{precision}.{FORMAT_EXT[fmt]}"


def load_seq2seq(artifacts: Path | str, fmt: str = "onnx", precision: str = "float", threads: int = 1) -> Seq2Seq:
    d = Path(artifacts)
    enc, dec = d / artifact_name("encoder", precision, fmt), d / artifact_name("decoder", precision, fmt)
    for p in (enc, dec):
        if not p.is_file():
            raise ArtifactError(f"{p} is missing; export the run (`edgernn export RUN --format {fmt}`)")
    return Seq2Seq(enc, dec, threads)
