"""
int8 recipes: how `--precision int8` is built. The recipes of a format are tried in a fixed order,
most integer first; each candidate goes through the parity gate (edgernn.holdout.Holdout: the same
gate `edgernn parity` applies, plus a stress set) on HELD-OUT calibration windows, and the first that passes is kept.

    export_int8(run, out_dir, "tflite", "step", ExportOptions())               # full-int8 -> int16x8 -> dynamic
    export_int8(run, out_dir, "tflite", "step", ExportOptions(recipe="int16x8"))  # pinned: kept even if it fails

The kept artifact's manifest records, under quantization.selection, the recipe, the order tried, the
gate it passed (or failed, when pinned or when nothing passed) and why every earlier recipe was
rejected. Calibration never sees the held-out windows: run.data()["X_calib"] (training windows saved by
`train`) is split by calibration_split(): every HOLDOUT_EVERY-th window is held out for the gate, the
rest calibrate. The test windows stay untouched for `edgernn parity`. Besides the parity gate on the
held-out windows (accuracy, and the long stream for step artifacts), a candidate must agree with the
float model on a STRESS set: perturbed copies of the saved training windows (amplitude x0.25/x0.5/x1.5 around
the training mean, noise, a half-window roll), where full int8 breaks first when field data is quieter
or louder than the training windows.
"""

from __future__ import annotations

import importlib
import shutil
import tempfile
from dataclasses import dataclass, replace
from pathlib import Path

from edgernn.errors import ConfigError, ExportError
from edgernn.gates import Gates
from edgernn.holdout import Holdout, verdict
from edgernn.runtimes.manifest import INTEGER_ONLY_RECIPES


@dataclass(frozen=True)
class Recipe:
    name: str
    builders: dict  # format -> "module:function" that builds this recipe there (imported on first use)
    help: str

    @property
    def formats(self) -> tuple:
        return tuple(self.builders)


RECIPES = {r.name: r for r in (
    Recipe("full-int8", {"tflite": "edgernn.export.tflite.quantize:full_int8"},
           "int8 activations and weights, calibrated ranges, integer kernels end to end (the fused LSTM keeps "
           "its cell state in int16); the smallest and, on ARM, the fastest"),
    Recipe("int16x8", {"tflite": "edgernn.export.tflite.quantize:int16x8",
                       "c": "edgernn.export.c.quantize:int16x8"},
           "int16 activations, int8 weights, integer kernels (TFLite 16x8; int8 C: int16 state, int32 accumulators, "
           "fixed-point requantization); 256x finer activations where full int8 loses accuracy, ~2x the "
           "activation memory; an LSTM step carries h and c as int16 state tensors (no 16x8 sequence "
           "LSTM: the fused op has no 16x8 kernel)"),
    Recipe("dynamic", {"tflite": "edgernn.export.tflite.quantize:dynamic",
                       "onnx": "edgernn.export.onnx.quantize:dynamic"},
           "int8 weights, no calibration: activations are quantized at run time where the kernel can "
           "(dynamic-int8), weights are dequantized to float elsewhere (weights-int8); float I/O"),
    Recipe("weights-int8", {"onnx": "edgernn.export.onnx.quantize:weights_int8"},
           "LSTM: the recurrent weights stored int8 (one scale per output row) behind DequantizeLinear, the LSTM "
           "op computing in float, the head dynamic-int8: about a third of the float file where the integer "
           "LSTM kernel (dynamic) loses accuracy; for a GRU/RNN this is what dynamic builds"),
    Recipe("int8-head", {"onnx": "edgernn.export.onnx.quantize:int8_head"},
           "only the output layer is quantized (dynamic-int8); the GRU/LSTM/RNN op keeps float weights and "
           "float compute: the fallback when int8 recurrent weights cost accuracy"),
    Recipe("integer-matmul", {"onnx": "edgernn.export.onnx.quantize:integer_matmul"},
           "ONNX GRU/RNN written as MatMul ops (input projection of all steps at once, then a Loop) so "
           "onnxruntime's integer MatMul runs the recurrence; tried when dynamic fails, before int8-head (it "
           "keeps the file int8-sized); on x86 it is slower than the float GRU op (the manifest records both "
           "latencies)"),
)}
# the order `--precision int8` tries, per format (ort is converted from the onnx artifact the order chose)
# onnx: integer-matmul (GRU/RNN only) and weights-int8 (LSTM only; for a GRU/RNN it is dynamic) come before
# int8-head, whose float recurrent weights make the file as large as the float one (bm GRU h64: 57.6 vs 56.9 KB,
# integer-matmul 25.6 KB); a recipe that does not apply to the cell records "could not be built" and why
ORDER = {"tflite": ("full-int8", "int16x8", "dynamic"),
         "onnx": ("dynamic", "integer-matmul", "weights-int8", "int8-head"), "c": ("int16x8",)}


