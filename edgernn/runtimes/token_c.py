"""
The C engine of a token encoder-decoder (`seq2seq-PREC.h`): compiled with the system C compiler into a shared
library (cached by sha256, compiler and flags, as edgernn.runtimes.c_backend does for every C artifact) and called
through ctypes. Standard library + numpy only.

    eng = CSeq2SeqEngine(path, manifest)
    state = eng.encode(ids)                   # (decoder state bytes, context bytes)
    logits, state = eng.step(token, state)    # one decoder step in C
    eng.greedy(ids, max_out)                  # the whole greedy loop in C
    eng.beam(ids, width=4, max_out=30)        # the whole beam search in C
    eng.bench_step(ids, reps=200, inner=200)  # ns per decoder step, timed inside C
"""

from __future__ import annotations

import ctypes

import numpy as np

from edgernn.errors import ArtifactError
from edgernn.runtimes.c_backend import library_for


def token_wrapper(manifest: dict) -> str:
    p = manifest["c"]["prefix"]
    P = p.upper()
    return "\n".join([
        "#define _POSIX_C_SOURCE 199309L", f"#define {P}_IMPLEMENTATION", '#include "model.h"', "#include <stddef.h>",
        "#include <time.h>", "",
        f'const char *edgernn_sha256(void) {{ return "{manifest["sha256"]}"; }}',
        f"size_t edgernn_tok_context_size(void) {{ return sizeof({p}_context); }}",
        f"size_t edgernn_tok_dstate_size(void) {{ return sizeof({p}_dstate); }}",
        "int edgernn_tok_encode(void *ctx, void *first, const int32_t *src, int n)",
        f"{{ return {p}_encode(({p}_context *)ctx, ({p}_dstate *)first, src, n); }}",
        "int edgernn_tok_step(const void *ctx, const void *in, int32_t token, float *logits, void *out)",
        f"{{ return {p}_step((const {p}_context *)ctx, (const {p}_dstate *)in, token, logits, ({p}_dstate *)out); }}",
        "int edgernn_tok_greedy(const void *ctx, const void *first, int32_t *out, int max_out)",
        f"{{ return {p}_greedy((const {p}_context *)ctx, (const {p}_dstate *)first, out, max_out); }}",
        f"size_t edgernn_tok_beam_work_size(void) {{ return sizeof({p}_beam_work); }}",
        "int edgernn_tok_beam(const void *ctx, const void *first, int width, void *work, int32_t *out, int max_out)",
        f"{{ return {p}_beam((const {p}_context *)ctx, (const {p}_dstate *)first, width, ({p}_beam_work *)work, out,"
        " max_out); }",
        "",
        "static double edgernn_now_ns(void)", "{", "    struct timespec ts;",
        "    clock_gettime(CLOCK_MONOTONIC, &ts);", "    return (double)ts.tv_sec * 1e9 + (double)ts.tv_nsec;", "}",
        "/* reps blocks of `inner` decoder steps fed their own greedy tokens (<eos> included: the state runs on) */",
        "int edgernn_tok_bench_step(const void *ctx, const void *first, int reps, int inner, double *ns_out)", "{",
        f"    {p}_dstate st = *(const {p}_dstate *)first;", f"    float logits[{P}_TGT_VOCAB];",
        f"    int32_t token = {P}_BOS;", "    int rep, k, j;",
        "    for (rep = 0; rep < reps; rep++) {", "        double t0 = edgernn_now_ns();",
        "        for (k = 0; k < inner; k++) {",
        f"            {p}_step((const {p}_context *)ctx, &st, token, logits, &st);",
        "            token = 4;",
        f"            for (j = 5; j < {P}_TGT_VOCAB; j++)",
        "                if (logits[j] > logits[token])", "                    token = j;", "        }",
        "        ns_out[rep] = (edgernn_now_ns() - t0) / inner;", "    }", "    return 0;", "}", ""])


