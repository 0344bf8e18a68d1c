"""
Bare-metal firmware around one token C header - an encoder-decoder (`seq2seq-PREC.h`) or a next-token model
(`lm-PREC.h`): the start-up code, linker script, cross-compile, SysTick instruction counting and stack painting
of edgernn.devices.mcu.firmware with a main() for token models, built for the Cortex-M core and for this machine
from identical source (firmware.build(..., harness=token_harness(manifest))).

    fw = build_token(Path("seq2seq-int8.h"), manifest, CORES["cortex-m4"], Path("work"))
    mcu, stats, host = run_token_job(fw, seq2seq_job(sources, max_outs, width=4), "seq2seq-int8.h", "cortex-m4")
    words = parse_seq2seq(mcu, vocab)      # per source: ids, logits per step, instruction ticks
    np.array_equal(tick_free(mcu, words), host)   # the MCU's outputs vs the host build's, ticks left out

job.bin (int32 little-endian words):

    'EDRN', op, count
    op 3 (seq2seq): count x (n, max_out, width, src[n])
    op 4 (lm):      count x (n_prompt, max_out, n_seq, prompt[n_prompt], seq[n_seq])

out.bin: sizes[3] (seq2seq: sizeof context, dstate, beam_work; lm: sizeof state, 0, 0), then per record:

    seq2seq  t_encode, t_greedy, t_beam, ng, greedy[ng], nb, beam[nb], steps, steps x (t_step, logits[V])
    lm       t_prime, t_greedy, no, greedy[no], n_seq, n_seq x (t_step, logits[V])

seq2seq: P_encode, then the library's own P_greedy (max_out), the same loop one P_step at a time from <bos>
(logits and a count per decoder step; the first maximum is the next token, as P_greedy picks it) and, when width
> 0, P_beam. lm: P_prime(prompt), P_greedy(max_out) from there, and seq (<bos> t1 .. tn) teacher-forced through
P_step from the zero state. t_* are SysTick ticks of that call alone (the pair of clock reads subtracted; 0 on
the host); ticks x the calibrated instructions per tick = instructions. The stack is painted before each
record's model calls and the deepest word written is read after them (no I/O in between), the maximum over the
records is reported. Runs go through edgernn.devices.mcu.emulator (time limit, faults, the host twin).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from edgernn.devices.mcu.cores import Core
from edgernn.devices.mcu.emulator import run_host, run_mcu
from edgernn.devices.mcu.firmware import CALIBRATE, MAGIC, PAINT_BYTES, TIMING, Firmware, build
from edgernn.errors import TargetError

OP_SEQ2SEQ, OP_LM = 3, 4

_COMMON = """#include <stdint.h>
#include <stdio.h>
#include <string.h>
#define {P}_IMPLEMENTATION
#include "model.h"

#define EDGERNN_PAINT {paint}u
#define EDGERNN_PATTERN 0xC5A5C5A5u
{timing}
/* no model work moves across a clock read */
#define EDGERNN_BARRIER() __asm__ volatile("" ::: "memory")
#define EDGERNN_TIME(rec, call) \\
    do {{ \\
        uint64_t a_; \\
        EDGERNN_BARRIER(); \\
        a_ = edgernn_now(); \\
        EDGERNN_BARRIER(); \\
        call; \\
        EDGERNN_BARRIER(); \\
        rec = edgernn_take(a_, edgernn_now()); \\
        EDGERNN_BARRIER(); \\
    }} while (0)

static uint64_t edgernn_ticks, edgernn_min = (uint64_t)-1, edgernn_max, edgernn_pair;
static long edgernn_calls;

/* one timed call: its gross ticks go to the totals, its net ticks (the clock-read pair subtracted) to the record */
static uint32_t edgernn_take(uint64_t t0, uint64_t t1)
{{
    uint64_t d = t1 - t0;
    edgernn_ticks += d;
    edgernn_calls++;
    if (d < edgernn_min)
        edgernn_min = d;
    if (d > edgernn_max)
        edgernn_max = d;
    return (uint32_t)(d > edgernn_pair ? d - edgernn_pair : 0u);
}}

static int edgernn_fail(const char *what)
{{
    printf("EDGERNN-ERROR %s\\n", what);
    return 2;
}}

