"""
C99 source text for `--format c`: one header-only library per artifact (stb style), float or int8.

Pure text generation from numbers (edgernn.export.c.export prepares the weights, the int8 scales and the
calibration); nothing here imports torch. This module writes the public part (the header, the state
struct, reset/step/run) and assembles the file around edgernn.export.c.tables (the const data) and
edgernn.export.c.kernels (the arithmetic, the cell step, the head). The generated file:

    #define GRU_STEP_INT8_IMPLEMENTATION      // in ONE .c file of the app
    #include "step-int8.h"
    gru_step_int8_state st;  gru_step_int8_reset(&st);
    gru_step_int8_step(&st, frame, out);     // raw frame [CHANNELS] -> out [OUTPUTS]
    gru_step_int8_run(x, T, out);            // raw window [T][CHANNELS] from a zero state

Design (RNNoise's rnn.c is the model): weights are `static const` arrays (flash on a microcontroller),
nothing is allocated, there is no mutable global: the caller owns the state struct, so any number of
streams can run at once. float matrices are stored transposed ([fan-in][gates x hidden]) so the inner
loop runs over contiguous outputs and compilers vectorize it; int8 ones row-major, one dot product per
output row (edgernn.export.c.kernels says why).

float: float32 weights and arithmetic; sigmoid/tanh are a rational approximation (max error 4e-7, below
float32 rounding of the outputs) so no libm call sits in the hot loop: the code needs no <math.h> at all.
int8: int8 weights (one scale per output row), int16 activations and state (hidden state Q15, LSTM cell
state Q(k) per unit with a calibrated power-of-two range), int32 accumulators, fixed-point requantization
(int32 multiplier + shift), sigmoid/tanh from 513/1025-entry tables with linear interpolation. The
recurrence and the head are integer-only (`_step_q`); float appears only where raw frames enter
(normalize + quantize, CHANNELS multiplies) and outputs leave (OUTPUTS multiplies).
"""

from __future__ import annotations

from edgernn.export.c import kernels, tables
from edgernn.export.c.detector import detector_c, detector_header
from edgernn.export.c.frontend import frontend_c
from edgernn.export.c.tables import Q_OUT
from edgernn.models import GATES


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
        return GATES[self.cell]

    @property
    def streaming(self) -> bool:
        return self.D == 1

    @property
    def raw(self) -> int:
        """Values per frame the API takes: PCM samples per hop for an audio model (fe), else C."""
        return self.fe.hop if getattr(self, "fe", None) is not None else self.C


def generate(spec: Spec) -> str:
    return _Gen(spec).text()


