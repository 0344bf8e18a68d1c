"""
int8 recipes: how `--precision int8` is built. The recipes of a format are tried in a fixed order,
most integer first; each candidate goes through the parity gate (edgernn.parity.gate_artifact, the same
gate `edgernn parity` applies) on HELD-OUT calibration windows, and the first that passes is kept.

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

import shutil
import tempfile
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from ..errors import ConfigError, ExportError


@dataclass(frozen=True)
class Recipe:
    name: str
    formats: tuple
    help: str


RECIPES = {r.name: r for r in (
    Recipe("full-int8", ("tflite",),
           "int8 activations and weights, calibrated ranges, integer kernels end to end (the fused LSTM keeps "
           "its cell state in int16); the smallest and, on ARM, the fastest"),
    Recipe("int16x8", ("tflite", "c"),
           "int16 activations, int8 weights, integer kernels (TFLite 16x8; int8 C: int16 state, int32 accumulators, "
           "fixed-point requantization); 256x finer activations where full int8 loses accuracy, ~2x the "
           "activation memory; an LSTM step carries h and c as int16 state tensors (no 16x8 sequence "
           "LSTM: the fused op has no 16x8 kernel)"),
    Recipe("dynamic", ("tflite", "onnx"),
           "int8 weights, no calibration: activations are quantized at run time where the kernel can "
           "(dynamic-int8), weights are dequantized to float elsewhere (weights-int8); float I/O"),
    Recipe("weights-int8", ("onnx",),
           "LSTM: the recurrent weights stored int8 (one scale per output row) behind DequantizeLinear, the LSTM "
           "op computing in float, the head dynamic-int8: about a third of the float file where the integer "
           "LSTM kernel (dynamic) loses accuracy; for a GRU/RNN this is what dynamic builds"),
    Recipe("int8-head", ("onnx",),
           "only the output layer is quantized (dynamic-int8); the GRU/LSTM/RNN op keeps float weights and "
           "float compute: the fallback when int8 recurrent weights cost accuracy"),
    Recipe("integer-matmul", ("onnx",),
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
HOLDOUT_EVERY = 4  # every 4th calibration window is held out for the recipe gate
STRESS_AMPLITUDES = (0.25, 0.5, 1.5)  # stress copies of the training windows, scaled around the training mean
STRESS_NOISE = 0.1  # and with gaussian noise of this many training standard deviations
STRESS_BASE = 200  # training windows the stress set perturbs
# a stress window whose output is off by more than this share of the float output range is a gross error:
# rounding noise does not do that (dynamic and ONNX int8 stayed near 3% or less on the stress sets measured),
# a broken state or a clipped range does (full-int8 GRU h32: 52% on 2 of 200 copies, and it lost a test window)
STRESS_GROSS = 0.25
# ... unless the float model itself moves that much there: a stress copy is FRAGILE when one of
# FRAGILE_DRAWS copies of the float model, each weight matrix perturbed by uniform noise of half an int8 step
# (its row's max|w| / 127, what storing it in int8 does), is off by more than STRESS_GROSS of the range.
# Every int8 recipe stores int8 weights, so on such a copy a gross error is a lottery, not a broken artifact.
# Measured on basic-motions LSTM h64 (stress copies 142, 188, 100): 8, 3 and 4 of 20 draws were gross; the
# ONNX weights-int8 artifact was gross on 188 (4.8 > 3.05), TFLite dynamic on none (2.7) - chance, not quality
FRAGILE_DRAWS = 16
MIN_HOLDOUT = 4  # below 2 * this many calibration windows there is nothing to spare: gate on all of them


class RecipeUnavailable(ExportError):
    """A pinned recipe cannot build this format and mode (e.g. int16x8 and the fused sequence LSTM): export_run
    records the combination as skipped, with the reason, and builds the others."""


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


def calibration_split(run) -> tuple[np.ndarray, np.ndarray]:
    """Indices into run.data()["X_calib"]: (calibrate, held out). With fewer than 2 * MIN_HOLDOUT
    windows both are all windows (the manifest then says the gate saw the calibration windows)."""
    n = len(run.data()["X_calib"])
    idx = np.arange(n)
    if n < 2 * MIN_HOLDOUT:
        return idx, idx
    hold = idx[HOLDOUT_EVERY - 1::HOLDOUT_EVERY]
    return np.setdiff1d(idx, hold), hold


def calibration_windows(run) -> np.ndarray:
    """The raw windows int8 calibration may use (held-out windows excluded)."""
    return run.data()["X_calib"][calibration_split(run)[0]]


class Holdout:
    """Held-out windows with their float references, computed once per export_run."""

    def __init__(self, run, gates):
        from ..reference import torch_outputs
        from ..train import score_outputs

        d = run.data()
        calib, hold = calibration_split(run)
        self.shared = len(calib) == len(hold)
        self.X = d["X_calib"][hold]
        self.y = d["y_calib"][hold]
        self.lengths = d["len_calib"][hold] if "len_calib" in d else np.full(len(hold), run.seq_len)
        self.ref = torch_outputs(run, self.X)
        self.ref_metrics = score_outputs(self.ref, self.y, self.lengths, run.task, denormalized=True)
        self.gates = gates
        self._stream_ref = None
        # the stress set: the saved training windows (up to STRESS_BASE) perturbed the way field data
        # differs from training data (quieter / louder signals, sensor noise, another phase of the pattern):
        # no perturbed copy was seen by calibration. Labels may not survive a perturbation, so an artifact
        # must AGREE with the float model there (top-1, classify/tag). Measured on the demo GRU h32: full-int8
        # step agreed 100% on the 10 held-out windows and on 50 perturbed copies of them, yet lost a test
        # window; on 200 copies of all 40 training windows it agreed 95-97.5% while dynamic agreed 100%.
        if run.task != "forecast":
            pre = run.preprocessing()
            mean, std = (np.asarray(pre[k], np.float32) for k in ("mean", "std"))
            rng = np.random.default_rng(0)
            X = d["X_calib"][:STRESS_BASE].astype(np.float32)
            variants = [mean + (X - mean) * a for a in STRESS_AMPLITUDES]
            variants.append(X + STRESS_NOISE * std * rng.standard_normal(X.shape).astype(np.float32))
            variants.append(np.roll(X, X.shape[1] // 2, axis=1))
            self.X_stress = np.concatenate(variants).astype(np.float32)
            self.ref_stress = torch_outputs(run, self.X_stress)
            self.stress_limit = STRESS_GROSS * float(self.ref_stress.max() - self.ref_stress.min())
            self.fragile = fragile_copies(run, self.X_stress, self.ref_stress, self.stress_limit)

    def stream_ref(self, run):
        from ..parity import StreamReference, stream_windows_for

        if self._stream_ref is None:
            n = stream_windows_for(self.gates.stream_frames, self.X.shape[1])
            self._stream_ref = StreamReference(run, self.X, n)
        return self._stream_ref

    def gate(self, run, path: Path, mode: str) -> dict:
        from ..parity import gate_artifact

        row = gate_artifact(run, path, self.X, self.y, self.lengths, self.ref, self.ref_metrics, self.gates,
                            stream_ref=self.stream_ref(run) if mode == "step" else None)
        out = {"windows": int(len(self.X)), "held_out": not self.shared, "passed": row["passed"],
               "gate": row["gate"], "max_abs_diff": row["max_abs_diff"]}
        for key in ("accuracy", "rmse", "agreement"):
            if row.get(key) is not None:
                out[key] = row[key]
        if row.get("long_stream"):
            ls = row["long_stream"]
            out["long_stream"] = {k: ls[k] for k in ("passed", "gate", "agreement", "drift_ratio",
                                                           "fragile_blocks") if k in ls}
        if run.task != "forecast":
            from ..parity import run_artifact
            from ..runtimes import load

            got, _ = run_artifact(load(path), self.X_stress, mode, run.task)
            agree = float(np.mean(got.argmax(-1) == self.ref_stress.argmax(-1)))
            need = self.gates.min_accuracy_ratio
            err = np.abs(got - self.ref_stress).reshape(len(got), -1).max(-1)
            over = err > self.stress_limit
            gross = int(np.sum(over & ~self.fragile))
            out["stress"] = {"windows": int(len(self.X_stress)), "agreement": agree,
                             "max_abs_diff": float(err.max()), "gross_errors": gross,
                             "fragile_copies": int(self.fragile.sum()),
                             "gross_on_fragile": int(np.sum(over & self.fragile)),
                             "gate": f"agreement with float >= {need:g} and no output off by more than "
                                     f"{STRESS_GROSS:.0%} of the float output range ({self.stress_limit:.3g}) on "
                                     f"{len(self.X_stress)} perturbed copies (amplitude "
                                     f"x{', x'.join(f'{a:g}' for a in STRESS_AMPLITUDES)}, noise "
                                     f"{STRESS_NOISE:g} std, half-window roll), except the "
                                     f"{int(self.fragile.sum())} where the float model itself moves that much "
                                     "under int8-sized weight noise",
                             "passed": agree >= need - 1e-12 and gross == 0}
            out["passed"] = out["passed"] and out["stress"]["passed"]
        return out


def fragile_copies(run, X: np.ndarray, ref: np.ndarray, limit: float, draws: int | None = None) -> np.ndarray:
    """[N] bool: windows where some float model with int8-sized weight noise (see FRAGILE_DRAWS) is off
    from `ref` by more than `limit`. Seeded: the same run gives the same mask."""
    from ..reference import torch_outputs, weight_noise_models

    fragile = np.zeros(len(X), bool)
    for model in weight_noise_models(run, FRAGILE_DRAWS if draws is None else draws):
        out = torch_outputs(run, X, model=model)
        fragile |= np.abs(out - ref).reshape(len(X), -1).max(-1) > limit
    return fragile


def _verdict(g: dict) -> str:
    parts = []
    if "accuracy" in g:
        parts.append(f"accuracy {g['accuracy']:.3f}")
    if "rmse" in g:
        parts.append(f"rmse {g['rmse']:.4g}")
    parts.append(f"gate {g['gate']}")
    ls = g.get("long_stream")
    if ls and not ls["passed"]:
        parts.append(f"long stream failed ({ls['gate']})")
    st = g.get("stress")
    if st:
        parts.append(f"stress agreement {st['agreement']:.3f}, {st['gross_errors']} gross errors on {st['windows']} "
                     "perturbed copies"
                     + (f" ({st['gross_on_fragile']} more where the float model is fragile)"
                        if st.get("gross_on_fragile") else "")
                     + ("" if st["passed"] else f" (FAILED: {st['gate']}, max|diff| {st['max_abs_diff']:.3g})"))
    return f"{'passed' if g['passed'] else 'failed'} on {g['windows']} held-out windows: " + ", ".join(parts)


def export_int8(run, out_dir: Path, fmt: str, mode: str, options, exporter, holdout: Holdout | None = None,
                gates=None) -> Path:
    """Build `{mode}-int8.{ext}` with the first recipe of ORDER[fmt] that passes the parity gate on held-out
    calibration windows (or with options.recipe alone, kept whatever the gate says). Candidates are built
    in a scratch directory; only the kept one reaches out_dir, with its manifest extended by the selection."""
    from ..parity import Gates
    from ..runtimes.manifest import read_manifest
    from .manifest import publish

    pinned = options.recipe
    order = (pinned,) if pinned else ORDER[fmt]
    if pinned and fmt not in RECIPES[pinned].formats:
        raise ConfigError(f"recipe {pinned!r} is for --format {', '.join(RECIPES[pinned].formats)}, not {fmt}")
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
                rejected.append({"recipe": name, "reason": _verdict(gate), "gate": gate})
        if not candidates:
            if pinned:
                why = rejected[0]["reason"].removeprefix("could not be built: ")
                raise RecipeUnavailable(f"cannot build {fmt} {mode}-int8: {why}")
            raise ExportError(f"no int8 recipe could build {fmt} {mode}-int8: "
                              + "; ".join(f"{r['recipe']}: {r['reason']}" for r in rejected))
        name, path, gate = candidates[-1]
        m = read_manifest(path)
        fields = {k: v for k, v in m.items() if k not in ("schema", "artifact", "sha256", "size_bytes",
                                                          "versions", "created") and not k.startswith("_")}
        q = dict(fields["quantization"])
        q["recipe"] = name
        q["selection"] = {"pinned": bool(pinned), "order": list(order), "gate": gate, "verdict": _verdict(gate),
                          "rejected": rejected}
        if not gate["passed"]:
            q["note"] += ("; FAILED the parity gate on held-out calibration windows" +
                          (" (pinned with --recipe)" if pinned else " with every recipe; kept the last one tried"))
        fields["quantization"] = q
        return publish(path, out_dir / path.name, fields)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


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


__all__ = ["RECIPES", "ORDER", "Recipe", "RecipeUnavailable", "export_int8", "calibration_split",
           "calibration_windows", "check_recipe", "recipes_for", "selection_summary", "selection_passed"]
