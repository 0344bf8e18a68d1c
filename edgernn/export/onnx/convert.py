"""
ONNX export (float and int8, full-sequence and streaming) and the ORT format for mobile builds.

    path = export_onnx(run, run.artifacts_dir, "int8", "sequence")          # sequence-int8.onnx
    ort_path = export_ort(run, run.artifacts_dir, "int8", "sequence", ExportOptions(source=path))
    onnx_op_types(path)   # ['Shape', ..., 'com.microsoft::DynamicQuantizeLSTM', ..., 'MatMulInteger', ...]

Sequence artifacts take "x" [batch, time, C] (normalized input) with batch AND time dynamic and return
"y" ([batch, K], or [batch, time, K] for the tag head). Step artifacts take one frame "x" [batch, C]
plus the state "h" [layers, batch, H] (and "c" for LSTM) and return "y", "h_out" (, "c_out"); feed
h_out back as h on the next frame, starting from zeros. Bidirectional models cannot stream.

How: the TorchScript exporter (torch.onnx.export(dynamo=False), opset 17). Measured with torch 2.13:
it emits one native ONNX LSTM/GRU/RNN node per layer, keeps the time axis dynamic across repeated
exports in one process and takes ~0.05 s; the dynamo exporter took 3-14 s per export, froze the time
axis on the 2nd export of an RNN type in a process (a dispatch-cache bug of torch 2.13: clearing
aten.{lstm,gru}.input._dispatch_cache before each export also fixes it) and
unrolled nn.RNN into hundreds of nodes with a fixed time axis. Every export is checked by onnxruntime
against torch (max|diff| <= 1e-4 at the example length, a shorter and a longer one, and other batch
sizes; edgernn.export.onnx.torch_to_onnx); on failure ExportError is raised and no file is left behind.

int8: options.recipe (edgernn.export.recipes picks one; default dynamic) names the builder that quantizes
the checked float graph (recipes.builder(recipe, "onnx"): dynamic, weights-int8, int8-head, integer-matmul
in edgernn.export.onnx.quantize); every int8 graph then gets compact tensor names and must run at every
checked size. The manifest's "quantization" block is computed from the quantized graph, not assumed.
"""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

from edgernn.errors import ArtifactError, ExportError, require
from edgernn.export import recipes
from edgernn.export.formats import ExportOptions, check_combination
from edgernn.export.manifest import base_fields, publish
from edgernn.export.onnx import integer_matmul as onnx_integer
from edgernn.export.onnx import torch_to_onnx
from edgernn.export.onnx.quantize import Build
from edgernn.runtimes.manifest import read_manifest

RECURRENT_OPS = ("LSTM", "GRU", "RNN")
# ops that do the multiply-accumulate work; everything else is shape plumbing or elementwise
FLOAT_COMPUTE_OPS = RECURRENT_OPS + ("MatMul", "Gemm", "Conv")
INT8_COMPUTE_OPS = ("DynamicQuantizeLSTM", "MatMulInteger", "DynamicQuantizeLinear", "DynamicQuantizeMatMul",
                    "QGemm", "QLinearMatMul", "ConvInteger", "MatMulIntegerToFloat", "QLinearConv")


