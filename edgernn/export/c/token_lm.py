"""
C99 source for a next-token (language) model (`--format c` of a next-token run): one header-only library with the
step, the prompt priming, the greedy loop and the token names, float or int8 weights - built from the pieces of the
encoder-decoder's generator (edgernn.export.c.tokens: arithmetic, weight tables, cells) without its encoder.

    #define WORDS_FLOAT_IMPLEMENTATION          // in ONE .c file of the app
    #include "lm-float.h"
    words_float_state st;                        // caller-owned: no heap, no mutable global
    int32_t prompt[] = {...}, next, out[WORDS_FLOAT_MAX_LEN];
    words_float_prime(&st, prompt, n, &next);    // <bos> + the prompt but its last id -> state; next = last id
    int len = words_float_greedy(&st, next, out, WORDS_FLOAT_MAX_LEN);   // the continuation, without <eos>
    words_float_step(&st, token, logits, &st);   // or drive the step yourself (sampling, suggestions)

build_lm_c(model, run, tmp, precision) writes it, checks it compiles cleanly (-Wall -Wextra -Werror -pedantic) on
every installed compiler and measures its Cortex-M4 flash/RAM; edgernn.tokens.export_lm compares it with torch
through edgernn.runtimes.token_c.CLMEngine before it is published.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from edgernn.errors import ExportError
from edgernn.export.c.token_encoder import dec_name
from edgernn.export.c.tokens import (
    TokenCSpec,
    _arithmetic,
    _cells,
    _tables,
    c_prefix,
    c_quantization,
    softmax_c,
    write_checked,
)


def _stacked(s: TokenCSpec) -> tuple[str, str, str]:
    """(the advance's cells, the step's head input, the prime's zeroing) of a next-token model of L >= 1 layers:
    layer l reads layer l-1's new output, its own old state (out may be in: each cell reads its h before it writes)."""
    p, P, L = s.prefix, s.prefix.upper(), s.cfg.layers
    if L == 1:
        zero = f"""    for (k = 0; k < {P}_HD; k++) {{
        st->h[k] = 0.0f;
        st->c[k] = 0.0f;
    }}
"""
        return f"    {p}_cell(&{p}_dec_i, &{p}_dec_h, x, in->h, in->c, {P}_HD, out->h, out->c);\n", "out->h", zero
    cells = "".join(f"    {p}_cell(&{p}_{dec_name(i)}_i, &{p}_{dec_name(i)}_h, {'out->h[%d]' % (i - 1) if i else 'x'}, "
                    f"in->h[{i}], in->c[{i}], {P}_HD, out->h[{i}], out->c[{i}]);\n" for i in range(L))
    zero = f"""    for (k = 0; k < {P}_LAYERS * {P}_HD; k++) {{  /* every layer's h and c */
        st->h[k / {P}_HD][k % {P}_HD] = 0.0f;
        st->c[k / {P}_HD][k % {P}_HD] = 0.0f;
    }}
"""
    return cells, f"out->h[{L - 1}]", zero


def _public_impl(s: TokenCSpec) -> str:
    p, P = s.prefix, s.prefix.upper()
    cells, top, zero = _stacked(s)
    softmax = softmax_c(p, f"{P}_VOCAB")
    return f"""/* the recurrence alone (priming needs no logits): out may be in */
static void {p}_advance(const {p}_state *in, int32_t token, {p}_state *out)
{{
    float x[{P}_EMBED];
    {P}_TGT_EMBED(token, x);
{cells}}}

int {p}_step(const {p}_state *in, int32_t token, float *logits, {p}_state *out)
{{
    if (token < 0 || token >= {P}_VOCAB)
        return -2;
    {p}_advance(in, token, out);
    {p}_linear(&{p}_out, {top}, logits);
    return 0;
}}

int {p}_prime({p}_state *st, const int32_t *ids, int n, int32_t *next)
{{
    int k;
    if (n < 0)
        return -1;
    for (k = 0; k < n; k++)
        if (ids[k] < 0 || ids[k] >= {P}_VOCAB)
            return -2;
{zero}    *next = {P}_BOS;
    for (k = 0; k < n; k++) {{
        {p}_advance(st, *next, st);
        *next = ids[k];
    }}
    return 0;
}}

int {p}_greedy(const {p}_state *st, int32_t token, int32_t *out, int max_out)
{{
    {p}_state s = *st;
    float logits[{P}_VOCAB];
    int n = 0, k;
    if (max_out < 0 || max_out > {P}_MAX_LEN)
        return -1;
    if (token < 0 || token >= {P}_VOCAB)
        return -2;
    while (n < max_out) {{
        int best = 0;
        {p}_step(&s, token, logits, &s);
        for (k = 1; k < {P}_VOCAB; k++)
            if (logits[k] > logits[best])
                best = k;  /* the first maximum, as edgernn.runtimes.generate.greedy */
        if (best == {P}_EOS)
            break;
        token = (int32_t)best;
        out[n++] = token;
    }}
    return n;
}}

{softmax}
const char *{p}_token(int id) {{ return id >= 0 && id < {P}_VOCAB ? {p}_tgt_names[id] : 0; }}
"""


def generate_lm_c(s: TokenCSpec, max_len: int) -> str:
    """The header of a next-token model (s.cfg.kind == "next-token"); max_len: the default {P}_MAX_LEN."""
    p, P = s.prefix, s.prefix.upper()
    cfg = s.cfg
    L, hd = cfg.layers, cfg.dec_hidden
    macs = s.G * hd * (cfg.embed + hd) + (L - 1) * s.G * hd * 2 * hd + cfg.tgt_vocab * hd
    layers, dims, define = "", "", ""
    if L > 1:  # the state holds every layer's h (and c), torch's [layers, Hd] order
        layers, dims, define = f" x{L} layers", f"[{P}_LAYERS]", f"#define {P}_LAYERS {L}\n"
    calls = [(f"{p}_prime(&st, ids, n, &next)", "zero state, <bos> + ids[0..n-2] through the step; next = ids[n-1]"),
             ("", "(<bos> when n == 0). 0, or <0 (an id out of range)"),
             (f"{p}_step(&st, token, logits, &st)", f"one step: logits [{P}_VOCAB] of the next token, new state"),
             (f"{p}_greedy(&st, next, out, max_out)", f"the continuation (no <eos>, max_out <= {P}_MAX_LEN): "
                                                       "its length, or <0"),
             (f"{p}_softmax(logits, probs)", "the next token's probabilities (probs may be logits)"),
             (f"{p}_token(id)", "the token's text (0 out of range)")]
    width = max(len(c) for c, _ in calls) + 2
    usage = "\n".join(f" *   {c.ljust(width)}{d}" for c, d in calls)
    header = f"""/* {p}: a next-token model ({cfg.cell}, hidden {cfg.dec_hidden}{layers}, {cfg.tgt_vocab} tokens, {s.precision} weights),
 * generated by edgernn. {s.note}
 * Step: about {macs:,} multiply-adds (priming skips the head's {cfg.tgt_vocab * cfg.dec_hidden:,}).
 * Use: #define {P}_IMPLEMENTATION in ONE .c file before including this header.
{usage}
 */
#ifndef {P}_H
#define {P}_H

#include <stdint.h>

#ifdef __cplusplus
extern "C" {{
#endif

#define {P}_VOCAB {cfg.tgt_vocab}
#define {P}_EMBED {cfg.embed}
#define {P}_HD {cfg.dec_hidden}
{define}#define {P}_BOS 2
#define {P}_EOS 3
#ifndef {P}_MAX_LEN
#define {P}_MAX_LEN {int(max_len)}  /* longest greedy generation: define it before including to change it */
#endif

typedef struct {{
    float h{dims}[{P}_HD];
    float c{dims}[{P}_HD];  /* LSTM cell state (unused by a GRU) */
}} {p}_state;

int {p}_step(const {p}_state *in, int32_t token, float *logits, {p}_state *out);
int {p}_prime({p}_state *st, const int32_t *ids, int n, int32_t *next);
int {p}_greedy(const {p}_state *st, int32_t token, int32_t *out, int max_out);
void {p}_softmax(const float *logits, float *probs);
const char *{p}_token(int id);

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
    cells = "".join(ln for ln in _cells(s).splitlines(True) if "_SRC_EMBED(" not in ln)  # no source side here
    return (header + _arithmetic(s) + "\n" + _tables(s) + "\n" + cells + "\n" + _public_impl(s)
            + f"#endif /* {P}_IMPLEMENTATION */\n")


def build_lm_c(model, run, tmp: Path, precision: str) -> dict:
    """lm.h in tmp, compiled cleanly on every installed compiler (else ExportError, nothing written), with its
    compute/recipe and the manifest's "c" block (prefix, compiler, compile_checks, targets, max_len)."""
    from edgernn.runtimes.token_lm import GENERATE_EXTRA

    cfg = model.cfg
    if cfg.kind != "next-token":
        raise ExportError(f"build_lm_c exports next-token models, not {cfg.kind}; no file written")
    prefix = c_prefix(run.path.name, precision)
    weights = {k: v.detach().numpy().astype(np.float32) for k, v in model.state_dict().items()}
    longest = int(run.dataset.get("max_src_len") or max(len(s) for s in run.data()["src_test"]))
    max_len = longest + GENERATE_EXTRA  # the manifest's decoding max_len: the Python loops stop there too
    tokens = run.src_vocab.tokens
    spec = TokenCSpec(prefix, precision, cfg, weights, tokens, tokens, sha_note=f"Model sha256 {run.model_sha256()[:16]}.")
    path = tmp / "lm.h"
    c_info = {"prefix": prefix, "max_len": max_len, **write_checked(path, generate_lm_c(spec, max_len), prefix,
                                                                   "next-token")}
    compute, recipe = c_quantization(precision)
    return {"paths": {"lm": path}, "compute": compute, "recipe": recipe, "c": c_info}
