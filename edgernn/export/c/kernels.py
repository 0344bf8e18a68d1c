"""
The functions of the generated C (`--format c`) that compute, as C text for one Spec: sigmoid/tanh and
the matvec (arithmetic), one recurrent step of one layer (cell: GRU, LSTM or RNN) and the output layer
(head), each in float or int8. Pure text from numbers; edgernn.export.c.source assembles the file, the
tables they read are edgernn.export.c.tables.

    arithmetic(spec) + cell(spec) + head(spec)   # static {prefix}_tanh ... {prefix}_cell, {prefix}_head
    paths(spec) ... paths_end(spec)              # int8: the kernel path for the compiler, around the rest

float: float32 arithmetic; tanh is a rational approximation (max error 4e-7, no libm), sigmoid(x) =
0.5 + 0.5 tanh(x / 2). int8: int8 x int16 products summed in int32, requantized by an int32 multiplier
and a shift per row to Q12 pre-activations, sigmoid/tanh from Q15 tables with linear interpolation, the
LSTM cell state Q(cf) per unit; the head gives int32 Q16 outputs, dequantized only where they leave.

int8 speed: the weights are row-major (each output row one contiguous dot product, rows padded to 4) and
the requantization follows each row's sum ({prefix}_matvec_rq). Three paths compute the same integers
(integer sums: any order gives the same result; the tests compare them bit for bit): AVX2 (8 rows at a
time, vpmaddwd, gathers for the tables), the Arm DSP extension of Cortex-M4/M7/M33/M55 (SXTB16 + SMLAD:
4 MACs in 5 instructions) and portable C, which gcc/clang vectorize as plain dot products elsewhere.
docs/c.md has the measurements (emulated Cortex-M4: half the instructions of float C; x86: vs the MAC bound).
"""

from __future__ import annotations

from edgernn.export.c.tables import Q_OUT, SIG_HALF, SIG_SHIFT, TANH_HALF, TANH_SHIFT, c_float, padded

# tanh(x) ~ x * P(x^2) / Q(x^2) on |x| <= 9 (clamped beyond): a least-squares-then-minimax fit of
# degree 4/4 in x^2; max error 1.9e-8 in double, 3.7e-7 when evaluated in float32 (measured on 400k points)
TANH_P = (9.99999906e-01, 1.33732008e-01, 3.48658668e-03, 2.04719304e-05, 1.31843671e-08)
TANH_Q = (1.00000000e+00, 4.67064976e-01, 2.58419948e-02, 3.27139441e-04, 7.70272250e-07)
TANH_CLAMP = 9.0


def arithmetic(s) -> str:
    """sigmoid/tanh (float: a rational tanh, no libm; int8: Q15 table lookups over whole vectors), the
    matvec, and (int8) the requantization of one layer's matvecs to Q12 pre-activations."""
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
    return _int8_arithmetic(s)


def paths(s) -> str:
    """int8: which kernels the compiler gets ({P}_AVX2, {P}_DSP or the portable C; {P}_PORTABLE forces the
    last) and their headers, and {P}_XPAD: before the const data."""
    P = s.prefix.upper()
    return f"""/* ---- the int8 kernels for this compiler: AVX2, the Arm DSP extension, or portable C (define {P}_PORTABLE to
   force it); all three compute the same integers (integer sums: any order, the same result) ---- */
#if !defined({P}_PORTABLE) && defined(__AVX2__)
#if defined(__GNUC__) && !defined(__clang__)
/* gcc: 256-bit vectors in the loops it vectorizes here too. They read what the AVX2 kernels store 32 bytes at a
   time, and a 64-byte load cannot be forwarded from two 32-byte stores (measured: 8% slower on Zen 4) */
#pragma GCC push_options
#pragma GCC target("prefer-vector-width=256")
#define {P}_POP_OPTIONS 1
#endif
#include <immintrin.h>
#define {P}_AVX2 1
#elif !defined({P}_PORTABLE) && defined(__ARM_FEATURE_DSP) && defined(__ARM_FEATURE_SIMD32) && defined(__GNUC__) \\
    && !defined(__ARM_NEON) && !defined(__ARM_BIG_ENDIAN)
#include <arm_acle.h>
#define {P}_DSP 1
#endif
/* the longest activation vector a matvec reads (C, H or D x H), rounded up to the AVX2 load of 16: zeros after */
#define {P}_XPAD {padded(max(s.C, s.D * s.H), 16)}

"""


