"""
Writing artifact manifests (see docs/manifest.md; the reader lives in edgernn.runtimes.manifest so
device apps need no exporter code).

    write_manifest(path, {"format": "onnx", "runtime": "onnxruntime", ...})  # adds sha256, size, versions
"""

from __future__ import annotations

import datetime as _dt
import importlib.metadata as _md
import platform
from pathlib import Path

from ..rundir import atomic_write_json
from ..runtimes.manifest import SCHEMA, manifest_path, sha256_file

_TOOLS = ("edgernn", "torch", "numpy", "onnx", "onnxruntime", "onnxscript", "tensorflow-cpu",
          "tensorflow", "tf-keras", "ai-edge-litert")


def tool_versions() -> dict:
    out = {"python": platform.python_version()}
    for name in _TOOLS:
        try:
            out[name] = _md.version(name)
        except _md.PackageNotFoundError:
            pass
    return out


def write_manifest(artifact: Path | str, fields: dict) -> Path:
    """Write `<artifact>.json` atomically with `fields` plus schema, sha256, size, versions, time."""
    artifact = Path(artifact)
    m = {"schema": SCHEMA, "artifact": artifact.name}
    m.update(fields)
    m["sha256"] = sha256_file(artifact)
    m["size_bytes"] = artifact.stat().st_size
    m["versions"] = tool_versions()
    m["created"] = _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")
    path = manifest_path(artifact)
    atomic_write_json(path, m)
    return path