# ----------------------------------------------------------------------------------------------------------
# public API
# ----------------------------------------------------------------------------------------------------------
def export_onnx(run, out_dir: Path, precision: str = "float", mode: str = "sequence",
                options: ExportOptions | None = None) -> Path:
    """Export run.load_model() to out_dir/f"{mode}-{precision}.onnx" + manifest; returns the artifact path.
    precision: "float" | "int8". mode: "sequence" | "step"."""
    check_combination("onnx", precision, mode)
    from edgernn.models import StepModel

    torch = require("torch", "train")
    require("onnx", "onnx")
    require("onnxruntime", "onnx")
    cfg = run.config
    model = run.load_model()
    net = StepModel(model) if mode == "step" else model  # ConfigError for bidirectional step: propagate
    out_dir = Path(out_dir)
    final = out_dir / f"{mode}-{precision}.onnx"
    tmpdir = _make_tmpdir(out_dir)
    try:
        float_path = tmpdir / "float.onnx"
        torch_to_onnx.torch_export(torch, net, cfg, mode, float_path, run.seq_len)
        ops = onnx_op_types(float_path)
        n_rnn = sum(op in RECURRENT_OPS for op in ops)
        if n_rnn != cfg.layers:
            raise ExportError(
                f"ONNX export of {torch_to_onnx.describe(cfg, mode)} produced {n_rnn} native recurrent nodes for "
                f"{cfg.layers} layer(s) (the exporter unrolled the recurrence); no file written"
            )
        torch_to_onnx.validate_against_torch(torch, net, model, cfg, mode, float_path, run.seq_len)
        artifact, extra = float_path, {}
        recipe = (options.recipe if options else None) or "dynamic"
        if precision == "int8":
            build = recipes.builder(recipe, "onnx")  # edgernn.export.onnx.quantize: one function per recipe
            artifact, extra = build(Build(run, model, mode, float_path, tmpdir))
            onnx_integer.compact_names(artifact)
            torch_to_onnx.check_runs(artifact, cfg, mode, run.seq_len)
        fields = base_fields(run, "onnx", precision, mode)
        q = quantization_block(onnx_op_types(artifact), precision, cfg.cell, recipe)
        q.update(extra)
        latency = q.get("latency_us")
        if latency:
            slower = latency["this_us"] / latency["float_op_us"]
            latency["faster"] = "float GRU op" if slower > 1 else "integer-matmul"
            q["note"] += (f"; measured at export on {latency['measured_on']}: {latency['this_us']:g} us per "
                          f"{latency['per']} vs {latency['float_op_us']:g} us for the float {cfg.cell.upper()} op "
                          f"({slower:.1f}x {'slower' if slower > 1 else 'faster'})")
        fields.update(quantization=q,
                      inputs=_io_inputs(cfg, mode), outputs=_io_outputs(cfg, mode), sequence_length=None)
        if mode == "step":
            fields["state_layout"] = _state_layout(cfg)
        return publish(artifact, final, fields)
    finally:
        shutil.rmtree(tmpdir, ignore_errors=True)


