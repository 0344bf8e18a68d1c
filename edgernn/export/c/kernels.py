"""
The functions of the generated C (`--format c`) that compute, as C text for one Spec: sigmoid/tanh and
the matvec (arithmetic), one recurrent step of one layer (cell: GRU, LSTM or RNN) and the output layer
(head), each in float or int8. Pure text from numbers; edgernn.export.c.source assembles the file, the
tables they read are edgernn.export.c.tables.

    arithmetic(spec) + cell(spec) + head(spec)   # static {prefix}_tanh ... {prefix}_cell, {prefix}_head

float: float32 arithmetic; tanh is a rational approximation (max error 4e-7, no libm), sigmoid(x) =
0.5 + 0.5 tanh(x / 2). int8: int8 x int16 products summed in int32, requantized by an int32 multiplier
and a shift per row to Q12 pre-activations, sigmoid/tanh from Q15 tables with linear interpolation, the
LSTM cell state Q(cf) per unit; the head gives int32 Q16 outputs, dequantized only where they leave.
"""

from __future__ import annotations

from edgernn.export.c.tables import Q_OUT, SIG_HALF, SIG_SHIFT, TANH_HALF, TANH_SHIFT, c_float

# tanh(x) ~ x * P(x^2) / Q(x^2) on |x| <= 9 (clamped beyond): a least-squares-then-minimax fit of
# degree 4/4 in x^2; max error 1.9e-8 in double, 3.7e-7 when evaluated in float32 (measured on 400k points)
TANH_P = (9.99999906e-01, 1.33732008e-01, 3.48658668e-03, 2.04719304e-05, 1.31843671e-08)
TANH_Q = (1.00000000e+00, 4.67064976e-01, 2.58419948e-02, 3.27139441e-04, 7.70272250e-07)
TANH_CLAMP = 9.0


def arithmetic(s) -> str:
    """sigmoid/tanh (float: a rational tanh, no libm; int8: Q15 table lookups), the matvec, and (int8)
    the requantization of one layer's matvecs to Q12 pre-activations."""
    p, P = s.prefix, s.prefix.upper()
    if s.precision != "int8":
        num = " ".join(f"p = p * x2 + {c_float(c)};" for c in reversed(TANH_P[:-1]))
        den = " ".join(f"q = q * x2 + {c_float(c)};" for c in reversed(TANH_Q[:-1]))
        text = f"""/* ---- arithmetic ---- */
static float {p}_tanh(float x)
{{
    float x2, p, q, y;
    x = x < -{c_float(TANH_CLAMP)} ? -{c_float(TANH_CLAMP)} : (x > {c_float(TANH_CLAMP)} ? {c_float(TANH_CLAMP)} : x);
    x2 = x * x;
    p = {c_float(TANH_P[-1])}; {num}
    q = {c_float(TANH_Q[-1])}; {den}
    y = x * p / q;
    return y > 1.0f ? 1.0f : (y < -1.0f ? -1.0f : y);
}}

"""
        if s.cell != "rnn":
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
    if s.cell != "rnn":
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
    {p}_matvec(gh, L->wh, h, {s.H});
    for (r = 0; r < {P}_GH; r++) {{
        gx[r] = {p}_rq(gx[r], L->mx[r], L->nx[r]) + L->bx[r];
        gh[r] = {p}_rq(gh[r], L->mh[r], L->nh[r]){' + L->bh[r]' if s.cell == 'gru' else ''};
    }}
}}

"""
    return text


def _cell_args(s) -> str:
    a = "int16_t" if s.precision == "int8" else "float"
    return f"const {s.prefix}_layer *L, const {a} *x, {a} *h" + (f", {a} *c" if s.cell == "lstm" else "")


def cell(s) -> str:
    """{prefix}_cell(): one recurrent step of one layer, for the spec's cell and precision."""
    p, P, H = s.prefix, s.prefix.upper(), s.H
    head = f"static void {p}_cell({_cell_args(s)})\n{{\n"
    if s.precision != "int8":
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


def head(s) -> str:
    """The output layer: float {prefix}_head, or int8 {prefix}_head_q (integer) + {prefix}_dequantize."""
    p = s.prefix
    DH = s.D * s.H
    if s.precision != "int8":
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