static void edgernn_put(FILE *fo, const void *p, long words)
{{
    if (words > 0)
        fwrite(p, 4, (size_t)words, fo);
}}
"""

_MAIN_HEAD = """
int main(void)
{{
    int32_t head[3], meta[3], sizes[3] = {{(int32_t)({s0}), (int32_t)({s1}), (int32_t)({s2})}};
    long n, done = 0;
    uint32_t sp, depth = 0, d;
    uint64_t t0, t1, cal;
    volatile uint32_t loops = 100000u;
    FILE *fi, *fo;
    fi = fopen("job.bin", "rb");
    fo = fopen("out.bin", "wb");
    if (!fi || !fo || fread(head, 4, 3, fi) != 3 || head[0] != {magic}L || head[1] != {op})
        return edgernn_fail("cannot read the job file");
{calibrate}#if defined(__arm__)
    edgernn_pair = t1 - t0;
#endif
    n = head[2];
    edgernn_put(fo, sizes, 3);
    while (done < n) {{
"""

_MAIN_TAIL = """        d = edgernn_depth(sp);
        if (d > depth)
            depth = d;
        done++;
    }}
    fclose(fo);
    fclose(fi);
    printf("EDGERNN calls=%ld ticks_hi=%lu ticks_lo=%lu min_ticks=%lu max_ticks=%lu stack_bytes=%lu "
           "state_bytes=%lu\\n", edgernn_calls, (unsigned long)(edgernn_ticks >> 32),
           (unsigned long)(edgernn_ticks & 0xFFFFFFFFu), (unsigned long)(edgernn_calls ? edgernn_min : 0),
           (unsigned long)edgernn_max, (unsigned long)depth, (unsigned long)({state}));
    return 0;
}}
"""

_SEQ2SEQ = """
static {p}_context edgernn_ctx;
static {p}_dstate edgernn_first, edgernn_st;
static {p}_beam_work edgernn_work;
static int32_t edgernn_src[{P}_MAX_SRC], edgernn_greedy[{P}_MAX_OUT], edgernn_beam[{P}_MAX_OUT];
static uint32_t edgernn_tk[3], edgernn_step_tk[{P}_MAX_OUT];
static float edgernn_logits[{P}_MAX_OUT][{P}_TGT_VOCAB];
{head}        int32_t len, max_out, width, ng, nb = 0, steps = 0, token = {P}_BOS, rc = 0, k, r;
        if (fread(meta, 4, 3, fi) != 3)
            return edgernn_fail("short job");
        len = meta[0];
        max_out = meta[1];
        width = meta[2];
        if (len < 1 || len > {P}_MAX_SRC || max_out < 1 || max_out > {P}_MAX_OUT || width < 0 ||
            width > {P}_MAX_BEAM || fread(edgernn_src, 4, (size_t)len, fi) != (size_t)len)
            return edgernn_fail("bad source record");
        edgernn_tk[2] = 0;
        sp = edgernn_sp();
        edgernn_paint(sp);
        EDGERNN_TIME(edgernn_tk[0], rc = {p}_encode(&edgernn_ctx, &edgernn_first, edgernn_src, (int)len));
        if (rc)
            return edgernn_fail("encode refused a source");
        EDGERNN_TIME(edgernn_tk[1], ng = {p}_greedy(&edgernn_ctx, &edgernn_first, edgernn_greedy, (int)max_out));
        edgernn_st = edgernn_first; /* P_greedy's loop, one timed step at a time */
        while (steps < max_out) {{
            int best = 0;
            float *z = edgernn_logits[steps];
            EDGERNN_TIME(edgernn_step_tk[steps], {p}_step(&edgernn_ctx, &edgernn_st, token, z, &edgernn_st));
            for (k = 1; k < {P}_TGT_VOCAB; k++)
                if (z[k] > z[best])
                    best = k;
            steps++;
            if (best == {P}_EOS)
                break;
            token = (int32_t)best;
        }}
        if (width > 0)
            EDGERNN_TIME(edgernn_tk[2], nb = {p}_beam(&edgernn_ctx, &edgernn_first, (int)width, &edgernn_work,
                                                      edgernn_beam, (int)max_out));
        if (nb < 0)
            return edgernn_fail("beam refused a source");
        edgernn_put(fo, edgernn_tk, 3);
        edgernn_put(fo, &ng, 1);
        edgernn_put(fo, edgernn_greedy, ng);
        edgernn_put(fo, &nb, 1);
        edgernn_put(fo, edgernn_beam, nb);
        edgernn_put(fo, &steps, 1);
        for (r = 0; r < steps; r++) {{
            edgernn_put(fo, &edgernn_step_tk[r], 1);
            edgernn_put(fo, edgernn_logits[r], {P}_TGT_VOCAB);
        }}
