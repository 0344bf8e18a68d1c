"""
Exporting a token run: an encoder-decoder becomes two artifacts per format and precision - the encoder (the
whole source in, encoder outputs + the decoder's first state out) and the decoder step (one token + state +
encoder outputs in, logits + new state out) - each with a token manifest (edgernn.runtimes.token_manifest)
carrying the vocabularies, the special tokens and how to decode.

    written = export_tokens("runs/g2p", formats=("onnx",), precisions=("float", "int8"))

ONNX (TorchScript exporter, opset 17; the source length is a dynamic axis; ORT: the same pair in the ORT
format): every graph is checked against torch on held-out sources (max|diff| <= 1e-4 for float) before it is
kept; int8 is onnxruntime's dynamic
quantization of the embedding tables (Gather) and the matrix products (the head, the attention's output
layer): onnxruntime has no integer GRU, so the recurrence keeps float weights and the manifest says so.
A failure leaves no file: everything is built in a scratch directory and published atomically.
"""

from __future__ import annotations

import shutil
import tempfile
import warnings
from pathlib import Path

import numpy as np

from edgernn.errors import ConfigError, ExportError, require
from edgernn.runtimes.manifest import FORMAT_RUNTIME, sha256_file
from edgernn.runtimes.token_manifest import TOKEN_SCHEMA
from edgernn.runtimes.token_session import artifact_name
from edgernn.tokens.publish import OPSET, TOKEN_FORMATS, TOLERANCE, ort_session, publish, to_ort
from edgernn.tokens.run import TokenRun, load_token_run

DECODING_EXTRA = 10  # generated outputs may be this many tokens longer than the source (then generation stops)