def export_ort(run, out_dir: Path, precision: str, mode: str, options: ExportOptions) -> Path:
    """Convert the .onnx artifact options.source (with manifest) into the ORT format (what mobile/minimal
    ORT builds load): out_dir/f"{mode}-{precision}.ort" + its own manifest (format "ort", same fields)."""
    check_combination("ort", precision, mode)
    ort = require("onnxruntime", "ort")
    if options is None or options.source is None:
        raise ArtifactError("the ORT format is converted from an .onnx artifact: pass ExportOptions(source=...)")
    src = Path(options.source)
    m = read_manifest(src)
    if m["format"] != "onnx" or (m["precision"], m["mode"]) != (precision, mode):
        raise ArtifactError(f"{src} is a {m['format']} {m['precision']} {m['mode']} artifact; the ORT {precision} "
                            f"{mode} artifact needs the matching .onnx")
    final = Path(out_dir) / f"{mode}-{precision}.ort"
    tmpdir = _make_tmpdir(final.parent)
    try:
        tmp = tmpdir / final.name
        so = torch_to_onnx.session_options(ort)
        # basic = provider-independent rewrites only (constant folding, dead nodes), so the .ort file
        # stays portable to other execution providers and mobile builds
        so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_BASIC
        so.optimized_model_filepath = str(tmp)
        so.add_session_config_entry("session.save_model_format", "ORT")
        try:
            ort.InferenceSession(str(src), so, providers=["CPUExecutionProvider"])
            sess_ort = torch_to_onnx.session(ort, tmp)
        except Exception as exc:  # onnxruntime raises its own exception types
            raise ExportError(f"onnxruntime could not convert {src} to the ORT format: "
                              f"{str(exc).splitlines()[0]}; no file written") from exc
        sess_onnx = torch_to_onnx.session(ort, src)
        T = int(m["preprocessing"].get("max_length") or 16)
        for batch, length in ((1, T), (3, max(2, T // 2 + 1))):
            feeds = torch_to_onnx.random_feeds(sess_onnx, batch, length, seed=batch)
            names = [o.name for o in sess_onnx.get_outputs()]
            for name, a, b in zip(names, sess_onnx.run(None, feeds), sess_ort.run(None, feeds)):
                d = torch_to_onnx.max_diff(a, b)
                if not d <= torch_to_onnx.TOLERANCE:
                    raise ExportError(
                        f"ORT-format model of {src.name} differs from the .onnx: output {name} max|diff| "
                        f"{d:.3g} at batch {batch}, T={length} (limit {torch_to_onnx.TOLERANCE:g}); no file written"
                    )
        fields = base_fields(run, "ort", precision, mode)
        fields.update({k: m[k] for k in ("inputs", "outputs", "sequence_length", "state_layout") if k in m})
        q = quantization_block(onnx_op_types(tmp), precision, run.config.cell, m["quantization"].get("recipe"))
        for key in ("selection", "latency_us"):  # chosen / measured for the .onnx it is converted from
            if key in m["quantization"]:
                q[key] = m["quantization"][key]
        fields["quantization"] = q
        return publish(tmp, final, fields)
    finally:
        shutil.rmtree(tmpdir, ignore_errors=True)


def onnx_op_types(path) -> list[str]:
    """Op types of the graph's nodes, in graph order (one entry per node, so duplicates count layers).
    Ops outside the default ONNX domain are qualified: "com.microsoft::DynamicQuantizeLSTM".
    Reads .onnx files with the onnx package and .ort files with onnxruntime's flatbuffer schema."""
    path = Path(path)
    if not path.is_file():
        raise ArtifactError(f"{path} does not exist")
    if path.suffix == ".ort":
        return _ort_op_types(path)
    onnx = require("onnx", "onnx")
    try:
        graph = onnx.load(str(path), load_external_data=False).graph
    except Exception as exc:
        raise ArtifactError(f"{path} is not a readable ONNX model ({str(exc).splitlines()[0]})") from exc
    return _graph_ops(graph)


def _graph_ops(graph) -> list[str]:
    """Op types of a graph's nodes, followed by those of its subgraphs (Loop/If/Scan bodies) in place."""
    ops = []
    for n in graph.node:
        ops.append(_qualify(n.domain, n.op_type))
        for a in n.attribute:
            if a.type == a.GRAPH:
                ops += _graph_ops(a.g)
    return ops


def quantization_block(op_types: list[str], precision: str, cell: str, recipe: str | None = None) -> dict:
    """The manifest's honest "quantization" block, computed from the op types actually in the graph:
    per op family (recurrent cell, head) one of float | weights-int8 | dynamic-int8
    (edgernn.runtimes.manifest.COMPUTE)."""
    bare = [op.split("::")[-1] for op in op_types]
    float_ops = sorted({op for op in bare if op in FLOAT_COMPUTE_OPS})
    int8_ops = sorted({op for op in bare if op in INT8_COMPUTE_OPS}) if precision != "float" else []
    if precision == "float":
        return {"recipe": "none", "compute": {"recurrent": "float", "head": "float"}, "int8_ops": [],
                "float_ops": float_ops, "note": "float32 weights and activations"}
    recurrent_float = [op for op in float_ops if op in RECURRENT_OPS]
    head = "dynamic-int8" if set(int8_ops) - {"DynamicQuantizeLSTM", "DynamicQuantizeLinear"} else "float"
    note = ("onnxruntime dynamic quantization (quantize_dynamic, int8 weights): activations are quantized per "
            "call at run time for the integer matrix products; gate nonlinearities and I/O are float")
    if "DynamicQuantizeLSTM" in int8_ops:
        recurrent = "dynamic-int8"
    elif recurrent_float:
        kinds = "/".join(recurrent_float)
        recurrent = "weights-int8" if "DequantizeLinear" in bare else "float"
        lstm = kinds == "LSTM"
        note = (f"the {kinds} op computes in float" + (" with float weights" if recurrent == "float" else "")
                + (" (onnxruntime's integer LSTM, DynamicQuantizeLSTM, is the dynamic recipe)" if lstm else
                   f" (onnxruntime has no integer {kinds})")
                + (", its weights are stored int8 behind DequantizeLinear (onnxruntime folds them to float "
                   "once at load with the session option session.disable_quant_qdq=1, as edgernn's runtime "
                   "sets it; without it they are dequantized on every call, ~1.4x slower)" if
                   recurrent == "weights-int8" else "") + "; the head is dynamic-int8. For an integer "
                "recurrence use " + ("--recipe dynamic" if lstm else "--recipe integer-matmul") + " (ONNX) or "
                "--format tflite")
    elif "Loop" in bare or recipe == "integer-matmul":
        recurrent = "dynamic-int8" if "MatMulInteger" in int8_ops else "float"
        note = ("integer-matmul: the recurrence is written as MatMul ops that onnxruntime runs as MatMulInteger "
                "(activations quantized per call, int8 weights); gate nonlinearities and the state are float")
    else:
        recurrent = "float"
    return {"recipe": recipe or "dynamic", "compute": {"recurrent": recurrent, "head": head},
            "int8_ops": int8_ops, "float_ops": float_ops, "note": note}


# ----------------------------------------------------------------------------------------------------------
# manifest pieces
# ----------------------------------------------------------------------------------------------------------
def _tensor(name, shape, role, nxt=None, output=False) -> dict:
    d = {"name": name, "shape": shape, "dtype": "float32", "role": role, "quant": None}
    if output:
        d["next"] = nxt
    return d


def _io_inputs(cfg, mode) -> list[dict]:
    if mode == "sequence":
        return [_tensor("x", [None, None, cfg.input_size], "x")]
    return [_tensor("x", [None, cfg.input_size], "x")] + [
        _tensor(n, shape, "state") for n, shape in cfg.step_states(None)
    ]


def _io_outputs(cfg, mode) -> list[dict]:
    if mode == "sequence":
        shape = [None, None, cfg.num_outputs] if cfg.head == "tag" else [None, cfg.num_outputs]
        return [_tensor("y", shape, "y", output=True)]
    return [_tensor("y", [None, cfg.num_outputs], "y", output=True)] + [
        _tensor(f"{n}_out", shape, "state", nxt=n, output=True) for n, shape in cfg.step_states(None)
    ]


def _state_layout(cfg) -> str:
    torch_name = {"lstm": "LSTM", "gru": "GRU", "rnn": "RNN"}[cfg.cell]
    text = (f"h: [layers, batch, hidden] = [{cfg.layers}, batch, {cfg.hidden}], layer 0 (closest to the input) "
            f"first, as torch nn.{torch_name} h_n; start every sequence from zeros and feed h_out back as h on "
            "the next frame")
    if cfg.cell == "lstm":
        text += "; c: the LSTM cell state, same layout, fed back from c_out the same way"
    fe = cfg.front_end()
    if fe is not None and fe.tail:
        text = (f"tail: [batch, {fe.tail}], the last {fe.tail} samples of the previous hop (the audio front end's "
                f"frames overlap by that much), zeros at the start, fed back from tail_out; " + text)
    return text


def _make_tmpdir(out_dir: Path) -> Path:
    """A private scratch dir inside out_dir (same filesystem, so os.replace is atomic)."""
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
        return Path(tempfile.mkdtemp(prefix=".edgernn-onnx-", dir=out_dir))
    except OSError as exc:
        raise ExportError(f"output directory {out_dir} is not writable ({exc.strerror or exc}); "
                          "choose another with --out") from exc


# ----------------------------------------------------------------------------------------------------------
# op types of .onnx / .ort graphs
# ----------------------------------------------------------------------------------------------------------
def _qualify(domain: str, op_type: str) -> str:
    return op_type if domain in ("", "ai.onnx") else f"{domain}::{op_type}"


def _ort_op_types(path: Path) -> list[str]:
    try:
        import onnxruntime.tools.ort_format_model  # noqa: F401  (puts ort_flatbuffers_py on sys.path)
        import ort_flatbuffers_py.fbs as fbs
    except ImportError as exc:
        raise ArtifactError(f"cannot read ORT-format op types: {exc}; pip install flatbuffers onnxruntime") from exc
    buf = bytearray(path.read_bytes())
    if not fbs.InferenceSession.InferenceSession.InferenceSessionBufferHasIdentifier(buf, 0):
        raise ArtifactError(f"{path} is not an ORT-format model; re-run `edgernn export --format ort`")
    graph = fbs.InferenceSession.InferenceSession.GetRootAsInferenceSession(buf, 0).Model().Graph()
    out = []
    for i in range(graph.NodesLength()):
        node = graph.Nodes(i)
        out.append(_qualify((node.Domain() or b"").decode(), node.OpType().decode()))
    return out
