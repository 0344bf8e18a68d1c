"""
The audio front end in C99 (edgernn.frontends.logmel, the same arithmetic as the training front end): one hop
of PCM + the audio tail in, normalized log-mel (or MFCC) features out, float32, no libm, no heap.

    text = frontend_c(fe, prefix)    # tables + static void PREFIX_features(float *tail, const float *hop, float *feat)

What it computes per hop (FRAME = TAIL + HOP samples, N = the FFT size, a power of two):
  frame = tail ++ hop (the new tail: the frame's last TAIL samples), times the periodic Hann window, zero-padded
  to N; the real FFT through one complex FFT of N/2 points (even samples real, odd imaginary; radix 2, in
  place) and the split into N/2 + 1 bins; power |X_k|^2; the mel bands as sparse sums over their bins;
  log(band + log_eps) by a bit-level log (exponent + a 5-term series of the mantissa, error < 1e-7); the DCT
  for MFCCs; (f - mean) / std.
Tables, all flash (static const): half the Hann window, a quarter wave of sine (sin and cos of every FFT angle
come from it by symmetry), the mel weights of each band's bins, the DCT, the normalization. A few KB for the
usual sizes (manifest: c.frontend). Stack: N + BINS + MELS floats per call.
"""

from __future__ import annotations

import numpy as np

from edgernn.export.c.tables import array, c_float


def mel_bands(fe) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Each band's first bin and bin count, and the concatenated nonzero weights (the sparse filterbank)."""
    m = fe.mel_matrix()  # [bins, mels]
    start, count, weights = [], [], []
    for j in range(fe.mels):
        nz = np.flatnonzero(m[:, j] > 0)
        lo, hi = (int(nz[0]), int(nz[-1]) + 1) if len(nz) else (0, 0)
        start.append(lo)
        count.append(hi - lo)
        weights.extend(m[lo:hi, j].tolist())
    return np.array(start), np.array(count), np.array(weights)


def table_bytes(fe) -> int:
    """Flash the front end's tables take (float32 / int16)."""
    _, _, w = mel_bands(fe)
    n = fe.frame // 2 + 1 + fe.n_fft // 4 + 1 + len(w) + 2 * fe.size + (fe.mels * fe.mfcc if fe.mfcc else 0)
    return 4 * n + 2 * 2 * fe.mels