def _wrappers(torch, model):
    cfg = model.cfg
    lstm = cfg.cell == "lstm"

    class Encoder(torch.nn.Module):
        """One source without padding: the packed encoder of training is a plain pass here."""

        def __init__(self):
            super().__init__()
            self.m = model

        def forward(self, src):
            out, state = self.m.encoder(self.m.src_embed(src))
            states = state if lstm else (state,)
            merged = [torch.cat(list(s[-cfg.directions:]), dim=-1) for s in states]  # the last layer's [1, Hd]
            return (out, *merged)

    class DecoderStep(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.m = model

        def forward(self, token, *rest):
            *state, enc = rest
            emb = self.m.tgt_embed(token)[:, None, :]
            st = (state[0][None], state[1][None]) if lstm else state[0][None]
            out, new = self.m.decoder(emb, st)
            new = [new[0][0], new[1][0]] if lstm else [new[0]]
            if cfg.attention:
                w = torch.softmax(torch.bmm(out, enc.transpose(1, 2)), dim=-1)
                out = torch.cat([out, torch.bmm(w, enc)], dim=-1)
            return (self.m.out(out[:, 0]), *new)

    return Encoder().eval(), DecoderStep().eval()


def _io(cfg, part: str) -> tuple[list, list, dict]:
    hd = cfg.dec_hidden
    states = ["h", "c"] if cfg.cell == "lstm" else ["h"]
    if part == "encoder":
        ins = [{"name": "src", "dtype": "int64", "shape": [1, "S"], "role": "x"}]
        outs = [{"name": "enc", "dtype": "float32", "shape": [1, "S", hd], "role": "context"}] + \
               [{"name": s, "dtype": "float32", "shape": [1, hd], "role": "state"} for s in states]
        dyn = {"src": {1: "S"}, "enc": {1: "S"}}
    else:
        # without attention the step never reads the encoder outputs: the exporter drops that input, and so does
        # the manifest (the runtime feeds the inputs the manifest lists)
        context = ([{"name": "enc", "dtype": "float32", "shape": [1, "S", hd], "role": "context"}]
                   if cfg.attention else [])
        ins = [{"name": "token", "dtype": "int64", "shape": [1], "role": "x"}] + \
              [{"name": s, "dtype": "float32", "shape": [1, hd], "role": "state"} for s in states] + context
        outs = [{"name": "logits", "dtype": "float32", "shape": [1, cfg.tgt_vocab], "role": "y"}] + \
               [{"name": f"{s}_out", "dtype": "float32", "shape": [1, hd], "role": "state"} for s in states]
        dyn = {"enc": {1: "S"}} if cfg.attention else {}
    return ins, outs, dyn


def _examples(run: TokenRun, n: int = 24) -> list[list[int]]:
    """Held-out sources of different lengths (the shortest and longest included): what exports are checked on."""
    srcs = sorted(run.data()["src_test"], key=len)
    pick = [srcs[0], srcs[-1]] + srcs[:: max(1, len(srcs) // (n - 2))][: n - 2]
    return [run.src_vocab.encode(s) for s in pick]


def _reference(torch, model, ids: list[int], steps: int = 4) -> list:
    """The trained model's own outputs on one source (its packed encoder and decoder step, not the export
    wrappers: a wrapper's mistake must show): encoder outputs and first state, then `steps` greedy decoder steps'
    logits and states, in the artifacts' shapes ([1, S, Hd], [1, Hd], [1, V])."""
    with torch.no_grad():
        enc, state = model.encode(torch.tensor([ids]), torch.tensor([len(ids)]))
        res = [enc.numpy()] + [s[0].numpy() for s in state]
        mask = torch.ones(1, len(ids), dtype=torch.bool)
        token = torch.tensor([2])
        for _ in range(steps):
            logits, state = model.step(token, state, enc, mask)
            res += [logits.numpy()] + [s[0].numpy() for s in state]
            token = logits.argmax(-1)
    return res


def _graph_outputs(enc_sess, dec_sess, cfg, ids: list[int], steps: int = 4) -> list:
    outs = enc_sess.run(None, {"src": np.asarray([ids], np.int64)})
    res = list(outs)
    state, enc = list(outs[1:]), outs[0]
    names = ["h", "c"] if cfg.cell == "lstm" else ["h"]
    token = np.array([2], np.int64)
    for _ in range(steps):
        feeds = {"token": token, **dict(zip(names, state)), "enc": enc}
        logits, *state = dec_sess.run(None, {i.name: feeds[i.name] for i in dec_sess.get_inputs()})
        res += [logits] + state
        token = logits.argmax(-1).astype(np.int64)
    return res


def _export_onnx(torch, model, run: TokenRun, tmp: Path, precision: str) -> dict:
    cfg = model.cfg
    enc_w, dec_w = _wrappers(torch, model)
    paths = {"encoder": tmp / "encoder.onnx", "decoder": tmp / "decoder.onnx"}
    ids = _examples(run)
    with torch.no_grad():
        enc_out = enc_w(torch.tensor([ids[1]]))
    dec_args = (torch.tensor([2]), *enc_out[1:], enc_out[0])
    for part, net, args in (("encoder", enc_w, (torch.tensor([ids[1]]),)), ("decoder", dec_w, dec_args)):
        ins, outs, dyn = _io(cfg, part)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            try:
                torch.onnx.export(net, args, str(paths[part]), dynamo=False, opset_version=OPSET,
                                  input_names=[t["name"] for t in ins], output_names=[t["name"] for t in outs],
                                  dynamic_axes=dyn, do_constant_folding=True)
            except Exception as exc:
                raise ExportError(f"torch.onnx.export of the {part} failed: {str(exc).splitlines()[0]}; "
                                  "no file written") from exc
    compute = {"embedding": "float", "recurrent": "float", "head": "float"}
    recipe = "float"
    if precision == "int8":
        import logging

        from onnxruntime.quantization import QuantType, quantize_dynamic

        logging.getLogger().setLevel(logging.ERROR)  # its "consider pre-processing" advice: the graphs are tiny

        for part in paths:
            q = tmp / f"{part}-int8.onnx"
            try:
                quantize_dynamic(str(paths[part]), str(q), weight_type=QuantType.QInt8,
                                 op_types_to_quantize=["MatMul", "Gemm", "Gather"])
            except Exception as exc:
                raise ExportError(f"onnxruntime int8 quantization of the {part} failed: "
                                  f"{str(exc).splitlines()[0]}; no file written") from exc
            paths[part] = q
        compute = {"embedding": "weights-int8", "recurrent": "float", "head": "dynamic-int8"}
        recipe = "dynamic"
    # checked against torch on held-out sources before anything is kept
    sessions = {part: ort_session(p) for part, p in paths.items()}
    worst = 0.0
    for src in ids:
        ref = _reference(torch, model, src)
        got = _graph_outputs(sessions["encoder"], sessions["decoder"], cfg, src)
        for a, b in zip(ref, got):
            if a.shape != b.shape or not np.isfinite(b).all():
                raise ExportError(f"the exported {precision} token graphs give shape {list(b.shape)} (torch "
                                  f"{list(a.shape)}) or non-finite outputs; no file written")
            worst = max(worst, float(np.abs(a - b).max()))
    if precision == "float" and worst > TOLERANCE:
        raise ExportError(f"the ONNX encoder/decoder differ from torch by {worst:.2e} > {TOLERANCE:.0e}; "
                          "no file written")
    return {"paths": paths, "compute": compute, "recipe": recipe, "max_diff": worst}


def _export_c(torch, model, run: TokenRun, tmp: Path, precision: str) -> dict:
    """One header with the encoder, the decoder step and the greedy loop; compiled and checked against torch."""
    from edgernn.export.c.tokens import TokenCSpec, c_prefix, c_quantization, generate_token_c, write_checked
    from edgernn.runtimes.token_c import CSeq2SeqEngine

    cfg = model.cfg
    prefix = c_prefix(run.path.name, precision)
    weights = {k: v.detach().numpy().astype(np.float32) for k, v in model.state_dict().items()}
    max_src = max(int(run.dataset.get("max_src_len") or 0), max(len(s) for s in run.data()["src_test"]))
    spec = TokenCSpec(prefix, precision, cfg, weights, run.src_vocab.tokens, run.tgt_vocab.tokens, max_src=max_src,
                      sha_note=f"Model sha256 {run.model_sha256()[:16]}.")
    path = tmp / "seq2seq.h"
    checked = write_checked(path, generate_token_c(spec), prefix, "encoder-decoder")
    work = max_src * cfg.dec_hidden * 4 if cfg.layers > 1 else 0  # a stacked encoder's buffer, in the context
    c_info = {"prefix": prefix, "max_src": max_src, "work_bytes": work, **checked}
    engine = CSeq2SeqEngine(path, {"sha256": sha256_file(path), "c": c_info, "model": cfg.to_dict()})
    worst, scale = 0.0, 1.0
    for src in _examples(run):
        ref = _reference(torch, model, src, steps=6)
        got, state, token = [], engine.encode(src), 2
        for _ in range(6):
            logits, state = engine.step(token, state)
            got += [logits[None]] + [a[None] for a in engine.state_arrays(state)[: 2 if cfg.cell == "lstm" else 1]]
            token = int(np.argmax(logits))
        ref_steps = ref[len(ref) - len(got):]  # the steps' logits and states (after the encoder's outputs)
        for a, b in zip(ref_steps, got):
            worst = max(worst, float(np.abs(a - b).max()))
            scale = max(scale, float(np.abs(a).max()))
    tol = TOLERANCE * scale if precision == "float" else np.inf
    if worst > tol:
        raise ExportError(f"the C encoder-decoder differs from torch by {worst:.2e} > {tol:.1e}; no file written")
    compute, recipe = c_quantization(precision)
    return {"paths": {"encoder-decoder": path}, "compute": compute, "recipe": recipe, "max_diff": worst, "c": c_info}


def _export_ort(torch, model, run: TokenRun, tmp: Path, precision: str) -> dict:
    """The ONNX pair converted to the ORT format (what mobile and minimal onnxruntime builds load), with basic
    (provider-independent) optimizations only, and checked against torch like the .onnx pair."""
    built = _export_onnx(torch, model, run, tmp, precision)
    paths = {part: to_ort(src, tmp / f"{part}.ort", part) for part, src in built["paths"].items()}
    sessions = {part: ort_session(p) for part, p in paths.items()}
    worst = 0.0
    for src in _examples(run):
        ref = _reference(torch, model, src)
        got = _graph_outputs(sessions["encoder"], sessions["decoder"], model.cfg, src)
        worst = max([worst] + [float(np.abs(a - b).max()) for a, b in zip(ref, got)])
    if precision == "float" and worst > TOLERANCE:
        raise ExportError(f"the ORT encoder/decoder differ from torch by {worst:.2e} > {TOLERANCE:.0e}; "
                          "no file written")
    return {**built, "paths": paths, "max_diff": worst}


def _export_tflite(torch, model, run: TokenRun, tmp: Path, precision: str) -> dict:
    """Encoder + decoder step graphs (edgernn.export.tflite.tokens, TensorFlow in a child process), then checked
    against torch here through the runtime's LiteRT engine."""
    from edgernn.export.tflite.tokens import export_token_tflite
    from edgernn.runtimes.token_litert import LiteRTSeq2SeqEngine

    cfg = model.cfg
    weights = {k: v.detach().numpy().astype(np.float32) for k, v in model.state_dict().items()}
    max_src = max(int(run.dataset.get("max_src_len") or 0), max(len(s) for s in run.data()["src_test"]))
    calib = [run.src_vocab.encode(s) for s in run.data()["src_calib"]]
    built = export_token_tflite(cfg, weights, max_src, calib, tmp, precision)
    info = {"max_src": max_src, "selection": built.get("selection"), "compute_shares": built.get("compute_shares"),
            "tensorflow": built.get("tensorflow")}
    engine = LiteRTSeq2SeqEngine(built["paths"]["encoder"], built["paths"]["decoder"], {"tflite": info},
                                 {"tflite": info, "model": cfg.to_dict()})
    worst = 0.0
    n_state = 2 if cfg.cell == "lstm" else 1
    for src in _examples(run):
        ref = _reference(torch, model, src, steps=4)
        got, state, token = [], engine.encode(src), 2
        for _ in range(4):
            logits, state = engine.step(token, state)
            got += [np.asarray(logits)[None]] + [a[None] for a in engine.state_arrays(state)[:n_state]]
            token = int(np.argmax(logits))
        for a, b in zip(ref[len(ref) - len(got):], got):
            worst = max(worst, float(np.abs(a - b).max()))
    if precision == "float" and worst > TOLERANCE:
        raise ExportError(f"the TFLite encoder/decoder differ from torch by {worst:.2e} > {TOLERANCE:.0e}; "
                          "no file written")
    return {"paths": built["paths"], "compute": built["compute"], "recipe": built["recipe"], "max_diff": worst,
            "tflite": info}


def _tflite_io(cfg, part: str) -> tuple[list, list]:
    """The TFLite graphs' tensors (by signature key): ids int32, sources padded to max_src with a mask."""
    hd = cfg.dec_hidden
    states = ["h", "c"] if cfg.cell == "lstm" else ["h"]
    mask = {"name": "mask", "dtype": "float32", "shape": [1, "max_src"], "role": "context"}
    enc = {"name": "enc", "dtype": "float32", "shape": [1, "max_src", hd], "role": "context"}
    st = [{"name": s, "dtype": "float32", "shape": [1, hd], "role": "state"} for s in states]
    if part == "encoder":
        return [{"name": "src", "dtype": "int32", "shape": [1, "max_src"], "role": "x"}, mask], [enc] + st
    return ([{"name": "token", "dtype": "int32", "shape": [1], "role": "x"}] + st + [enc, mask],
            [{"name": "logits", "dtype": "float32", "shape": [1, cfg.tgt_vocab], "role": "y"}] +
            [{**t, "name": t["name"] + "_out"} for t in st])


def _fields(run: TokenRun, fmt: str, precision: str, part: str, built: dict) -> dict:
    ins, outs, _ = _io(run.config, "decoder" if part == "encoder-decoder" else part)
    if fmt == "tflite":
        ins, outs = _tflite_io(run.config, part)
    fields = {"schema": TOKEN_SCHEMA, "format": fmt, "runtime": FORMAT_RUNTIME[fmt], "precision": precision,
              "part": part, "task": "seq2seq", "model": run.config.to_dict(),
              "vocab": {"tokenizer": run.tokenizer, "src": run.src_vocab.to_dict(), "tgt": run.tgt_vocab.to_dict(),
                        "labels": run.labels, "lower": run.lower},
              "inputs": ins, "outputs": outs,
              "quantization": {"recipe": built["recipe"], "compute": built["compute"]},
              "checked": {"max_diff_vs_torch": built["max_diff"], "sources": len(_examples(run))},
              "source": {"run": run.path.name, "model_sha256": run.model_sha256()}}
    for key in ("c", "tflite"):
        if key in built:
            fields[key] = built[key]
    if part in ("decoder", "encoder-decoder"):
        beam = int(run.train_config.get("beam", 4))
        fields["decoding"] = {"bos": run.tgt_vocab.bos, "eos": run.tgt_vocab.eos, "max_extra": DECODING_EXTRA,
                              "method": "beam" if beam > 1 else "greedy", "width": beam}
    return fields


def export_tokens(run_dir: Path | str, formats=("onnx",), precisions=("float", "int8"), out_dir=None) -> list[Path]:
    torch = require("torch", "train")
    require("onnxruntime", "onnx")
    run = load_token_run(run_dir)
    if run.config.kind == "next-token":
        from edgernn.tokens.export_lm import export_lm

        return export_lm(run_dir, formats, precisions, out_dir)
    if run.config.kind != "seq2seq":
        raise ConfigError(f"{run.path} is a {run.config.kind} model: classifiers export with "
                          "edgernn.tokens.classifier, taggers do not export yet")
    bad = [f for f in formats if f not in TOKEN_FORMATS]
    if bad:
        raise ConfigError(f"token models export to {', '.join(TOKEN_FORMATS)} so far, not {', '.join(bad)}")
    out = Path(out_dir) if out_dir else run.artifacts_dir
    out.mkdir(parents=True, exist_ok=True)
    model = run.load_model()
    written = []
    for fmt in formats:
        for precision in precisions:
            tmp = Path(tempfile.mkdtemp(prefix="edgernn-tokens-"))
            try:
                build = {"c": _export_c, "tflite": _export_tflite, "ort": _export_ort}.get(fmt, _export_onnx)
                built = build(torch, model, run, tmp, precision)
                for part in built["paths"]:
                    target = out / artifact_name("seq2seq" if fmt == "c" else part, precision, fmt)
                    publish(built["paths"][part], target, _fields(run, fmt, precision, part, built))
                    written.append(target)
            finally:
                shutil.rmtree(tmp, ignore_errors=True)
    return written
