"""
Token classifiers (text -> label) and taggers (a label per token) after training: ONNX and C export, parity
against the float model, per-text latency.

    export_classifier("runs/names", precisions=("float", "int8"))   # artifacts/classifier-PREC.onnx + manifests
    export_classifier("runs/names", formats=("c",))                 # artifacts/classifier-PREC.h (one C header)
    rep = classifier_parity("runs/names")                           # parity.json: accuracy, agreement per artifact
    load_classifier("runs/names/artifacts").classify("Ingrid")      # ('nordic', probabilities)
    load_classifier("runs/tags/artifacts").tag("turn on the light")  # [('turn', 'O'), ('on', 'O'), ...]

The artifact takes one text's ids (`src` [1, S] int64, S dynamic) and returns the logits ([1, C], a tagger's
[1, S, C]); its manifest (schema edgernn.tokens/1, part "classifier" or "tagger") carries the vocabulary and the
labels. A tagger's accuracy and agreement count tokens. int8 is onnxruntime's dynamic
quantization of the embedding table and the head (the recurrence keeps float weights: onnxruntime has no integer
GRU). C (edgernn.export.c.token_classifier): `PREFIX_classify(src, n, logits)` / `PREFIX_tag(...)`, float or
int8 weight tables with float arithmetic, run here through edgernn.runtimes.token_c.CClassifierEngine. Gate: accuracy
>= min_accuracy_ratio x float and top-1 agreement >= min_agreement (the sensor gate's defaults,
edgernn.gates.Gates).
"""

from __future__ import annotations

import shutil
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np

from edgernn.errors import ConfigError, ExportError, require
from edgernn.runtimes.files import atomic_write_json
from edgernn.runtimes.token_session import artifact_name, load_classifier
from edgernn.tokens.run import load_token_run

MIN_ACCURACY_RATIO = 0.99
MIN_AGREEMENT = 0.98
CLASSIFIER_FORMATS = ("onnx", "ort", "tflite", "c")


