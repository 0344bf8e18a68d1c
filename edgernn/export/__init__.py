"""
Export a trained run to deployable artifacts: ONE table of formats, one module per format.

    from edgernn.export import export_run, FORMATS
    results = export_run("runs/gru", formats=["onnx", "tflite"], precisions=["float", "int8"], streaming=True)

FORMATS is the registry (in the style of Optimum's exporters): per format its exporter
("module:function", imported on first use), file extension, runtime, precisions, modes, the Python
modules it needs (with the pip extra that provides them) and the format it is converted from. The
CLI's choices and --help are generated from it. Every exporter has one signature:

    exporter(run, out_dir: Path, precision: str, mode: str, options: ExportOptions) -> Path

and writes out_dir/f"{mode}-{precision}.{ext}" plus its manifest atomically. A format converted from
another (ort from onnx) gets the source artifact in options.source; when the source format was not
asked for, it is built in a scratch directory and removed, so asking for `ort` alone writes only .ort.
Names (formats, precisions, modes) come from edgernn.runtimes.manifest, the schema devices embed.
"""

from __future__ import annotations

import importlib
import importlib.util
import shutil
import tempfile
import time
from dataclasses import dataclass, replace
from pathlib import Path

from ..errors import ConfigError, ExportError, MissingDependencyError
from ..runtimes.manifest import FORMAT_RUNTIME, MODES, PRECISIONS

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

    @property
    def runtime(self) -> str:
        return FORMAT_RUNTIME[self.name]


FORMATS = {f.name: f for f in (
    Format("onnx", "edgernn.export.onnx:export_onnx", "onnx", ("float", "int8"), MODES,
           ("torch", "onnx", "onnxruntime"), "onnx",
           "ONNX for onnxruntime; int8 = onnxruntime dynamic quantization (an LSTM runs dynamic-int8; a GRU/RNN "
           "stores its weights int8 but computes in float - onnxruntime has no integer GRU; when that fails the gate, "
           "or pinned with --recipe integer-matmul, the GRU is rewritten as integer MatMuls)"),
    Format("ort", "edgernn.export.onnx:export_ort", "ort", ("float", "int8"), MODES,
           ("onnxruntime",), "onnx",
           "the ORT flatbuffer format that mobile/minimal onnxruntime builds load (converted from onnx)",
           built_from="onnx"),
    Format("tflite", "edgernn.export.tflite:export_tflite", "tflite", ("float", "int8", "dynamic"), MODES,
           ("torch", "tensorflow", "tf_keras"), "tflite",
           "TFLite for LiteRT; int8 = the first of full-int8, int16x8, dynamic range that passes the gate; "
           "dynamic = dynamic range"),
    Format("c", "edgernn.export.c:export_c", "h", ("float", "int8"), MODES, ("torch",), "train",
           "dependency-free C99 (one header-only file: no heap, no libm, caller-owned state) for C/C++ apps, "
           "Android NDK and microcontrollers; int8 = int8 weights, int16 activations/state, int32 accumulators; "
           "run by compiling it with the system C compiler"),
)}
assert set(FORMATS) == set(FORMAT_RUNTIME), "export registry and manifest schema disagree on formats"
assert all(set(f.precisions) <= set(PRECISIONS) and set(f.modes) <= set(MODES) for f in FORMATS.values())


@dataclass(frozen=True)
class ExportOptions:
    int8_io: str = "int8"
    source: Path | None = None  # for a converted format: the artifact it is converted from
    recipe: str | None = None  # int8 only: the recipe to build (edgernn.export.recipes); None = try ORDER
    c_prefix: str | None = None  # C only: the symbol prefix (default <run>_<mode>_<precision>)


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


@dataclass
class ExportResult:
    format: str
    precision: str
    mode: str
    path: Path | None
    seconds: float
    skipped: str = ""  # reason, when a combination is not produced

    def to_dict(self) -> dict:
        d = {"format": self.format, "precision": self.precision, "mode": self.mode,
             "path": str(self.path) if self.path else None, "seconds": round(self.seconds, 3),
             "size_bytes": self.path.stat().st_size if self.path else None, "skipped": self.skipped,
             "recipe": None, "rejected_recipes": []}
        if self.path:
            from ..runtimes.manifest import read_manifest

            q = read_manifest(self.path, verify=False)["quantization"]
            d["recipe"] = q.get("recipe")
            d["rejected_recipes"] = [r["recipe"] for r in (q.get("selection") or {}).get("rejected", [])]
        return d


