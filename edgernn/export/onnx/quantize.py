"""
The ONNX int8 recipes (edgernn.export.recipes names them RECIPES[name].builders["onnx"]): each turns the
checked float export into the int8 graph of its recipe with onnxruntime's dynamic quantization. One
signature for all: builder(Build) -> (int8 artifact path, extra fields for the manifest's quantization block).

    build = recipes.builder("dynamic", "onnx")                  # edgernn.export.onnx.quantize.dynamic
    artifact, extra = build(Build(run, model, "sequence", float_path, tmpdir))

  dynamic         quant_pre_process, then quantize_dynamic (int8 weights): LSTM becomes
                  com.microsoft::DynamicQuantizeLSTM and the head MatMulInteger. onnxruntime has no integer
                  GRU or RNN: their op stays float, with W and R stored int8 behind DequantizeLinear
                  (edgernn.export.onnx.integer_matmul), so the manifest says "recurrent": "weights-int8".
  weights-int8    LSTM only: its W and R stored int8 behind DequantizeLinear, the LSTM op computing in
                  float, the head dynamic-int8 (for a GRU/RNN this is what dynamic builds: ConfigError).
  int8-head       quantize_dynamic of the head only: the recurrent op keeps float weights.
  integer-matmul  GRU/RNN rewritten as MatMul ops in a Loop (exported and checked against torch like the
                  float graph), quantized with subgraphs: MatMulInteger runs the recurrence; it is timed
                  against the float GRU op, returned as extra {"latency_us": ...}.
export_onnx then gives every int8 graph compact tensor names and checks that it runs (edgernn.export.onnx.convert).
"""

from __future__ import annotations

import platform
from dataclasses import dataclass
from pathlib import Path

from edgernn.errors import ConfigError, ExportError, require
from edgernn.export.onnx import integer_matmul as onnx_integer
from edgernn.export.onnx import torch_to_onnx

HEAD_OPS = ("MatMul", "Gemm")  # the ops of the head (and of nothing else in a native-op graph)


@dataclass(frozen=True)
class Build:
    """What every ONNX recipe builder takes: the run, its float model, the mode, the float graph already
    exported and checked against torch, and the scratch directory the int8 graph is written to."""
    run: object
    model: object
    mode: str
    float_path: Path
    tmpdir: Path


def dynamic(b: Build) -> tuple[Path, dict]:
    artifact = quantize(b.float_path, b.tmpdir)
    onnx_integer.store_recurrent_weights_int8(artifact)
    return artifact, {}


def weights_int8(b: Build) -> tuple[Path, dict]:
    why = onnx_integer.weights_int8_problem(b.run.config)
    if why:
        raise ConfigError(why)
    artifact = quantize(b.float_path, b.tmpdir, op_types=HEAD_OPS)
    onnx_integer.store_recurrent_weights_int8(artifact, ops=("LSTM",))
    return artifact, {}


def int8_head(b: Build) -> tuple[Path, dict]:
    return quantize(b.float_path, b.tmpdir, op_types=HEAD_OPS), {}


def integer_matmul(b: Build) -> tuple[Path, dict]:
    torch = require("torch", "train")
    cfg, mode, seq_len = b.run.config, b.mode, b.run.seq_len
    explicit = b.tmpdir / "explicit.onnx"
    xnet = onnx_integer.explicit_net(b.model, mode)
    torch_to_onnx.torch_export(torch, xnet, cfg, mode, explicit, seq_len)
    torch_to_onnx.validate_against_torch(torch, xnet, b.model, cfg, mode, explicit, seq_len)
    artifact = quantize(explicit, b.tmpdir, subgraphs=True)
    torch_to_onnx.check_runs(artifact, cfg, mode, seq_len)
    sess = torch_to_onnx.session(require("onnxruntime", "onnx"), artifact)
    feeds = torch_to_onnx.random_feeds(sess, 1, seq_len, seed=0)
    latency = {"this_us": round(onnx_integer.latency_us(artifact, feeds, mode), 1),
               "float_op_us": round(onnx_integer.latency_us(b.float_path, feeds, mode), 1),
               "per": "window" if mode == "sequence" else "frame", "batch": 1,
               "measured_on": platform.machine()}
    return artifact, {"latency_us": latency}


def frontend_nodes(path: Path) -> list[str]:
    """Nodes of an audio model's front end (named under /frontend/ by the exporter): they stay float - the
    log power spectrum of int8 DFT weights is far off where the spectrum is weak (measured: a 3-tone set
    went from 0.94 to 0.33-0.50 accuracy)."""
    onnx = require("onnx", "onnx")
    return [n.name for n in onnx.load(str(path), load_external_data=False).graph.node if "/frontend/" in n.name]


def quantize(float_path: Path, tmpdir: Path, subgraphs: bool = False, op_types: tuple | None = None) -> Path:
    """onnxruntime dynamic quantization (int8 weights) of float_path into tmpdir/int8.onnx: every
    quantizable op, or only op_types; subgraphs=True reaches into Loop bodies too."""
    from onnxruntime.quantization import QuantType, quantize_dynamic
    from onnxruntime.quantization.shape_inference import quant_pre_process

    pre = tmpdir / "pre.onnx"
    out = tmpdir / "int8.onnx"
    try:
        # pre-processing (shape inference + folding) first: without it large LSTMs can stay float
        quant_pre_process(str(float_path), str(pre))
        quantize_dynamic(str(pre), str(out), weight_type=QuantType.QInt8,
                         op_types_to_quantize=list(op_types) if op_types else None,
                         nodes_to_exclude=frontend_nodes(pre),
                         extra_options={"EnableSubgraph": True} if subgraphs else None)
    except Exception as exc:
        first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise ExportError(f"onnxruntime int8 quantization failed: {first}; no file written") from exc
    return out
