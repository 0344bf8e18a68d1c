"""
Writing artifact manifests (schema: edgernn.runtimes.manifest, which device apps embed; docs/manifest.md).

    fields = base_fields(run, "onnx", "int8", "sequence")     # what every format records
    fields.update(quantization=..., inputs=..., outputs=..., sequence_length=None)
    publish(tmp_file, out_dir / "sequence-int8.onnx", fields)  # artifact + manifest, atomically, validated
"""

from __future__ import annotations

import datetime as _dt
import importlib.metadata as _md
import platform
from pathlib import Path

from edgernn.errors import ExportError
from edgernn.runtimes.files import atomic_copy, atomic_write_json
from edgernn.runtimes.manifest import FORMAT_RUNTIME, SCHEMA, integer_only, manifest_path, sha256_file, validate

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


def base_fields(run, fmt: str, precision: str, mode: str) -> dict:
    """The fields every format's manifest has, from the run directory."""
    return {"format": fmt, "runtime": FORMAT_RUNTIME[fmt], "precision": precision, "mode": mode,
            "task": run.task, "model": run.config.to_dict(), "preprocessing": run.preprocessing(),
            "labels": list(run.labels),
            "source": {"run": Path(run.path).name, "model_sha256": run.identity["sha256"],
                       "model_summary": run.identity["summary"]}}


def manifest_for(artifact: Path, fields: dict) -> dict:
    """The complete manifest for `artifact`: fields + schema, sha256, size, versions, time; validated."""
    artifact = Path(artifact)
    m = {"schema": SCHEMA, "artifact": artifact.name}
    m.update(fields)
    if isinstance(m.get("quantization"), dict):  # said for every artifact, from its precision and recipe
        q = {k: v for k, v in m["quantization"].items() if k != "integer_only"}
        m["quantization"] = {**q, "integer_only": integer_only({**m, "quantization": q})}
    m["sha256"] = sha256_file(artifact)
    m["size_bytes"] = artifact.stat().st_size
    m["versions"] = tool_versions()
    m["created"] = _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")
    problems = validate(m)
    if problems:  # an exporter bug, not a user mistake: say which field
        raise ExportError(f"manifest for {artifact.name} breaks the schema: {'; '.join(problems)}; no file written")
    return m


def write_manifest(artifact: Path | str, fields: dict) -> Path:
    """Write `<artifact>.json` atomically (validated against the schema); returns its path."""
    path = manifest_path(artifact)
    atomic_write_json(path, manifest_for(Path(artifact), fields))
    return path


def publish(src: Path, artifact: Path, fields: dict) -> Path:
    """Put the checked file `src` in place as `artifact` atomically, then its manifest. On any failure
    neither a partial artifact nor a stale manifest is left behind."""
    artifact = Path(artifact)
    try:
        atomic_copy(src, artifact)
        write_manifest(artifact, fields)
    except BaseException as exc:
        artifact.unlink(missing_ok=True)
        manifest_path(artifact).unlink(missing_ok=True)
        if isinstance(exc, OSError):
            raise ExportError(f"could not write {artifact} or its manifest: {exc.strerror or exc}; "
                              "choose another output directory") from exc
        raise
    return artifact
