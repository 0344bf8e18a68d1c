"""
C99 text of a STACKED token encoder (layers > 1) for the token generators: the encoder-decoder's encode
(edgernn.export.c.tokens) and the classifier / tagger (edgernn.export.c.token_classifier). One-layer encoders keep
their own (older, byte-stable) text in those modules; nothing here runs for them.

Layer l reads layer l-1's outputs, both directions concatenated ([t][forward H ++ backward H], torch's layout), so
every layer but the last writes its outputs to a buffer of MAX_SRC x HD floats; the layers alternate between two
buffers (ping-pong), so one work buffer serves an encoder-decoder whatever the depth (the other one is the
context's encoder outputs) and a classifier / tagger needs at most two. Weight tables: enc{d}_i / enc{d}_h for
layer 0 (d: 0 forward, 1 backward: the one-layer names), enc{d}_l{l}_i / enc{d}_l{l}_h for layer l >= 1 (torch's
weight_ih_l{l}[_reverse]).

    layer_fn(spec)                 # C text: static {prefix}_layer (one direction of one layer over n tokens)
    stacked_encode(spec)           # C text: the encoder-decoder's {prefix}_encode
    stacked_classify(spec)         # C text: a classifier's {prefix}_classify or a tagger's {prefix}_tag
    work_buffers(cfg)              # how many MAX_SRC x HD float buffers (context or stack) the kind needs
"""

from __future__ import annotations


def enc_name(layer: int, d: int) -> str:
    """The table name (without _i / _h) of one encoder layer and direction: layer 0 keeps the one-layer names."""
    return f"enc{d}" if layer == 0 else f"enc{d}_l{layer}"


def dec_name(layer: int) -> str:
    """The table name (without _i / _h) of one layer of a decoder (a next-token model's stacked recurrence)."""
    return "dec" if layer == 0 else f"dec_l{layer}"


def work_buffers(cfg) -> int:
    """MAX_SRC x HD float buffers of a stacked encoder: seq2seq 1 (in its context, besides the encoder outputs),
    a classifier 1 for two layers else 2 (the last layer's outputs are not kept), a tagger 2 (on the stack)."""
    if cfg.layers < 2:
        return 0
    if cfg.kind == "seq2seq":
        return 1
    return 1 if cfg.kind == "classify" and cfg.layers == 2 else 2


def layer_fn(s) -> str:
    """One direction of one encoder layer from the zero state."""
    p, P = s.prefix, s.prefix.upper()
    H = s.cfg.hidden
    return f"""/* one direction of one stacked-encoder layer over n tokens, from the zero state: row t of its input is the
 * embedding of src[t] (layer 0: in == 0) or in[t][0..{P}_HD) (the layer below, both directions); its output at
 * row t goes to out[t][off..off + {H}) (out may be 0: not kept); h, c: the running and then the final state */
static void {p}_layer(const {p}_lin *Wi, const {p}_lin *Wh, const int32_t *src, const float *in, int n, int reverse,
                      float *out, int off, float *h, float *c)
{{
    float x[{P}_EMBED];
    int i, k;
    for (k = 0; k < {H}; k++) {{
        h[k] = 0.0f;
        c[k] = 0.0f;
    }}
    for (i = 0; i < n; i++) {{
        const int t = reverse ? n - 1 - i : i;
        const float *xt = x;
        if (in)
            xt = in + (long)t * {P}_HD;
        else
            {P}_SRC_EMBED(src[t], x);
        {p}_cell(Wi, Wh, xt, h, c, {H}, h, c);
        if (out)
            for (k = 0; k < {H}; k++)
                out[(long)t * {P}_HD + off + k] = h[k];
    }}
}}

"""


def _calls(s, bufs: list[str], last_out: str, h: str = "h", c: str = "c") -> str:
    """The layer calls of the whole encoder: layer l (< L-1) writes bufs[(L-2-l) % 2] ... so consecutive layers
    never share a buffer; the last layer writes last_out ("0": not kept); final states of the last layer in h, c."""
    p, H, L = s.prefix, s.cfg.hidden, s.cfg.layers
    lines = []
    for layer in range(L):
        out = last_out if layer == L - 1 else bufs[(L - 2 - layer) % len(bufs)]
        src, inp = ("src", "0") if layer == 0 else ("0", bufs[(L - 1 - layer) % len(bufs)])
        for d in range(s.cfg.directions):
            name = f"{p}_{enc_name(layer, d)}"
            off = f" + {H}" if d else ""
            lines.append(f"    {p}_layer(&{name}_i, &{name}_h, {src}, {inp}, n, {d}, {out}, {d * H}, {h}{off}, "
                         f"{c}{off});")
    return "\n".join(lines) + "\n"


def stacked_encode(s) -> str:
    """The encoder-decoder's encode over L layers: ctx->work and ctx->enc alternate, the last layer writes ctx->enc."""
    p, P = s.prefix, s.prefix.upper()
    L = s.cfg.layers
    # layer l writes bufs[(L-2-l) % 2]: with bufs = [work, enc] the one below the last writes work, and so on
    calls = _calls(s, ["ctx->work", "ctx->enc"], "ctx->enc")
    return f"""int {p}_encode({p}_context *ctx, {p}_dstate *first, const int32_t *src, int n)
{{
    float h[{P}_HD], c[{P}_HD];  /* the last layer's final states: [forward ++ backward] */
    int t, k;
    if (n < 1 || n > {P}_MAX_SRC)
        return -1;
    for (t = 0; t < n; t++)
        if (src[t] < 0 || src[t] >= {P}_SRC_VOCAB)
            return -2;
    /* {L} layers, each reading the outputs of the one below (ctx->work and ctx->enc in turn) */
{calls}    for (k = 0; k < {P}_HD; k++) {{
        first->h[k] = h[k];
        first->c[k] = c[k];
    }}
    ctx->n = n;
    return 0;
}}
"""


def stacked_classify(s) -> str:
    """A classifier's / tagger's entry point over L layers, its buffers on the stack."""
    p, P = s.prefix, s.prefix.upper()
    L, tag = s.cfg.layers, s.cfg.kind == "tag"
    nbuf = work_buffers(s.cfg)
    bufs = [f"buf[{i}]" for i in range(nbuf)]
    decl = f"""    float buf[{nbuf}][{P}_MAX_SRC * {P}_HD];  /* the layers' outputs, on the stack (ping-pong) */
    float feat[{P}_HD], c[{P}_HD];  /* the last layer's [forward ++ backward] state */
"""
    if tag:  # the last layer's outputs go to buf[0]: the head reads every row
        calls = _calls(s, bufs[::-1], "buf[0]", h="feat")
        return f"""int {p}_tag(const int32_t *src, int n, float *logits)
{{
{decl}    int t, rc = {p}_check(src, n);
    if (rc)
        return rc;
    /* {L} layers, each reading the outputs of the one below */
{calls}    for (t = 0; t < n; t++)  /* the head on every output of the last layer */
        {p}_linear(&{p}_out, buf[0] + (long)t * {P}_HD, logits + (long)t * {P}_CLASSES);
    return 0;
}}
"""
    calls = _calls(s, bufs, "0", h="feat")
    return f"""int {p}_classify(const int32_t *src, int n, float *logits)
{{
{decl}    int rc = {p}_check(src, n);
    if (rc)
        return rc;
    /* {L} layers, each reading the outputs of the one below; the last one keeps only its final states */
{calls}    {p}_linear(&{p}_out, feat, logits);  /* the final states -> logits [{P}_CLASSES] */
    return 0;
}}
"""
