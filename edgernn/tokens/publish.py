"""
Publishing a token artifact: the file and its manifest written atomically, the manifest schema-checked, nothing
left behind on failure; and the constants every token export shares (formats, ONNX opset, float tolerance).

    publish(tmp / "decoder.onnx", out / "decoder-float.onnx", fields)   # + decoder-float.onnx.json
    sess = ort_session(path)                                            # how exports check their ONNX graphs
    to_ort(tmp / "decoder.onnx", tmp / "decoder.ort", "decoder")        # the ORT format of a graph
"""

from __future__ import annotations

from pathlib import Path

from edgernn.errors import ExportError
from edgernn.export.manifest import tool_versions
from edgernn.runtimes.files import atomic_copy, atomic_write_json
from edgernn.runtimes.manifest import manifest_path, sha256_file
from edgernn.runtimes.token_manifest import validate_tokens

TOKEN_FORMATS = ("onnx", "ort", "tflite", "c")
OPSET = 17
TOLERANCE = 1e-4  # float artifacts vs torch: max |diff| (relative to the largest logit where a check says so)


def ort_session(path: Path):
    import onnxruntime as ort

    so = ort.SessionOptions()
    so.log_severity_level = 3
    so.intra_op_num_threads = 1
    return ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"])



def to_ort(src: Path, dst: Path, what: str) -> Path:
    """An ONNX graph converted to the ORT format (what mobile and minimal onnxruntime builds load) with basic,
    provider-independent optimizations only; ExportError of one line if onnxruntime refuses."""
    import onnxruntime as ort

    so = ort.SessionOptions()
    so.log_severity_level = 3
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_BASIC
    so.optimized_model_filepath = str(dst)
    so.add_session_config_entry("session.save_model_format", "ORT")
    try:
        ort.InferenceSession(str(src), so, providers=["CPUExecutionProvider"])
    except Exception as exc:  # onnxruntime raises its own exception types
        raise ExportError(f"onnxruntime could not convert the {what} to the ORT format: {str(exc).splitlines()[0]}; "
                          "no file written") from exc
    return Path(dst)


def publish(src: Path, artifact: Path, fields: dict) -> None:
    m = {"artifact": artifact.name, **fields}
    try:
        atomic_copy(src, artifact)
        m.update(sha256=sha256_file(artifact), size_bytes=artifact.stat().st_size, versions=tool_versions())
        problems = validate_tokens(m)
        if problems:
            raise ExportError(f"manifest for {artifact.name} breaks the schema: {'; '.join(problems)}")
        atomic_write_json(manifest_path(artifact), m)
    except BaseException:
        artifact.unlink(missing_ok=True)
        manifest_path(artifact).unlink(missing_ok=True)
        raise