"""

_LM = """
static {p}_state edgernn_st, edgernn_tf;
static int32_t edgernn_prompt[{P}_MAX_LEN + 1], edgernn_seq[{P}_MAX_LEN + 1], edgernn_out[{P}_MAX_LEN];
static uint32_t edgernn_tk[2], edgernn_step_tk[{P}_MAX_LEN + 1];
static float edgernn_logits[{P}_MAX_LEN + 1][{P}_VOCAB];
{head}        int32_t np_, max_out, nseq, no = 0, next = 0, rc = 0, k;
        if (fread(meta, 4, 3, fi) != 3)
            return edgernn_fail("short job");
        np_ = meta[0];
        max_out = meta[1];
        nseq = meta[2];
        if (np_ < 0 || np_ > {P}_MAX_LEN + 1 || max_out < 0 || max_out > {P}_MAX_LEN || nseq < 0 ||
            nseq > {P}_MAX_LEN + 1 || fread(edgernn_prompt, 4, (size_t)np_, fi) != (size_t)np_ ||
            fread(edgernn_seq, 4, (size_t)nseq, fi) != (size_t)nseq)
            return edgernn_fail("bad text record");
        sp = edgernn_sp();
        edgernn_paint(sp);
        EDGERNN_TIME(edgernn_tk[0], rc = {p}_prime(&edgernn_st, edgernn_prompt, (int)np_, &next));
        if (rc)
            return edgernn_fail("prime refused a prompt");
        EDGERNN_TIME(edgernn_tk[1], no = {p}_greedy(&edgernn_st, next, edgernn_out, (int)max_out));
        if (no < 0)
            return edgernn_fail("greedy refused max_out");
        memset(&edgernn_tf, 0, sizeof edgernn_tf); /* the zero state: <bos> t1 .. tn teacher-forced */
        for (k = 0; k < nseq; k++) {{
            EDGERNN_TIME(edgernn_step_tk[k], rc = {p}_step(&edgernn_tf, edgernn_seq[k], edgernn_logits[k],
                                                           &edgernn_tf));
            if (rc)
                return edgernn_fail("step refused a token");
        }}
        edgernn_put(fo, edgernn_tk, 2);
        edgernn_put(fo, &no, 1);
        edgernn_put(fo, edgernn_out, no);
        edgernn_put(fo, &nseq, 1);
        for (k = 0; k < nseq; k++) {{
            edgernn_put(fo, &edgernn_step_tk[k], 1);
            edgernn_put(fo, edgernn_logits[k], {P}_VOCAB);
        }}
