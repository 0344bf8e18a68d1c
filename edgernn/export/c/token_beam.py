"""
Beam search in C for a token encoder-decoder (edgernn.export.c.tokens assembles it into the header): the loop of
edgernn.runtimes.generate.beam over the library's own decoder step, with a caller-owned workspace (no heap) and a
log-softmax computed without libm.

    beam_search(spec)   # C text: static {prefix}_log_ge1, {prefix}_beam
"""

from __future__ import annotations


def beam_search(s) -> str:
    """Beam search in C, the loop of edgernn.runtimes.generate.beam: summed log-probabilities, each hypothesis
    expanded by its `width` best tokens (ties: the lower id), candidates ranked by score (stable), <eos> ends a
    hypothesis, search stops when no open one can beat the best finished one. The caller owns the workspace."""
    p, P = s.prefix, s.prefix.upper()
    return f"""/* log(x) for x >= 1 (a softmax's normalizer): x = 2^e m, m in [sqrt(1/2), sqrt(2)), log m = 2 atanh(s) */
static float {p}_log_ge1(float x)
{{
    union {{ uint32_t u; float f; }} v;
    float m, q, q2;
    int e;
    v.f = x;
    e = (int)((v.u >> 23) & 255u) - 127;
    v.u = (v.u & 0x007fffffu) | 0x3f800000u;
    m = v.f;
    if (m > 1.41421356f) {{
        m *= 0.5f;
        e += 1;
    }}
    q = (m - 1.0f) / (m + 1.0f);
    q2 = q * q;
    return (float)e * 0.693147181f
           + 2.0f * q * (1.0f + q2 * (0.333333333f + q2 * (0.2f + q2 * (0.142857143f + q2 * 0.111111111f))));
}}

int {p}_beam(const {p}_context *ctx, const {p}_dstate *first, int width, {p}_beam_work *w, int32_t *out,
             int max_out)
{{
    float logits[{P}_TGT_VOCAB], lp[{P}_TGT_VOCAB], best_score = 0.0f;
    int best_len = -1, n_alive = 1, step, a, k, j, n_cand, cur = 0;
    if (width < 1 || width > {P}_MAX_BEAM || max_out > {P}_MAX_OUT)
        return -1;
    w->score[0][0] = 0.0f;
    w->len[0][0] = 0;
    w->last[0][0] = {P}_BOS;
    w->st[0][0] = *first;
    for (step = 0; step < max_out; step++) {{
        float alive_best;
        int nxt = 1 - cur, n_new = 0;
        n_cand = 0;
        for (a = 0; a < n_alive; a++) {{
            float m, sum = 0.0f, lse;
            {p}_step(ctx, &w->st[cur][a], w->last[cur][a], logits, &w->next[a]);
            m = logits[0];
            for (k = 1; k < {P}_TGT_VOCAB; k++)
                m = logits[k] > m ? logits[k] : m;
            for (k = 0; k < {P}_TGT_VOCAB; k++)
                sum += {p}_exp_neg(logits[k] - m);
            lse = m + {p}_log_ge1(sum);
            for (k = 0; k < {P}_TGT_VOCAB; k++)
                lp[k] = logits[k] - lse;
            for (j = 0; j < width && j < {P}_TGT_VOCAB; j++) {{  /* the j-th best token: ties to the lower id */
                int t = -1;
                for (k = 0; k < {P}_TGT_VOCAB; k++) {{
                    int taken = 0, c;
                    for (c = n_cand - j; c < n_cand; c++)
                        taken |= w->cand_tok[c] == k;
                    if (!taken && (t < 0 || lp[k] > lp[t]))
                        t = k;
                }}
                w->cand_score[n_cand] = w->score[cur][a] + lp[t];
                w->cand_from[n_cand] = a;
                w->cand_tok[n_cand] = t;
                n_cand++;
            }}
        }}
        for (j = 1; j < n_cand; j++) {{  /* stable insertion sort by score, best first */
            float sc = w->cand_score[j];
            int fr = w->cand_from[j], tk = w->cand_tok[j];
            for (k = j - 1; k >= 0 && w->cand_score[k] < sc; k--) {{
                w->cand_score[k + 1] = w->cand_score[k];
                w->cand_from[k + 1] = w->cand_from[k];
                w->cand_tok[k + 1] = w->cand_tok[k];
            }}
            w->cand_score[k + 1] = sc;
            w->cand_from[k + 1] = fr;
            w->cand_tok[k + 1] = tk;
        }}
        for (j = 0; j < n_cand; j++) {{
            int fr = w->cand_from[j], tk = w->cand_tok[j];
            if (tk == {P}_EOS) {{
                if (best_len < 0 || w->cand_score[j] > best_score) {{
                    best_score = w->cand_score[j];
                    best_len = w->len[cur][fr];
                    for (k = 0; k < best_len; k++)
                        w->best[k] = w->ids[cur][fr][k];
                }}
            }} else if (n_new < width) {{
                w->score[nxt][n_new] = w->cand_score[j];
                w->len[nxt][n_new] = w->len[cur][fr] + 1;
                for (k = 0; k < w->len[cur][fr]; k++)
                    w->ids[nxt][n_new][k] = w->ids[cur][fr][k];
                w->ids[nxt][n_new][w->len[cur][fr]] = tk;
                w->last[nxt][n_new] = tk;
                w->st[nxt][n_new] = w->next[fr];
                n_new++;
            }}
        }}
        cur = nxt;
        n_alive = n_new;
        if (n_alive == 0)
            break;
        alive_best = w->score[cur][0];
        for (a = 1; a < n_alive; a++)
            alive_best = w->score[cur][a] > alive_best ? w->score[cur][a] : alive_best;
        if (best_len >= 0 && alive_best <= best_score)
            break;
    }}
    if (best_len < 0) {{  /* nothing finished within max_out: the best open hypothesis */
        int b = 0;
        for (a = 1; a < n_alive; a++)
            if (w->score[cur][a] > w->score[cur][b])
                b = a;
        best_len = w->len[cur][b];
        for (k = 0; k < best_len; k++)
            out[k] = w->ids[cur][b][k];
        return best_len;
    }}
    for (k = 0; k < best_len; k++)
        out[k] = w->best[k];
    return best_len;
}}

"""

