"""
C99 source text for `--format c`: one header-only library per artifact (stb style), float or int8.

Pure text generation from numbers (edgernn.export.c.export prepares the weights, the int8 scales and the
calibration); nothing here imports torch. The generated file:

    #define GRU_STEP_INT8_IMPLEMENTATION      // in ONE .c file of the app
    #include "step-int8.h"
    gru_step_int8_state st;  gru_step_int8_reset(&st);
    gru_step_int8_step(&st, frame, out);     // raw frame [CHANNELS] -> out [OUTPUTS]
    gru_step_int8_run(x, T, out);            // raw window [T][CHANNELS] from a zero state

Design (RNNoise's rnn.c is the model): weights are `static const` arrays (flash on a microcontroller),
nothing is allocated, there is no mutable global: the caller owns the state struct, so any number of
streams can run at once. Matrices are stored transposed ([fan-in][gates x hidden]) so the inner loop
runs over contiguous outputs and compilers vectorize it.

float: float32 weights and arithmetic; sigmoid/tanh are a rational approximation (max error 4e-7, below
float32 rounding of the outputs) so no libm call sits in the hot loop: the code needs no <math.h> at all.
int8: int8 weights (one scale per output row), int16 activations and state (hidden state Q15, LSTM cell
state Q(k) per unit with a calibrated power-of-two range), int32 accumulators, fixed-point requantization
(int32 multiplier + shift), sigmoid/tanh from 513/1025-entry tables with linear interpolation. The
recurrence and the head are integer-only (`_step_q`); float appears only where raw frames enter
(normalize + quantize, CHANNELS multiplies) and outputs leave (OUTPUTS multiplies).
"""

from __future__ import annotations

import numpy as np

# tanh(x) ~ x * P(x^2) / Q(x^2) on |x| <= 9 (clamped beyond): a least-squares-then-minimax fit of
# degree 4/4 in x^2; max error 1.9e-8 in double, 3.7e-7 when evaluated in float32 (measured on 400k points)
TANH_P = (9.99999906e-01, 1.33732008e-01, 3.48658668e-03, 2.04719304e-05, 1.31843671e-08)
TANH_Q = (1.00000000e+00, 4.67064976e-01, 2.58419948e-02, 3.27139441e-04, 7.70272250e-07)
TANH_CLAMP = 9.0

# int8 tables: Q12 input (4096 = 1.0), Q15 output (32768 = 1.0, clipped to +-32767)
Q_PRE = 12  # pre-activations are int32 Q12
Q_OUT = 16  # outputs are int32 Q16: one scale for every output, so argmax works on integers
SIG_HALF, SIG_SHIFT = 16 << Q_PRE, 8  # sigmoid table: [-16, 16) in 512 steps of 256 (1/16)
TANH_HALF, TANH_SHIFT = 8 << Q_PRE, 6  # tanh table: [-8, 8) in 1024 steps of 64 (1/64)


def lut(fn, half: int, shift: int) -> np.ndarray:
    x = (np.arange(0, 2 * half + 1, 1 << shift) - half) / float(1 << Q_PRE)
    return np.clip(np.round(fn(x) * 32768), -32767, 32767).astype(np.int64)


def sigmoid_table() -> np.ndarray:
    return lut(lambda x: 1.0 / (1.0 + np.exp(-x)), SIG_HALF, SIG_SHIFT)


def tanh_table() -> np.ndarray:
    return lut(np.tanh, TANH_HALF, TANH_SHIFT)


def _f(v) -> str:
    s = f"{float(np.float32(v)):.9g}"
    if "e" not in s and "." not in s and "n" not in s:
        s += ".0"
    return s + "f"


def array(ctype: str, name: str, values, per_line: int = 8, comment: str = "") -> str:
    vals = np.asarray(values).ravel()
    if ctype == "float":
        items = [_f(v) for v in vals]
    else:
        items = [str(int(v)) for v in vals]
    lines = [", ".join(items[i:i + per_line]) for i in range(0, len(items), per_line)]
    body = ",\n    ".join(lines)
    note = f"  /* {comment} */" if comment else ""
    return f"static const {ctype} {name}[{len(items)}] = {{{note}\n    {body}\n}};\n"


