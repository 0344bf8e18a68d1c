"""
Export a trained run to deployable artifacts: a registry of formats, one module per format.

    from edgernn.export import export_run
    paths = export_run("runs/gru", formats=["onnx", "tflite"], precisions=["float", "int8"], streaming=True)

Formats (name -> "module:function", imported on first use):
    onnx    float | int8 (onnxruntime dynamic quantization; LSTM runs int8, GRU stays float: ORT has no int GRU)
    ort     the ORT flatbuffer format that mobile/minimal onnxruntime builds load (converted from onnx)
    tflite  float | int8 (full-integer, calibrated on training windows) | dynamic (dynamic-range)
Modes: "sequence" (whole window in) always; "step" (one frame + state) with streaming=True.
Each artifact gets a manifest (docs/manifest.md). Artifacts go to RUN_DIR/artifacts/ by default.
"""

from __future__ import annotations

import importlib
import time
from dataclasses import dataclass
from pathlib import Path

from ..errors import ConfigError, ExportError

FORMATS = {
    "onnx": "edgernn.export.onnx:export_onnx",
    "ort": "edgernn.export.onnx:export_ort",
    "tflite": "edgernn.export.tflite:export_tflite",
}
PRECISIONS = ("float", "int8", "dynamic")
# which precisions each format supports; onnx "int8" already *is* dynamic quantization in ORT
SUPPORTED = {"onnx": ("float", "int8"), "ort": ("float", "int8"), "tflite": ("float", "int8", "dynamic")}
INT8_IO = ("int8", "float")


def get_exporter(fmt: str):
    if fmt not in FORMATS:
        raise ConfigError(f"unknown format {fmt!r}; choose from: {', '.join(FORMATS)}")
    module, func = FORMATS[fmt].split(":")
    return getattr(importlib.import_module(module), func)


def parse_list(value, valid, what: str) -> list[str]:
    """'a,b' or ['a','b'] -> validated list (order kept, duplicates dropped)."""
    items = value.split(",") if isinstance(value, str) else list(value)
    items = [i.strip() for i in items if i and i.strip()]
    bad = [i for i in items if i not in valid]
    if bad or not items:
        raise ConfigError(f"unknown {what} {', '.join(bad) or '(empty)'}; choose from: {', '.join(valid)}")
    return list(dict.fromkeys(items))


@dataclass
class ExportResult:
    format: str
    precision: str
    mode: str
    path: Path | None
    seconds: float
    skipped: str = ""  # reason, when a combination is not produced

    def to_dict(self) -> dict:
        return {"format": self.format, "precision": self.precision, "mode": self.mode,
                "path": str(self.path) if self.path else None, "seconds": round(self.seconds, 3),
                "size_bytes": self.path.stat().st_size if self.path else None, "skipped": self.skipped}


def plan(formats, precisions, streaming: bool, bidirectional: bool):
    """The (format, precision, mode) combinations to build, plus skipped ones with a reason."""
    modes = ["sequence"] + (["step"] if streaming else [])
    todo, skipped = [], []
    if streaming and bidirectional:
        raise ConfigError(
            "bidirectional models cannot stream: the backward direction needs the whole future sequence. "
            "Export without --streaming, or retrain with --no-bidirectional for a streaming artifact."
        )
    for fmt in formats:
        for prec in precisions:
            for mode in modes:
                if prec not in SUPPORTED[fmt]:
                    skipped.append((fmt, prec, mode, f"{fmt} has no separate '{prec}' variant: its int8 export "
                                    "is already dynamic quantization"))
                else:
                    todo.append((fmt, prec, mode))
    return todo, skipped


def export_run(run_dir, formats=("onnx", "ort", "tflite"), precisions=("float", "int8"), streaming: bool = False,
               out_dir: Path | None = None, int8_io: str = "int8", progress: bool = False) -> list[ExportResult]:
    """Export every requested combination; returns one ExportResult per combination (skipped ones too)."""
    from ..progress import progressbar
    from ..rundir import load_run

    run = load_run(run_dir)
    formats = parse_list(formats, tuple(FORMATS), "format")
    precisions = parse_list(precisions, PRECISIONS, "precision")
    if int8_io not in INT8_IO:
        raise ConfigError(f"unknown int8 I/O {int8_io!r}; choose from: {', '.join(INT8_IO)}")
    out_dir = Path(out_dir) if out_dir is not None else run.artifacts_dir
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ExportError(f"cannot create output directory {out_dir}: {exc.strerror}") from None
    if not _writable(out_dir):
        raise ExportError(f"output directory {out_dir} is not writable; choose another with --out")
    todo, skipped = plan(formats, precisions, streaming, run.config.bidirectional)
    # ORT artifacts are converted from the ONNX ones: build those first even if not asked for
    needs_onnx = {(p, m) for f, p, m in todo if f == "ort"}
    results = [ExportResult(f, p, m, None, 0.0, why) for f, p, m, why in skipped]
    onnx_paths = {}
    label = f"export {run.config.cell} h{run.config.hidden}"
    with progressbar(todo, label=label, enabled=progress, show=lambda t: f"{t[0]} {t[1]} {t[2]}" if t else "") as bar:
        for fmt, prec, mode in bar:
            t0 = time.perf_counter()
            if fmt == "ort":
                src = onnx_paths.get((prec, mode))
                if src is None:
                    src = get_exporter("onnx")(run, out_dir, precision=prec, mode=mode)
                path = get_exporter("ort")(src)
            elif fmt == "tflite":
                path = get_exporter("tflite")(run, out_dir, precision=prec, mode=mode, int8_io=int8_io)
            else:
                path = get_exporter(fmt)(run, out_dir, precision=prec, mode=mode)
                if (prec, mode) in needs_onnx:
                    onnx_paths[(prec, mode)] = path
            results.append(ExportResult(fmt, prec, mode, Path(path), time.perf_counter() - t0))
    return results


def _writable(d: Path) -> bool:
    import os
    import tempfile

    try:
        fd, p = tempfile.mkstemp(dir=d, prefix=".write-test-")
        os.close(fd)
        os.unlink(p)
        return True
    except OSError:
        return False
