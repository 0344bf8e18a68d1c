"""
Reading and verifying artifact manifests (standard library only: device apps embed this).

Every artifact `X` (e.g. `sequence-int8.tflite`) has a manifest `X.json` beside it. The schema is
documented in docs/manifest.md. A runtime needs only the artifact and its manifest.

    m = read_manifest("artifacts/sequence-int8.tflite")     # verifies size and sha256
    m["runtime"], m["preprocessing"]["mean"], m["inputs"][0]["shape"]
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

SCHEMA = "edgernn.manifest/1"


class ManifestError(Exception):
    """The artifact or its manifest is missing, corrupt, or they do not match."""


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
    """Load the manifest beside `artifact` (or the manifest file itself) and, if verify, check that
    the artifact's size and sha256 match what was recorded at export time."""
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
        raise ManifestError(f"manifest {mpath} is not valid JSON ({exc}); re-run `edgernn export`") from None
    if not isinstance(m, dict) or m.get("schema") != SCHEMA:
        raise ManifestError(f"{mpath} is not an edgernn manifest (expected schema {SCHEMA!r})")
    for key in ("format", "runtime", "precision", "mode", "inputs", "outputs", "preprocessing", "sha256", "size_bytes"):
        if key not in m:
            raise ManifestError(f"manifest {mpath} lacks the {key!r} field; re-run `edgernn export`")
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
