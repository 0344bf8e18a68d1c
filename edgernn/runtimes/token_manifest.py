"""
The manifest of a token artifact (an encoder, a decoder step, a token classifier): what a device needs to
turn text into ids, run the artifact and decode what it generates. Standard library only: device apps embed it.

Beside every token artifact `X` (e.g. `decoder-float.onnx`) sits `X.json` (docs/tokens.md):

    {"schema": "edgernn.tokens/1", "artifact": "decoder-float.onnx", "format": "onnx", "runtime": "onnxruntime",
     "precision": "float", "part": "decoder",  # encoder | decoder | encoder-decoder | classifier | tagger | lm
     "task": "seq2seq", "model": {...TokenModelConfig...},
     "vocab": {"tokenizer": "chars", "src": {...}, "tgt": {...}, "labels": [...]},
     "decoding": {"bos": 2, "eos": 3, "max_extra": 10, "method": "beam", "width": 4},
     "inputs": [{"name": "token", "dtype": "int64", "shape": [1]}, ...], "outputs": [...],
     "quantization": {"compute": {...}, "recipe": "..."},
     "source": {"run": "g2p", "model_sha256": "..."}, "sha256": "...", "size_bytes": 123, "versions": {...}}

    m = read_token_manifest("artifacts/decoder-float.onnx")   # schema-checked, size + sha256 verified
"""

from __future__ import annotations

import json
from pathlib import Path

from edgernn.errors import ManifestError
from edgernn.runtimes.manifest import FORMAT_RUNTIME, manifest_path, sha256_file

TOKEN_SCHEMA = "edgernn.tokens/1"
# encoder-decoder: one C file holding both; lm: a next-token model's step
PARTS = ("encoder", "decoder", "encoder-decoder", "classifier", "tagger", "lm")
TOKEN_FIELDS = {"schema": str, "artifact": str, "format": str, "runtime": str, "precision": str, "part": str,
                "task": str, "model": dict, "vocab": dict, "inputs": list, "outputs": list, "quantization": dict,
                "source": dict, "sha256": str, "size_bytes": int}


def validate_tokens(m) -> list[str]:
    if not isinstance(m, dict):
        return ["is not a JSON object"]
    problems = [f"lacks the {k!r} field" if k not in m else f"field {k!r} has the wrong type"
                for k, t in TOKEN_FIELDS.items() if not isinstance(m.get(k), t)]
    if problems:
        return problems
    if m["schema"] != TOKEN_SCHEMA:
        problems.append(f"has schema {m['schema']!r}, expected {TOKEN_SCHEMA!r} (re-export with this edgernn)")
    if m["format"] not in FORMAT_RUNTIME:
        problems.append(f"format {m['format']!r} is not one of {', '.join(FORMAT_RUNTIME)}")
    if m["part"] not in PARTS:
        problems.append(f"part {m['part']!r} is not one of {', '.join(PARTS)}")
    if not isinstance(m["vocab"].get("src"), dict):
        problems.append("vocab needs the source vocabulary")
    if m["part"] in ("decoder", "encoder-decoder", "lm") and not isinstance(m.get("decoding"), dict):
        problems.append("a decoder needs a decoding block (bos, eos, max_extra)")
    return problems


def read_token_manifest(artifact: Path | str, verify: bool = True) -> dict:
    """The manifest beside a token artifact, schema-checked; with verify, the artifact's size and sha256 too."""
    p = Path(artifact)
    mpath = manifest_path(p)
    try:
        m = json.loads(mpath.read_text())
    except FileNotFoundError as exc:
        raise ManifestError(f"{p.name} has no manifest ({mpath.name}); re-export the run") from exc
    except (OSError, ValueError) as exc:
        raise ManifestError(f"{mpath.name} is not readable JSON ({exc}); re-export the run") from exc
    problems = validate_tokens(m)
    if problems:
        raise ManifestError(f"{mpath.name} {'; '.join(problems)}")
    if verify:
        if not p.is_file():
            raise ManifestError(f"{p} is missing (its manifest is there); re-export the run")
        if p.stat().st_size != m["size_bytes"] or sha256_file(p) != m["sha256"]:
            raise ManifestError(f"{p.name} does not match its manifest (size or sha256 changed since export); "
                                "re-export the run")
    return m


def zero_state(manifest: dict) -> tuple:
    """A step artifact's first state: float32 zeros shaped as the manifest's state inputs (h, and c for an LSTM)."""
    import numpy as np

    return tuple(np.zeros([int(d) for d in t["shape"]], np.float32) for t in manifest["inputs"]
                 if t.get("role") == "state")
