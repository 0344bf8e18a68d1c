"""
One model input or output as a session sees it: the manifest's spec plus the backend's dtype and
quantization, with float32 <-> int8/int16 conversion. Standard library + numpy only.
"""

from __future__ import annotations

import numpy as np

F32 = np.dtype(np.float32)


class Tensor:
    """name, shape, role ("x" | "y" | "state"), next (for a state output: the input it feeds), dtype,
    scale / zero_point / qmin / qmax (quantized tensors only), index (the backend's tensor id),
    plain (float32: nothing to convert)."""

    __slots__ = ("name", "shape", "role", "next", "dtype", "scale", "zero_point", "qmin", "qmax", "index", "plain")

    def __init__(self, spec: dict, dtype, scale=None, zero_point=None, index=None):
        self.name = spec["name"]
        self.shape = spec.get("shape")
        self.role = spec.get("role", "x")
        self.next = spec.get("next")
        self.dtype = np.dtype(dtype)
        self.index = index
        quantized = self.dtype.kind in "iu"
        self.scale = float(scale) if quantized and scale else None
        self.zero_point = int(zero_point or 0) if quantized else None
        if quantized:
            info = np.iinfo(self.dtype)
            self.qmin, self.qmax = info.min, info.max
        else:
            self.qmin = self.qmax = None
        self.plain = self.dtype == F32

    def quantize(self, x: np.ndarray) -> np.ndarray:
        """float32 -> the tensor's dtype: round(x / scale) + zero_point, clipped (identity for float32)."""
        if self.scale is None:
            return x if x.dtype == self.dtype else x.astype(self.dtype)
        q = np.round(x / np.float32(self.scale)) + np.float32(self.zero_point)
        np.clip(q, self.qmin, self.qmax, out=q)
        return q.astype(self.dtype)

    def dequantize(self, y: np.ndarray) -> np.ndarray:
        """The tensor's dtype -> float32: (q - zero_point) * scale."""
        if self.scale is None:
            return y if y.dtype == F32 else y.astype(F32)
        return ((y.astype(F32) - np.float32(self.zero_point)) * np.float32(self.scale)).astype(F32)
