"""
The artifact manifest: its schema (one home, used by the exporters' writer and every reader) and the
reader. Standard library only: device apps embed this file.

Every artifact `X` (e.g. `sequence-int8.tflite`) has a manifest `X.json` beside it (docs/manifest.md).
A runtime needs only the artifact and its manifest.

    m = read_manifest("artifacts/sequence-int8.tflite")     # schema-checked, size + sha256 verified
    m["runtime"], m["preprocessing"]["mean"], m["quantization"]["compute"]
    problems = validate(fields)                              # [] when a dict follows the schema

int8 is described with one vocabulary for every format and op family (COMPUTE): per family
("recurrent": the GRU/LSTM/RNN cell, "head": the output layer) the manifest says how it computes:
    float         float32 weights and arithmetic
    weights-int8  int8 weights stored, dequantized to float before a float kernel runs
    dynamic-int8  int8 weights; activations quantized at run time, integer multiply, float in between
    int16x8       int16 activations, int8 weights, calibrated ranges, integer kernels (TFLite 16x8)
    full-int8     int8 (or int16 where the kernel needs it, e.g. the fused LSTM's cell state)
                  activations and weights, calibrated ranges, integer kernels end to end
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

from edgernn.errors import ManifestError

SCHEMA = "edgernn.manifest/2"
COMPUTE = ("float", "weights-int8", "dynamic-int8", "int16x8", "full-int8")
FAMILIES = ("recurrent", "head")
# The names every layer uses (the export registry, the CLI choices, the schema, load()) are defined
# here once: device apps embed this file, the exporters import it.
FORMAT_RUNTIME = {"onnx": "onnxruntime", "ort": "onnxruntime", "tflite": "litert", "c": "c"}  # format -> runtime
FORMAT_EXT = {"onnx": "onnx", "ort": "ort", "tflite": "tflite", "c": "h"}  # format -> artifact file extension
PRECISIONS = ("float", "int8", "dynamic")
MODES = ("sequence", "step")
TASKS = ("classify", "tag", "forecast")
ROLES = ("x", "y", "state")

# field -> (accepted JSON types, required). Extra fields are allowed (format-specific, documented).
FIELDS = {
    "schema": (str, True),
    "artifact": (str, True),
    "format": (str, True),
    "runtime": (str, True),
    "precision": (str, True),
    "mode": (str, True),
    "task": (str, True),
    "model": (dict, True),
    "quantization": (dict, True),
    "inputs": (list, True),
    "outputs": (list, True),
    "sequence_length": ((int, type(None)), True),
    "preprocessing": (dict, True),
    "labels": (list, True),
    "source": (dict, True),
    "sha256": (str, True),
    "size_bytes": (int, True),
    "versions": (dict, True),
    "created": (str, True),
    "state_layout": (str, False),
    "stateful_interpreter": (bool, False),
    "state_variables": (list, False),  # names of the interpreter's variable (state) tensors
    "c": (dict, False),  # C artifacts: prefix, API, state size, int8 scheme, target sizes (docs/manifest.md)
    "stream": (dict, False),  # step artifacts: the model's streaming horizon and reset_every (docs/manifest.md)
    "detector": (dict, False),  # audio classifiers: keyword detector settings and thresholds (runtimes/detector.py)
}
QUANTIZATION_FIELDS = {"recipe": str, "compute": dict, "int8_ops": list, "float_ops": list, "note": str}


# int8 recipes with no float op on the inference path (integer kernels end to end, float only where the I/O is
# quantized or dequantized): what TFLite Micro and an NPU run; edgernn.export.recipes builds them
INTEGER_ONLY_RECIPES = ("full-int8", "int16x8")


def integer_only(manifest: dict) -> bool:
    """True when a quantized artifact computes in integers end to end (quantization.integer_only, written by
    export since it was added; for older manifests: an integer-only recipe). Float and dynamic-range: False."""
    q = manifest.get("quantization") or {}
    if "integer_only" in q:
        return bool(q["integer_only"])
    return manifest.get("precision") != "float" and q.get("recipe") in INTEGER_ONLY_RECIPES


def compute_label(quantization: dict) -> str:
    """One short label for people: "full-int8" when every family agrees, else "recurrent float, head
    dynamic-int8"."""
    compute = (quantization or {}).get("compute") or {}
    values = [compute.get(f) for f in FAMILIES if compute.get(f)]
    if not values:
        return "?"
    if len(set(values)) == 1:
        return values[0]
    return ", ".join(f"{f} {compute[f]}" for f in FAMILIES if compute.get(f))