# recipes whose inference path has no float op (integer kernels end to end, float only at the I/O
# quantize/dequantize): what a microcontroller or an NPU runs - TFLite Micro refuses dynamic-range files
INTEGER_ONLY = INTEGER_ONLY_RECIPES


class RecipeUnavailable(ExportError):
    """A pinned recipe cannot build this format and mode (e.g. int16x8 and the fused sequence LSTM): export_run
    records the combination as skipped, with the reason, and builds the others."""


def builder(recipe: str, fmt: str):
    """The function that builds `recipe` for `fmt` (RECIPES[recipe].builders[fmt], imported now); each format's
    exporter calls it with that format's own arguments. ConfigError for a recipe the format does not have."""
    r = RECIPES.get(recipe)
    if r is None or fmt not in r.builders:
        raise ConfigError(f"the {fmt} int8 recipes are {', '.join(recipes_for(fmt))}, not {recipe!r}")
    module, func = r.builders[fmt].split(":")
    return getattr(importlib.import_module(module), func)


def recipes_for(fmt: str) -> tuple:
    return tuple(n for n, r in RECIPES.items() if fmt in r.formats)


def check_recipe(recipe: str | None, formats) -> None:
    """A pinned recipe must exist and belong to one of the formats asked for (ConfigError if not)."""
    if recipe is None:
        return
    if recipe not in RECIPES:
        raise ConfigError(f"unknown recipe {recipe!r}; choose from: {', '.join(RECIPES)}")
    own = [f for f in formats if f in RECIPES[recipe].formats or (f == "ort" and "onnx" in RECIPES[recipe].formats)]
    if not own:
        raise ConfigError(f"recipe {recipe!r} is for --format {', '.join(RECIPES[recipe].formats)}; "
                          f"you asked for {', '.join(formats)}")


