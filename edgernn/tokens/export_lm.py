"""
Exporting a next-token (language) model: one step artifact per format and precision - one token id + the state
in, the next token's logits + the new state out (`lm-PREC.onnx|ort|tflite|h`) - with a token manifest
(edgernn.runtimes.token_manifest, part "lm") carrying the vocabulary, the special tokens and how to decode.

    written = export_lm("runs/words/gru", formats=("onnx", "c"), precisions=("float", "int8"))

Every artifact is run through its runtime engine (edgernn.runtimes.token_lm / token_c / token_litert) on
held-out sequences, teacher-forced step by step from the zero state, and compared with the torch model's logits
and states before it is kept (float: max|diff| <= 1e-4 x the largest logit); a failure leaves no file. ONNX int8
is onnxruntime's dynamic quantization of the embedding table (Gather) and the head (MatMul/Gemm): onnxruntime has
no integer GRU, so the recurrence keeps float weights and the manifest says so. C: edgernn.export.c.token_lm;
TFLite: edgernn.export.tflite.token_lm.
"""

from __future__ import annotations

import shutil
import tempfile
import warnings
from pathlib import Path

import numpy as np

from edgernn.errors import ConfigError, ExportError, require
from edgernn.runtimes.manifest import FORMAT_RUNTIME
from edgernn.runtimes.token_lm import GENERATE_EXTRA, LM_PART, lm_artifact
from edgernn.runtimes.token_manifest import TOKEN_SCHEMA
from edgernn.runtimes.vocab import BOS, EOS
from edgernn.tokens.publish import OPSET, TOKEN_FORMATS, TOLERANCE, publish
from edgernn.tokens.run import TokenRun, load_token_run