def paths_end(s) -> str:
    """int8: the end of what paths() opened (gcc's options), after the last function."""
    P = s.prefix.upper()
    return f"#if defined({P}_POP_OPTIONS)\n#pragma GCC pop_options\n#endif\n"


def _matvec_int8(s) -> str:
    """{prefix}_load_x and {prefix}_matvec_rq: out[r] = rq(w[r] . x, m[r], n[r]) + b[r], per path."""
    p, P = s.prefix, s.prefix.upper()
    R = f"{P}_RESTRICT"
    sig = (f"static void {p}_matvec_rq(int32_t *{R} out, const int8_t *{R} w, const int16_t *{R} xp, int rows, "
           "int np,\n                         const int32_t *m, const int8_t *n, const int32_t *b)")
    out = lambda a, r: f"{p}_rq({a}, m[{r}], n[{r}]) + (b ? b[{r}] : 0)"  # row r's sum a, requantized
    if _rq_fast(s):  # the high-word rq on 8 lanes: two vpmuldq (even, odd lanes), then the rounding shift per lane
        avx_rq = """            const __m256i mv = _mm256_loadu_si256((const __m256i *)(m + r)), one = _mm256_set1_epi32(1);
            const __m256i sh = _mm256_sub_epi32(_mm256_cvtepi8_epi32(_mm_loadl_epi64((const __m128i *)(n + r))),
                                                _mm256_set1_epi32(32));
            const __m256i hi = _mm256_blend_epi32(_mm256_srli_epi64(_mm256_mul_epi32(s8, mv), 32),
                                                  _mm256_mul_epi32(_mm256_srli_epi64(s8, 32), _mm256_srli_epi64(mv, 32)), 0xAA);
            __m256i y = _mm256_srav_epi32(_mm256_add_epi32(hi, _mm256_srli_epi32(_mm256_sllv_epi32(one, sh), 1)), sh);
            if (b)
                y = _mm256_add_epi32(y, _mm256_loadu_si256((const __m256i *)(b + r)));
            _mm256_storeu_si256((__m256i *)(out + r), y);
"""
    else:
        avx_rq = f"""            _mm256_storeu_si256((__m256i *)(out + r), s8);
            for (i = r; i < r + 8; i++)
                out[i] = {out("out[i]", "i")};
"""
    return f"""/* x[n] -> xp[{P}_XPAD], the form every matvec reads: zero-padded (padded weights and vector loads past n
   meet zeros); for the DSP path the middle two of every 4 swapped, so one 32-bit load gives (x0, x2) and the
   next (x1, x3): the lanes SXTB16 takes from 4 packed weights */
static void {p}_load_x(const int16_t *x, int n, int16_t *xp)
{{
    int j;
    for (j = 0; j < n; j++)
        xp[j] = x[j];
    for (; j < ((n + 15) & ~15); j++)
        xp[j] = 0;
#if defined({P}_DSP)
    for (j = 0; j < n; j += 4) {{
        const int16_t t = xp[j + 1];
        xp[j + 1] = xp[j + 2];
        xp[j + 2] = t;
    }}
#endif
}}

/* out[r] = rq(w[r][0..np) . xp, m[r], n[r]) + b[r] (b may be 0) for r < rows: int8 weights x int16 activations
   summed in int32, one contiguous row at a time, requantized (to Q12; the head to Q16) */
#if defined({P}_AVX2)
#if defined(__AVX512VNNI__) && defined(__AVX512VL__)
#define {P}_DPWSSD(acc, a, b) _mm256_dpwssd_epi32(acc, a, b)  /* vpmaddwd and the add in one instruction */
#else
#define {P}_DPWSSD(acc, a, b) _mm256_add_epi32(acc, _mm256_madd_epi16(a, b))
#endif
/* w[0..np) . xp as 8 lane sums (the last rows % 8): 16 weights at a time sign-extended to int16 (vpmovsxbw) against
   16 activations, adjacent products summed in int32 (vpmaddwd). A row's last 16-byte load may reach 12 bytes past
   it (the next row, or the matrix's zero tail): the activations there are zero */
static __m256i {p}_row8(const int8_t *w, const int16_t *xp, int nv)
{{
    __m256i s = _mm256_setzero_si256();
    int k;
    for (k = 0; k < nv; k++)
        s = {P}_DPWSSD(s, _mm256_cvtepi8_epi16(_mm_loadu_si128((const __m128i *)(w + 16 * k))),
                      _mm256_loadu_si256((const __m256i *)(xp + 16 * k)));
    return s;
}}

/* the sums of 8 rows of 8 or 4 weights (a layer input of few channels), in row order: one 16-byte load holds 2 or 4
   rows, against xs = their activations repeated; 3 or 1 vphaddd and a vpermd put the 8 sums in order */
static __m256i {p}_short8(const int8_t *w, __m256i xs, int np)
{{
    __m256i v[4];
    int q;
    for (q = 0; q < np / 2; q++)
        v[q] = _mm256_madd_epi16(_mm256_cvtepi8_epi16(_mm_loadu_si128((const __m128i *)(w + 16 * q))), xs);
    if (np == 4)  /* lanes: rows 0 1 4 5 2 3 6 7 */
        return _mm256_permutevar8x32_epi32(_mm256_hadd_epi32(v[0], v[1]), _mm256_setr_epi32(0, 1, 4, 5, 2, 3, 6, 7));
    return _mm256_permutevar8x32_epi32(_mm256_hadd_epi32(_mm256_hadd_epi32(v[0], v[1]), _mm256_hadd_epi32(v[2], v[3])),
                                       _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7));  /* lanes: rows 0 2 4 6 1 3 5 7 */
}}

/* 8 rows at a time, each 16 activations loaded once for the 8; the rows' lane sums are reduced together (3 rounds
   of vphaddd and one add) and requantized on 8 lanes */
{sig}
{{
    const int nv = (np + 15) >> 4;
    const __m256i xs = np == 4 ? _mm256_broadcastq_epi64(_mm_loadl_epi64((const __m128i *)xp))
                               : _mm256_broadcastsi128_si256(_mm_loadu_si128((const __m128i *)xp));
    int r = 0, i, k;
    for (; r + 8 <= rows; r += 8) {{
        const int8_t *wr = w + (long)r * np;
        __m256i s8;
        if (np <= 8) {{
            s8 = {p}_short8(wr, xs, np);
        }} else {{
            __m256i a[8], b0, b1;
            for (i = 0; i < 8; i++)
                a[i] = _mm256_setzero_si256();
            for (k = 0; k < nv; k++) {{
                const __m256i xk = _mm256_loadu_si256((const __m256i *)(xp + 16 * k));
                for (i = 0; i < 8; i++)
                    a[i] = {P}_DPWSSD(a[i], _mm256_cvtepi8_epi16(_mm_loadu_si128((const __m128i *)(wr + (long)i * np + 16 * k))), xk);
            }}
            b0 = _mm256_hadd_epi32(_mm256_hadd_epi32(a[0], a[1]), _mm256_hadd_epi32(a[2], a[3]));  /* rows 0-3: halves */
            b1 = _mm256_hadd_epi32(_mm256_hadd_epi32(a[4], a[5]), _mm256_hadd_epi32(a[6], a[7]));
            s8 = _mm256_add_epi32(_mm256_permute2x128_si256(b0, b1, 0x20), _mm256_permute2x128_si256(b0, b1, 0x31));
        }}
        {{
{avx_rq}        }}
    }}
    for (; r < rows; r++) {{
        const __m256i s = {p}_row8(w + (long)r * np, xp, nv);
        __m128i t = _mm_add_epi32(_mm256_castsi256_si128(s), _mm256_extracti128_si256(s, 1));
        t = _mm_hadd_epi32(t, t);
        out[r] = {out("_mm_cvtsi128_si32(_mm_hadd_epi32(t, t))", "r")};
    }}
}}
#elif defined({P}_DSP)
/* SXTB16 of the value rotated by 8, in one instruction (ACLE has no rotating form; compilers do not fold one) */
static int32_t {p}_sxtb16_ror8(int32_t v)
{{
    int32_t r;
    __asm__("sxtb16 %0, %1, ror #8" : "=r"(r) : "r"(v));
    return r;
}}

/* two rows at a time (they share the activation loads): one 32-bit load holds 4 weights of a row; SXTB16
   sign-extends bytes 0 and 2 into two int16 lanes, and (rotated) bytes 1 and 3; SMLAD multiplies both lanes by two
   activations and adds both products */
{sig}
{{
    int r;
    for (r = 0; r < rows; r += 2) {{
        const int8_t *w0 = w + (long)r * np, *w1 = r + 1 < rows ? w0 + np : w0, *end = w0 + np;  /* odd last row: twice */
        const int16_t *x = xp;
        int32_t a0 = 0, a1 = 0;
        do {{  /* np >= 4. Pointers, not an index: gcc -Os then keeps all in registers; a do-while lets it see that a0
                  is a 32-bit value (SMULL in rq, not a 64 x 64 multiply) */
            int32_t u0, u1, x02, x13;
            __builtin_memcpy(&u0, w0, 4);  /* one LDR: these cores load unaligned words */
            __builtin_memcpy(&u1, w1, 4);
            __builtin_memcpy(&x02, x, 4);
            __builtin_memcpy(&x13, x + 2, 4);
            a0 = __smlad(__sxtb16(u0), x02, a0);
            a1 = __smlad(__sxtb16(u1), x02, a1);
            a0 = __smlad({p}_sxtb16_ror8(u0), x13, a0);
            a1 = __smlad({p}_sxtb16_ror8(u1), x13, a1);
            w0 += 4;
            w1 += 4;
            x += 4;
        }} while (w0 < end);
        out[r] = {out("a0", "r")};
        if (r + 1 < rows)
            out[r + 1] = {out("a1", "r + 1")};
    }}
}}
#else
{sig}
{{
    int r, j;
    for (r = 0; r < rows; r++) {{
        const int8_t *wr = w + (long)r * np;
        int32_t a = 0;
        for (j = 0; j < np; j++)
            a += (int32_t)wr[j] * xp[j];
        out[r] = {out("a", "r")};
    }}
}}
#endif

"""


