"""
The constant data of the generated C (`--format c`): numbers as C literals, `static const` arrays, the
int8 fixed-point formats and sigmoid/tanh lookup tables, and data(spec), every table one header holds
(normalization, weights, biases, int8 scales, the per-layer pointer table). edgernn.export.c.source
puts them in the file; edgernn.export.c.kernels writes the functions that read them.

    array("float", "gru_mean", [0.5, 1.0])   # 'static const float gru_mean[2] = {\n    0.5f, 1.0f\n};\n'
    sigmoid_table()                          # 513 Q15 values for Q12 inputs in [-16, 16], step 1/16 (+1 repeated)
    data(spec)                               # the whole constant section of one header

int8 formats: pre-activations int32 Q12 (4096 = 1.0), activations, state and tables int16 Q15 (32768 =
1.0, clipped to +-32767), outputs int32 Q16 (one scale for every output, so argmax works on integers).
int8 weight layout: row-major, one output row after another ([gates x hidden][fan-in], the head [outputs][fan-in]),
each row zero-padded to a multiple of 4 and every matrix followed by VEC_TAIL zero bytes (see int8_rows): the
kernels' inner loop is a dot product over one contiguous row (edgernn.export.c.kernels says why).
"""

from __future__ import annotations

import numpy as np

# int8 tables: Q12 input (4096 = 1.0), Q15 output (32768 = 1.0, clipped to +-32767)
Q_PRE = 12  # pre-activations are int32 Q12
Q_OUT = 16  # outputs are int32 Q16: one scale for every output, so argmax works on integers
SIG_HALF, SIG_SHIFT = 16 << Q_PRE, 8  # sigmoid table: [-16, 16) in 512 steps of 256 (1/16)
TANH_HALF, TANH_SHIFT = 8 << Q_PRE, 6  # tanh table: [-8, 8) in 1024 steps of 64 (1/64)
ROW_ALIGN = 4  # int8 rows padded to a multiple of 4 weights: one 32-bit load holds 4 of one row (DSP path)
VEC_TAIL = 12  # zero bytes after every int8 matrix: the AVX2 path loads 16 weights at a time, so a row's last
# load can reach 12 bytes past the row (the next row's weights, or these), always against zero activations


