"""
The export registry: ONE table of formats (in the style of Optimum's exporters). Per format its exporter
("module:function", imported on first use), file extension, runtime, precisions, modes, the Python
modules it needs (with the pip extra that provides them) and the format it is converted from. The
CLI's choices and --help are generated from it. Every exporter has one signature:

    exporter(run, out_dir: Path, precision: str, mode: str, options: ExportOptions) -> Path

Names (formats, precisions, modes) come from edgernn.runtimes.manifest, the schema devices embed.
"""

from __future__ import annotations

import importlib
import importlib.util
from dataclasses import dataclass
from pathlib import Path

from edgernn.errors import ConfigError, MissingDependencyError
from edgernn.runtimes.manifest import FORMAT_EXT, FORMAT_RUNTIME, MODES, PRECISIONS

INT8_IO = ("int8", "float")  # TFLite full-int8: int8 input/output tensors, or float I/O around int8 internals

@dataclass(frozen=True)
class Format:
    name: str
    exporter: str  # "module:function"
    ext: str
    precisions: tuple
    modes: tuple
    requires: tuple  # importable modules the exporter needs
    extra: str  # pip extra that installs them
    help: str
    built_from: str | None = None  # format this one is converted from (its artifact arrives in options.source)
    frontend: bool = False  # carries an audio model's front end (raw PCM in); audio runs skip the others

    @property
    def runtime(self) -> str:
        return FORMAT_RUNTIME[self.name]

FORMATS = {f.name: f for f in (
    Format("onnx", "edgernn.export.onnx.convert:export_onnx", "onnx", ("float", "int8"), MODES,
           ("torch", "onnx", "onnxruntime"), "onnx",
           "ONNX for onnxruntime; int8 = onnxruntime dynamic quantization (an LSTM runs dynamic-int8; a GRU/RNN "
           "stores its weights int8 but computes in float - onnxruntime has no integer GRU; when that fails the gate, "
           "or pinned with --recipe integer-matmul, the GRU is rewritten as integer MatMuls)", frontend=True),
    Format("ort", "edgernn.export.onnx.convert:export_ort", "ort", ("float", "int8"), MODES,
           ("onnxruntime",), "onnx",
           "the ORT flatbuffer format that mobile/minimal onnxruntime builds load (converted from onnx)",
           built_from="onnx", frontend=True),
    Format("tflite", "edgernn.export.tflite.convert:export_tflite", "tflite", ("float", "int8", "dynamic"), MODES,
           ("torch", "tensorflow", "tf_keras"), "tflite",
           "TFLite for LiteRT; int8 = the first of full-int8, int16x8, dynamic range that passes the gate; "
           "dynamic = dynamic range", frontend=True),
    Format("c", "edgernn.export.c.export:export_c", "h", ("float", "int8"), MODES, ("torch",), "train",
           "dependency-free C99 (one header-only file: no heap, no libm, caller-owned state) for C/C++ apps, "
           "Android NDK and microcontrollers; int8 = int8 weights, int16 activations/state, int32 accumulators; "
           "run by compiling it with the system C compiler", frontend=True),
)}
assert set(FORMATS) == set(FORMAT_RUNTIME), "export registry and manifest schema disagree on formats"
assert all(FORMAT_EXT[f.name] == f.ext for f in FORMATS.values()), "export registry and manifest schema disagree"
assert all(set(f.precisions) <= set(PRECISIONS) and set(f.modes) <= set(MODES) for f in FORMATS.values())


@dataclass(frozen=True)
class ExportOptions:
    int8_io: str = "int8"
    source: Path | None = None  # for a converted format: the artifact it is converted from
    recipe: str | None = None  # int8 only: the recipe to build (edgernn.export.recipes); None = try ORDER
    c_prefix: str | None = None  # C only: the symbol prefix (default <run>_<mode>_<precision>)
    timeout: float = 600.0  # TFLite only: seconds one artifact's converter runs may take in all (--timeout)
    detector: dict | None = None  # audio classifiers: the keyword detector (C artifacts carry it as code)
    integer_only: bool = False  # int8: only recipes with no float op on the inference path (recipes.INTEGER_ONLY)


def get_exporter(fmt: str):
    if fmt not in FORMATS:
        raise ConfigError(f"unknown format {fmt!r}; choose from: {', '.join(FORMATS)}")
    module, func = FORMATS[fmt].exporter.split(":")
    return getattr(importlib.import_module(module), func)


def check_combination(fmt: str, precision: str, mode: str) -> "Format":
    """The registry entry for fmt, after checking that it offers precision and mode (ConfigError if not)."""
    if fmt not in FORMATS:
        raise ConfigError(f"unknown format {fmt!r}; choose from: {', '.join(FORMATS)}")
    f = FORMATS[fmt]
    for value, valid, what in ((precision, f.precisions, "precision"), (mode, f.modes, "mode")):
        if value not in valid:
            raise ConfigError(f"unknown {fmt} {what} {value!r}; choose from: {', '.join(valid)}")
    return f


def parse_list(value, valid, what: str) -> list[str]:
    """'a,b' or ['a','b'] -> validated list (order kept, duplicates dropped)."""
    items = value.split(",") if isinstance(value, str) else list(value)
    items = [i.strip() for i in items if i and i.strip()]
    bad = [i for i in items if i not in valid]
    if bad or not items:
        raise ConfigError(f"unknown {what} {', '.join(bad) or '(empty)'}; choose from: {', '.join(valid)}")
    return list(dict.fromkeys(items))


def check_prerequisites(formats) -> None:
    """Every module the formats need is importable (looked up, not imported), else one error naming the
    pip extras to install."""
    missing = {}
    for name in formats:
        f = FORMATS[name]
        for mod in f.requires:
            if importlib.util.find_spec(mod) is None:
                missing.setdefault(f.extra, []).append(f"{mod} (for {name})")
    if missing:
        mods = "; ".join(", ".join(v) for v in missing.values())
        extras = ",".join(missing)
        raise MissingDependencyError(f"export needs {mods}; install with: pip install 'edgernn[{extras}]'")
