"""
Export a trained run to deployable artifacts: ONE table of formats, one module per format.

    from edgernn.export import export_run, FORMATS
    results = export_run("runs/gru", formats=["onnx", "tflite"], precisions=["float", "int8"], streaming=True)

FORMATS is the registry (edgernn.export.formats); each format has a package of its own (export/onnx,
export/tflite, export/c) whose exporter writes out_dir/f"{mode}-{precision}.{ext}" plus its manifest
atomically; int8 is chosen by edgernn.export.recipes. A format converted from
another (ort from onnx) gets the source artifact in options.source; when the source format was not
asked for, it is built in a scratch directory and removed, so asking for `ort` alone writes only .ort.
"""

from __future__ import annotations

import shutil
import tempfile
import time
from dataclasses import dataclass, replace
from pathlib import Path

from edgernn.errors import ConfigError, EdgernnError, ExportError
from edgernn.export.formats import (
    FORMATS,
    INT8_IO,
    ExportOptions,
    Format,
    check_combination,
    check_prerequisites,
    get_exporter,
    parse_list,
)
from edgernn.runtimes.manifest import PRECISIONS

__all__ = ["FORMATS", "INT8_IO", "ExportFailed", "ExportOptions", "ExportResult", "Format", "check_combination",
           "check_prerequisites", "export_run", "get_exporter", "parse_list", "plan", "record_stream_horizon"]


@dataclass
class ExportResult:
    format: str
    precision: str
    mode: str
    path: Path | None
    seconds: float
    skipped: str = ""  # reason, when a combination is not produced
    error: str = ""  # why building it failed (the other combinations were still built)

    @property
    def name(self) -> str:
        return f"{self.format} {self.precision} {self.mode}"

    def to_dict(self) -> dict:
        d = {"format": self.format, "precision": self.precision, "mode": self.mode,
             "path": str(self.path) if self.path else None, "seconds": round(self.seconds, 3),
             "size_bytes": self.path.stat().st_size if self.path else None, "skipped": self.skipped,
             "error": self.error or None, "recipe": None, "rejected_recipes": []}
        if self.path:
            from edgernn.runtimes.manifest import read_manifest

            q = read_manifest(self.path, verify=False)["quantization"]
            d["recipe"] = q.get("recipe")
            d["rejected_recipes"] = [r["recipe"] for r in (q.get("selection") or {}).get("rejected", [])]
        return d


class ExportFailed(ExportError):
    """Some combinations failed to build; the others were written. `results` lists every combination
    (written, skipped and failed ones), as export_run would have returned it."""

    def __init__(self, results: list, failed: list):
        reasons = "; ".join(f"{r.name}: {r.error}" for r in failed)
        written = sum(1 for r in results if r.path is not None)
        super().__init__(f"{len(failed)} of {len(results)} artifact(s) failed ({written} written): {reasons}")
        self.results = results
        self.failed = failed


def plan(formats, precisions, streaming: bool, bidirectional: bool, audio: bool = False):
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
                elif audio and fmt == "tflite" and prec != "float":
                    skipped.append((fmt, prec, mode, "TFLite's quantizers store the audio front end's DFT matrices "
                                    "in int8, which ruins the log spectrum (measured: accuracy 0.71 vs float 0.96 "
                                    "on a tone set, every recipe): use tflite float, or int8 from onnx / c"))
                elif audio and not f.frontend:
                    skipped.append((fmt, prec, mode, f"{fmt} does not carry the audio front end yet (raw PCM in): "
                                    f"export audio models with --format "
                                    f"{','.join(n for n, g in FORMATS.items() if g.frontend)}"))
                else:
                    todo.append((fmt, prec, mode))
    return todo, skipped


