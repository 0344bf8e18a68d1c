"""
The LiteRT (TFLite) engine of a token encoder-decoder: `encoder-PREC.tflite` (the whole source, padded to a fixed
max_src, in; encoder outputs + the decoder's first state out) and `decoder-PREC.tflite` (one decoder step).
Standard library + numpy + one LiteRT interpreter (ai_edge_litert, else tflite_runtime, else tensorflow.lite:
edgernn.runtimes.litert_backend.interpreter_class), so a device app can embed it.

    eng = LiteRTSeq2SeqEngine(enc_path, dec_path, enc_manifest, dec_manifest)   # manifest["tflite"]["max_src"]
    state = eng.encode(ids)                  # (h, enc, mask), or (h, c, enc, mask) for an LSTM
    logits, state = eng.step(token, state)   # logits [V] float32; the old state is left as it was
    eng.state_arrays(state)                  # [h] or [h, c] as 1-D float arrays

The graphs are built by edgernn.export.tflite.token_worker with these signature keys: encoder src [1, S] int32
(right-padded with 0), mask [1, S] float32 (1 = a real token) -> enc [1, S, Hd], h [1, Hd] (c); decoder token
[1] int32, h (c), enc, mask -> logits [1, V], h_out (c_out). The converter names the tensors
serving_default_src:0 / PartitionedCall:N (outputs in no useful order), so tensors are found by signature key,
else by that input naming; a graph that drops an input it does not use (the decoder without attention reads
no enc or mask) is simply not fed it. Integer I/O tensors are (de)quantized with the interpreter's parameters.

A next-token model is one graph, `lm-PREC.tflite` (edgernn.export.tflite.token_lm): token [1] int32, h (c) ->
logits [1, V], h_out (c_out), h and c [layers, Hd] (one row per stacked layer), from a zero first state shaped as
the manifest's state inputs:

    eng = LiteRTLMEngine(path, manifest)     # the edgernn.runtimes.token_lm engine API
    logits, state = eng.step(token, eng.zero_state())
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from edgernn.errors import ArtifactError

ENCODER_IN = ("src", "mask")
ENCODER_OUT = ("enc", "h", "c")
DECODER_IN = ("token", "h", "c", "enc", "mask")
DECODER_OUT = ("logits", "h_out", "c_out")
LM_IN = ("token", "h", "c")


class _Graph:
    """One .tflite graph with inputs and outputs addressed by signature key."""

    def __init__(self, path: Path | None, ins: tuple, outs: tuple, required: tuple, threads: int = 1,
                 content: bytes | None = None):
        from edgernn.runtimes.litert_backend import _version, _without_info_lines, interpreter_class

        Interpreter, pkg = interpreter_class()
        self.runtime_package, self.runtime_version = pkg, _version(pkg)
        name = Path(path).name if path is not None else "the graph"
        try:
            with _without_info_lines():
                kw = {"model_content": content} if content is not None else {"model_path": str(path)}
                self.it = Interpreter(num_threads=int(threads), **kw)
                self.it.allocate_tensors()
        except Exception as exc:
            msg = str(exc).splitlines()[0][:200] if str(exc) else type(exc).__name__
            raise ArtifactError(f"{pkg} {self.runtime_version} cannot load {name} ({msg}); re-export the run") from exc
        sig_in, sig_out = self._signature()
        details = {int(d["index"]): d for d in self.it.get_input_details() + self.it.get_output_details()}
        by_name = {d["name"]: int(d["index"]) for d in self.it.get_input_details()}
        self.inputs, self.outputs = {}, {}
        for key in ins:
            idx = sig_in.get(key, by_name.get(f"serving_default_{key}:0"))
            if idx is not None:
                self.inputs[key] = self._entry(details[idx])
        for key in outs:
            if key in sig_out:
                self.outputs[key] = self._entry(details[sig_out[key]])
        missing = [k for k in required if k not in self.inputs and k not in self.outputs]
        if missing or len(self.inputs) != len(self.it.get_input_details()):
            have = sorted(d["name"] for d in self.it.get_input_details() + self.it.get_output_details())
            raise ArtifactError(f"{name} does not have the tensors {', '.join(missing) or 'expected'} "
                                f"(it has {', '.join(have)}; signature {sorted(sig_in)} -> {sorted(sig_out)}); "
                                "re-export the run")

    def _signature(self) -> tuple[dict, dict]:
        try:
            sigs = self.it.get_signature_list()
            if len(sigs) != 1:
                return {}, {}
            runner = self.it.get_signature_runner(next(iter(sigs)))
            return ({k: int(v["index"]) for k, v in runner.get_input_details().items()},
                    {k: int(v["index"]) for k, v in runner.get_output_details().items()})
        except Exception:  # an interpreter without signature support: inputs by tensor name only
            return {}, {}

    @staticmethod
    def _entry(d: dict) -> tuple:
        scale, zp = d.get("quantization", (0.0, 0))
        dtype = np.dtype(d["dtype"])
        quantized = bool(scale) and dtype in (np.int8, np.int16, np.uint8)
        return int(d["index"]), dtype, (float(scale), int(zp)) if quantized else None, tuple(int(v) for v in d["shape"])

    def __call__(self, feeds: dict) -> dict:
        it = self.it
        for key, (idx, dtype, q, _shape) in self.inputs.items():
            x = feeds[key]
            if q is not None:
                info = np.iinfo(dtype)
                x = np.clip(np.round(np.asarray(x, np.float32) / q[0]) + q[1], info.min, info.max)
            it.set_tensor(idx, np.ascontiguousarray(x, dtype=dtype))
        it.invoke()
        out = {}
        for key, (idx, _dtype, q, _shape) in self.outputs.items():
            y = it.get_tensor(idx)  # a copy: the next invoke does not change it
            out[key] = ((y.astype(np.float32) - q[1]) * q[0]).astype(np.float32) if q is not None else y
        return out


class LiteRTSeq2SeqEngine:
    """An encoder + decoder step pair of .tflite graphs (the token_session engine API)."""

    runtime_name = "litert"

    def __init__(self, encoder_path, decoder_path, enc_manifest: dict, manifest: dict, threads: int = 1,
                 contents: tuple[bytes, bytes] | None = None):
        info = manifest.get("tflite") or enc_manifest.get("tflite") or {}
        if "max_src" not in info:
            raise ArtifactError("the TFLite token manifest lacks tflite.max_src (the encoder's fixed source "
                                "length); re-export the run")
        self.max_src = int(info["max_src"])
        enc_c, dec_c = contents or (None, None)
        self.encoder = _Graph(encoder_path, ENCODER_IN, ENCODER_OUT, ("src", "mask", "enc", "h"), threads, enc_c)
        self.decoder = _Graph(decoder_path, DECODER_IN, DECODER_OUT, ("token", "h", "logits", "h_out"), threads,
                              dec_c)
        self.lstm = "c" in self.decoder.inputs
        if self.lstm != ("c" in self.encoder.outputs) or self.lstm != ("c_out" in self.decoder.outputs):
            raise ArtifactError("the TFLite encoder and decoder disagree on the cell state (c): they come from "
                                "different exports; re-export the run")
        shape = self.encoder.inputs["src"][3]
        if shape != (1, self.max_src):
            raise ArtifactError(f"the TFLite encoder takes sources of shape {list(shape)}, its manifest says "
                                f"max_src {self.max_src}; re-export the run")
        self.runtime_package, self.runtime_version = self.decoder.runtime_package, self.decoder.runtime_version

    def encode(self, ids: list[int]):
        n = len(ids)
        if not 1 <= n <= self.max_src:
            raise ValueError(f"the TFLite encoder holds sources of 1..{self.max_src} tokens, got {n} "
                             "(re-export with a larger max_src)")
        src = np.zeros((1, self.max_src), np.int32)
        src[0, :n] = ids
        mask = np.zeros((1, self.max_src), np.float32)
        mask[0, :n] = 1.0
        out = self.encoder({"src": src, "mask": mask})
        states = (out["h"], out["c"]) if self.lstm else (out["h"],)
        return (*states, out["enc"], mask)

    def step(self, token: int, state):
        *states, enc, mask = state
        feeds = {"token": np.asarray([int(token)], np.int32), "h": states[0], "enc": enc, "mask": mask}
        if self.lstm:
            feeds["c"] = states[1]
        out = self.decoder(feeds)
        new = (out["h_out"], out["c_out"]) if self.lstm else (out["h_out"],)
        return out["logits"].reshape(-1).astype(np.float32, copy=False), (*new, enc, mask)

    def state_arrays(self, state) -> list[np.ndarray]:
        return [np.asarray(s, np.float32).reshape(-1) for s in state[:-2]]


class LiteRTLMEngine:
    """A next-token step graph (the edgernn.runtimes.token_lm engine API): state = (h,) or (h, c)."""

    runtime_name = "litert"

    def __init__(self, path, manifest: dict, threads: int = 1, content: bytes | None = None):
        from edgernn.runtimes.token_manifest import zero_state

        self.graph = _Graph(path, LM_IN, DECODER_OUT, ("token", "h", "logits", "h_out"), threads, content)
        self.first = zero_state(manifest)
        graph = [f"{n} {list(self.graph.inputs[n][3])}" for n in ("h", "c") if n in self.graph.inputs]
        listed = [f"{n} {list(s.shape)}" for n, s in zip(("h", "c"), self.first)]
        if graph != listed or ("c" in self.graph.inputs) != ("c_out" in self.graph.outputs):
            raise ArtifactError(f"the TFLite step's state inputs ({', '.join(graph)}) are not its manifest's "
                                f"({', '.join(listed)}); re-export the run")
        self.runtime_package, self.runtime_version = self.graph.runtime_package, self.graph.runtime_version

    def zero_state(self):
        return self.first

    def step(self, token: int, state):
        feeds = {"token": np.asarray([int(token)], np.int32), **dict(zip(("h", "c"), state))}
        out = self.graph(feeds)
        new = (out["h_out"], out["c_out"]) if "c_out" in out else (out["h_out"],)
        return out["logits"].reshape(-1).astype(np.float32, copy=False), new

    def state_arrays(self, state) -> list[np.ndarray]:
        return [np.asarray(s, np.float32).reshape(-1) for s in state]


class LiteRTClassifierEngine:
    """A token classifier or tagger graph (edgernn.export.tflite.token_classifier): src [1, max_src] int32 +
    mask -> logits [1, C] (tagger [1, max_src, C]); logits(ids) gives [C] or [n, C] like the ONNX classifier."""

    runtime_name = "litert"

    def __init__(self, path, manifest: dict, threads: int = 1, content: bytes | None = None):
        info = manifest.get("tflite") or {}
        if "max_src" not in info:
            raise ArtifactError("the TFLite token manifest lacks tflite.max_src (the fixed text length); re-export")
        self.max_src, self.tag = int(info["max_src"]), manifest.get("task") == "tag"
        self.graph = _Graph(path, ENCODER_IN, ("logits",), ("src", "mask", "logits"), threads, content)
        if self.graph.inputs["src"][3] != (1, self.max_src):
            raise ArtifactError(f"the TFLite graph takes texts of shape {list(self.graph.inputs['src'][3])}, its "
                                f"manifest says max_src {self.max_src}; re-export the run")
        self.runtime_package, self.runtime_version = self.graph.runtime_package, self.graph.runtime_version

    def logits(self, ids: list[int]) -> np.ndarray:
        n = len(ids)
        if not 1 <= n <= self.max_src:
            raise ValueError(f"the TFLite graph holds texts of 1..{self.max_src} tokens, got {n} (re-export with "
                             "longer texts in the data)")
        src = np.zeros((1, self.max_src), np.int32)
        src[0, :n] = ids
        mask = np.zeros((1, self.max_src), np.float32)
        mask[0, :n] = 1.0
        z = np.asarray(self.graph({"src": src, "mask": mask})["logits"], np.float32)
        return z[0, :n] if self.tag else z.reshape(-1)