def frontend_c(fe, p: str) -> str:
    """C source (tables + P_features) for front end fe, symbols prefixed by p."""
    P = p.upper()
    N, N2, FRAME, HOP, TAIL, BINS, MELS, F = (fe.n_fft, fe.n_fft // 2, fe.frame, fe.hop, fe.tail, fe.bins, fe.mels,
                                              fe.size)
    start, count, weights = mel_bands(fe)
    offsets = np.concatenate([[0], np.cumsum(count)[:-1]])
    window = fe.window()[:FRAME // 2 + 1]
    quarter = np.sin(2 * np.pi * np.arange(N // 4 + 1) / N)
    mean = np.asarray(fe.mean or [0.0] * F, np.float64)
    inv_std = 1.0 / np.asarray(fe.std or [1.0] * F, np.float64)
    parts = [f"/* ---- audio front end: {fe.describe()} ---- */",
             f"#define {P}_FE_N {N}", f"#define {P}_FE_FRAME {FRAME}", f"#define {P}_FE_BINS {BINS}",
             f"#define {P}_FE_MELS {MELS}", "",
             array("float", f"{p}_fe_window", window), array("float", f"{p}_fe_sin", quarter),
             array("int16_t", f"{p}_fe_band_start", start, 16), array("int16_t", f"{p}_fe_band_count", count, 16),
             array("int16_t", f"{p}_fe_band_offset", offsets, 16), array("float", f"{p}_fe_band_w", weights),
             array("float", f"{p}_fe_mean", mean), array("float", f"{p}_fe_inv_std", inv_std)]
    if fe.mfcc:
        parts.append(array("float", f"{p}_fe_dct", fe.dct_matrix()))  # [MELS][F]
    dct = (f"""    for (i = 0; i < {F}; i++) {{
        float acc = 0.0f;
        for (b = 0; b < {MELS}; b++)
            acc += mel[b] * {p}_fe_dct[b * {F} + i];
        feat[i] = (acc - {p}_fe_mean[i]) * {p}_fe_inv_std[i];
    }}""" if fe.mfcc else f"""    for (i = 0; i < {F}; i++)
        feat[i] = (mel[i] - {p}_fe_mean[i]) * {p}_fe_inv_std[i];""")
    tail_in = (f"n < {TAIL} ? tail[n] : hop[n - {TAIL}]" if TAIL else "hop[n]")
    new_tail = (f"""    for (n = 0; n < {TAIL}; n++)  /* the next frame starts with this one's last {TAIL} samples */
        tail[n] = hop[{HOP - TAIL} + n];
""" if TAIL else "    (void)tail;\n")
    parts.append(f"""
/* sin(2 pi k / N) for any k, from the quarter wave */
static float {p}_fe_sink(int k)
{{
    k &= {N - 1};
    if (k <= {N // 4})
        return {p}_fe_sin[k];
    if (k <= {N // 2})
        return {p}_fe_sin[{N // 2} - k];
    if (k <= {3 * N // 4})
        return -{p}_fe_sin[k - {N // 2}];
    return -{p}_fe_sin[{N} - k];
}}

/* natural log of x > 0 without libm: x = m * 2^e with m in [sqrt(1/2), sqrt(2)), log m = 2 atanh((m-1)/(m+1)) */
static float {p}_fe_log(float x)
{{
    union {{ float f; uint32_t u; }} v;
    float m, t, t2;
    int e;
    v.f = x;
    e = (int)((v.u >> 23) & 255u) - 127;
    v.u = (v.u & 0x007FFFFFu) | 0x3F800000u;
    m = v.f;
    if (m > 1.41421356f) {{
        m *= 0.5f;
        e += 1;
    }}
    t = (m - 1.0f) / (m + 1.0f);
    t2 = t * t;
    return (float)e * 0.693147181f
           + 2.0f * t * (1.0f + t2 * (0.333333333f + t2 * (0.2f + t2 * (0.142857143f + t2 * 0.111111111f))));
}}

/* one hop of PCM (float, [-1, 1]) + the tail -> normalized features[{F}]; the tail advances */
void {p}_features(float *tail, const float *hop, float *feat)
{{
    float z[{N}];  /* z[2n] + i z[2n+1]: the windowed frame packed as {N2} complex values */
    float power[{BINS}];
    float mel[{MELS}];
    int n, k, i, b, size;
    for (n = 0; n < {N}; n++) {{
        float x = n < {FRAME} ? ({tail_in}) : 0.0f;
        z[n] = n < {FRAME} ? x * {p}_fe_window[n <= {FRAME // 2} ? n : {FRAME} - n] : 0.0f;
    }}
{new_tail}    /* complex FFT of {N2} points, radix 2, decimation in time: bit-reversed order first */
    for (i = 0, k = 0; i < {N2}; i++) {{
        if (i < k) {{
            float r = z[2 * i], m = z[2 * i + 1];
            z[2 * i] = z[2 * k];
            z[2 * i + 1] = z[2 * k + 1];
            z[2 * k] = r;
            z[2 * k + 1] = m;
        }}
        for (n = {N2 // 2}; n >= 1 && (k & n); n >>= 1)
            k ^= n;
        k |= n;
    }}
    for (size = 2; size <= {N2}; size <<= 1) {{
        const int half = size >> 1, step = {N} / size;  /* W = exp(-2 pi i j / size) = angle j*step of N */
        for (i = 0; i < {N2}; i += size) {{
            for (n = 0; n < half; n++) {{
                const float wr = {p}_fe_sink(n * step + {N // 4}), wi = -{p}_fe_sink(n * step);
                float *a = z + 2 * (i + n), *c = z + 2 * (i + n + half);
                const float tr = c[0] * wr - c[1] * wi, ti = c[0] * wi + c[1] * wr;
                c[0] = a[0] - tr;
                c[1] = a[1] - ti;
                a[0] += tr;
                a[1] += ti;
            }}
        }}
    }}
    /* split: X_k = E_k + exp(-2 pi i k / {N}) O_k, E = (Z_k + conj Z_(N/2-k)) / 2, O = -i (Z_k - conj Z_(N/2-k)) / 2 */
    for (k = 0; k <= {N2}; k++) {{
        const int a = k & {N2 - 1}, c = ({N2} - k) & {N2 - 1};
        const float er = 0.5f * (z[2 * a] + z[2 * c]), ei = 0.5f * (z[2 * a + 1] - z[2 * c + 1]);
        const float or_ = 0.5f * (z[2 * a + 1] + z[2 * c + 1]), oi = -0.5f * (z[2 * a] - z[2 * c]);
        const float wr = {p}_fe_sink(k + {N // 4}), wi = -{p}_fe_sink(k);
        const float xr = er + or_ * wr - oi * wi, xi = ei + or_ * wi + oi * wr;
        power[k] = xr * xr + xi * xi;
    }}
    for (b = 0; b < {MELS}; b++) {{
        const float *w = {p}_fe_band_w + {p}_fe_band_offset[b];
        const float *pw = power + {p}_fe_band_start[b];
        float acc = 0.0f;
        for (k = 0; k < {p}_fe_band_count[b]; k++)
            acc += w[k] * pw[k];
        mel[b] = {p}_fe_log(acc + {c_float(fe.log_eps)});
    }}
{dct}
}}
""")
    return "\n".join(parts)