def validate(m) -> list[str]:
    """Every way `m` breaks the schema, as short phrases ([] = valid)."""
    if not isinstance(m, dict):
        return ["is not a JSON object"]
    problems = []
    for key, (types, required) in FIELDS.items():
        if key not in m:
            if required:
                problems.append(f"lacks the {key!r} field")
            continue
        if not isinstance(m[key], types) or (types is int and isinstance(m[key], bool)):
            problems.append(f"field {key!r} has the wrong type ({type(m[key]).__name__})")
    if problems:
        return problems
    if m["schema"] != SCHEMA:
        problems.append(f"has schema {m['schema']!r}, expected {SCHEMA!r} (re-export with this edgernn)")
    for key, valid in (("format", tuple(FORMAT_RUNTIME)), ("precision", PRECISIONS), ("mode", MODES), ("task", TASKS)):
        if m[key] not in valid:
            problems.append(f"{key} {m[key]!r} is not one of {', '.join(valid)}")
    q = m["quantization"]
    for key, typ in QUANTIZATION_FIELDS.items():
        if not isinstance(q.get(key), typ):
            problems.append(f"quantization.{key} is missing or not a {typ.__name__}")
    for fam, label in (q.get("compute") or {}).items() if isinstance(q.get("compute"), dict) else ():
        if fam not in FAMILIES or label not in COMPUTE:
            problems.append(f"quantization.compute {fam}={label!r}: families are {', '.join(FAMILIES)}, "
                            f"labels {', '.join(COMPUTE)}")
    for side in ("inputs", "outputs"):
        for i, t in enumerate(m[side]):
            if not isinstance(t, dict) or not isinstance(t.get("name"), str) or t.get("role") not in ROLES:
                problems.append(f"{side}[{i}] needs a name and a role ({', '.join(ROLES)})")
    pre = m["preprocessing"]
    if not (isinstance(pre.get("mean"), list) and isinstance(pre.get("std"), list)):
        problems.append("preprocessing needs mean and std lists")
    if m["mode"] == "step" and not m.get("stateful_interpreter") \
            and not any(isinstance(t, dict) and t.get("role") == "state" for t in m["inputs"]):
        problems.append("a step artifact needs state inputs (or a stateful interpreter)")
    return problems


def manifest_path(artifact: Path | str) -> Path:
    artifact = Path(artifact)
    return artifact.with_name(artifact.name + ".json")


def sha256_file(path: Path | str) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def read_manifest(artifact: Path | str, verify: bool = True) -> dict:
    """Load the manifest beside `artifact` (or the manifest file itself), check it against the schema
    and, if verify, check that the artifact's size and sha256 match what was recorded at export time.
    Raises ManifestError (an edgernn.errors.ArtifactError) naming what is wrong and the fix."""
    p = Path(artifact)
    if p.suffix == ".json":
        mpath = p
        p = p.with_name(p.name[: -len(".json")])
    else:
        mpath = manifest_path(p)
    if not p.is_file():
        raise ManifestError(f"artifact {p} does not exist")
    if not mpath.is_file():
        raise ManifestError(f"manifest {mpath} is missing; re-run `edgernn export` to write it")
    try:
        m = json.loads(mpath.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ManifestError(f"manifest {mpath} is not valid JSON ({exc}); re-run `edgernn export`") from exc
    if not isinstance(m, dict) or not str(m.get("schema", "")).startswith("edgernn.manifest/"):
        raise ManifestError(f"{mpath} is not an edgernn manifest (expected schema {SCHEMA!r})")
    problems = validate(m)
    if problems:
        raise ManifestError(f"manifest {mpath} {problems[0]}"
                            + (f" (+{len(problems) - 1} more)" if len(problems) > 1 else "")
                            + "; re-run `edgernn export`")
    if verify:
        size = p.stat().st_size
        if size != m["size_bytes"]:
            raise ManifestError(
                f"{p} is {size} bytes but its manifest records {m['size_bytes']}: the file was truncated "
                "or replaced after export; re-run `edgernn export`"
            )
        digest = sha256_file(p)
        if digest != m["sha256"]:
            raise ManifestError(
                f"{p} sha256 {digest[:12]}... does not match its manifest ({m['sha256'][:12]}...): the file "
                "was modified or swapped after export; re-run `edgernn export`"
            )
    m["_artifact_path"] = str(p)
    return m