def _wrapper(torch, model):
    lstm = model.cfg.cell == "lstm"

    class Classifier(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.m = model

        def forward(self, src):
            out, state = self.m.encoder(self.m.src_embed(src))
            if model.cfg.kind == "tag":
                return self.m.head(out)
            h = state[0] if lstm else state
            return self.m.head(torch.cat(list(h[-model.cfg.directions:]), dim=-1))  # the last layer's finals

    return Classifier().eval()


def _build_onnx(torch, model, run, part: str, tmp: Path, precision: str, checks: list) -> dict:
    from edgernn.tokens.publish import ort_session

    path = tmp / f"{part}.onnx"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            torch.onnx.export(_wrapper(torch, model), (torch.tensor([checks[1]]),), str(path), dynamo=False,
                              opset_version=17, input_names=["src"], output_names=["logits"],
                              dynamic_axes={"src": {1: "S"}})
        except Exception as exc:
            raise ExportError(f"torch.onnx.export of the {part} failed: {str(exc).splitlines()[0]}; "
                              "no file written") from exc
    compute, recipe = {"embedding": "float", "recurrent": "float", "head": "float"}, "float"
    if precision == "int8":
        import logging

        from onnxruntime.quantization import QuantType, quantize_dynamic

        logging.getLogger().setLevel(logging.ERROR)
        q = tmp / f"{part}-int8.onnx"
        quantize_dynamic(str(path), str(q), weight_type=QuantType.QInt8,
                         op_types_to_quantize=["MatMul", "Gemm", "Gather"])
        path = q
        compute, recipe = {"embedding": "weights-int8", "recurrent": "float", "head": "dynamic-int8"}, "dynamic"
    sess = ort_session(path)
    shape = [1, "S", len(run.labels)] if part == "tagger" else [1, len(run.labels)]
    return {"path": path, "compute": compute, "recipe": recipe,
            "logits": lambda ids: sess.run(None, {"src": np.asarray([ids], np.int64)})[0][0],
            "inputs": [{"name": "src", "dtype": "int64", "shape": [1, "S"], "role": "x"}],
            "outputs": [{"name": "logits", "dtype": "float32", "shape": shape, "role": "y"}]}


def _build_c(torch, model, run, part: str, tmp: Path, precision: str, checks: list) -> dict:
    """One C header (edgernn.export.c.token_classifier), run here through the C engine for the check."""
    from edgernn.export.c.token_classifier import build_classifier_c
    from edgernn.runtimes.manifest import sha256_file
    from edgernn.runtimes.token_c import CClassifierEngine

    built = build_classifier_c(model, run, tmp, precision)
    path = built["paths"][part]
    engine = CClassifierEngine(path, {"sha256": sha256_file(path), "c": built["c"], "part": part,
                                      "model": run.config.to_dict()})
    shape = ["S", len(run.labels)] if part == "tagger" else [len(run.labels)]
    return {"path": path, "compute": built["compute"], "recipe": built["recipe"], "logits": engine.logits,
            "c": built["c"], "inputs": [{"name": "src", "dtype": "int32", "shape": ["S"], "role": "x"}],
            "outputs": [{"name": "logits", "dtype": "float32", "shape": shape, "role": "y"}]}


def _build_ort(torch, model, run, part: str, tmp: Path, precision: str, checks: list) -> dict:
    """The ONNX graph converted to the ORT format (mobile and minimal onnxruntime builds), basic optimizations."""
    from edgernn.tokens.publish import ort_session, to_ort

    built = _build_onnx(torch, model, run, part, tmp, precision, checks)
    to_ort(built["path"], tmp / f"{part}.ort", part)
    sess = ort_session(tmp / f"{part}.ort")
    return {**built, "path": tmp / f"{part}.ort",
            "logits": lambda ids: sess.run(None, {"src": np.asarray([ids], np.int64)})[0][0]}


def _build_tflite(torch, model, run, part: str, tmp: Path, precision: str, checks: list) -> dict:
    """One .tflite graph (edgernn.export.tflite.token_classifier: the unrolled encoder + the head), int8 chosen by
    label agreement >= MIN_AGREEMENT with the float graph; run here through LiteRT for the check."""
    from edgernn.export.tflite.token_classifier import build_classifier_tflite
    from edgernn.runtimes.token_litert import LiteRTClassifierEngine

    built = build_classifier_tflite(model, run, tmp, precision, agreement_min=MIN_AGREEMENT)
    path = built["paths"][part]
    engine = LiteRTClassifierEngine(path, {"tflite": built["tflite"], "task": run.config.kind})
    S = built["tflite"]["max_src"]
    shape = [1, S, len(run.labels)] if part == "tagger" else [1, len(run.labels)]
    return {"path": path, "compute": built["compute"], "recipe": built["recipe"], "logits": engine.logits,
            "tflite": built["tflite"],
            "inputs": [{"name": "src", "dtype": "int32", "shape": [1, S], "role": "x"},
                       {"name": "mask", "dtype": "float32", "shape": [1, S], "role": "x"}],
            "outputs": [{"name": "logits", "dtype": "float32", "shape": shape, "role": "y"}]}


def export_classifier(run_dir, precisions=("float", "int8"), out_dir=None, formats=("onnx",)) -> list[Path]:
    """Every format x precision, each checked against the trained model on held-out texts before it is published
    (float: max|diff| <= 1e-4, C: 1e-4 x the largest logit)."""
    torch = require("torch", "train")
    from edgernn.runtimes.manifest import FORMAT_RUNTIME
    from edgernn.tokens.publish import TOLERANCE
    from edgernn.tokens.publish import publish as _publish

    run = load_token_run(run_dir)
    if run.config.kind not in ("classify", "tag"):
        raise ConfigError(f"{run.path} is a {run.config.kind} model, not a classifier or tagger")
    bad = [f for f in formats if f not in CLASSIFIER_FORMATS]
    if bad:
        raise ConfigError(f"token classifiers and taggers export to {', '.join(CLASSIFIER_FORMATS)}, not "
                          f"{', '.join(bad)}")
    if {"onnx", "ort"} & set(formats):
        require("onnxruntime", "onnx")
    part = part_of(run.config.kind)
    model = run.load_model()
    out = Path(out_dir) if out_dir else run.artifacts_dir
    out.mkdir(parents=True, exist_ok=True)
    srcs = sorted(run.data()["src_test"], key=len)
    checks = [run.src_vocab.encode(s) for s in [srcs[0], srcs[-1]] + srcs[:: max(1, len(srcs) // 20)]]
    written = []
    for fmt in formats:
        for precision in precisions:
            tmp = Path(tempfile.mkdtemp(prefix="edgernn-tokcls-"))
            try:
                build = {"onnx": _build_onnx, "ort": _build_ort, "tflite": _build_tflite, "c": _build_c}[fmt]
                built = build(torch, model, run, part, tmp, precision, checks)
                worst, scale = 0.0, 1.0
                for ids in checks:
                    with torch.no_grad():  # the trained model itself (packed encoder), not the export wrapper
                        ref = model(torch.tensor([ids]), torch.tensor([len(ids)])).numpy()[0]
                    got = np.asarray(built["logits"](ids))
                    if got.shape != ref.shape or not np.isfinite(got).all():
                        raise ExportError(f"the {fmt} {part} gives shape {list(got.shape)} (torch {list(ref.shape)}) "
                                          "or non-finite logits; no file written")
                    worst = max(worst, float(np.abs(ref - got).max()))
                    scale = max(scale, float(np.abs(ref).max()))
                tol = TOLERANCE * (scale if fmt in ("c", "tflite") else 1.0)
                if precision == "float" and worst > tol:
                    raise ExportError(f"the {fmt} {part} differs from torch by {worst:.2e} > {tol:.1e}; "
                                      "no file written")
                target = out / artifact_name(part, precision, fmt)
                fields = {"schema": "edgernn.tokens/1", "format": fmt, "runtime": FORMAT_RUNTIME[fmt],
                          "precision": precision, "part": part, "task": run.config.kind,
                          "model": run.config.to_dict(),
                          "vocab": {"tokenizer": run.tokenizer, "src": run.src_vocab.to_dict(), "tgt": None,
                                    "labels": run.labels, "lower": run.lower},
                          "inputs": built["inputs"], "outputs": built["outputs"],
                          "quantization": {"recipe": built["recipe"], "compute": built["compute"]},
                          "checked": {"max_diff_vs_torch": worst, "sources": len(checks)},
                          "source": {"run": run.path.name, "model_sha256": run.model_sha256()}}
                for key in ("c", "tflite"):
                    if key in built:
                        fields[key] = built[key]
                _publish(built["path"], target, fields)
                written.append(target)
            finally:
                shutil.rmtree(tmp, ignore_errors=True)
    return written


def classifier_parity(run_dir, write: bool = True) -> dict:
    """Accuracy and agreement of every exported classifier against the float model on the held-out texts, and
    the latency per text (p50/p99 over the held-out set, one thread)."""
    require("torch", "train")
    import torch

    run = load_token_run(run_dir)
    model = run.load_model()
    data = run.data()
    labels = {lab: i for i, lab in enumerate(run.labels)}
    tag = run.config.kind == "tag"
    part = part_of(run.config.kind)
    y = np.array([labels[t] for t in data["tgt_test"]] if not tag else
                 [labels[t] for tags in data["tgt_test"] for t in tags])
    with torch.no_grad():  # the trained model itself, as training scored it
        ref = np.concatenate([model(torch.tensor([ids]), torch.tensor([len(ids)])).argmax(-1).reshape(-1).numpy()
                              for ids in (run.src_vocab.encode(s) for s in data["src_test"])])
    acc_f = float((ref == y).mean())
    rows = []
    found = [(fmt, path) for fmt in CLASSIFIER_FORMATS
             for path in sorted(run.artifacts_dir.glob(artifact_name(part, "*", fmt)))]
    for fmt, path in found:
        clf = load_classifier(run.artifacts_dir, fmt, path.stem.split("-", 1)[1], part=part)
        pred, us = [], []
        for s in data["src_test"]:
            t0 = time.perf_counter()
            pred.append(np.argmax(clf.logits(clf.source_ids(s)), axis=-1).reshape(-1))
            us.append((time.perf_counter() - t0) * 1e6)
        pred = np.concatenate(pred)
        acc, agree = float((pred == y).mean()), float((pred == ref).mean())
        reasons = []
        if acc < MIN_ACCURACY_RATIO * acc_f:
            reasons.append(f"accuracy {acc:.4f} < {MIN_ACCURACY_RATIO} x float {acc_f:.4f}")
        if agree < MIN_AGREEMENT:
            reasons.append(f"agreement with float {agree:.4f} < {MIN_AGREEMENT}")
        rows.append({"format": fmt, "precision": clf.manifest["precision"], "files": [path.name],
                     "bytes": path.stat().st_size, "accuracy": acc, "agreement": agree, "passed": not reasons,
                     "cortex_m4_flash_bytes": (clf.manifest.get("c", {}).get("targets", {}).get("cortex-m4", {})
                                               .get("flash_bytes")),
                     "reasons": reasons, "latency_us": {"p50": float(np.percentile(us, 50)),
                                                        "p99": float(np.percentile(us, 99))}})
    out = {"kind": "tokens", "task": run.config.kind, "run": run.path.name, "texts": len(data["src_test"]),
           "predictions": int(len(y)), "float": {"accuracy": acc_f},
           "gates": {"min_accuracy_ratio": MIN_ACCURACY_RATIO, "min_agreement": MIN_AGREEMENT},
           "artifacts": rows, "passed": all(r["passed"] for r in rows)}
    if write:
        atomic_write_json(run.path / "parity.json", out)
    return out


def part_of(kind: str) -> str:
    """The artifact part (and file name stem) of a classify / tag model."""
    return "tagger" if kind == "tag" else "classifier"


def format_classifier_parity(r: dict) -> str:
    per = f" ({r['predictions']:,} tokens)" if r.get("task") == "tag" else ""
    lines = [f"{r['run']}: {r['texts']:,} held-out texts{per}; float model accuracy {r['float']['accuracy']:.2%}",
             f"{'artifact':<14} {'accuracy':>9} {'agree':>7} {'p50 us':>7} {'p99 us':>7} {'KB':>7}  verdict"]
    c_note = False
    for a in r["artifacts"]:
        verdict = "pass" if a["passed"] else "FAIL: " + "; ".join(a["reasons"])
        size, mark = a["bytes"], " "
        if a.get("cortex_m4_flash_bytes"):  # C: the compiled library, not its source text
            size, mark, c_note = a["cortex_m4_flash_bytes"], "*", True
        lines.append(f"{a['format'] + ' ' + a['precision']:<14} {a['accuracy']:9.2%} {a['agreement']:7.2%} "
                     f"{a['latency_us']['p50']:7.1f} {a['latency_us']['p99']:7.1f} {size / 1024:7.1f}{mark} {verdict}")
    if c_note:
        lines.append("* C: Cortex-M4 flash of the compiled library (arm-none-eabi-gcc -Os), not the .h source")
    return "\n".join(lines)