def plan(formats, precisions, streaming: bool, bidirectional: bool):
    """The (format, precision, mode) combinations to build, plus skipped ones with a reason."""
    if streaming and bidirectional:
        raise ConfigError(
            "bidirectional models cannot stream: the backward direction needs the whole future sequence. "
            "Export without --streaming, or retrain with --no-bidirectional for a streaming artifact."
        )
    modes = ["sequence"] + (["step"] if streaming else [])
    todo, skipped = [], []
    for fmt in formats:
        f = FORMATS[fmt]
        for prec in precisions:
            for mode in modes:
                if prec not in f.precisions:
                    why = "; its int8 is already dynamic quantization" if fmt in ("onnx", "ort") else ""
                    skipped.append((fmt, prec, mode, f"{fmt} has no '{prec}' variant (it offers "
                                    f"{', '.join(f.precisions)}{why})"))
                elif mode not in f.modes:
                    skipped.append((fmt, prec, mode, f"{fmt} has no {mode} mode"))
                else:
                    todo.append((fmt, prec, mode))
    return todo, skipped


def export_run(run_dir, formats=("onnx", "ort", "tflite"), precisions=("float", "int8"), streaming: bool = False,
               out_dir: Path | None = None, int8_io: str = "int8", progress: bool = False,
               recipe: str | None = None, gates=None, c_prefix: str | None = None) -> list[ExportResult]:
    """Export every requested combination; returns one ExportResult per combination (skipped ones too).
    int8 is built by edgernn.export.recipes: the first recipe of the format's order that passes the parity
    gate (`gates`, default edgernn.parity.Gates()) on held-out calibration windows, or `recipe` if pinned."""
    from . import recipes
    from ..progress import progressbar
    from ..rundir import load_run
    from ..runtimes.files import writable_dir_problem

    run = load_run(run_dir)
    formats = parse_list(formats, tuple(FORMATS), "format")
    precisions = parse_list(precisions, PRECISIONS, "precision")
    if c_prefix is not None:
        from .c import check_prefix

        check_prefix(c_prefix)
        if "c" not in formats:
            raise ConfigError("--c-prefix names the symbols of C artifacts; add c to --format")
    if int8_io not in INT8_IO:
        raise ConfigError(f"unknown int8 I/O {int8_io!r}; choose from: {', '.join(INT8_IO)}")
    check_prerequisites(formats + [FORMATS[f].built_from for f in formats if FORMATS[f].built_from])
    recipes.check_recipe(recipe, formats)
    if recipe and "int8" not in precisions:
        raise ConfigError(f"--recipe {recipe} chooses how int8 is built; add int8 to --precision")
    out_dir = Path(out_dir) if out_dir is not None else run.artifacts_dir
    problem = writable_dir_problem(out_dir)
    if problem:
        raise ExportError(f"output directory {out_dir} is not writable ({problem}); choose another with --out")
    todo, skipped = plan(formats, precisions, streaming, run.config.bidirectional)
    results = [ExportResult(f, p, m, None, 0.0, why) for f, p, m, why in skipped]
    built: dict = {}  # (format, precision, mode) -> path, for formats converted from another
    scratch = None
    unbuildable = []  # why a pinned recipe could not build a combination
    holdout = None  # held-out calibration windows and their float references, shared by every int8 recipe gate

    def build(fmt, prec, mode, where, opts):
        nonlocal holdout
        if prec != "int8" or fmt not in recipes.ORDER:
            return get_exporter(fmt)(run, where, prec, mode, opts)
        if holdout is None:
            from ..parity import Gates

            holdout = recipes.Holdout(run, gates or Gates())
        pinned = recipe if recipe in recipes.recipes_for(fmt) else None
        return recipes.export_int8(run, where, fmt, mode, replace(opts, recipe=pinned), get_exporter(fmt),
                                   holdout=holdout)

    label = f"export {run.config.cell} h{run.config.hidden}"
    try:
        with progressbar(todo, label=label, enabled=progress,
                         show=lambda t: f"{t[0]} {t[1]} {t[2]}" if t else "") as bar:
            for fmt, prec, mode in bar:
                t0 = time.perf_counter()
                opts = ExportOptions(int8_io=int8_io, c_prefix=c_prefix)
                src_fmt = FORMATS[fmt].built_from
                try:
                    if src_fmt:
                        src = built.get((src_fmt, prec, mode))
                        if src is None:  # not asked for: build it aside, never next to the artifacts
                            if scratch is None:
                                scratch = Path(tempfile.mkdtemp(prefix=".edgernn-src-", dir=out_dir))
                            src = build(src_fmt, prec, mode, scratch, opts)
                        opts = replace(opts, source=src)
                    path = Path(build(fmt, prec, mode, out_dir, opts))
                except recipes.RecipeUnavailable as exc:  # pinned recipe, impossible here: say so, build the rest
                    unbuildable.append(str(exc))
                    results.append(ExportResult(fmt, prec, mode, None, time.perf_counter() - t0,
                                                f"--recipe {recipe}: {exc}"))
                    continue
                built[(fmt, prec, mode)] = path
                results.append(ExportResult(fmt, prec, mode, path, time.perf_counter() - t0))
    finally:
        if scratch is not None:
            shutil.rmtree(scratch, ignore_errors=True)
    if unbuildable and not any(r.path for r in results if r.precision == "int8"):
        raise ExportError(f"--recipe {recipe} could not build any int8 artifact: " + "; ".join(unbuildable))
    return results
