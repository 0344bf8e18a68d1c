"""
C99 source text for a token encoder-decoder (`--format c` of a token run): one header-only library holding the
encoder, the decoder step and the greedy loop, float or int8 weights. Pure text from numbers: the caller hands
the weights as numpy arrays (edgernn.tokens.export); nothing here imports torch.

    #define G2P_FLOAT_IMPLEMENTATION            // in ONE .c file of the app
    #include "seq2seq-float.h"
    g2p_float_context ctx; g2p_float_dstate st;  // caller-owned: no heap, no mutable global
    int32_t src[] = {...}, out[40];
    g2p_float_encode(&ctx, &st, src, n);         // source ids -> encoder outputs + the decoder's first state
    int len = g2p_float_greedy(&ctx, &st, out, n + 10);   // generated ids, without <bos>/<eos>
    g2p_float_step(&ctx, &st, token, logits, &st);        // or drive the decoder yourself (beam search)

float: float32 weights and arithmetic. int8: int8 weight tables (embeddings and matrices, one scale per output
row / per token), dequantized inside the multiply-add: arithmetic stays float ("weights-int8"), the tables take a
quarter of the flash. Matrices are stored transposed ([fan-in][outputs]) so the inner loop runs over contiguous
outputs and compilers vectorize it without reordering a sum. sigmoid/tanh use the rational tanh of the sensor C
(edgernn.export.c.kernels, max error 4e-7), the attention's softmax an exp by range reduction and a degree-6
polynomial (relative error < 2e-7): no libm, no <math.h>.
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np

from edgernn.export.c.kernels import TANH_CLAMP, TANH_P, TANH_Q
from edgernn.export.c.source import c_string
from edgernn.export.c.tables import array, c_float
from edgernn.export.c.token_beam import beam_search
from edgernn.export.c.token_encoder import dec_name, enc_name, layer_fn, stacked_encode

# exp(r) on |r| <= ln2/2: Taylor to degree 6 (relative error < 2e-7 there, below float32 rounding of a product)
EXP_COEFFS = (1.0, 1.0, 1 / 2, 1 / 6, 1 / 24, 1 / 120, 1 / 720)
LN2_HI, LN2_LO = 0.693145751953125, 1.42860682030941723212e-06


def quantize_rows(w: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """int8 per row (symmetric, max |w| -> 127): (q [rows, cols] int8, scale [rows] float32)."""
    amax = np.abs(w).max(axis=1)
    scale = np.where(amax > 0, amax / 127.0, 1.0).astype(np.float32)
    q = np.clip(np.round(w / scale[:, None]), -127, 127).astype(np.int8)
    return q, scale


class TokenCSpec:
    """What the generator needs: the prefix, precision, sizes and the weights (torch's layouts)."""

    def __init__(self, prefix: str, precision: str, cfg, weights: dict, src_tokens: list, tgt_tokens: list,
                 max_src: int = 64, sha_note: str = ""):
        self.max_src = int(max_src)
        self.prefix, self.precision, self.cfg, self.w = prefix, precision, cfg, weights
        self.src_tokens, self.tgt_tokens, self.note = src_tokens, tgt_tokens, sha_note
        self.G = 4 if cfg.cell == "lstm" else 3


def _tables(s: TokenCSpec) -> str:
    p = s.prefix
    out = []
    q = s.precision == "int8"

    def emb(name, w):
        if q:
            qw, sc = quantize_rows(w)
            out.append(array("int8_t", f"{p}_{name}_q", qw, per_line=16))
            out.append(array("float", f"{p}_{name}_s", sc))
        else:
            out.append(array("float", f"{p}_{name}", w))

    def lin(name, w, b):
        """Transposed [in][out]; int8: one scale per output row of w."""
        if q:
            qw, sc = quantize_rows(w)
            out.append(array("int8_t", f"{p}_{name}_w", qw.T, per_line=16))
            out.append(array("float", f"{p}_{name}_s", sc))
        else:
            out.append(array("float", f"{p}_{name}_w", w.T))
        out.append(array("float", f"{p}_{name}_b", b))
        ws = f"{p}_{name}_w"
        sc = f"{p}_{name}_s" if q else "0"
        out.append(f"static const {p}_lin {p}_{name} = {{{ws}, {sc}, {p}_{name}_b, {w.shape[1]}, {w.shape[0]}}};\n")

    w = s.w
    lm = s.cfg.kind == "next-token"  # a language model (edgernn.export.c.token_lm): no source side, no encoder
    dec = s.cfg.kind in ("seq2seq", "next-token")  # classify/tag (token_classifier): head as out.*, labels as tgt
    if not lm:
        emb("src_emb", w["src_embed.weight"])
    if dec:
        emb("tgt_emb", w["tgt_embed.weight"])
    for layer in range(0 if lm else s.cfg.layers):  # layer 0 keeps the one-layer names (enc0_i, enc1_h, ...)
        for d, sfx in ((0, ""), (1, "_reverse")):
            if d and not s.cfg.bidirectional:
                continue
            name, key = enc_name(layer, d), f"l{layer}{sfx}"
            lin(f"{name}_i", w[f"encoder.weight_ih_{key}"], w[f"encoder.bias_ih_{key}"])
            lin(f"{name}_h", w[f"encoder.weight_hh_{key}"], w[f"encoder.bias_hh_{key}"])
    for layer in range(s.cfg.layers if lm else 1 if dec else 0):  # a seq2seq decoder has one layer
        lin(f"{dec_name(layer)}_i", w[f"decoder.weight_ih_l{layer}"], w[f"decoder.bias_ih_l{layer}"])
        lin(f"{dec_name(layer)}_h", w[f"decoder.weight_hh_l{layer}"], w[f"decoder.bias_hh_l{layer}"])
    lin("out", w["out.weight"], w["out.bias"])
    if not lm:
        strings = ",\n    ".join(c_string(t) for t in s.src_tokens)
        out.append(f"static const char *const {p}_src_names[{len(s.src_tokens)}] = {{\n    {strings}\n}};\n")
    strings = ",\n    ".join(c_string(t) for t in s.tgt_tokens)
    out.append(f"static const char *const {p}_tgt_names[{len(s.tgt_tokens)}] = {{\n    {strings}\n}};\n")
    return "\n".join(out)


def _arithmetic(s: TokenCSpec) -> str:
    p, P = s.prefix, s.prefix.upper()
    wt = "int8_t" if s.precision == "int8" else "float"
    num = " ".join(f"n = n * x2 + {c_float(c)};" for c in reversed(TANH_P[:-1]))
    den = " ".join(f"d = d * x2 + {c_float(c)};" for c in reversed(TANH_Q[:-1]))
    poly = " ".join(f"y = y * r + {c_float(c)};" for c in reversed(EXP_COEFFS[:-1]))
    exp_fn = f"""/* exp(x) for x <= 0 (the softmax subtracts its maximum first): x = k ln2 + r, 2^k from the exponent bits */
static float {p}_exp_neg(float x)
{{
    union {{ uint32_t u; float f; }} two_k;
    float r, y;
    int k;
    if (x < -87.0f)
        return 0.0f;
    k = (int)(x * 1.44269504f - 0.5f);
    r = x - (float)k * {c_float(LN2_HI)} - (float)k * {c_float(LN2_LO)};
    y = {c_float(EXP_COEFFS[-1])}; {poly}
    two_k.u = (uint32_t)(k + 127) << 23;
    return y * two_k.f;
}}

"""
    scaled = """    if (L->s) {
        for (i = 0; i < L->out; i++)
            y[i] = y[i] * L->s[i] + L->b[i];
    } else {
        for (i = 0; i < L->out; i++)
            y[i] += L->b[i];
    }"""
    return f"""typedef struct {{
    const {wt} *w;   /* [in][out]: transposed, the inner loop runs over contiguous outputs */
    const float *s;  /* int8: one scale per output (0 for float) */
    const float *b;
    int in, out;
}} {p}_lin;

static float {p}_tanh(float x)
{{
    float x2, n, d, y;
    x = x < -{c_float(TANH_CLAMP)} ? -{c_float(TANH_CLAMP)} : (x > {c_float(TANH_CLAMP)} ? {c_float(TANH_CLAMP)} : x);
    x2 = x * x;
    n = {c_float(TANH_P[-1])}; {num}
    d = {c_float(TANH_Q[-1])}; {den}
    y = x * n / d;
    return y > 1.0f ? 1.0f : (y < -1.0f ? -1.0f : y);
}}

static float {p}_sigmoid(float x)
{{
    return 0.5f + 0.5f * {p}_tanh(0.5f * x);
}}

{exp_fn}static void {p}_linear(const {p}_lin *L, const float *{P}_RESTRICT x, float *{P}_RESTRICT y)
{{
    int i, j;
    for (i = 0; i < L->out; i++)
        y[i] = 0.0f;
    for (j = 0; j < L->in; j++) {{
        const float xj = x[j];
        const {wt} *{P}_RESTRICT w = L->w + (long)j * L->out;
        for (i = 0; i < L->out; i++)
            y[i] += (float)w[i] * xj;
    }}
{scaled}
}}
"""


def _cells(s: TokenCSpec) -> str:
    p, P = s.prefix, s.prefix.upper()
    if s.cfg.cell == "gru":
        cell = f"""/* PyTorch's GRU: r, z, n gates; h' = (1 - z) n + z h. h_out may be h */
static void {p}_cell(const {p}_lin *Wi, const {p}_lin *Wh, const float *x, const float *h, const float *c,
                     int H, float *h_out, float *c_out)
{{
    float gi[3 * {P}_HD], gh[3 * {P}_HD];
    int k;
    (void)c;
    (void)c_out;
    {p}_linear(Wi, x, gi);
    {p}_linear(Wh, h, gh);
    for (k = 0; k < H; k++) {{
        float r = {p}_sigmoid(gi[k] + gh[k]);
        float z = {p}_sigmoid(gi[H + k] + gh[H + k]);
        float n = {p}_tanh(gi[2 * H + k] + r * gh[2 * H + k]);
        h_out[k] = (1.0f - z) * n + z * h[k];
    }}
}}
"""
    else:
        cell = f"""/* PyTorch's LSTM: i, f, g, o gates; c' = f c + i g, h' = o tanh(c'). h_out/c_out may be h/c */
static void {p}_cell(const {p}_lin *Wi, const {p}_lin *Wh, const float *x, const float *h, const float *c,
                     int H, float *h_out, float *c_out)
{{
    float gi[4 * {P}_HD], gh[4 * {P}_HD];
    int k;
    {p}_linear(Wi, x, gi);
    {p}_linear(Wh, h, gh);
    for (k = 0; k < H; k++) {{
        float i = {p}_sigmoid(gi[k] + gh[k]);
        float f = {p}_sigmoid(gi[H + k] + gh[H + k]);
        float g = {p}_tanh(gi[2 * H + k] + gh[2 * H + k]);
        float o = {p}_sigmoid(gi[3 * H + k] + gh[3 * H + k]);
        float cn = f * c[k] + i * g;
        c_out[k] = cn;
        h_out[k] = o * {p}_tanh(cn);
    }}
}}
"""
    if s.precision == "int8":
        emb = f"""static void {p}_embed(const int8_t *q, const float *scale, int32_t id, float *x)
{{
    int e;
    for (e = 0; e < {P}_EMBED; e++)
        x[e] = (float)q[(long)id * {P}_EMBED + e] * scale[id];
}}
#define {P}_SRC_EMBED(id, x) {p}_embed({p}_src_emb_q, {p}_src_emb_s, (id), (x))
#define {P}_TGT_EMBED(id, x) {p}_embed({p}_tgt_emb_q, {p}_tgt_emb_s, (id), (x))
"""
    else:
        emb = f"""static void {p}_embed(const float *table, int32_t id, float *x)
{{
    int e;
    for (e = 0; e < {P}_EMBED; e++)
        x[e] = table[(long)id * {P}_EMBED + e];
}}
#define {P}_SRC_EMBED(id, x) {p}_embed({p}_src_emb, (id), (x))
#define {P}_TGT_EMBED(id, x) {p}_embed({p}_tgt_emb, (id), (x))
"""
    return cell + "\n" + emb


def _public_impl(s: TokenCSpec) -> str:
    p, P = s.prefix, s.prefix.upper()
    H = s.cfg.hidden
    bwd = f"""    {{  /* the backward direction: from the last token to the first */
        for (k = 0; k < {H}; k++) {{
            h[k] = 0.0f;
            c[k] = 0.0f;
        }}
        for (t = n - 1; t >= 0; t--) {{
            {P}_SRC_EMBED(src[t], x);
            {p}_cell(&{p}_enc1_i, &{p}_enc1_h, x, h, c, {H}, h, c);
            for (k = 0; k < {H}; k++)
                ctx->enc[(long)t * {P}_HD + {H} + k] = h[k];
        }}
        for (k = 0; k < {H}; k++) {{
            first->h[{H} + k] = h[k];
            first->c[{H} + k] = c[k];
        }}
    }}
""" if s.cfg.bidirectional else ""
    attention = f"""    {{  /* dot-product attention of the new state over the encoder outputs */
        float score[{P}_MAX_SRC], m, sum = 0.0f;
        int t;
        const float *e;
        for (t = 0; t < ctx->n; t++) {{
            float d = 0.0f;
            e = ctx->enc + (long)t * {P}_HD;
            for (k = 0; k < {P}_HD; k++)
                d += feat[k] * e[k];
            score[t] = d;
        }}
        m = score[0];
        for (t = 1; t < ctx->n; t++)
            m = score[t] > m ? score[t] : m;
        for (t = 0; t < ctx->n; t++) {{
            score[t] = {p}_exp_neg(score[t] - m);
            sum += score[t];
        }}
        for (k = 0; k < {P}_HD; k++)
            feat[{P}_HD + k] = 0.0f;
        for (t = 0; t < ctx->n; t++) {{
            const float w = score[t] / sum;
            e = ctx->enc + (long)t * {P}_HD;
            for (k = 0; k < {P}_HD; k++)
                feat[{P}_HD + k] += w * e[k];
        }}
    }}
""" if s.cfg.attention else ""
    feat = f"2 * {P}_HD" if s.cfg.attention else f"{P}_HD"
    unused = "" if s.cfg.attention else "    (void)ctx;  /* no attention: the step never reads the encoder outputs */\n"
    encode = f"""int {p}_encode({p}_context *ctx, {p}_dstate *first, const int32_t *src, int n)
{{
    float x[{P}_EMBED], h[{P}_HD], c[{P}_HD];
    int t, k;
    if (n < 1 || n > {P}_MAX_SRC)
        return -1;
    for (t = 0; t < n; t++)
        if (src[t] < 0 || src[t] >= {P}_SRC_VOCAB)
            return -2;
    for (k = 0; k < {H}; k++) {{
        h[k] = 0.0f;
        c[k] = 0.0f;
    }}
    for (t = 0; t < n; t++) {{
        {P}_SRC_EMBED(src[t], x);
        {p}_cell(&{p}_enc0_i, &{p}_enc0_h, x, h, c, {H}, h, c);
        for (k = 0; k < {H}; k++)
            ctx->enc[(long)t * {P}_HD + k] = h[k];
    }}
    for (k = 0; k < {H}; k++) {{
        first->h[k] = h[k];
        first->c[k] = c[k];
    }}
{bwd}    ctx->n = n;
    return 0;
}}
""" if s.cfg.layers == 1 else layer_fn(s) + stacked_encode(s)
    return encode + f"""
int {p}_step(const {p}_context *ctx, const {p}_dstate *in, int32_t token, float *logits, {p}_dstate *out)
{{
    float x[{P}_EMBED], feat[{feat}], c[{P}_HD];
    int k;
{unused}    if (token < 0 || token >= {P}_TGT_VOCAB)
        return -2;
    {P}_TGT_EMBED(token, x);
    {p}_cell(&{p}_dec_i, &{p}_dec_h, x, in->h, in->c, {P}_HD, feat, c);
    for (k = 0; k < {P}_HD; k++) {{
        out->h[k] = feat[k];
        out->c[k] = c[k];
    }}
{attention}    {p}_linear(&{p}_out, feat, logits);
    return 0;
}}

int {p}_greedy(const {p}_context *ctx, const {p}_dstate *first, int32_t *out, int max_out)
{{
    {p}_dstate st = *first;
    float logits[{P}_TGT_VOCAB];
    int32_t token = {P}_BOS;
    int n = 0, k;
    while (n < max_out) {{
        int best = 0;
        {p}_step(ctx, &st, token, logits, &st);
        for (k = 1; k < {P}_TGT_VOCAB; k++)
            if (logits[k] > logits[best])
                best = k;  /* the first maximum, as edgernn.runtimes.generate.greedy */
        if (best == {P}_EOS)
            break;
        token = (int32_t)best;
        out[n++] = token;
    }}
    return n;
}}

const char *{p}_src_token(int id) {{ return id >= 0 && id < {P}_SRC_VOCAB ? {p}_src_names[id] : 0; }}
const char *{p}_tgt_token(int id) {{ return id >= 0 && id < {P}_TGT_VOCAB ? {p}_tgt_names[id] : 0; }}
"""


def generate_token_c(s: TokenCSpec) -> str:
    p, P = s.prefix, s.prefix.upper()
    cfg = s.cfg
    macs = s.G * cfg.dec_hidden * (cfg.embed + cfg.dec_hidden) + cfg.tgt_vocab * cfg.dec_hidden * (
        2 if cfg.attention else 1)
    work, stacked = "", ""
    if cfg.layers > 1:  # the layer below's outputs while encoding: caller-owned, in the context
        work = f"    float work[{P}_MAX_SRC * {P}_HD];  /* stacked encoder: the layer below's outputs (encode only) */\n"
        stacked = (f" * Encoder: {cfg.layers} stacked layers; the context holds a work buffer of {P}_MAX_SRC x {P}_HD "
                   f"floats ({s.max_src * cfg.dec_hidden * 4:,} bytes)\n * besides the encoder outputs.\n")
    header = f"""/* {p}: a token encoder-decoder ({cfg.cell}, encoder hidden {cfg.hidden} x{cfg.directions}, decoder hidden
 * {cfg.dec_hidden}, {'dot-product attention, ' if cfg.attention else ''}{s.precision} weights), generated by edgernn. {s.note}
{stacked} * Decoder step: about {macs:,} multiply-adds + 2 x {cfg.dec_hidden} per source token (attention).
 * Use: #define {P}_IMPLEMENTATION in ONE .c file before including this header.
 *   {p}_encode(&ctx, &st, src, n)           source ids [n] -> context + the decoder's first state (0, or <0)
 *   {p}_step(&ctx, &st, token, logits, &st) one decoder step: logits [{P}_TGT_VOCAB]
 *   {p}_greedy(&ctx, &st, out, max_out)      generated ids (no <bos>/<eos>), returns their count
 *   {p}_beam(&ctx, &st, width, &work, out, max_out)   beam search (width <= {P}_MAX_BEAM), same return
 */
#ifndef {P}_H
#define {P}_H

#include <stdint.h>

#ifdef __cplusplus
extern "C" {{
#endif

#define {P}_SRC_VOCAB {cfg.src_vocab}
#define {P}_TGT_VOCAB {cfg.tgt_vocab}
#define {P}_EMBED {cfg.embed}
#define {P}_HD {cfg.dec_hidden}
#define {P}_BOS 2
#define {P}_EOS 3
#ifndef {P}_MAX_SRC
#define {P}_MAX_SRC {s.max_src}  /* longest source the context holds: define it before including to change it */
#endif

typedef struct {{
    float enc[{P}_MAX_SRC * {P}_HD];  /* encoder outputs, one row of {P}_HD per source token */
{work}    int n;
}} {p}_context;

typedef struct {{
    float h[{P}_HD];
    float c[{P}_HD];  /* LSTM cell state (unused by a GRU) */
}} {p}_dstate;

#ifndef {P}_MAX_BEAM
#define {P}_MAX_BEAM 8
#endif
#define {P}_MAX_OUT ({P}_MAX_SRC + 10)
typedef struct {{  /* beam search's workspace, caller-owned (no heap): two generations of hypotheses */
    {p}_dstate st[2][{P}_MAX_BEAM], next[{P}_MAX_BEAM];
    int32_t ids[2][{P}_MAX_BEAM][{P}_MAX_OUT], last[2][{P}_MAX_BEAM], best[{P}_MAX_OUT];
    float score[2][{P}_MAX_BEAM];
    int len[2][{P}_MAX_BEAM];
    float cand_score[{P}_MAX_BEAM * {P}_MAX_BEAM];
    int cand_from[{P}_MAX_BEAM * {P}_MAX_BEAM], cand_tok[{P}_MAX_BEAM * {P}_MAX_BEAM];
}} {p}_beam_work;

int {p}_encode({p}_context *ctx, {p}_dstate *first, const int32_t *src, int n);
int {p}_step(const {p}_context *ctx, const {p}_dstate *in, int32_t token, float *logits, {p}_dstate *out);
int {p}_greedy(const {p}_context *ctx, const {p}_dstate *first, int32_t *out, int max_out);
int {p}_beam(const {p}_context *ctx, const {p}_dstate *first, int width, {p}_beam_work *w, int32_t *out,
             int max_out);
const char *{p}_src_token(int id);
const char *{p}_tgt_token(int id);

#ifdef __cplusplus
}}
#endif
#endif /* {P}_H */

#if defined({P}_IMPLEMENTATION) && !defined({P}_IMPLEMENTED)
#define {P}_IMPLEMENTED
#ifdef __cplusplus
#define {P}_RESTRICT __restrict
#else
#define {P}_RESTRICT restrict
#endif

"""
    return (header + _arithmetic(s) + "\n" + _tables(s) + "\n" + _cells(s) + "\n" + _public_impl(s) + beam_search(s)
            + f"#endif /* {P}_IMPLEMENTATION */\n")


# ---------------------------------------------------------------- shared by every token C library


def c_prefix(run_name: str, precision: str) -> str:
    """The C identifier prefix of a run's token library: the run directory's name and the precision."""
    name = re.sub(r"[^0-9a-zA-Z_]", "_", run_name).strip("_").lower() or "model"
    return f"{'m_' if name[0].isdigit() else ''}{name}_{precision}"


def c_quantization(precision: str) -> tuple[dict, str]:
    """(compute, recipe) of a token C library: float, or int8 weight tables with float arithmetic."""
    if precision == "float":
        return {"embedding": "float", "recurrent": "float", "head": "float"}, "float"
    return ({"embedding": "weights-int8", "recurrent": "weights-int8", "head": "weights-int8"},
            "weights-int8 (per-row scales, float arithmetic)")


def write_checked(path: Path, text: str, prefix: str, what: str) -> dict:
    """Write a generated header and compile it on every installed compiler (edgernn.devices.compilers): the
    manifest's {"compiler", "compile_checks", "targets"}; not clean anywhere -> ExportError, the file removed."""
    from edgernn.devices.compilers import compile_checks, target_sizes
    from edgernn.errors import ExportError
    from edgernn.runtimes.c_backend import compiler_id, find_compiler

    path.write_text(text)
    checks = compile_checks(path, prefix)
    unclean = {k: v["error"] for k, v in checks.items() if "clean" in v and not v["clean"]}
    if unclean:
        path.unlink(missing_ok=True)
        raise ExportError(f"the generated {what} C does not compile cleanly with {', '.join(unclean)} "
                          f"({next(iter(unclean.values()))}); no file written - please report this")
    return {"compiler": compiler_id(find_compiler()), "compile_checks": checks, "targets": target_sizes(path, prefix)}


def softmax_c(p: str, count: str) -> str:
    """PREFIX_softmax over `count` logits (a C macro), without libm (the library's exp_neg)."""
    return f"""void {p}_softmax(const float *logits, float *probs)
{{
    float m = logits[0], sum = 0.0f;
    int k;
    for (k = 1; k < {count}; k++)
        m = logits[k] > m ? logits[k] : m;
    for (k = 0; k < {count}; k++) {{
        probs[k] = {p}_exp_neg(logits[k] - m);
        sum += probs[k];
    }}
    for (k = 0; k < {count}; k++)
        probs[k] /= sum;
}}
"""