def padded(n: int, to: int = ROW_ALIGN) -> int:
    return -(-n // to) * to


def int8_rows(w_rows: np.ndarray) -> np.ndarray:
    """int8 weights [rows, fan-in] -> the flat C layout: each row zero-padded to padded(fan-in), then VEC_TAIL
    zeros. Padding weights are zero and meet zero activations: they change no sum."""
    rows, n = w_rows.shape
    out = np.zeros(rows * padded(n) + VEC_TAIL, np.int64)
    out[:rows * padded(n)].reshape(rows, padded(n))[:, :n] = w_rows
    return out


def lut(fn, half: int, shift: int) -> np.ndarray:
    """Q15 values of fn at the Q12 points -half, -half + 2^shift, ..., half, and the last value once more: the
    interpolation reads entry i + 1 even at the top of the range (weight 0 there), so it needs no branch."""
    x = (np.arange(0, 2 * half + 1, 1 << shift) - half) / float(1 << Q_PRE)
    t = np.clip(np.round(fn(x) * 32768), -32767, 32767).astype(np.int64)
    return np.append(t, t[-1])


def sigmoid_table() -> np.ndarray:
    return lut(lambda x: 1.0 / (1.0 + np.exp(-x)), SIG_HALF, SIG_SHIFT)


def tanh_table() -> np.ndarray:
    return lut(np.tanh, TANH_HALF, TANH_SHIFT)


def c_float(v) -> str:
    s = f"{float(np.float32(v)):.9g}"
    if "e" not in s and "." not in s and "n" not in s:
        s += ".0"
    return s + "f"


def array(ctype: str, name: str, values, per_line: int = 8, comment: str = "") -> str:
    vals = np.asarray(values).ravel()
    if ctype == "float":
        items = [c_float(v) for v in vals]
    else:
        items = [str(int(v)) for v in vals]
    lines = [", ".join(items[i:i + per_line]) for i in range(0, len(items), per_line)]
    body = ",\n    ".join(lines)
    note = f"  /* {comment} */" if comment else ""
    return f"static const {ctype} {name}[{len(items)}] = {{{note}\n    {body}\n}};\n"


def data(s) -> str:
    """Every const table of the generated C: normalization, weights, biases, int8 scales, the sigmoid/tanh
    tables, and {prefix}_layers (one row of pointers per layer and direction)."""
    p, q = s.prefix, s.precision == "int8"
    out = ["/* ---- weights and constants (const: flash on a microcontroller) ---- */",
           array("float", f"{p}_mean", s.mean, comment="input normalization: (x - mean) / std"),
           array("float", f"{p}_std", s.std) if not q else
           array("float", f"{p}_qinv", s.in_qinv, comment="1 / (std * input scale): raw -> int16 input")]
    if s.out_mean is not None:
        out += [array("float", f"{p}_out_mean", s.out_mean, comment="forecast: raw = y * std + mean"),
                array("float", f"{p}_out_std", s.out_std)]
    wt = "int8_t" if q else "float"
    H = s.H
    # int8 LSTM rows in gate order i f o g (torch's is i f g o): the three sigmoid gates are one run of 3H rows, one
    # vector pass of the table instead of two (measured: 3% faster on x86). Per row the arithmetic is the same.
    rows = np.r_[0:2 * H, 3 * H:4 * H, 2 * H:3 * H] if q and s.cell == "lstm" else slice(None)
    for i, lay in enumerate(s.layers):
        tag = f"{p}_l{i // s.D}d{i % s.D}"
        if q:
            n = lay["wx"].shape[0]
            lay = {**lay, **{k: np.asarray(lay[k])[rows] for k in ("bx", "mx", "nx", "mh", "nh")}}
            out.append(array(wt, f"{tag}_wx", int8_rows(lay["wx"].T[rows]), per_line=16,
                             comment=f"layer {i // s.D} direction {i % s.D}: input weights [GH][{padded(n)}] (row-major, "
                             f"rows padded to {padded(n)}, {VEC_TAIL} zeros after{'; gates i f o g' if s.cell == 'lstm' else ''})"))
            out.append(array(wt, f"{tag}_wh", int8_rows(lay["wh"].T[rows]), per_line=16,
                             comment=f"recurrent weights [GH][{padded(s.H)}]"))
        else:
            out.append(array(wt, f"{tag}_wx", lay["wx"], comment=f"layer {i // s.D} direction {i % s.D}: input "
                             f"weights [{lay['wx'].shape[0]}][GH]"))
            out.append(array(wt, f"{tag}_wh", lay["wh"], comment="recurrent weights [H][GH]"))
        bt = "int32_t" if q else "float"
        out.append(array(bt, f"{tag}_bx", lay["bx"], comment="bias, Q12" if q else "bias"))
        if lay.get("bh") is not None:
            out.append(array(bt, f"{tag}_bh", lay["bh"]))
        if q:
            if s.cell == "lstm":
                out.append(array("int8_t", f"{tag}_cf", lay["cf"], per_line=16,
                                 comment="cell state fraction bits per unit (calibrated range, power of two)"))
            out += [array("int32_t", f"{tag}_mx", lay["mx"], comment="requantization multipliers and shifts"),
                    array("int8_t", f"{tag}_nx", lay["nx"], per_line=16),
                    array("int32_t", f"{tag}_mh", lay["mh"]),
                    array("int8_t", f"{tag}_nh", lay["nh"], per_line=16)]
    out.append(array(wt, f"{p}_head_w", int8_rows(s.head_wb["w"]) if q else s.head_wb["w"], per_line=16 if q else 8,
                     comment=f"head [{s.K}][{padded(s.D * s.H) if q else s.D * s.H}]"))
    out.append(array("int32_t" if q else "float", f"{p}_head_b", s.head_wb["b"],
                     comment="head bias, Q16" if q else ""))
    if q:
        out += [array("int32_t", f"{p}_head_m", s.head_wb["m"]), array("int8_t", f"{p}_head_n", s.head_wb["n"])]
        out += [array("int16_t", f"{p}_sig", sigmoid_table(), per_line=16,
                      comment="sigmoid, Q12 in [-16, 16] step 1/16 -> Q15 (last entry repeated)"),
                array("int16_t", f"{p}_tanh_t", tanh_table(), per_line=16,
                      comment="tanh, Q12 in [-8, 8] step 1/64 -> Q15 (last entry repeated)")]
    fields = ["    const int8_t *wx, *wh;", "    const int32_t *bx;"] if q else \
        ["    const float *wx, *wh;", "    const float *bx;"]
    if s.cell == "gru":
        fields.append(f"    const {'int32_t' if q else 'float'} *bh;")
    if q:
        fields += ["    const int32_t *mx, *mh;", "    const int8_t *nx, *nh;"]
    fields.append("    int n_in;")
    if q and s.cell == "lstm":
        fields.append("    const int8_t *cf;  /* cell state fraction bits per unit: c = c_q / 2^cf */")
    out += ["typedef struct {", *fields, f"}} {p}_layer;", ""]
    rows = []
    for i, lay in enumerate(s.layers):
        tag = f"{p}_l{i // s.D}d{i % s.D}"
        parts = [f"{tag}_wx", f"{tag}_wh", f"{tag}_bx"]
        if s.cell == "gru":
            parts.append(f"{tag}_bh")
        if q:
            parts += [f"{tag}_mx", f"{tag}_mh", f"{tag}_nx", f"{tag}_nh"]
        parts.append(str(lay["wx"].shape[0]))
        if q and s.cell == "lstm":
            parts.append(f"{tag}_cf")
        rows.append("    {" + ", ".join(parts) + "}")
    out.append(f"static const {p}_layer {p}_layers[{len(s.layers)}] = {{\n" + ",\n".join(rows) + "\n};\n")
    return "\n".join(out)
