"""
The keyword detector in C99 (the same state machine as edgernn.runtimes.detector.Detector, in double
precision): logits of one frame in, the keyword that fires (or -1) out; no libm, no heap, caller-owned state.

    text = detector_c(det, labels, prefix)   # PREFIX_detector, PREFIX_detector_reset, PREFIX_detect, thresholds

Per frame: softmax of the logits (double; exp by range reduction to [-ln2/2, ln2/2], a degree-11 series and
the exponent set in the bits: relative error ~1e-15), the moving average of the last SMOOTH frames' posteriors
(summed oldest first every frame, as the Python detector does), the best label that may fire, its threshold,
a refractory period of REFRACTORY frames after every event. The thresholds are the ones export chose for the
false-accept budget (manifest "detector"); labels that never fire (unknown, silence) have none.
"""

from __future__ import annotations

from edgernn.export.c.tables import c_float


def _double(v: float) -> str:
    return c_float(v)[:-1] if abs(float(v)) < 1e30 else "1e30"  # c_float's digits without the f suffix


def detector_c(det: dict, labels: list, p: str) -> str:
    from edgernn.runtimes.detector import Detector

    d = Detector.from_dict(det, list(labels))
    P, K = p.upper(), len(labels)
    thr = ", ".join(_double(float(d.threshold_vector[i])) if d.fire_mask[i] else "2.0" for i in range(K))
    may = ", ".join("1" if d.fire_mask[i] else "0" for i in range(K))
    return f"""
/* ---- keyword detector: {d.n_smooth}-frame moving average, thresholds, {d.n_refractory}-frame refractory ---- */
#define {P}_SMOOTH {d.n_smooth}  /* frames averaged ({d.smooth_s:g} s) */
#define {P}_REFRACTORY {d.n_refractory}  /* frames after an event that cannot fire ({d.refractory_s:g} s) */
const double {p}_thresholds[{K}] = {{{thr}}};  /* per class; 2.0: never fires */
static const unsigned char {p}_may_fire[{K}] = {{{may}}};

void {p}_detector_reset({p}_detector *d)
{{
    int i, k;
    for (i = 0; i < {P}_SMOOTH; i++)
        for (k = 0; k < {K}; k++)
            d->ring[i][k] = 0.0;
    d->pos = 0;
    d->count = 0;
    d->refractory = 0;
    d->frame = 0;
}}

/* e^x for x <= 0 without libm */
static double {p}_exp_neg(double x)
{{
    union {{ double f; uint64_t u; }} v;
    double r, s;
    int k, i;
    if (x < -700.0)
        return 0.0;
    k = (int)(x * 1.4426950408889634 - 0.5);  /* x = k ln2 + r, |r| <= ln2 / 2 */
    r = x - (double)k * 0.6931471805599453;
    s = 1.0;
    for (i = 11; i >= 1; i--)
        s = 1.0 + s * r / (double)i;
    v.u = (uint64_t)(k + 1023) << 52;
    return s * v.f;
}}

int {p}_detect({p}_detector *d, const float *logits, double *score)
{{
    double prob[{K}], mean[{K}], m = logits[0], total = 0.0;
    int i, k, j, best = -1;
    const long frame = d->frame++;
    (void)frame;
    for (k = 1; k < {K}; k++)
        m = logits[k] > m ? logits[k] : m;
    for (k = 0; k < {K}; k++) {{
        prob[k] = {p}_exp_neg((double)logits[k] - m);
        total += prob[k];
    }}
    for (k = 0; k < {K}; k++)
        d->ring[d->pos][k] = prob[k] / total;
    d->pos = (d->pos + 1) % {P}_SMOOTH;
    d->count = d->count < {P}_SMOOTH ? d->count + 1 : {P}_SMOOTH;
    for (k = 0; k < {K}; k++)
        mean[k] = 0.0;
    for (j = 0, i = (d->pos - d->count + {P}_SMOOTH) % {P}_SMOOTH; j < d->count; j++, i = (i + 1) % {P}_SMOOTH)
        for (k = 0; k < {K}; k++)
            mean[k] += d->ring[i][k];
    for (k = 0; k < {K}; k++)
        mean[k] /= (double)d->count;
    if (d->refractory > 0) {{
        d->refractory--;
        return -1;
    }}
    for (k = 0; k < {K}; k++)
        if ({p}_may_fire[k] && (best < 0 || mean[k] > mean[best]))
            best = k;
    if (best >= 0 && mean[best] >= {p}_thresholds[best]) {{
        d->refractory = {P}_REFRACTORY;
        if (score)
            *score = mean[best];
        return best;
    }}
    return -1;
}}
"""


def detector_header(labels: list, det: dict, p: str) -> list[str]:
    """The public declarations (the header part) of the C detector."""
    from edgernn.runtimes.detector import Detector

    d = Detector.from_dict(det, list(labels))
    K = len(labels)
    return ["/* keyword detector (manifest \"detector\"): feed every frame's logits; an event = a class index */",
            "typedef struct {", f"    double ring[{d.n_smooth}][{K}];", "    int pos, count, refractory;",
            "    long frame;", f"}} {p}_detector;",
            f"extern const double {p}_thresholds[{K}];  /* chosen at export for the false-accept budget */",
            f"void {p}_detector_reset({p}_detector *d);",
            f"int {p}_detect({p}_detector *d, const float *logits, double *score);  /* -> class index that "
            "fired (score: its smoothed posterior), or -1 */", ""]
