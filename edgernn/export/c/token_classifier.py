"""
C99 source for a token classifier (text -> label) or tagger (a label per token), `--format c` of a classify / tag
run: one header-only library, float or int8 weights, built from the pieces of the encoder-decoder's generator
(edgernn.export.c.tokens: arithmetic, weight tables, cells) - the encoder without a decoder, and the head.

    #define NAMES_FLOAT_IMPLEMENTATION            // in ONE .c file of the app
    #include "classifier-float.h"
    int32_t src[] = {...};                         // ids of the text (at most NAMES_FLOAT_MAX_SRC)
    float logits[NAMES_FLOAT_CLASSES];
    if (names_float_classify(src, n, logits) == 0)         // 0, -1 (length) or -2 (an id out of range)
        puts(names_float_label(argmax(logits)));
    names_float_softmax(logits, logits);                    // probabilities, no libm

    float tags[TAGS_FLOAT_MAX_SRC][TAGS_FLOAT_CLASSES];     // a tagger: logits per token
    tags_float_tag(src, n, &tags[0][0]);

No heap, no mutable global, no libm. A classifier keeps only the state on the stack; a bidirectional tagger also
keeps the backward direction's outputs, MAX_SRC x HIDDEN floats on the stack (define {P}_MAX_SRC before including
to shrink it). A stacked encoder (layers > 1, edgernn.export.c.token_encoder) keeps the layers' outputs on the
stack: 1 (a two-layer classifier) or 2 buffers of MAX_SRC x HD floats (the manifest's c.work_bytes). build_classifier_c(model, run, tmp, precision) writes it, checks it compiles cleanly
(-Wall -Wextra -Werror -pedantic) on every installed compiler and measures its Cortex-M4 flash/RAM;
edgernn.tokens.classifier compares it with torch through edgernn.runtimes.token_c.CClassifierEngine before it is
published.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from edgernn.errors import ExportError
from edgernn.export.c.token_encoder import layer_fn, stacked_classify, work_buffers
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


def _public_impl(s: TokenCSpec) -> str:
    p, P = s.prefix, s.prefix.upper()
    bi, tag = s.cfg.bidirectional, s.cfg.kind == "tag"
    common = f"""static int {p}_check(const int32_t *src, int n)
{{
    int t;
    if (n < 1 || n > {P}_MAX_SRC)
        return -1;
    for (t = 0; t < n; t++)
        if (src[t] < 0 || src[t] >= {P}_VOCAB)
            return -2;
    return 0;
}}

"""
    if s.cfg.layers > 1:  # the stacked encoder (edgernn.export.c.token_encoder): no per-token advance
        return common + layer_fn(s) + stacked_classify(s) + _tail(s)
    common += f"""/* one encoder step of one direction: token id into its state (h, c), in place */
static void {p}_advance(const {p}_lin *Wi, const {p}_lin *Wh, int32_t id, float *h, float *c)
{{
    float x[{P}_EMBED];
    {P}_SRC_EMBED(id, x);
    {p}_cell(Wi, Wh, x, h, c, {P}_HIDDEN, h, c);
}}

"""
    start = f"""    float feat[{P}_HD], c[{P}_HD];  /* [forward ++ backward] state: the head's input */
    int t, k, rc = {p}_check(src, n);
    if (rc)
        return rc;
    for (k = 0; k < {P}_HD; k++) {{
        feat[k] = 0.0f;
        c[k] = 0.0f;
    }}
"""
    if not tag:
        bwd = f"""    for (t = n - 1; t >= 0; t--)  /* the backward direction: from the last token to the first */
        {p}_advance(&{p}_enc1_i, &{p}_enc1_h, src[t], feat + {P}_HIDDEN, c + {P}_HIDDEN);
""" if bi else ""
        body = f"""int {p}_classify(const int32_t *src, int n, float *logits)
{{
{start}    for (t = 0; t < n; t++)
        {p}_advance(&{p}_enc0_i, &{p}_enc0_h, src[t], feat, c);
{bwd}    {p}_linear(&{p}_out, feat, logits);  /* the final states -> logits [{P}_CLASSES] */
    return 0;
}}
"""
    else:
        decl = f"""    float bwd[{P}_MAX_SRC * {P}_HIDDEN];  /* the backward direction's outputs, on the stack */
""" if bi else ""
        bwd = f"""    for (t = n - 1; t >= 0; t--) {{  /* the backward direction first, its outputs kept */
        {p}_advance(&{p}_enc1_i, &{p}_enc1_h, src[t], feat + {P}_HIDDEN, c + {P}_HIDDEN);
        for (k = 0; k < {P}_HIDDEN; k++)
            bwd[(long)t * {P}_HIDDEN + k] = feat[{P}_HIDDEN + k];
    }}
""" if bi else ""
        join = f"""        for (k = 0; k < {P}_HIDDEN; k++)
            feat[{P}_HIDDEN + k] = bwd[(long)t * {P}_HIDDEN + k];