def export_int8(run, out_dir: Path, fmt: str, mode: str, options, exporter, holdout: Holdout | None = None,
                gates=None) -> Path:
    """Build `{mode}-int8.{ext}` with the first recipe of ORDER[fmt] that passes the parity gate on held-out
    calibration windows (or with options.recipe alone, kept whatever the gate says). Candidates are built
    in a scratch directory; only the kept one reaches out_dir, with its manifest extended by the selection."""
    from edgernn.export.manifest import publish
    from edgernn.runtimes.manifest import read_manifest

    pinned = options.recipe
    order = (pinned,) if pinned else ORDER[fmt]
    if pinned and fmt not in RECIPES[pinned].formats:
        raise ConfigError(f"recipe {pinned!r} is for --format {', '.join(RECIPES[pinned].formats)}, not {fmt}")
    if options.integer_only:
        order = tuple(r for r in order if r in INTEGER_ONLY)
        if not order:
            raise RecipeUnavailable(f"{fmt} has no integer-only int8 recipe (integer-only: TFLite "
                                    f"{' / '.join(INTEGER_ONLY)}, and C)")
    holdout = holdout or Holdout(run, gates or Gates())
    rejected, candidates = [], []
    out_dir = Path(out_dir)
    scratch = Path(tempfile.mkdtemp(prefix=".edgernn-recipe-", dir=out_dir))
    try:
        for name in order:
            (scratch / name).mkdir()
            try:
                path = Path(exporter(run, scratch / name, "int8", mode, replace(options, recipe=name)))
            except (ExportError, ConfigError) as exc:
                rejected.append({"recipe": name, "reason": f"could not be built: {exc}"})
                continue
            gate = holdout.gate(run, path, mode)
            candidates.append((name, path, gate))
            if gate["passed"]:
                break
            if name != order[-1]:
                rejected.append({"recipe": name, "reason": verdict(gate), "gate": gate})
        if not candidates:
            if pinned:
                why = rejected[0]["reason"].removeprefix("could not be built: ")
                raise RecipeUnavailable(f"cannot build {fmt} {mode}-int8: {why}")
            raise ExportError(f"no int8 recipe could build {fmt} {mode}-int8: "
                              + "; ".join(f"{r['recipe']}: {r['reason']}" for r in rejected))
        name, path, gate = candidates[-1]
        if options.integer_only and not gate["passed"] and not pinned:
            tried = [r for r in rejected if r["recipe"] != name] + [{"recipe": name, "reason": verdict(gate)}]
            raise ExportError(f"no integer-only int8 recipe passes the gate for {fmt} {mode}-int8 ("
                              + "; ".join(f"{r['recipe']}: {_short(r['reason'])}" for r in tried)
                              + "); without --integer-only the order goes on to recipes with float activations, "
                              "which TFLite Micro and NPUs do not run")
        m = read_manifest(path)
        fields = {k: v for k, v in m.items() if k not in ("schema", "artifact", "sha256", "size_bytes",
                                                          "versions", "created") and not k.startswith("_")}
        q = dict(fields["quantization"])
        q["recipe"] = name
        q["selection"] = {"pinned": bool(pinned), "order": list(order), "gate": gate, "verdict": verdict(gate),
                          "rejected": rejected}
        if not gate["passed"]:
            q["note"] += (f"; FAILED the parity gate on {gate['windows']} held-out calibration windows" +
                          (" (pinned with --recipe)" if pinned else " with every recipe; kept the last one tried")
                          + "; `edgernn parity` judges it again on the test windows and says when it disagrees")
        fields["quantization"] = q
        return publish(path, out_dir / path.name, fields)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


def _short(reason: str) -> str:
    """The first clause of a recipe's rejection: 'failed on 10 held-out windows: accuracy 1.000, ...'."""
    import re

    text = re.sub(r" \((FAILED|on these|0\.99 x)[^()]*(\([^()]*\)[^()]*)*\)", "", reason).split("; ")[0]
    return text if len(text) <= 240 else text[:237] + "..."


def selection_summary(manifest: dict) -> str:
    """One line for people: 'int16x8 (full-int8 failed: ...)'."""
    q = manifest.get("quantization") or {}
    sel = q.get("selection")
    if not sel:
        return q.get("recipe", "")
    text = q["recipe"] + (" (pinned)" if sel.get("pinned") else "")
    if sel.get("rejected"):
        text += "; rejected " + ", ".join(r["recipe"] for r in sel["rejected"])
    if not selection_passed(manifest):
        text += f"; LOSES against float: {sel.get('verdict', 'failed its gate')}"
    return text


def selection_passed(manifest: dict) -> bool:
    """False when the kept int8 recipe failed its own export-time gate (pinned, or nothing passed)."""
    sel = (manifest.get("quantization") or {}).get("selection") or {}
    return bool((sel.get("gate") or {}).get("passed", True))


__all__ = ["RECIPES", "ORDER", "INTEGER_ONLY", "Recipe", "RecipeUnavailable", "builder", "export_int8",
           "check_recipe", "recipes_for", "selection_summary", "selection_passed"]