def export_run(run_dir, formats=("onnx", "ort", "tflite"), precisions=("float", "int8"), streaming: bool = False,
               out_dir: Path | None = None, int8_io: str = "int8", progress: bool = False,
               recipe: str | None = None, gates=None, c_prefix: str | None = None,
               timeout: float = 600.0, on_result=None, max_fa_per_hour: float = 1.0,
               integer_only: bool = False) -> list[ExportResult]:
    """Export every requested combination; returns one ExportResult per combination (skipped ones too).
    int8 is built by edgernn.export.recipes: the first recipe of the format's order that passes the parity
    gate (`gates`, default edgernn.gates.Gates()) on held-out calibration windows, or `recipe` if pinned.
    integer_only: int8 tries only recipes with no float op (recipes.INTEGER_ONLY; a microcontroller's or an
    NPU's), failing in one line when none passes; `dynamic` cannot be asked for with it.
    on_result(ExportResult) is called as each combination lands (written, skipped or failed). One that fails
    (a converter error or time-out) does not stop the others; at the end ExportFailed lists them all."""
    from edgernn.export import recipes
    from edgernn.progress import progressbar
    from edgernn.rundir import load_run
    from edgernn.runtimes.files import writable_dir_problem

    run = load_run(run_dir)
    formats = parse_list(formats, tuple(FORMATS), "format")
    precisions = parse_list(precisions, PRECISIONS, "precision")
    if c_prefix is not None:
        from edgernn.export.c.export import check_prefix

        check_prefix(c_prefix)
        if "c" not in formats:
            raise ConfigError("--c-prefix names the symbols of C artifacts; add c to --format")
    if not timeout > 0:
        raise ConfigError(f"--timeout must be > 0 seconds, got {timeout}")
    if int8_io not in INT8_IO:
        raise ConfigError(f"unknown int8 I/O {int8_io!r}; choose from: {', '.join(INT8_IO)}")
    check_prerequisites(formats + [FORMATS[f].built_from for f in formats if FORMATS[f].built_from])
    recipes.check_recipe(recipe, formats)
    if recipe and "int8" not in precisions:
        raise ConfigError(f"--recipe {recipe} chooses how int8 is built; add int8 to --precision")
    if integer_only and ("dynamic" in precisions or (recipe and recipe not in recipes.INTEGER_ONLY)):
        raise ConfigError("--integer-only keeps float activations out: drop precision dynamic"
                          + (f" and recipe {recipe}" if recipe and recipe not in recipes.INTEGER_ONLY else "")
                          + f" (integer-only recipes: {', '.join(recipes.INTEGER_ONLY)})")
    out_dir = Path(out_dir) if out_dir is not None else run.artifacts_dir
    problem = writable_dir_problem(out_dir)
    if problem:
        raise ExportError(f"output directory {out_dir} is not writable ({problem}); choose another with --out")
    todo, skipped = plan(formats, precisions, streaming, run.config.bidirectional,
                         audio=run.config.frontend is not None)
    results = []

    def land(r: ExportResult) -> None:
        results.append(r)
        if on_result is not None:
            on_result(r)

    for f, p, m, why in skipped:
        land(ExportResult(f, p, m, None, 0.0, why))
    failed_src: dict = {}  # (format, precision, mode) -> why, for formats converted from a failed one
    built: dict = {}  # (format, precision, mode) -> path, for formats converted from another
    scratch = None
    unbuildable = []  # why a pinned recipe could not build a combination
    holdout = None  # held-out calibration windows and their float references, shared by every int8 recipe gate

    def build(fmt, prec, mode, where, opts):
        nonlocal holdout
        if prec != "int8" or fmt not in recipes.ORDER:
            return get_exporter(fmt)(run, where, prec, mode, opts)
        if holdout is None:
            from edgernn.gates import Gates
            from edgernn.holdout import Holdout

            holdout = Holdout(run, gates or Gates())
        pinned = recipe if recipe in recipes.recipes_for(fmt) else None
        return recipes.export_int8(run, where, fmt, mode, replace(opts, recipe=pinned), get_exporter(fmt),
                                   holdout=holdout)

    detector = None
    if todo and run.config.frontend is not None and run.task == "classify":
        # the keyword detector's thresholds come first: C artifacts carry them as code, every manifest as data
        from edgernn.detection_stream import choose_detector

        if not max_fa_per_hour > 0:
            raise ConfigError(f"--max-fa-per-hour must be > 0, got {max_fa_per_hour}")
        detector = choose_detector(run, max_fa_per_hour)
    label = f"export {run.config.cell} h{run.config.hidden}"
    from edgernn.export.tflite.pool import worker_pool

    try:
        with worker_pool(), progressbar(todo, label=label, enabled=progress,
                         show=lambda t: f"{t[0]} {t[1]} {t[2]}" if t else "") as bar:
            for fmt, prec, mode in bar:
                t0 = time.perf_counter()
                opts = ExportOptions(int8_io=int8_io, c_prefix=c_prefix, timeout=timeout, detector=detector,
                                     integer_only=integer_only)
                src_fmt = FORMATS[fmt].built_from
                try:
                    if src_fmt:
                        src = built.get((src_fmt, prec, mode))
                        if (src_fmt, prec, mode) in failed_src:
                            raise ExportError(f"it is converted from the {src_fmt} {prec} {mode} artifact, which "
                                              "failed")
                        if src is None:  # not asked for: build it aside, never next to the artifacts
                            if scratch is None:
                                scratch = Path(tempfile.mkdtemp(prefix=".edgernn-src-", dir=out_dir))
                            src = build(src_fmt, prec, mode, scratch, opts)
                        opts = replace(opts, source=src)
                    path = Path(build(fmt, prec, mode, out_dir, opts))
                except recipes.RecipeUnavailable as exc:  # pinned recipe, impossible here: say so, build the rest
                    unbuildable.append(str(exc))
                    why = f"--recipe {recipe}: {exc}" if recipe else f"--integer-only: {exc}"
                    land(ExportResult(fmt, prec, mode, None, time.perf_counter() - t0, why))
                    continue
                except EdgernnError as exc:  # this one failed (converter, time budget): say so, build the rest
                    failed_src[(fmt, prec, mode)] = str(exc)
                    land(ExportResult(fmt, prec, mode, None, time.perf_counter() - t0,
                                      error=str(exc).splitlines()[0] if str(exc) else type(exc).__name__))
                    continue
                built[(fmt, prec, mode)] = path
                land(ExportResult(fmt, prec, mode, path, time.perf_counter() - t0))
        steps = [r.path for r in results if r.path is not None and r.mode == "step"]
        if steps:
            record_stream_horizon(run, steps, gates)
        written = [r.path for r in results if r.path is not None]
        if written and detector is not None:
            for path in written:
                _rewrite_manifest(path, {"detector": detector})
    finally:
        if scratch is not None:
            shutil.rmtree(scratch, ignore_errors=True)
    failed = [r for r in results if r.error]
    if failed:
        raise ExportFailed(results, failed)
    if recipe and unbuildable and not any(r.path for r in results if r.precision == "int8"):
        raise ExportError(f"--recipe {recipe} could not build any int8 artifact: " + "; ".join(unbuildable))
    return results


def _rewrite_manifest(path, extra: dict) -> None:
    from edgernn.export.manifest import write_manifest
    from edgernn.runtimes.manifest import read_manifest

    m = read_manifest(path, verify=False)
    fields = {k: v for k, v in m.items() if k not in ("schema", "artifact", "sha256", "size_bytes", "versions",
                                                      "created") and not k.startswith("_")}
    write_manifest(path, {**fields, **extra})


def record_stream_horizon(run, paths: list, gates=None) -> dict:
    """Measure the model's streaming horizon (edgernn.gates.stream_reference) on the saved training
    (calibration) windows - the test windows stay for parity, which measures it again there - and record it
    in every step artifact's manifest as "stream": horizon_frames, reset_every (what Session.reset_every
    returns), measured_frames, text. The horizon depends on the data streamed: parity's may be shorter."""
    from edgernn.gates import Gates, stream_reference

    stability = stream_reference(run, run.data()["X_calib"], gates or Gates()).stability
    stream = {k: stability[k] for k in ("horizon_frames", "reset_every", "measured_frames", "text")}
    stream["measured_on"] = f"{len(run.data()['X_calib'])} calibration windows (training data), cycled"
    for path in paths:
        _rewrite_manifest(path, {"stream": stream})
    return stream