""" if bi else ""
        body = f"""int {p}_tag(const int32_t *src, int n, float *logits)
{{
{decl}{start}{bwd}    for (t = 0; t < n; t++) {{  /* the forward direction, the head on every output */
        {p}_advance(&{p}_enc0_i, &{p}_enc0_h, src[t], feat, c);
{join}        {p}_linear(&{p}_out, feat, logits + (long)t * {P}_CLASSES);
    }}
    return 0;
}}
"""
    return common + body + _tail(s)


def _tail(s: TokenCSpec) -> str:
    p, P = s.prefix, s.prefix.upper()
    softmax = softmax_c(p, f"{P}_CLASSES")
    return f"""
{softmax}
const char *{p}_label(int id) {{ return id >= 0 && id < {P}_CLASSES ? {p}_tgt_names[id] : 0; }}
const char *{p}_token(int id) {{ return id >= 0 && id < {P}_VOCAB ? {p}_src_names[id] : 0; }}
"""


def generate_classifier_c(s: TokenCSpec) -> str:
    """The header of a classifier / tagger (s.cfg.kind "classify" / "tag"); s.w holds the head as out.*, s.tgt_tokens
    the labels."""
    p, P = s.prefix, s.prefix.upper()
    cfg = s.cfg
    tag = cfg.kind == "tag"
    fn = f"{p}_tag" if tag else f"{p}_classify"
    macs = cfg.directions * s.G * cfg.hidden * (cfg.embed + cfg.hidden)
    head = cfg.num_outputs * cfg.dec_hidden
    what = "tagger (a label per token)" if tag else "classifier (a label per text)"
    out = f"logits [n][{P}_CLASSES]" if tag else f"logits [{P}_CLASSES]"
    stack = (f"{P}_MAX_SRC x {P}_HIDDEN floats (the backward outputs) + the state" if tag and cfg.bidirectional
             else "the state only (no buffer sized by the text)")
    if cfg.layers > 1:
        nbuf = work_buffers(cfg)
        macs += (cfg.layers - 1) * cfg.directions * s.G * cfg.hidden * (cfg.dec_hidden + cfg.hidden)
        stack = (f"{nbuf} x {P}_MAX_SRC x {P}_HD floats ({nbuf * s.max_src * cfg.dec_hidden * 4:,} bytes: the outputs "
                 f"of the {cfg.layers} stacked layers) + the state")
    calls = [(f"{fn}(src, n, logits)", f"ids [n] -> {out}: 0, -1 (n < 1 or > MAX_SRC), -2 (an id)"),
             (f"{p}_softmax(logits, probs)", "one row's probabilities (probs may be logits)"),
             (f"{p}_label(id)", "the label's name (0 out of range)"),
             (f"{p}_token(id)", "the token's text (0 out of range)")]
    width = max(len(c) for c, _ in calls) + 2
    usage = "\n".join(f" *   {c.ljust(width)}{d}" for c, d in calls)
    header = f"""/* {p}: a token {what}: {cfg.cell}, hidden {cfg.hidden} x{cfg.directions}, {cfg.num_outputs} labels,
 * {s.precision} weights; generated by edgernn. {s.note}
 * About {macs:,} multiply-adds per token + {head:,} per {'token' if tag else 'text'} (the head). No heap, no libm.
 * Stack: {stack}.
 * Use: #define {P}_IMPLEMENTATION in ONE .c file before including this header.
{usage}
 */
#ifndef {P}_H
#define {P}_H

#include <stdint.h>

#ifdef __cplusplus
extern "C" {{
#endif

#define {P}_VOCAB {cfg.src_vocab}
#define {P}_CLASSES {cfg.num_outputs}
#define {P}_EMBED {cfg.embed}
#define {P}_HIDDEN {cfg.hidden}
#define {P}_HD {cfg.dec_hidden}  /* the head's input: forward ++ backward state */
#ifndef {P}_MAX_SRC
#define {P}_MAX_SRC {s.max_src}  /* longest text, in tokens: define it before including to change it */
#endif

int {fn}(const int32_t *src, int n, float *logits);
void {p}_softmax(const float *logits, float *probs);
const char *{p}_label(int id);
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
    cells = "".join(ln for ln in _cells(s).splitlines(True) if "_TGT_EMBED(" not in ln)  # no target side here
    return (header + _arithmetic(s) + "\n" + _tables(s) + "\n" + cells + "\n" + _public_impl(s)
            + f"#endif /* {P}_IMPLEMENTATION */\n")


def build_classifier_c(model, run, tmp: Path, precision: str) -> dict:
    """classifier.h / tagger.h in tmp, compiled cleanly on every installed compiler (else ExportError, nothing
    written), with its compute/recipe and the manifest's "c" block (prefix, max_src, compiler, compile_checks,
    targets)."""
    cfg = model.cfg
    if cfg.kind not in ("classify", "tag"):
        raise ExportError(f"build_classifier_c exports classifiers and taggers, not {cfg.kind}; no file written")
    part = "tagger" if cfg.kind == "tag" else "classifier"
    tag_bi = cfg.kind == "tag" and cfg.bidirectional  # one layer: the backward outputs on the stack
    prefix = c_prefix(run.path.name, precision)
    weights = {k: v.detach().numpy().astype(np.float32) for k, v in model.state_dict().items()}
    weights["out.weight"], weights["out.bias"] = weights.pop("head.weight"), weights.pop("head.bias")
    max_src = max(int(run.dataset.get("max_src_len") or 0), max(len(s) for s in run.data()["src_test"]))
    spec = TokenCSpec(prefix, precision, cfg, weights, run.src_vocab.tokens, list(run.labels), max_src=max_src,
                      sha_note=f"Model sha256 {run.model_sha256()[:16]}.")
    path = tmp / f"{part}.h"
    checked = write_checked(path, generate_classifier_c(spec), prefix, part)
    work = (work_buffers(cfg) * cfg.dec_hidden if cfg.layers > 1 else cfg.hidden if tag_bi else 0) * max_src * 4
    c_info = {"prefix": prefix, "max_src": max_src, "work_bytes": work, **checked}
    compute, recipe = c_quantization(precision)
    return {"paths": {part: path}, "compute": compute, "recipe": recipe, "c": c_info}