def _rq_fast(s) -> bool:
    """Every requantization shift is >= 33 (36-43 on the demo models): the high-word {prefix}_rq is exact."""
    shifts = [int(v) for lay in s.layers for k in ("nx", "nh") for v in lay[k]] + [int(v) for v in s.head_wb["n"]]
    return min(shifts) >= 33


def _int8_arithmetic(s) -> str:
    p, P = s.prefix, s.prefix.upper()
    if _rq_fast(s):
        rq = f"""/* acc * m / 2^n, rounded: the int32 fixed-point form of a real multiplier (m < 2^31; here 33 <= n <= 62).
   Exactly (acc * m + 2^(n-1)) >> n, from the high word of the product: 2^(n-1) is a multiple of 2^32, so
   ((p >> 32) + 2^(n-33)) >> (n-32) is the same number, and a 32-bit core needs one SMULL and 3 instructions */
static int32_t {p}_rq(int32_t acc, int32_t m, int n)
{{
    const int32_t hi = (int32_t)(((int64_t)acc * m) >> 32);
    return (hi + ((int32_t)1 << (n - 33))) >> (n - 32);
}}
"""
    else:
        rq = f"""/* acc * m / 2^n, rounded: the int32 fixed-point form of a real multiplier (m < 2^31, 1 <= n <= 62) */
static int32_t {p}_rq(int32_t acc, int32_t m, int n)
{{
    return (int32_t)(((int64_t)acc * m + ((int64_t)1 << (n - 1))) >> n);
}}
"""
    text = f"""/* ---- fixed-point arithmetic ---- */
{rq}
/* table lookup with linear interpolation: x Q12 -> Q15. The index is clamped to the table, which repeats its last
   entry, so entry i + 1 is always there (weighted 0 at the ends): no branch */
static int32_t {p}_lut(const int16_t *t, int32_t x, int32_t half, int shift)
{{
    int32_t u = x + half, i, f;
    u = u < 0 ? 0 : (u > 2 * half ? 2 * half : u);
    i = u >> shift;
    f = u & ((1 << shift) - 1);
    return t[i] + (((t[i + 1] - t[i]) * f + (1 << (shift - 1))) >> shift);
}}

/* y[k] = lut(a[k] + b[k]) for k < n (b may be 0, y may be a). AVX2: 8 at a time, one 32-bit gather at t + i reads
   t[i] and t[i + 1] */
static void {p}_lut_v(const int16_t *t, const int32_t *a, const int32_t *b, int32_t *y, int n, int32_t half, int shift)
{{
    int k = 0;
#if defined({P}_AVX2)
    const __m256i h = _mm256_set1_epi32(half), top = _mm256_set1_epi32(2 * half), low = _mm256_set1_epi32((1 << shift) - 1);
    const __m256i rnd = _mm256_set1_epi32(1 << (shift - 1));
    const __m128i sh = _mm_cvtsi32_si128(shift);
    for (; k + 8 <= n; k += 8) {{
        const __m256i x = _mm256_add_epi32(_mm256_loadu_si256((const __m256i *)(a + k)),
                                           b ? _mm256_loadu_si256((const __m256i *)(b + k)) : _mm256_setzero_si256());
        const __m256i u = _mm256_min_epi32(_mm256_max_epi32(_mm256_add_epi32(x, h), _mm256_setzero_si256()), top);
        const __m256i e = _mm256_i32gather_epi32((const int *)t, _mm256_sra_epi32(u, sh), 2);
        const __m256i t0 = _mm256_srai_epi32(_mm256_slli_epi32(e, 16), 16), t1 = _mm256_srai_epi32(e, 16);
        const __m256i d = _mm256_mullo_epi32(_mm256_sub_epi32(t1, t0), _mm256_and_si256(u, low));
        _mm256_storeu_si256((__m256i *)(y + k), _mm256_add_epi32(t0, _mm256_sra_epi32(_mm256_add_epi32(d, rnd), sh)));
    }}
#endif
    for (; k < n; k++)
        y[k] = {p}_lut(t, a[k] + (b ? b[k] : 0), half, shift);
}}

"""
    if s.cell != "rnn":
        text += f"""static void {p}_sigmoid_v(const int32_t *a, const int32_t *b, int32_t *y, int n)
{{
    {p}_lut_v({p}_sig, a, b, y, n, {SIG_HALF}, {SIG_SHIFT});
}}

"""
    text += f"""static void {p}_tanh_v(const int32_t *a, const int32_t *b, int32_t *y, int n)
{{
    {p}_lut_v({p}_tanh_t, a, b, y, n, {TANH_HALF}, {TANH_SHIFT});
}}

{_matvec_int8(s)}/* the matvecs of one layer, requantized to Q12 pre-activations */
static void {p}_gates(const {p}_layer *L, const int16_t *x, const int16_t *h, int32_t *gx, int32_t *gh)
{{
    int16_t xp[{P}_XPAD], hp[{P}_XPAD];
    {p}_load_x(x, L->n_in, xp);
    {p}_load_x(h, {s.H}, hp);
    /* the recurrent matvec first: it is on the path from one step to the next, the input's is not (an out-of-order
       core overlaps that one with what follows; measured: 5% faster on x86) */
    {p}_matvec_rq(gh, L->wh, hp, {P}_GH, {padded(s.H)}, L->mh, L->nh, {'L->bh' if s.cell == 'gru' else '0'});
    {p}_matvec_rq(gx, L->wx, xp, {P}_GH, (L->n_in + 3) & ~3, L->mx, L->nx, L->bx);
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
    # the table lookups run over whole gate vectors ({p}_sigmoid_v / {p}_tanh_v), the rest elementwise
    if s.cell == "gru":
        body = f"""    int32_t gx[{P}_GH], gh[{P}_GH], rz[{2 * H}];
    int r;
    {p}_gates(L, x, h, gx, gh);
    {p}_sigmoid_v(gx, gh, rz, {2 * H});  /* r, z */
    for (r = 0; r < {H}; r++)
        /* (rg * gh + 2^14) >> 15 in int32, exactly: gh = hi 2^15 + lo, and rg < 2^15 keeps both products in range */
        gx[{2 * H} + r] += rz[r] * (gh[{2 * H} + r] >> 15) + ((rz[r] * (gh[{2 * H} + r] & 32767) + 16384) >> 15);
    {p}_tanh_v(gx + {2 * H}, 0, gx + {2 * H}, {H});  /* n */
    for (r = 0; r < {H}; r++) {{
        const int32_t zg = rz[{H} + r], ng = gx[{2 * H} + r];
        h[r] = (int16_t)(ng + ((zg * (h[r] - ng) + 16384) >> 15));  /* (1 - z) n + z h */
    }}