class _Gen:
    def __init__(self, s: Spec):
        self.s = s
        self.p = s.prefix
        self.P = s.prefix.upper()
        self.q = s.precision == "int8"
        self.act = "int16_t" if self.q else "float"
        self.fe = getattr(s, "fe", None)  # an audio model's front end (edgernn.frontends.FrontEnd), or None
        self.tail = self.fe.tail if self.fe is not None else 0

    # ---- the public part --------------------------------------------------------------------------
    def header(self) -> str:
        s, p, P = self.s, self.p, self.P
        lines = [f"#ifndef {P}_H", f"#define {P}_H", "", "#include <stdint.h>", "",
                 "#ifdef __cplusplus", 'extern "C" {', "#endif", "",
                 (f"#define {P}_CHANNELS {s.raw}  /* PCM samples per hop ({s.fe.hop_ms:g} ms at {s.fe.sample_rate} Hz), "
                  "float in [-1, 1]: the front end is inside */" if self.fe else
                  f"#define {P}_CHANNELS {s.C}  /* raw input values per frame */"),
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
            if self.tail:
                fields.append(f"    float tail[{self.tail}];  /* the audio front end's overlap: the last {self.tail} "
                              "samples of the previous hop */")
            lines += ["/* one stream's state: the caller owns it (several streams can run at once) */",
                      "typedef struct {", *fields, f"}} {p}_state;", "",
                      f"void {p}_reset({p}_state *st);  /* zero state: a new independent sequence */",
                      f"void {p}_step({p}_state *st, const float *frame, float *out);  "
                      f"/* raw frame[{P}_CHANNELS] -> out[{P}_OUTPUTS] after this frame */"]
            if self.fe is not None:
                lines += [f"void {p}_step_pcm16({p}_state *st, const int16_t *hop, float *out);  "
                          f"/* the same from int16 PCM (a microphone buffer): sample / 32768 */"]
            if self.q:
                lines += [f"void {p}_quantize_frame(const float *frame, int16_t *q);  "
                          "/* raw frame -> the int16 input _step_q takes */",
                          f"void {p}_step_q({p}_state *st, const int16_t *q, int32_t *out_q);  "
                          "/* integer only: no float anywhere */"]
        if self.fe is not None:
            lines += [f"#define {P}_FEATURES {s.C}  /* front-end features per hop */",
                      f"#define {P}_TAIL {self.tail}  /* samples of the previous hop each frame starts with */",
                      f"void {p}_features(float *tail, const float *hop, float *feat);  /* the front end alone: hop["
                      f"{P}_CHANNELS] + tail[{P}_TAIL] (zeros at the start; advanced) -> normalized feat[{P}_FEATURES] */"]
        if getattr(s, "detector", None) and s.streaming:
            lines += [""] + detector_header(s.labels, s.detector, p)
        if s.labels:
            lines += [f"extern const char *const {p}_labels[{P}_OUTPUTS];  /* class names: out[i] is the score "
                      f"of {p}_labels[i] (argmax = the answer) */"]
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
                kernels.paths(s) if self.q else "", tables.data(s), frontend_c(self.fe, self.p) if self.fe is not None else "",
                detector_c(s.detector, s.labels, self.p) if getattr(s, "detector", None) and s.streaming else "",
                kernels.arithmetic(s), kernels.cell(s), kernels.head(s), self.public(),
                kernels.paths_end(s) if self.q else "", f"#endif /* {P}_IMPLEMENTATION */", ""]
        return opening + self.header() + "\n" + "\n".join(impl)

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
        # the public _quantize_frame wraps a static one: _step and _run call that directly (inlined, not through
        # the PLT of a shared library)
        public = f"""void {p}_quantize_frame(const float *frame, int16_t *q)
{{
    {p}_quantize(frame, q);
}}

""" if s.streaming else ""
        return f"""static void {p}_quantize(const float *frame, int16_t *q)
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

""" + public

    def public(self) -> str:
        s = self.s
        return self.label_table() + self.input_fn() + (self.public_stream() if s.streaming
                                                       else self.public_bidirectional())

    def label_table(self) -> str:
        """The class names, in output order, as C string literals (classify / tag)."""
        if not self.s.labels:
            return ""
        names = ", ".join(c_string(str(v)) for v in self.s.labels)
        return f"const char *const {self.p}_labels[{self.P}_OUTPUTS] = {{{names}}};\n\n"

    def public_stream(self) -> str:
        s, p, L = self.s, self.p, self.s.L
        lstm = s.cell == "lstm"
        a = self.act
        calls = []
        for layer in range(L):
            x = "x" if layer == 0 else f"st->h[{layer - 1}]"
            calls.append(f"    {p}_cell(&{p}_layers[{layer}], {x}, st->h[{layer}]" + (f", st->c[{layer}]" if lstm else "") + ");")
        tail0 = f"""
    for (r = 0; r < {self.tail}; r++)
        st->tail[r] = 0.0f;""" if self.tail else ""
        reset = f"""void {p}_reset({p}_state *st)
{{
    int l, r;
    for (l = 0; l < {L}; l++)
        for (r = 0; r < {s.H}; r++) {{
            st->h[l][r] = 0;{'''
            st->c[l][r] = 0;''' if lstm else ''}
        }}{tail0}
}}

/* every layer, one frame (x: the layer-0 input, normalized or quantized) */
static void {p}_advance({p}_state *st, const {a} *x)
{{
{chr(10).join(calls)}
}}

"""
        # an audio model: the hop goes through the front end first (its tail in the state), features on
        fe_step, src = (f"    float feat[{s.C}];\n    {p}_features({'st->tail' if self.tail else '0'}, frame, feat);\n",
                        "feat") if self.fe is not None else ("", "frame")
        fe_decl = f"    float feat[{s.C}];\n" if self.fe is not None else ""
        if self.fe is not None:
            fe_t = f"        {p}_features({'st.tail' if self.tail else '0'}, x + (long)t * {s.raw}, feat);\n"
            src_t = "feat"
        else:
            fe_t, src_t = "", f"x + (long)t * {s.C}"
        if not self.q:
            body = f"""void {p}_step({p}_state *st, const float *frame, float *out)
{{
    float xn[{s.C}];
{fe_step}    {p}_normalize({src}, xn);
    {p}_advance(st, xn);
    {p}_head(st->h[{L - 1}], out);
}}

int {p}_run(const float *x, int T, float *out)
{{
    {p}_state st;
    float xn[{s.C}];
{fe_decl}    int t;
    if (T < 1)
        return -1;
    {p}_reset(&st);
    for (t = 0; t < T; t++) {{
{fe_t}        {p}_normalize({src_t}, xn);
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
{fe_step}    {p}_quantize({src}, q);
    {p}_advance(st, q);
    {p}_head_q(st->h[{L - 1}], out_q);
    {p}_dequantize(out_q, out);
}}

int {p}_run(const float *x, int T, float *out)
{{
    {p}_state st;
    int16_t q[{s.C}];
    int32_t out_q[{s.K}];
{fe_decl}    int t;
    if (T < 1)
        return -1;
    {p}_reset(&st);
    for (t = 0; t < T; t++) {{
{fe_t}        {p}_quantize({src_t}, q);
        {p}_advance(&st, q);{f'''
        {p}_head_q(st.h[{L - 1}], out_q);
        {p}_dequantize(out_q, out + (long)t * {s.K});''' if s.task == 'tag' else ''}
    }}{f'''
    {p}_head_q(st.h[{L - 1}], out_q);
    {p}_dequantize(out_q, out);''' if s.task != 'tag' else ''}
    return 0;
}}
"""
        if self.fe is not None:
            body += f"""
void {p}_step_pcm16({p}_state *st, const int16_t *hop, float *out)
{{
    float x[{s.raw}];
    int n;
    for (n = 0; n < {s.raw}; n++)
        x[n] = (float)hop[n] * (1.0f / 32768.0f);
    {p}_step(st, x, out);
}}
"""
        return reset + body

    def public_bidirectional(self) -> str:
        """Sequence only: each layer runs forward then backward over the window; outputs [t][2H] go to a
        stack buffer (two, ping-pong between layers)."""
        s, p, P, H = self.s, self.p, self.P, self.s.H
        a = self.act
        lstm = s.cell == "lstm"
        conv = f"{p}_normalize" if not self.q else f"{p}_quantize"
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


def c_string(text: str) -> str:
    """A C99 string literal of `text`: printable ASCII kept, quotes and backslashes escaped, every other
    byte of its UTF-8 as an octal escape (a class name may be any text)."""
    out = []
    for b in text.encode("utf-8"):
        ch = chr(b)
        if ch in '"\\':
            out.append("\\" + ch)
        elif 32 <= b < 127 and ch != "?":  # "?" escaped too: no trigraphs
            out.append(ch)
        else:
            out.append(f"\\{b:03o}")
    return '"' + "".join(out) + '"'