class Spec:
    """What the generator needs; built by edgernn.export.c.export.

    prefix, cell, C (channels), H, L (layers), D (directions), K (outputs), task (the head), seq_len, precision,
    mean/std [C], out_mean/out_std [K] (forecast) or None, layers: list (L*D, order l0d0 l0d1 l1d0 ...)
    of dicts; head_wb: dict. float layer: wx [n_in, GH], wh [H, GH], bx [GH], bh [GH] (GRU) or None.
    int8 layer: wx/wh int8 [fan-in, GH], mx/mh int32 + nx/nh shifts [GH], bx/bh int32 Q12, cf (LSTM cell
    state fraction bits); int8 input: in_qinv [C] (1 / (std * input scale)); head: w [K, D*H], b [K]
    (+ m, n for int8); LSTM int8 layers: cf [H] cell-state fraction bits per unit. comment: text for the file's opening comment."""

    def __init__(self, **kw):
        self.__dict__.update(kw)

    @property
    def G(self) -> int:
        return {"gru": 3, "lstm": 4, "rnn": 1}[self.cell]

    @property
    def streaming(self) -> bool:
        return self.D == 1


def generate(spec: Spec) -> str:
    return _Gen(spec).text()


class _Gen:
    def __init__(self, s: Spec):
        self.s = s
        self.p = s.prefix
        self.P = s.prefix.upper()
        self.q = s.precision == "int8"
        self.act = "int16_t" if self.q else "float"

    # ---- the public part --------------------------------------------------------------------------
    def header(self) -> str:
        s, p, P = self.s, self.p, self.P
        lines = [f"#ifndef {P}_H", f"#define {P}_H", "", "#include <stdint.h>", "",
                 "#ifdef __cplusplus", 'extern "C" {', "#endif", "",
                 f"#define {P}_CHANNELS {s.C}  /* raw input values per frame */",
                 f"#define {P}_OUTPUTS {s.K}  /* outputs per result ({'per frame: run() writes T x OUTPUTS' if s.task == 'tag' else 'logits' if s.task == 'classify' else 'forecast values, raw units'}) */",
                 f"#define {P}_HIDDEN {s.H}",
                 f"#define {P}_LAYERS {s.L}",
                 f"#define {P}_SEQUENCE_LENGTH {s.seq_len}  /* the window length of training */"]
        if not s.streaming:
            lines += [f"#ifndef {P}_MAX_T",
                      f"#define {P}_MAX_T {s.seq_len}  /* longest window run() accepts (bidirectional: buffered "
                      "on the stack); define before including to change */",
                      "#endif"]
        if self.q:
            lines += [f"#define {P}_OUTPUT_SCALE (1.0f / {1 << Q_OUT}.0f)  /* _step_q/_run_q outputs are int32 "
                      "Q16: value = out_q * OUTPUT_SCALE (forecast: then * std + mean) */"]
        lines.append("")
        if s.streaming:
            fields = [f"    {self.act} h[{s.L}][{s.H}];  /* hidden state per layer"
                      + (", Q15 (32768 = 1.0)" if self.q else "") + " */"]
            if s.cell == "lstm":
                fields.append(f"    {self.act} c[{s.L}][{s.H}];  /* cell state per layer"
                              + (", Q(k) per layer (see _c_frac)" if self.q else "") + " */")
            lines += ["/* one stream's state: the caller owns it (several streams can run at once) */",
                      "typedef struct {", *fields, f"}} {p}_state;", "",
                      f"void {p}_reset({p}_state *st);  /* zero state: a new independent sequence */",
                      f"void {p}_step({p}_state *st, const float *frame, float *out);  "
                      f"/* raw frame[{P}_CHANNELS] -> out[{P}_OUTPUTS] after this frame */"]
            if self.q:
                lines += [f"void {p}_quantize_frame(const float *frame, int16_t *q);  "
                          "/* raw frame -> the int16 input _step_q takes */",
                          f"void {p}_step_q({p}_state *st, const int16_t *q, int32_t *out_q);  "
                          "/* integer only: no float anywhere */"]
        lines += [f"int {p}_run(const float *x, int T, float *out);  /* raw window x[T][{P}_CHANNELS] from a "
                  f"zero state -> out[{P}_OUTPUTS]{' per frame' if s.task == 'tag' else ''}; 0, or -1 for a bad T */",
                  "", "#ifdef __cplusplus", "}", "#endif", f"#endif /* {P}_H */", ""]
        return "\n".join(lines)

    def text(self) -> str:
        s, P = self.s, self.P
        opening = "/*\n" + "\n".join((" * " + ln).rstrip() for ln in s.comment.splitlines()) + "\n */\n"
        impl = [f"#if defined({P}_IMPLEMENTATION) && !defined({P}_IMPLEMENTED)", f"#define {P}_IMPLEMENTED", "",
                "#ifdef __cplusplus", f"#define {P}_RESTRICT __restrict", "#else", f"#define {P}_RESTRICT restrict",
                "#endif", f"#define {P}_GH {s.G * s.H}  /* gates x hidden */", "",
                self.data(), self.kernels(), self.cells(), self.head(), self.public(), f"#endif /* {P}_IMPLEMENTATION */", ""]
        return opening + self.header() + "\n" + "\n".join(impl)

    # ---- constant data ------------------------------------------------------------------------------
    def data(self) -> str:
        s, p = self.s, self.p
        out = ["/* ---- weights and constants (const: flash on a microcontroller) ---- */",
               array("float", f"{p}_mean", s.mean, comment="input normalization: (x - mean) / std"),
               array("float", f"{p}_std", s.std) if not self.q else
               array("float", f"{p}_qinv", s.in_qinv, comment="1 / (std * input scale): raw -> int16 input")]
        if s.out_mean is not None:
            out += [array("float", f"{p}_out_mean", s.out_mean, comment="forecast: raw = y * std + mean"),
                    array("float", f"{p}_out_std", s.out_std)]
        wt = "int8_t" if self.q else "float"
        for i, lay in enumerate(s.layers):
            tag = f"{p}_l{i // s.D}d{i % s.D}"
            out.append(array(wt, f"{tag}_wx", lay["wx"], per_line=16 if self.q else 8,
                             comment=f"layer {i // s.D} direction {i % s.D}: input weights [{lay['wx'].shape[0]}][GH]"))
            out.append(array(wt, f"{tag}_wh", lay["wh"], per_line=16 if self.q else 8, comment="recurrent weights [H][GH]"))
            bt = "int32_t" if self.q else "float"
            out.append(array(bt, f"{tag}_bx", lay["bx"], comment="bias, Q12" if self.q else "bias"))
            if lay.get("bh") is not None:
                out.append(array(bt, f"{tag}_bh", lay["bh"]))
            if self.q:
                if s.cell == "lstm":
                    out.append(array("int8_t", f"{tag}_cf", lay["cf"], per_line=16,
                                     comment="cell state fraction bits per unit (calibrated range, power of two)"))
                out += [array("int32_t", f"{tag}_mx", lay["mx"], comment="requantization multipliers and shifts"),
                        array("int8_t", f"{tag}_nx", lay["nx"], per_line=16),
                        array("int32_t", f"{tag}_mh", lay["mh"]),
                        array("int8_t", f"{tag}_nh", lay["nh"], per_line=16)]
        out.append(array(wt, f"{p}_head_w", s.head_wb["w"], per_line=16 if self.q else 8,
                         comment=f"head [{s.K}][{s.D * s.H}]"))
        out.append(array("int32_t" if self.q else "float", f"{p}_head_b", s.head_wb["b"],
                         comment="head bias, Q16" if self.q else ""))
        if self.q:
            out += [array("int32_t", f"{p}_head_m", s.head_wb["m"]), array("int8_t", f"{p}_head_n", s.head_wb["n"])]
            out += [array("int16_t", f"{p}_sig", sigmoid_table(), per_line=16,
                          comment="sigmoid, Q12 in [-16, 16) step 1/16 -> Q15"),
                    array("int16_t", f"{p}_tanh_t", tanh_table(), per_line=16,
                          comment="tanh, Q12 in [-8, 8) step 1/64 -> Q15")]
        fields = ["    const int8_t *wx, *wh;", "    const int32_t *bx;"] if self.q else \
            ["    const float *wx, *wh;", "    const float *bx;"]
        if s.cell == "gru":
            fields.append(f"    const {'int32_t' if self.q else 'float'} *bh;")
        if self.q:
            fields += ["    const int32_t *mx, *mh;", "    const int8_t *nx, *nh;"]
        fields.append("    int n_in;")
        if self.q and s.cell == "lstm":
            fields.append("    const int8_t *cf;  /* cell state fraction bits per unit: c = c_q / 2^cf */")
        out += ["typedef struct {", *fields, f"}} {p}_layer;", ""]
        rows = []
        for i, lay in enumerate(s.layers):
            tag = f"{p}_l{i // s.D}d{i % s.D}"
            parts = [f"{tag}_wx", f"{tag}_wh", f"{tag}_bx"]
            if s.cell == "gru":
                parts.append(f"{tag}_bh")
            if self.q:
                parts += [f"{tag}_mx", f"{tag}_mh", f"{tag}_nx", f"{tag}_nh"]
            parts.append(str(lay["wx"].shape[0]))
            if self.q and s.cell == "lstm":
                parts.append(f"{tag}_cf")
            rows.append("    {" + ", ".join(parts) + "}")
        out.append(f"static const {p}_layer {p}_layers[{len(s.layers)}] = {{\n" + ",\n".join(rows) + "\n};\n")
        return "\n".join(out)

    # ---- arithmetic -------------------------------------------------------------------------------
    def kernels(self) -> str:
        p, P = self.p, self.P
        if not self.q:
            num = " ".join(f"p = p * x2 + {_f(c)};" for c in reversed(TANH_P[:-1]))
            den = " ".join(f"q = q * x2 + {_f(c)};" for c in reversed(TANH_Q[:-1]))
            text = f"""/* ---- arithmetic ---- */
static float {p}_tanh(float x)
{{
    float x2, p, q, y;
    x = x < -{_f(TANH_CLAMP)} ? -{_f(TANH_CLAMP)} : (x > {_f(TANH_CLAMP)} ? {_f(TANH_CLAMP)} : x);
    x2 = x * x;
    p = {_f(TANH_P[-1])}; {num}
    q = {_f(TANH_Q[-1])}; {den}
    y = x * p / q;
    return y > 1.0f ? 1.0f : (y < -1.0f ? -1.0f : y);
}}

"""
            if self.s.cell != "rnn":
                text += f"""static float {p}_sigmoid(float x)
{{
    return 0.5f + 0.5f * {p}_tanh(0.5f * x);
}}

"""
            text += f"""/* acc[GH] += w[n_in][GH] x[n_in] */
static void {p}_matvec(float *{P}_RESTRICT acc, const float *{P}_RESTRICT w, const float *{P}_RESTRICT x, int n_in)
{{
    int j, r;
    for (j = 0; j < n_in; j++) {{
        const float xj = x[j];
        const float *wj = w + (long)j * {P}_GH;
        for (r = 0; r < {P}_GH; r++)
            acc[r] += wj[r] * xj;
    }}
}}

"""
            return text
        text = f"""/* ---- fixed-point arithmetic ---- */
/* acc * m / 2^n, rounded: the int32 fixed-point form of a real multiplier (m < 2^31, 1 <= n <= 62) */
static int32_t {p}_rq(int32_t acc, int32_t m, int n)
{{
    return (int32_t)(((int64_t)acc * m + ((int64_t)1 << (n - 1))) >> n);
}}

/* table lookup with linear interpolation: x Q12 -> Q15 */
static int32_t {p}_lut(const int16_t *t, int32_t x, int32_t half, int shift)
{{
    int32_t u = x + half, i, f;
    if (u <= 0)
        return t[0];
    if (u >= 2 * half)
        return t[(2 * half) >> shift];
    i = u >> shift;
    f = u & ((1 << shift) - 1);
    return t[i] + (((t[i + 1] - t[i]) * f + (1 << (shift - 1))) >> shift);
}}

"""
        if self.s.cell != "rnn":
            text += f"""static int32_t {p}_sigmoid(int32_t x)
{{
    return {p}_lut({p}_sig, x, {SIG_HALF}, {SIG_SHIFT});
}}

"""
        text += f"""static int32_t {p}_tanh(int32_t x)
{{
    return {p}_lut({p}_tanh_t, x, {TANH_HALF}, {TANH_SHIFT});
}}

/* acc[GH] += w[n_in][GH] x[n_in]: int8 weights x int16 activations, int32 sums */
static void {p}_matvec(int32_t *{P}_RESTRICT acc, const int8_t *{P}_RESTRICT w, const int16_t *{P}_RESTRICT x, int n_in)
{{
    int j, r;
    for (j = 0; j < n_in; j++) {{
        const int32_t xj = x[j];
        const int8_t *wj = w + (long)j * {P}_GH;
        for (r = 0; r < {P}_GH; r++)
            acc[r] += (int32_t)wj[r] * xj;
    }}
}}

/* the matvecs of one layer, requantized to Q12 pre-activations */
static void {p}_gates(const {p}_layer *L, const int16_t *x, const int16_t *h, int32_t *gx, int32_t *gh)
{{
    int r;
    for (r = 0; r < {P}_GH; r++) {{
        gx[r] = 0;
        gh[r] = 0;
    }}
    {p}_matvec(gx, L->wx, x, L->n_in);
    {p}_matvec(gh, L->wh, h, {self.s.H});
    for (r = 0; r < {P}_GH; r++) {{
        gx[r] = {p}_rq(gx[r], L->mx[r], L->nx[r]) + L->bx[r];
        gh[r] = {p}_rq(gh[r], L->mh[r], L->nh[r]){' + L->bh[r]' if self.s.cell == 'gru' else ''};
    }}
}}

"""
        return text

    # ---- one recurrent step of one layer ------------------------------------------------------------
    def cell_args(self) -> str:
        a = self.act
        return f"const {self.p}_layer *L, const {a} *x, {a} *h" + (f", {a} *c" if self.s.cell == "lstm" else "")

    def cells(self) -> str:
        s, p, P, H = self.s, self.p, self.P, self.s.H
        head = f"static void {p}_cell({self.cell_args()})\n{{\n"
        if not self.q:
            if s.cell == "gru":
                body = f"""    float gx[{P}_GH], gh[{P}_GH];
    int r;
    for (r = 0; r < {P}_GH; r++) {{
        gx[r] = L->bx[r];
        gh[r] = L->bh[r];
    }}
    {p}_matvec(gx, L->wx, x, L->n_in);
    {p}_matvec(gh, L->wh, h, {H});
    for (r = 0; r < {H}; r++) {{
        const float rg = {p}_sigmoid(gx[r] + gh[r]);
        const float zg = {p}_sigmoid(gx[{H} + r] + gh[{H} + r]);
        const float ng = {p}_tanh(gx[{2 * H} + r] + rg * gh[{2 * H} + r]);
        h[r] = ng + zg * (h[r] - ng);  /* (1 - z) n + z h */
    }}
"""
            else:
                update = (f"""        const float ig = {p}_sigmoid(g[r]);
        const float fg = {p}_sigmoid(g[{H} + r]);
        const float gg = {p}_tanh(g[{2 * H} + r]);
        const float og = {p}_sigmoid(g[{3 * H} + r]);
        c[r] = fg * c[r] + ig * gg;
        h[r] = og * {p}_tanh(c[r]);
""" if s.cell == "lstm" else f"        h[r] = {p}_tanh(g[r]);\n")
                body = f"""    float g[{P}_GH];
    int r;
    for (r = 0; r < {P}_GH; r++)
        g[r] = L->bx[r];  /* b_ih + b_hh */
    {p}_matvec(g, L->wx, x, L->n_in);
    {p}_matvec(g, L->wh, h, {H});
    for (r = 0; r < {H}; r++) {{
{update}    }}
"""
            return head + body + "}\n\n"
        if s.cell == "gru":
            body = f"""    int32_t gx[{P}_GH], gh[{P}_GH];
    int r;
    {p}_gates(L, x, h, gx, gh);
    for (r = 0; r < {H}; r++) {{
        const int32_t rg = {p}_sigmoid(gx[r] + gh[r]);
        const int32_t zg = {p}_sigmoid(gx[{H} + r] + gh[{H} + r]);
        const int32_t ng = {p}_tanh(gx[{2 * H} + r] + (int32_t)(((int64_t)rg * gh[{2 * H} + r] + 16384) >> 15));
        h[r] = (int16_t)(ng + ((zg * (h[r] - ng) + 16384) >> 15));  /* (1 - z) n + z h */
    }}
"""
        elif s.cell == "lstm":
            body = f"""    int32_t gx[{P}_GH], gh[{P}_GH];
    int r;
    {p}_gates(L, x, h, gx, gh);
    for (r = 0; r < {H}; r++) {{
        const int cf = L->cf[r], cs = 30 - cf;  /* i*g is Q30; this unit's cell state is Q(cf) */
        const int32_t ig = {p}_sigmoid(gx[r] + gh[r]);
        const int32_t fg = {p}_sigmoid(gx[{H} + r] + gh[{H} + r]);
        const int32_t gg = {p}_tanh(gx[{2 * H} + r] + gh[{2 * H} + r]);
        const int32_t og = {p}_sigmoid(gx[{3 * H} + r] + gh[{3 * H} + r]);
        int32_t cn = (int32_t)(((int64_t)fg * c[r] + 16384) >> 15)
                     + (int32_t)(((int64_t)ig * gg + ((int64_t)1 << (cs - 1))) >> cs);
        int32_t c12;
        cn = cn > 32767 ? 32767 : (cn < -32767 ? -32767 : cn);
        c[r] = (int16_t)cn;
        c12 = cf >= 12 ? (cf == 12 ? cn : (cn + (1 << (cf - 13))) >> (cf - 12)) : cn * (1 << (12 - cf));
        h[r] = (int16_t)((og * {p}_tanh(c12) + 16384) >> 15);
    }}
"""
        else:
            body = f"""    int32_t gx[{P}_GH], gh[{P}_GH];
    int r;
    {p}_gates(L, x, h, gx, gh);
    for (r = 0; r < {H}; r++)
        h[r] = (int16_t){p}_tanh(gx[r] + gh[r]);
"""
        return head + body + "}\n\n"

    def head(self) -> str:
        s, p = self.s, self.p
        DH = s.D * s.H
        if not self.q:
            denorm = f" * {p}_out_std[k] + {p}_out_mean[k]" if s.out_mean is not None else ""
            return f"""static void {p}_head(const float *feat, float *out)
{{
    int k, j;
    for (k = 0; k < {s.K}; k++) {{
        float acc = {p}_head_b[k];
        const float *w = {p}_head_w + k * {DH};
        for (j = 0; j < {DH}; j++)
            acc += w[j] * feat[j];
        out[k] = acc{denorm};
    }}
}}

"""
        denorm = f" * {p}_out_std[k] + {p}_out_mean[k]" if s.out_mean is not None else ""
        return f"""/* head: int8 weights x Q15 features -> int32 Q16 outputs (one scale for all: argmax works on integers) */
static void {p}_head_q(const int16_t *feat, int32_t *out_q)
{{
    int k, j;
    for (k = 0; k < {s.K}; k++) {{
        int32_t acc = 0;
        const int8_t *w = {p}_head_w + k * {DH};
        for (j = 0; j < {DH}; j++)
            acc += (int32_t)w[j] * feat[j];
        out_q[k] = {p}_rq(acc, {p}_head_m[k], {p}_head_n[k]) + {p}_head_b[k];
    }}
}}

static void {p}_dequantize(const int32_t *out_q, float *out)
{{
    int k;
    for (k = 0; k < {s.K}; k++)
        out[k] = (float)out_q[k] * (1.0f / {1 << Q_OUT}.0f){denorm};
}}

"""

    # ---- the API ------------------------------------------------------------------------------------
    def input_fn(self) -> str:
        """normalize (float) or quantize (int8) one raw frame."""
        s, p = self.s, self.p
        if not self.q:
            return f"""static void {p}_normalize(const float *frame, float *xn)
{{
    int c;
    for (c = 0; c < {s.C}; c++)
        xn[c] = (frame[c] - {p}_mean[c]) / {p}_std[c];
}}

"""
        return f"""{'' if s.streaming else 'static '}void {p}_quantize_frame(const float *frame, int16_t *q)
{{
    int c;
    for (c = 0; c < {s.C}; c++) {{
        float v = (frame[c] - {p}_mean[c]) * {p}_qinv[c];
        if (!(v == v))
            v = 0.0f;  /* NaN */
        v = v > 32767.0f ? 32767.0f : (v < -32767.0f ? -32767.0f : v);
        q[c] = (int16_t)(v >= 0.0f ? v + 0.5f : v - 0.5f);
    }}
}}

"""

    def public(self) -> str:
        s = self.s
        return self.input_fn() + (self.public_stream() if s.streaming else self.public_bidirectional())

    def public_stream(self) -> str:
        s, p, L = self.s, self.p, self.s.L
        lstm = s.cell == "lstm"
        a = self.act
        calls = []
        for layer in range(L):
            x = "x" if layer == 0 else f"st->h[{layer - 1}]"
            calls.append(f"    {p}_cell(&{p}_layers[{layer}], {x}, st->h[{layer}]" + (f", st->c[{layer}]" if lstm else "") + ");")
        reset = f"""void {p}_reset({p}_state *st)
{{
    int l, r;
    for (l = 0; l < {L}; l++)
        for (r = 0; r < {s.H}; r++) {{
            st->h[l][r] = 0;{'''
            st->c[l][r] = 0;''' if lstm else ''}
        }}
}}

/* every layer, one frame (x: the layer-0 input, normalized or quantized) */
static void {p}_advance({p}_state *st, const {a} *x)
{{
{chr(10).join(calls)}
}}

"""
        if not self.q:
            body = f"""void {p}_step({p}_state *st, const float *frame, float *out)
{{
    float xn[{s.C}];
    {p}_normalize(frame, xn);
    {p}_advance(st, xn);
    {p}_head(st->h[{L - 1}], out);
}}

int {p}_run(const float *x, int T, float *out)
{{
    {p}_state st;
    float xn[{s.C}];
    int t;
    if (T < 1)
        return -1;
    {p}_reset(&st);
    for (t = 0; t < T; t++) {{
        {p}_normalize(x + (long)t * {s.C}, xn);
        {p}_advance(&st, xn);{f'''
        {p}_head(st.h[{L - 1}], out + (long)t * {s.K});''' if s.task == 'tag' else ''}
    }}{f'''
    {p}_head(st.h[{L - 1}], out);''' if s.task != 'tag' else ''}
    return 0;
}}
"""
        else:
            body = f"""void {p}_step_q({p}_state *st, const int16_t *q, int32_t *out_q)
{{
    {p}_advance(st, q);
    {p}_head_q(st->h[{L - 1}], out_q);
}}

void {p}_step({p}_state *st, const float *frame, float *out)
{{
    int16_t q[{s.C}];
    int32_t out_q[{s.K}];
    {p}_quantize_frame(frame, q);
    {p}_step_q(st, q, out_q);
    {p}_dequantize(out_q, out);
}}

int {p}_run(const float *x, int T, float *out)
{{
    {p}_state st;
    int16_t q[{s.C}];
    int32_t out_q[{s.K}];
    int t;
    if (T < 1)
        return -1;
    {p}_reset(&st);
    for (t = 0; t < T; t++) {{
        {p}_quantize_frame(x + (long)t * {s.C}, q);
        {p}_advance(&st, q);{f'''
        {p}_head_q(st.h[{L - 1}], out_q);
        {p}_dequantize(out_q, out + (long)t * {s.K});''' if s.task == 'tag' else ''}
    }}{f'''
    {p}_head_q(st.h[{L - 1}], out_q);
    {p}_dequantize(out_q, out);''' if s.task != 'tag' else ''}
    return 0;
}}
"""
        return reset + body

    def public_bidirectional(self) -> str:
        """Sequence only: each layer runs forward then backward over the window; outputs [t][2H] go to a
        stack buffer (two, ping-pong between layers)."""
        s, p, P, H = self.s, self.p, self.P, self.s.H
        a = self.act
        lstm = s.cell == "lstm"
        conv = f"{p}_normalize" if not self.q else f"{p}_quantize_frame"
        if not self.q:
            head_tag = f"        {p}_head(buf[top][t], out + (long)t * {s.K});"
            head_cls = f"    {p}_head(feat, out);"
            decl = ""
        else:
            head_tag = (f"        {p}_head_q(buf[top][t], out_q);\n"
                        f"        {p}_dequantize(out_q, out + (long)t * {s.K});")
            head_cls = f"    {p}_head_q(feat, out_q);\n    {p}_dequantize(out_q, out);"
            decl = f"    int32_t out_q[{s.K}];\n"
        cstate = f"    {a} c[{H}];\n" if lstm else ""
        czero = "            c[r] = 0;\n" if lstm else ""
        carg = ", c" if lstm else ""
        if s.task == "tag":
            finish = f"    for (t = 0; t < T; t++) {{\n{head_tag}\n    }}\n"
        else:
            finish = (f"    for (r = 0; r < {H}; r++) {{\n        feat[r] = buf[top][T - 1][r];  /* forward ends at the last step */\n"
                      f"        feat[{H} + r] = buf[top][0][{H} + r];  /* backward at the first */\n    }}\n{head_cls}\n")
        feat = f"    {a} feat[{2 * H}];\n" if s.task != "tag" else ""
        return f"""int {p}_run(const float *x, int T, float *out)
{{
    {a} buf[2][{P}_MAX_T][{2 * H}];  /* layer outputs [t][forward | backward] */
    {a} in0[{s.C}];
    {a} h[{H}];
{cstate}{feat}{decl}    int l, d, t, r, top = 0;
    if (T < 1 || T > {P}_MAX_T)
        return -1;
    for (l = 0; l < {s.L}; l++) {{
        top = l & 1;
        for (d = 0; d < 2; d++) {{
            for (r = 0; r < {H}; r++) {{
                h[r] = 0;
{czero}            }}
            for (t = 0; t < T; t++) {{
                const int tt = d ? T - 1 - t : t;
                const {a} *in;
                if (l == 0) {{
                    {conv}(x + (long)tt * {s.C}, in0);
                    in = in0;
                }} else {{
                    in = buf[top ^ 1][tt];
                }}
                {p}_cell(&{p}_layers[2 * l + d], in, h{carg});
                for (r = 0; r < {H}; r++)
                    buf[top][tt][d * {H} + r] = h[r];
            }}
        }}
    }}
{finish}    return 0;
}}
"""