"""


def is_lm(manifest: dict) -> bool:
    return manifest.get("part") == "lm"


def token_harness(manifest: dict) -> str:
    """main() for a token header: seq2seq (part encoder-decoder) or next-token (part lm)."""
    p = manifest["c"]["prefix"]
    P = p.upper()
    if is_lm(manifest):
        sizes, op, state, body = (f"sizeof({p}_state)", "0", "0"), OP_LM, f"sizeof({p}_state)", _LM
    elif manifest.get("part") == "encoder-decoder":
        sizes = (f"sizeof({p}_context)", f"sizeof({p}_dstate)", f"sizeof({p}_beam_work)")
        op, state, body = OP_SEQ2SEQ, f"sizeof({p}_context) + sizeof({p}_dstate)", _SEQ2SEQ
    else:
        raise ValueError(f"not a token C header with a harness: part {manifest.get('part')!r}")
    head = _MAIN_HEAD.format(s0=sizes[0], s1=sizes[1], s2=sizes[2], magic=MAGIC, op=op, calibrate=CALIBRATE)
    return (f"/* edgernn MCU token harness for {p} ({manifest['part']}, {manifest['precision']}) */\n"
            + _COMMON.format(P=P, paint=PAINT_BYTES, timing=TIMING) + body.format(p=p, P=P, head=head)
            + _MAIN_TAIL.format(state=state))


def build_token(header: Path, manifest: dict, core: Core, work: Path) -> Firmware:
    """The firmware and its host twin for a token header (cached like every firmware)."""
    return build(header, manifest, core, work, harness=token_harness(manifest))


def _words(*parts) -> bytes:
    return np.concatenate([np.asarray(p, "<i4").reshape(-1) for p in parts]).astype("<i4").tobytes()


def seq2seq_job(sources: list, max_outs: list, width: int) -> bytes:
    """op 3: each source (ids) through encode, greedy (max_out), the step loop and, width > 0, beam search."""
    recs = [_words([len(s), int(m), int(width)], s) for s, m in zip(sources, max_outs)]
    return _words([MAGIC, OP_SEQ2SEQ, len(recs)]) + b"".join(recs)


def lm_job(prompts: list, seqs: list, max_out: int) -> bytes:
    """op 4: each prompt primed and continued greedily (max_out), each seq (<bos> t1 .. tn) teacher-forced."""
    recs = [_words([len(p), int(max_out), len(s)], p, s) for p, s in zip(prompts, seqs)]
    return _words([MAGIC, OP_LM, len(recs)]) + b"".join(recs)


def _parse(words: np.ndarray, vocab: int, lm: bool) -> tuple[dict, list, np.ndarray]:
    """(sizes, records, mask of the tick words) of an out.bin read as int32 words."""
    w = np.asarray(words).reshape(-1).view("<i4")
    ticks = np.zeros(len(w), bool)
    recs, i = [], 3

    def count(at: int, each: int = 1) -> int:
        k = int(w[at]) if at < len(w) else -1
        if k < 0 or at + 1 + k * each > len(w):
            raise TargetError(f"the firmware's output is malformed: a count of {k} at word {at} of {len(w)}")
        return k

    if len(w) < 3:
        raise TargetError(f"the firmware wrote {len(w)} words, not even its header")
    while i < len(w):
        nt = 2 if lm else 3
        ticks[i:i + nt] = True
        r = {"ticks": [int(v) for v in w[i:i + nt]]}
        i += nt
        for key in ("greedy",) if lm else ("greedy", "beam"):
            k = count(i)
            r[key] = [int(v) for v in w[i + 1:i + 1 + k]]
            i += 1 + k
        steps = count(i, 1 + vocab)
        i += 1
        block = w[i:i + steps * (1 + vocab)].reshape(steps, 1 + vocab)
        ticks[i:i + steps * (1 + vocab):1 + vocab] = True
        r["step_ticks"] = [int(v) for v in block[:, 0]]
        r["logits"] = block[:, 1:].copy().view("<f4")
        i += steps * (1 + vocab)
        recs.append(r)
    names = ("state", None, None) if lm else ("context", "dstate", "beam_work")
    return {f"{k}_bytes": int(v) for k, v in zip(names, w[:3]) if k}, recs, ticks


def parse_seq2seq(words: np.ndarray, vocab: int) -> tuple[dict, list, np.ndarray]:
    """(sizes, per source {"ticks": [encode, greedy, beam], "greedy", "beam", "step_ticks", "logits" [steps, V]},
    tick mask)."""
    return _parse(words, vocab, lm=False)


def parse_lm(words: np.ndarray, vocab: int) -> tuple[dict, list, np.ndarray]:
    """(sizes, per text {"ticks": [prime, greedy], "greedy", "step_ticks", "logits" [n_seq, V]}, tick mask)."""
    return _parse(words, vocab, lm=True)


def tick_free(words: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """The output words with the tick fields zeroed (as the host build writes them): comparable bit for bit."""
    out = np.asarray(words).reshape(-1).view("<i4").copy()
    out[mask] = 0
    return out


def run_token_job(fw: Firmware, job: bytes, label: str, board: str, timeout: float = 600.0) -> tuple:
    """(MCU output words int32, stats, host output words int32): the job on the emulated core and on the host twin.
    stats as emulator.run_mcu's (instructions_per_tick converts a record's ticks)."""
    out, stats = run_mcu(fw, job, 1, label, board, timeout=timeout)
    host = run_host(fw, job, 1, label, timeout=timeout)
    return out.reshape(-1).view("<i4"), stats, host.reshape(-1).view("<i4")
