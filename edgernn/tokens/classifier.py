"""
Token classifiers (text -> label) and taggers (a label per token) after training: ONNX export, parity against the
float model, per-text latency.

    export_classifier("runs/names", precisions=("float", "int8"))   # artifacts/classifier-PREC.onnx + manifests
    rep = classifier_parity("runs/names")                           # parity.json: accuracy, agreement per artifact
    load_classifier("runs/names/artifacts").classify("Ingrid")      # ('nordic', probabilities)
    load_classifier("runs/tags/artifacts").tag("turn on the light")  # [('turn', 'O'), ('on', 'O'), ...]

The artifact takes one text's ids (`src` [1, S] int64, S dynamic) and returns the logits ([1, C], a tagger's
[1, S, C]); its manifest (schema edgernn.tokens/1, part "classifier" or "tagger") carries the vocabulary and the
labels. A tagger's accuracy and agreement count tokens. int8 is onnxruntime's dynamic
quantization of the embedding table and the head (the recurrence keeps float weights: onnxruntime has no integer
GRU). Gate: accuracy >= min_accuracy_ratio x float and top-1 agreement >= min_agreement (the sensor gate's
defaults, edgernn.gates.Gates).
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
from edgernn.runtimes.token_session import load_classifier
from edgernn.tokens.run import load_token_run

MIN_ACCURACY_RATIO = 0.99
MIN_AGREEMENT = 0.98


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


def export_classifier(run_dir, precisions=("float", "int8"), out_dir=None) -> list[Path]:
    torch = require("torch", "train")
    require("onnxruntime", "onnx")
    from edgernn.tokens.publish import ort_session as _ort  # one publisher (atomic, schema-checked) for token artifacts
    from edgernn.tokens.publish import publish as _publish

    run = load_token_run(run_dir)
    if run.config.kind not in ("classify", "tag"):
        raise ConfigError(f"{run.path} is a {run.config.kind} model, not a classifier or tagger")
    part = part_of(run.config.kind)
    model = run.load_model()
    net = _wrapper(torch, model)
    out = Path(out_dir) if out_dir else run.artifacts_dir
    out.mkdir(parents=True, exist_ok=True)
    srcs = sorted(run.data()["src_test"], key=len)
    checks = [run.src_vocab.encode(s) for s in [srcs[0], srcs[-1]] + srcs[:: max(1, len(srcs) // 20)]]
    written = []
    for precision in precisions:
        tmp = Path(tempfile.mkdtemp(prefix="edgernn-tokcls-"))
        try:
            path = tmp / f"{part}.onnx"
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                try:
                    torch.onnx.export(net, (torch.tensor([checks[1]]),), str(path), dynamo=False, opset_version=17,
                                      input_names=["src"], output_names=["logits"], dynamic_axes={"src": {1: "S"}})
                except Exception as exc:
                    raise ExportError(f"torch.onnx.export of the {part} failed: {str(exc).splitlines()[0]}; "
                                      "no file written") from exc
            compute = {"embedding": "float", "recurrent": "float", "head": "float"}
            if precision == "int8":
                import logging

                from onnxruntime.quantization import QuantType, quantize_dynamic

                logging.getLogger().setLevel(logging.ERROR)
                q = tmp / f"{part}-int8.onnx"
                quantize_dynamic(str(path), str(q), weight_type=QuantType.QInt8,
                                 op_types_to_quantize=["MatMul", "Gemm", "Gather"])
                path = q
                compute = {"embedding": "weights-int8", "recurrent": "float", "head": "dynamic-int8"}
            sess = _ort(path)
            worst = 0.0
            for ids in checks:
                with torch.no_grad():  # the trained model itself (packed encoder), not the export wrapper
                    ref = model(torch.tensor([ids]), torch.tensor([len(ids)])).numpy()
                got = sess.run(None, {"src": np.asarray([ids], np.int64)})[0]
                worst = max(worst, float(np.abs(ref - got).max()))
            if precision == "float" and worst > 1e-4:
                raise ExportError(f"the ONNX {part} differs from torch by {worst:.2e}; no file written")
            target = out / f"{part}-{precision}.onnx"
            shape = [1, "S", len(run.labels)] if part == "tagger" else [1, len(run.labels)]
            fields = {"schema": "edgernn.tokens/1", "format": "onnx", "runtime": "onnxruntime",
                      "precision": precision, "part": part, "task": run.config.kind, "model": run.config.to_dict(),
                      "vocab": {"tokenizer": run.tokenizer, "src": run.src_vocab.to_dict(), "tgt": None,
                                "labels": run.labels, "lower": run.lower},
                      "inputs": [{"name": "src", "dtype": "int64", "shape": [1, "S"], "role": "x"}],
                      "outputs": [{"name": "logits", "dtype": "float32", "shape": shape, "role": "y"}],
                      "quantization": {"recipe": "float" if precision == "float" else "dynamic", "compute": compute},
                      "checked": {"max_diff_vs_torch": worst, "sources": len(checks)},
                      "source": {"run": run.path.name, "model_sha256": run.model_sha256()}}
            _publish(path, target, fields)
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
    for path in sorted(run.artifacts_dir.glob(f"{part}-*.onnx")):
        clf = load_classifier(run.artifacts_dir, "onnx", path.stem.split("-", 1)[1], part=part)
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
        rows.append({"format": "onnx", "precision": clf.manifest["precision"], "files": [path.name],
                     "bytes": path.stat().st_size, "accuracy": acc, "agreement": agree, "passed": not reasons,
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
    for a in r["artifacts"]:
        verdict = "pass" if a["passed"] else "FAIL: " + "; ".join(a["reasons"])
        lines.append(f"{a['format'] + ' ' + a['precision']:<14} {a['accuracy']:9.2%} {a['agreement']:7.2%} "
                     f"{a['latency_us']['p50']:7.1f} {a['latency_us']['p99']:7.1f} {a['bytes'] / 1024:7.1f}  {verdict}")
    return "\n".join(lines)
