"""
The runtime module a device app embeds: load an exported artifact and run it on raw sensor windows.

Imports only the standard library and numpy; the backend (onnxruntime or LiteRT) is imported on first
use, so `import edgernn.runtimes` never pulls torch or tensorflow (a test proves it).

    from edgernn.runtimes import load, available_runtimes
    s = load("artifacts/sequence-int8.tflite", threads=1)   # reads + verifies sequence-int8.tflite.json
    y = s.predict(window)        # raw window [T, C] (or batch [B, T, C]) -> float32 [K] (or [B, K])
    st = load("artifacts/step-float.onnx").stream()
    for frame in sensor:         # raw frame [C]
        y = st.step(frame)       # output after this frame; st.reset() starts a new sequence
    s.close()

One job per file:
    registry.py        runtime names -> backend classes, install hints, load()
    manifest.py        the manifest schema and its reader (sha256-verified)
    session.py         Session (predict) and Stream (step): normalization, padding, (de)quantization
    tensor.py          one input/output tensor: dtype, quantization parameters
    ort_backend.py     onnxruntime (.onnx, .ort)        litert_backend.py   LiteRT (.tflite)
    c_backend.py       C (.h: compiled, ctypes)          tflm_backend.py     TFLite Micro (.tflite, runtime="tflm")
    files.py           atomic writes                     bench.py / fingerprint.py: the on-device worker
"""

from __future__ import annotations

from edgernn.runtimes.registry import INSTALL, RUNTIMES, available_runtimes, load, missing_dependency
from edgernn.runtimes.session import Session
from edgernn.runtimes.stream import SaturationWarning, Stream

__all__ = ["load", "available_runtimes", "Session", "Stream", "SaturationWarning", "RUNTIMES", "INSTALL",
           "missing_dependency"]