class CSeq2SeqEngine:
    runtime_name = "c"

    def __init__(self, path, manifest: dict):
        so, self.how = library_for(path, manifest, wrapper=token_wrapper(manifest))
        lib = ctypes.CDLL(str(so))
        lib.edgernn_sha256.restype = ctypes.c_char_p
        if lib.edgernn_sha256().decode() != manifest["sha256"]:
            raise ArtifactError(f"the compiled library of {path} was built from another version; clear the cache")
        for name in ("edgernn_tok_context_size", "edgernn_tok_dstate_size", "edgernn_tok_beam_work_size"):
            getattr(lib, name).restype = ctypes.c_size_t
        vp, i32p, fp = ctypes.c_void_p, ctypes.POINTER(ctypes.c_int32), ctypes.POINTER(ctypes.c_float)
        lib.edgernn_tok_encode.argtypes = [vp, vp, i32p, ctypes.c_int]
        lib.edgernn_tok_step.argtypes = [vp, vp, ctypes.c_int32, fp, vp]
        lib.edgernn_tok_greedy.argtypes = [vp, vp, i32p, ctypes.c_int]
        lib.edgernn_tok_beam.argtypes = [vp, vp, ctypes.c_int, vp, i32p, ctypes.c_int]
        lib.edgernn_tok_bench_step.argtypes = [vp, vp, ctypes.c_int, ctypes.c_int, ctypes.POINTER(ctypes.c_double)]
        self.lib = lib
        self.ctx_size = lib.edgernn_tok_context_size()
        self.st_size = lib.edgernn_tok_dstate_size()
        self.vocab = int(manifest["model"]["tgt_vocab"])
        self.max_src = int(manifest["c"]["max_src"])
        self.runtime_version = manifest["c"].get("compiler", "")

    def encode(self, ids: list[int]):
        if not 1 <= len(ids) <= self.max_src:
            raise ValueError(f"the C artifact holds sources of 1..{self.max_src} tokens, got {len(ids)} "
                             f"(re-export with a larger max_src)")
        ctx = ctypes.create_string_buffer(self.ctx_size)
        st = ctypes.create_string_buffer(self.st_size)
        src = np.ascontiguousarray(ids, dtype=np.int32)
        rc = self.lib.edgernn_tok_encode(ctx, st, src.ctypes.data_as(ctypes.POINTER(ctypes.c_int32)), len(ids))
        if rc:
            raise ValueError(f"the C encoder refused the source (code {rc}: a token id out of range)")
        return st, ctx

    def step(self, token: int, state):
        st, ctx = state
        out = ctypes.create_string_buffer(self.st_size)
        logits = np.empty(self.vocab, np.float32)
        rc = self.lib.edgernn_tok_step(ctx, st, int(token), logits.ctypes.data_as(ctypes.POINTER(ctypes.c_float)), out)
        if rc:
            raise ValueError(f"token id {token} is outside the C decoder's vocabulary of {self.vocab}")
        return logits, (out, ctx)

    def state_arrays(self, state) -> list[np.ndarray]:
        """The decoder state (h, c) as float arrays (for comparisons with the other formats)."""
        hd = self.st_size // 8
        arr = np.frombuffer(state[0].raw, dtype=np.float32)
        return [arr[:hd], arr[hd:2 * hd]]

    def greedy(self, ids: list[int], max_out: int) -> list[int]:
        st, ctx = self.encode(ids)
        out = np.zeros(max(1, max_out), np.int32)
        n = self.lib.edgernn_tok_greedy(ctx, st, out.ctypes.data_as(ctypes.POINTER(ctypes.c_int32)), int(max_out))
        return [int(v) for v in out[:n]]

    def beam(self, ids: list[int], width: int, max_out: int) -> list[int]:
        """The whole beam search in C (the library's own loop)."""
        st, ctx = self.encode(ids)
        work = ctypes.create_string_buffer(self.lib.edgernn_tok_beam_work_size())
        out = np.zeros(max(1, max_out), np.int32)
        n = self.lib.edgernn_tok_beam(ctx, st, int(width), work, out.ctypes.data_as(ctypes.POINTER(ctypes.c_int32)),
                                      int(max_out))
        if n < 0:
            raise ValueError(f"the C beam search refused width {width} / max_out {max_out} (its limits: the header's "
                             "MAX_BEAM and MAX_SRC + 10)")
        return [int(v) for v in out[:n]]

    def bench_step(self, ids: list[int], reps: int = 200, inner: int = 200) -> np.ndarray:
        st, ctx = self.encode(ids)
        ns = np.zeros(reps, np.float64)
        self.lib.edgernn_tok_bench_step(ctx, st, reps, inner, ns.ctypes.data_as(ctypes.POINTER(ctypes.c_double)))
        return ns