def step_wrapper(torch, model):
    """The torch step in the artifacts' shape: (token [1], h [layers, Hd] (, c)) -> (logits [1, V], h (, c))."""
    lstm = model.cfg.cell == "lstm"

    class LMStep(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.m = model

        def forward(self, token, *state):  # state [layers, Hd] each; the recurrence wants [layers, 1, Hd]
            emb = self.m.tgt_embed(token)[:, None, :]
            st = (state[0][:, None], state[1][:, None]) if lstm else state[0][:, None]
            out, new = self.m.decoder(emb, st)
            new = [new[0][:, 0], new[1][:, 0]] if lstm else [new[:, 0]]
            return (self.m.out(out[:, 0]), *new)

    return LMStep().eval()


def lm_io(cfg, fmt: str = "onnx") -> tuple[list, list]:
    ids = "int32" if fmt == "tflite" else "int64"
    states = ["h", "c"] if cfg.cell == "lstm" else ["h"]
    shape = [cfg.layers, cfg.dec_hidden]  # one row per stacked layer ([1, Hd] for one layer)
    ins = [{"name": "token", "dtype": ids, "shape": [1], "role": "x"}] + \
          [{"name": s, "dtype": "float32", "shape": shape, "role": "state"} for s in states]
    outs = [{"name": "logits", "dtype": "float32", "shape": [1, cfg.tgt_vocab], "role": "y"}] + \
           [{"name": f"{s}_out", "dtype": "float32", "shape": shape, "role": "state"} for s in states]
    return ins, outs


def check_sequences(run: TokenRun, n: int = 24) -> list[list[int]]:
    """Held-out texts of different lengths (shortest and longest included) as <bos> t1 .. tn id lists."""
    srcs = sorted(run.data()["src_test"], key=len)
    pick = [srcs[0], srcs[-1]] + srcs[:: max(1, len(srcs) // (n - 2))][: n - 2]
    return [[BOS] + run.src_vocab.encode(s) for s in pick]


def compare_with_torch(torch, model, engine, sequences: list[list[int]]) -> tuple[float, float]:
    """(max |diff| of logits and states over every teacher-forced step, the largest |torch logit|)."""
    wrap = step_wrapper(torch, model)
    n_state = 2 if model.cfg.cell == "lstm" else 1
    worst, scale = 0.0, 1.0
    for seq in sequences:
        ref = [torch.zeros(model.cfg.layers, model.cfg.dec_hidden) for _ in range(n_state)]
        state = engine.zero_state()
        for t in seq:
            with torch.no_grad():
                logits, *ref = wrap(torch.tensor([t]), *ref)
            got, state = engine.step(t, state)
            pairs = [(logits.numpy()[0], np.asarray(got).reshape(-1))] + \
                    [(r.numpy().reshape(-1), s) for r, s in zip(ref, engine.state_arrays(state)[:n_state])]
            for a, b in pairs:
                if a.shape != b.shape or not np.isfinite(b).all():
                    raise ExportError(f"the exported step gives shape {list(b.shape)} (torch {list(a.shape)}) or "
                                      "non-finite outputs; no file written")
                worst = max(worst, float(np.abs(a - b).max()))
            scale = max(scale, float(np.abs(logits.numpy()).max()))
    return worst, scale


def _build_onnx(torch, model, run: TokenRun, tmp: Path, precision: str) -> dict:
    cfg = model.cfg
    path = tmp / "lm.onnx"
    ins, outs = lm_io(cfg)
    args = (torch.tensor([BOS]),) + tuple(torch.zeros(cfg.layers, cfg.dec_hidden) for _ in ins[1:])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            torch.onnx.export(step_wrapper(torch, model), args, str(path), dynamo=False, opset_version=OPSET,
                              input_names=[t["name"] for t in ins], output_names=[t["name"] for t in outs],
                              do_constant_folding=True)
        except Exception as exc:
            raise ExportError(f"torch.onnx.export of the next-token step failed: {str(exc).splitlines()[0]}; "
                              "no file written") from exc
    if precision == "float":
        return {"paths": {LM_PART: path}, "compute": {"embedding": "float", "recurrent": "float", "head": "float"},
                "recipe": "float"}
    import logging

    from onnxruntime.quantization import QuantType, quantize_dynamic

    logging.getLogger().setLevel(logging.ERROR)  # its "consider pre-processing" advice: the graph is tiny
    q = tmp / "lm-int8.onnx"
    try:
        quantize_dynamic(str(path), str(q), weight_type=QuantType.QInt8,
                         op_types_to_quantize=["MatMul", "Gemm", "Gather"])
    except Exception as exc:
        raise ExportError(f"onnxruntime int8 quantization of the step failed: {str(exc).splitlines()[0]}; "
                          "no file written") from exc
    return {"paths": {LM_PART: q}, "compute": {"embedding": "weights-int8", "recurrent": "float",
                                              "head": "dynamic-int8"}, "recipe": "dynamic"}


def _build_ort(torch, model, run: TokenRun, tmp: Path, precision: str) -> dict:
    """The ONNX step converted to the ORT format (mobile and minimal onnxruntime builds), basic optimizations."""
    from edgernn.tokens.publish import to_ort

    built = _build_onnx(torch, model, run, tmp, precision)
    return {**built, "paths": {LM_PART: to_ort(built["paths"][LM_PART], tmp / "lm.ort", "step")}}


def _build_c(torch, model, run: TokenRun, tmp: Path, precision: str) -> dict:
    from edgernn.export.c.token_lm import build_lm_c

    return build_lm_c(model, run, tmp, precision)


def _build_tflite(torch, model, run: TokenRun, tmp: Path, precision: str) -> dict:
    from edgernn.export.tflite.token_lm import build_lm_tflite

    return build_lm_tflite(model, run, tmp, precision, checks=check_sequences(run))


BUILDERS = {"onnx": _build_onnx, "ort": _build_ort, "c": _build_c, "tflite": _build_tflite}


def _engine(fmt: str, path: Path, fields: dict):
    """The runtime engine of a built (not yet published) step, for the check against torch."""
    if fmt in ("onnx", "ort"):
        from edgernn.runtimes.token_lm import OrtLMEngine

        return OrtLMEngine(path, fields)
    if fmt == "c":
        from edgernn.runtimes.token_c import CLMEngine

        return CLMEngine(path, {**fields, "sha256": _sha(path)})
    from edgernn.runtimes.token_litert import LiteRTLMEngine

    return LiteRTLMEngine(path, fields)


def _sha(path: Path) -> str:
    from edgernn.runtimes.manifest import sha256_file

    return sha256_file(path)


def _fields(run: TokenRun, fmt: str, precision: str, built: dict) -> dict:
    ins, outs = lm_io(run.config, fmt)
    beam = int(run.train_config.get("beam", 4))
    longest = int(run.dataset.get("max_src_len") or max(len(s) for s in run.data()["src_test"]))
    fields = {"schema": TOKEN_SCHEMA, "format": fmt, "runtime": FORMAT_RUNTIME[fmt], "precision": precision,
              "part": LM_PART, "task": "next-token", "model": run.config.to_dict(),
              "vocab": {"tokenizer": run.tokenizer, "src": run.src_vocab.to_dict(), "tgt": run.src_vocab.to_dict(),
                        "labels": [], "lower": run.lower},
              "inputs": ins, "outputs": outs,
              "quantization": {"recipe": built["recipe"], "compute": built["compute"]},
              "decoding": {"bos": BOS, "eos": EOS, "max_len": longest + GENERATE_EXTRA, "method": "greedy",
                           "width": beam},
              "source": {"run": run.path.name, "model_sha256": run.model_sha256()}}
    for key in ("c", "tflite"):
        if key in built:
            fields[key] = built[key]
    return fields


def export_lm(run_dir: Path | str, formats=("onnx",), precisions=("float", "int8"), out_dir=None) -> list[Path]:
    torch = require("torch", "train")
    run = load_token_run(run_dir)
    if run.config.kind != "next-token":
        raise ConfigError(f"{run.path} is a {run.config.kind} model, not a next-token model")
    bad = [f for f in formats if f not in TOKEN_FORMATS]
    if bad:
        raise ConfigError(f"next-token models export to {', '.join(TOKEN_FORMATS)}, not {', '.join(bad)}")
    out = Path(out_dir) if out_dir else run.artifacts_dir
    out.mkdir(parents=True, exist_ok=True)
    model = run.load_model()
    sequences = check_sequences(run)
    written = []
    for fmt in formats:
        for precision in precisions:
            tmp = Path(tempfile.mkdtemp(prefix="edgernn-lm-"))
            try:
                built = BUILDERS[fmt](torch, model, run, tmp, precision)
                path = built["paths"][LM_PART]
                fields = _fields(run, fmt, precision, built)
                worst, scale = compare_with_torch(torch, model, _engine(fmt, path, fields), sequences)
                if precision == "float" and worst > TOLERANCE * scale:
                    raise ExportError(f"the {fmt} next-token step differs from torch by {worst:.2e} > "
                                      f"{TOLERANCE * scale:.1e}; no file written")
                fields["checked"] = {"max_diff_vs_torch": worst, "sequences": len(sequences)}
                target = lm_artifact(out, fmt, precision)
                publish(path, target, fields)
                written.append(target)
            finally:
                shutil.rmtree(tmp, ignore_errors=True)
    return written