"""
    elif s.cell == "lstm":
        body = f"""    int32_t gx[{P}_GH], gh[{P}_GH];
    int r;
    {p}_gates(L, x, h, gx, gh);
    {p}_sigmoid_v(gx, gh, gx, {3 * H});  /* i, f, o (the rows are in gate order i f o g: edgernn.export.c.tables) */
    {p}_tanh_v(gx + {3 * H}, gh + {3 * H}, gx + {3 * H}, {H});  /* g */
    for (r = 0; r < {H}; r++) {{
        const int cf = L->cf[r], cs = 30 - cf;  /* i*g is Q30; this unit's cell state is Q(cf) */
        const int32_t ig = gx[r], fg = gx[{H} + r], gg = gx[{3 * H} + r];
        /* fg * c and ig * gg are Q15 x int16, below 2^30 in magnitude: int32 holds them and the rounding term */
        int32_t cn = ((fg * c[r] + 16384) >> 15) + ((ig * gg + (1 << (cs - 1))) >> cs);
        cn = cn > 32767 ? 32767 : (cn < -32767 ? -32767 : cn);
        c[r] = (int16_t)cn;
        gh[r] = cf >= 12 ? (cf == 12 ? cn : (cn + (1 << (cf - 13))) >> (cf - 12)) : cn * (1 << (12 - cf));  /* Q12 */
    }}
    {p}_tanh_v(gh, 0, gh, {H});
    for (r = 0; r < {H}; r++)
        h[r] = (int16_t)((gx[{2 * H} + r] * gh[r] + 16384) >> 15);
"""
    else:
        body = f"""    int32_t gx[{P}_GH], gh[{P}_GH];
    int r;
    {p}_gates(L, x, h, gx, gh);
    {p}_tanh_v(gx, gh, gx, {H});
    for (r = 0; r < {H}; r++)
        h[r] = (int16_t)gx[r];
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
    P = p.upper()
    return f"""/* head: int8 weights x Q15 features -> int32 Q16 outputs (one scale for all: argmax works on integers) */
static void {p}_head_q(const int16_t *feat, int32_t *out_q)
{{
    int16_t xp[{P}_XPAD];
    {p}_load_x(feat, {DH}, xp);
    {p}_matvec_rq(out_q, {p}_head_w, xp, {s.K}, {padded(DH)}, {p}_head_m, {p}_head_n, {p}_head_b);
}}

static void {p}_dequantize(const int32_t *out_q, float *out)
{{
    int k;
    for (k = 0; k < {s.K}; k++)
        out[k] = (float)out_q[k] * (1.0f / {1 << Q_OUT}.0f){denorm};
}}

"""
