"""
The ONNX int8 recipes' graph rewrites (edgernn.export.recipes), kept apart from the plain ONNX export:

  integer-matmul  GRU/RNN as explicit MatMul ops: the input projection of every step in one MatMul, then
                  the recurrence (a Loop over time for sequence artifacts, one frame for step artifacts).
                  quantize_dynamic then turns every product into MatMulInteger, so the recurrence really
                  multiplies in int8 - which onnxruntime's GRU/RNN op never does.
  dynamic         quantize_dynamic as usual, plus the GRU/RNN op's W and R weights stored int8 behind a
                  DequantizeLinear (per output row): the file shrinks ~4x, the kernel stays the float GRU.

    net = explicit_net(model, "sequence")     # torch module with the same outputs as model, scripted
    store_recurrent_weights_int8(path)        # rewrites an onnx file in place; returns the weights stored
    compact_names(path)                       # short internal tensor names (every int8 recipe)

Measured on x86 (bm GRU h64, T=100, batch 1): integer-matmul 1700 us/window vs 91 us for the float GRU
op (the Loop runs ~12 ops per step); step 23 vs 13 us/frame. The export measures both on the machine
that exports and writes them into the manifest (quantization.latency_us).
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np

from edgernn.errors import ConfigError


def integer_matmul_problem(cfg) -> str | None:
    """Why the integer-matmul recipe cannot build this model (None = it can)."""
    if cfg.cell not in ("gru", "rnn"):
        return (f"integer-matmul rewrites GRU/RNN cells; an {cfg.cell.upper()} already runs integer in onnxruntime "
                "(DynamicQuantizeLSTM) with the dynamic recipe")
    if cfg.bidirectional:
        return "integer-matmul supports unidirectional models only"
    return None


def explicit_net(model, mode: str):
    """A torch module computing exactly what `model` (sequence) or StepModel(model) (step) computes, from
    MatMul and elementwise ops only. Sequence nets are scripted so the time loop exports as an ONNX Loop
    with a dynamic length."""
    import torch

    cfg = model.cfg
    why = integer_matmul_problem(cfg)
    if why:
        raise ConfigError(why)
    rnn = model.rnn
    nonlin = getattr(rnn, "nonlinearity", "tanh")
    H = cfg.hidden

    class Cell(torch.nn.Module):
        __constants__ = ["gru", "relu", "keep", "H"]

        def __init__(self, layer: int, keep: bool):
            super().__init__()
            self.w_ih = torch.nn.Parameter(getattr(rnn, f"weight_ih_l{layer}").detach().T.contiguous())
            self.w_hh = torch.nn.Parameter(getattr(rnn, f"weight_hh_l{layer}").detach().T.contiguous())
            self.b_ih = torch.nn.Parameter(getattr(rnn, f"bias_ih_l{layer}").detach().clone())
            self.b_hh = torch.nn.Parameter(getattr(rnn, f"bias_hh_l{layer}").detach().clone())
            self.gru = cfg.cell == "gru"
            self.relu = nonlin == "relu"
            self.keep = keep  # keep every step's output (a lower layer, or the tag head)
            self.H = H

        def project(self, x):
            return torch.matmul(x, self.w_ih) + self.b_ih

        def step(self, gi, h):
            gh = torch.matmul(h, self.w_hh) + self.b_hh
            if self.gru:
                i_r, i_z, i_n = gi[:, : self.H], gi[:, self.H: 2 * self.H], gi[:, 2 * self.H:]
                h_r, h_z, h_n = gh[:, : self.H], gh[:, self.H: 2 * self.H], gh[:, 2 * self.H:]
                r = torch.sigmoid(i_r + h_r)
                z = torch.sigmoid(i_z + h_z)
                n = torch.tanh(i_n + r * h_n)
                return n + z * (h - n)
            a = gi + gh
            return torch.relu(a) if self.relu else torch.tanh(a)

    L = cfg.layers
    tag = cfg.head == "tag"

    class Sequence(torch.nn.Module):
        __constants__ = ["H", "tag"]

        def __init__(self):
            super().__init__()
            self.H = H
            self.tag = tag
            self.cells = torch.nn.ModuleList([Cell(i, i < L - 1 or tag) for i in range(L)])
            self.head = model.head

        def forward(self, x):
            seq = x
            h = torch.zeros(x.size(0), self.H, dtype=x.dtype)
            for cell in self.cells:
                gi = cell.project(seq)
                h = torch.zeros(x.size(0), self.H, dtype=x.dtype)
                outs: list[torch.Tensor] = []
                for t in range(gi.size(1)):
                    h = cell.step(gi[:, t], h)
                    if cell.keep:
                        outs.append(h)
                if cell.keep:
                    seq = torch.stack(outs, 1)
            return self.head(seq) if self.tag else self.head(h)

    class Step(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.cells = torch.nn.ModuleList([Cell(i, False) for i in range(L)])
            self.head = model.head

        def forward(self, x, h):
            inp = x
            new = []
            for i, cell in enumerate(self.cells):
                inp = cell.step(cell.project(inp), h[i])
                new.append(inp)
            return self.head(inp), torch.stack(new)

    if mode == "step":
        return Step().eval()
    return torch.jit.script(Sequence().eval())


def weights_int8_problem(cfg) -> str | None:
    """Why the weights-int8 recipe does not apply (None = it does): it is for the LSTM op; a GRU/RNN gets
    exactly this from the dynamic recipe."""
    if cfg.cell != "lstm":
        return (f"weights-int8 is for an LSTM; for a {cfg.cell.upper()} the dynamic recipe already stores the "
                "recurrent weights int8 and computes in float")
    return None


def store_recurrent_weights_int8(path: Path, ops=("GRU", "RNN")) -> int:
    """Replace the float W and R initializers of every `ops` node in the ONNX file `path` by int8 ones
    (symmetric, one scale per output row) behind a DequantizeLinear; returns how many weights were stored
    int8. The op itself stays float: onnxruntime has no integer GRU/RNN kernel (and an LSTM stored this way
    keeps float compute where DynamicQuantizeLSTM lost accuracy)."""
    import onnx
    from onnx import helper, numpy_helper

    m = onnx.load(str(path))
    g = m.graph
    inits = {t.name: t for t in g.initializer}
    stored = 0
    new_nodes = []
    for node in g.node:
        if node.op_type not in ops:
            continue
        for slot in (1, 2):  # W [D, G*H, in], R [D, G*H, H]
            name = node.input[slot]
            if name not in inits:
                continue
            w = numpy_helper.to_array(inits[name]).astype(np.float32)
            scale = np.abs(w).max(axis=(0, 2)) / 127.0
            scale = np.where(scale > 0, scale, 1.0).astype(np.float32)
            q = np.clip(np.round(w / scale[None, :, None]), -127, 127).astype(np.int8)
            g.initializer.remove(inits[name])
            qname, sname, zname = f"{name}_int8", f"{name}_scale", f"{name}_zero_point"
            g.initializer.extend([numpy_helper.from_array(q, qname), numpy_helper.from_array(scale, sname),
                                  numpy_helper.from_array(np.zeros_like(scale, np.int8), zname)])
            new_nodes.append(helper.make_node("DequantizeLinear", [qname, sname, zname], [name],
                                              name=f"{name}_dequantize", axis=1))
            stored += int(q.size)
    for i, n in enumerate(new_nodes):  # DequantizeLinear first: the graph stays topologically sorted
        g.node.insert(i, n)
    onnx.checker.check_model(m)
    onnx.save(m, str(path))
    return stored


def compact_names(path: Path) -> int:
    """Rename every internal tensor of the ONNX file `path` (main graph and Loop bodies) to t0, t1, ...,
    drop node names (but an audio front end's), doc strings and value_info; graph inputs/outputs keep
    their names. Returns the bytes saved. The names are bloat in an int8 file
    ("/head/Gemm_MatMul_quant_scales_mul:0"), stored once in the .onnx and again in the .ort (bm GRU h64
    int8 sequence: .onnx 21.0 -> 18.6 KB, .ort 29.8 -> 28.6 KB, where the float .onnx is 56.9 KB). Nothing
    computes differently; the ORT conversion check compares outputs."""
    import onnx

    before = Path(path).stat().st_size
    m = onnx.load(str(path))
    keep = {v.name for v in m.graph.input} | {v.name for v in m.graph.output}
    names: dict = {}

    def short(name: str) -> str:
        if not name or name in keep:
            return name
        return names.setdefault(name, f"t{len(names)}")

    def walk(g, main: bool):
        for t in g.initializer:
            t.name, t.doc_string = short(t.name), ""
        del g.value_info[:]
        if not main:
            for v in list(g.input) + list(g.output):
                v.name = short(v.name)
        for node in g.node:
            # an audio front end's nodes keep their names: parity finds the features by them (frontend_parity)
            node.name, node.doc_string = (node.name if "/frontend/" in node.name else ""), ""
            node.input[:] = [short(x) for x in node.input]
            node.output[:] = [short(x) for x in node.output]
            for a in node.attribute:
                if a.type == onnx.AttributeProto.GRAPH:
                    walk(a.g, False)
        g.doc_string = ""

    walk(m.graph, True)
    m.doc_string = ""
    onnx.checker.check_model(m)
    onnx.save(m, str(path))
    return before - Path(path).stat().st_size


def latency_us(path: Path, feeds: dict, mode: str, n: int = 200) -> float:
    """Mean microseconds per call (one window for sequence, one frame for step), one thread, after warm-up."""
    import onnxruntime as ort

    so = ort.SessionOptions()
    so.intra_op_num_threads = so.inter_op_num_threads = 1
    so.log_severity_level = 3
    so.add_session_config_entry("session.disable_quant_qdq", "1")  # as edgernn.runtimes.ort_backend
    sess = ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"])
    for _ in range(10):
        sess.run(None, feeds)
    t0 = time.perf_counter()
    for _ in range(n):
        sess.run(None, feeds)
    return (time.perf_counter() - t0) / n * 1e6
