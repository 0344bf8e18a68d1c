"""
The C engines of token models - an encoder-decoder (`seq2seq-PREC.h`) and a next-token model (`lm-PREC.h`):
compiled with the system C compiler into a shared library (cached by sha256, compiler and flags, as
edgernn.runtimes.c_backend does for every C artifact) and called through ctypes. Standard library + numpy only.

    eng = CSeq2SeqEngine(path, manifest)
    state = eng.encode(ids)                   # (decoder state bytes, context bytes)
    logits, state = eng.step(token, state)    # one decoder step in C
    eng.greedy(ids, max_out)                  # the whole greedy loop in C
    eng.beam(ids, width=4, max_out=30)        # the whole beam search in C
    eng.bench_step(ids, reps=200, inner=200)  # ns per decoder step, timed inside C

    lm = CLMEngine(path, manifest)
    logits, state = lm.step(token, lm.zero_state())   # one step in C (state: bytes of the C struct)
    token, state = lm.prime(ids)              # <bos> + the prompt but its last id, in C
    lm.greedy(ids, max_out)                   # prime + the whole greedy loop in C
    lm.bench_step(reps=200, inner=200)        # ns per step, timed inside C

    clf = CClassifierEngine(path, manifest)   # a classifier / tagger (`classifier-PREC.h`, `tagger-PREC.h`)
    clf.logits(ids)                           # [C] of a classifier, [S, C] of a tagger
"""

from __future__ import annotations

import ctypes

import numpy as np

from edgernn.errors import ArtifactError
from edgernn.runtimes.c_backend import library_for

VP, I32P, FP = ctypes.c_void_p, ctypes.POINTER(ctypes.c_int32), ctypes.POINTER(ctypes.c_float)
DP = ctypes.POINTER(ctypes.c_double)


def _preamble(manifest: dict) -> list[str]:
    """The wrapper's first lines: the implementation, the clock and the artifact's sha256."""
    return ["#define _POSIX_C_SOURCE 199309L", f"#define {manifest['c']['prefix'].upper()}_IMPLEMENTATION",
            '#include "model.h"', "#include <stddef.h>", "#include <time.h>", "",
            f'const char *edgernn_sha256(void) {{ return "{manifest["sha256"]}"; }}']


def _bench(P: str, signature: str, state_type: str, vocab: str, step_call: str) -> list[str]:
    """A C timing loop: reps blocks of `inner` steps fed their own greedy tokens (specials skipped: <eos> does not
    stop it, the state runs on); ns_out[rep] = ns per step."""
    return [
        "static double edgernn_now_ns(void)", "{", "    struct timespec ts;",
        "    clock_gettime(CLOCK_MONOTONIC, &ts);", "    return (double)ts.tv_sec * 1e9 + (double)ts.tv_nsec;", "}",
        "/* reps blocks of `inner` decoder steps fed their own greedy tokens (<eos> included: the state runs on) */",
        signature, "{",
        f"    {state_type} st = *(const {state_type} *)first;", f"    float logits[{vocab}];",
        f"    int32_t token = {P}_BOS;", "    int rep, k, j;",
        "    for (rep = 0; rep < reps; rep++) {", "        double t0 = edgernn_now_ns();",
        "        for (k = 0; k < inner; k++) {",
        f"            {step_call};",
        "            token = 4;",
        f"            for (j = 5; j < {vocab}; j++)",
        "                if (logits[j] > logits[token])", "                    token = j;", "        }",
        "        ns_out[rep] = (edgernn_now_ns() - t0) / inner;", "    }", "    return 0;", "}", ""]


def token_wrapper(manifest: dict) -> str:
    p = manifest["c"]["prefix"]
    P = p.upper()
    return "\n".join(_preamble(manifest) + [
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
        ""] + _bench(P, "int edgernn_tok_bench_step(const void *ctx, const void *first, int reps, int inner, "
                        "double *ns_out)", f"{p}_dstate", f"{P}_TGT_VOCAB",
                     f"{p}_step((const {p}_context *)ctx, &st, token, logits, &st)"))


def lm_wrapper(manifest: dict) -> str:
    """The entry points of a next-token header (edgernn.export.c.token_lm)."""
    p = manifest["c"]["prefix"]
    P = p.upper()
    return "\n".join(_preamble(manifest) + [
        f"size_t edgernn_lm_state_size(void) {{ return sizeof({p}_state); }}",
        "int edgernn_lm_step(const void *in, int32_t token, float *logits, void *out)",
        f"{{ return {p}_step((const {p}_state *)in, token, logits, ({p}_state *)out); }}",
        "int edgernn_lm_prime(void *st, const int32_t *ids, int n, int32_t *next)",
        f"{{ return {p}_prime(({p}_state *)st, ids, n, next); }}",
        "int edgernn_lm_greedy(const void *st, int32_t token, int32_t *out, int max_out)",
        f"{{ return {p}_greedy((const {p}_state *)st, token, out, max_out); }}",
        f"void edgernn_lm_softmax(const float *logits, float *probs) {{ {p}_softmax(logits, probs); }}",
        ""] + _bench(P, "int edgernn_lm_bench_step(const void *first, int reps, int inner, double *ns_out)",
                     f"{p}_state", f"{P}_VOCAB", f"{p}_step(&st, token, logits, &st)"))


def classifier_wrapper(manifest: dict) -> str:
    """The entry points of a classifier / tagger header (edgernn.export.c.token_classifier)."""
    p = manifest["c"]["prefix"]
    fn = f"{p}_tag" if manifest["part"] == "tagger" else f"{p}_classify"
    return "\n".join(_preamble(manifest) + [
        f"int edgernn_cls_classes(void) {{ return {p.upper()}_CLASSES; }}",
        f"int edgernn_cls_max_src(void) {{ return {p.upper()}_MAX_SRC; }}",
        f"int edgernn_cls_logits(const int32_t *src, int n, float *logits) {{ return {fn}(src, n, logits); }}",
        f"void edgernn_cls_softmax(const float *logits, float *probs) {{ {p}_softmax(logits, probs); }}", ""])


class _CTokenEngine:
    """What the C token engines share: the library (its sha256 checked), the state buffers, step and timing calls."""

    runtime_name = "c"
    what = "decoder"

    def _open(self, path, manifest: dict, wrapper: str, sizes: tuple, argtypes: dict):
        so, self.how = library_for(path, manifest, wrapper=wrapper)
        lib = ctypes.CDLL(str(so))
        lib.edgernn_sha256.restype = ctypes.c_char_p
        if lib.edgernn_sha256().decode() != manifest["sha256"]:
            raise ArtifactError(f"the compiled library of {path} was built from another version; clear the cache")
        for name in sizes:
            getattr(lib, name).restype = ctypes.c_size_t
        for name, types in argtypes.items():
            getattr(lib, name).argtypes = types
        self.lib = lib
        self.vocab = int(manifest["model"]["tgt_vocab"])
        self.runtime_version = manifest["c"].get("compiler", "")
        return lib

    def _step(self, fn, lead: tuple, st, token: int):
        out = ctypes.create_string_buffer(self.st_size)
        logits = np.empty(self.vocab, np.float32)
        if fn(*lead, st, int(token), logits.ctypes.data_as(FP), out):
            raise ValueError(f"token id {token} is outside the C {self.what}'s vocabulary of {self.vocab}")
        return logits, out

    def _ids(self, fn, lead: tuple, max_out: int) -> tuple[int, np.ndarray]:
        """fn(*lead, out, max_out): (its return value, out)."""
        out = np.zeros(max(1, int(max_out)), np.int32)
        return fn(*lead, out.ctypes.data_as(I32P), int(max_out)), out

    def _halves(self, buf) -> list[np.ndarray]:
        """A state struct {float h[Hd]; float c[Hd];} as [h, c] float arrays; a stacked next-token model's
        {float h[L][Hd]; float c[L][Hd];} gives each flattened over the layers, torch's [layers, Hd] order."""
        hd = self.st_size // 8
        arr = np.frombuffer(buf.raw, dtype=np.float32)
        return [arr[:hd], arr[hd:2 * hd]]

    def _time(self, fn, lead: tuple, reps: int, inner: int) -> np.ndarray:
        ns = np.zeros(reps, np.float64)
        fn(*lead, int(reps), int(inner), ns.ctypes.data_as(DP))
        return ns


class CSeq2SeqEngine(_CTokenEngine):
    def __init__(self, path, manifest: dict):
        lib = self._open(path, manifest, token_wrapper(manifest),
                         ("edgernn_tok_context_size", "edgernn_tok_dstate_size", "edgernn_tok_beam_work_size"),
                         {"edgernn_tok_encode": [VP, VP, I32P, ctypes.c_int],
                          "edgernn_tok_step": [VP, VP, ctypes.c_int32, FP, VP],
                          "edgernn_tok_greedy": [VP, VP, I32P, ctypes.c_int],
                          "edgernn_tok_beam": [VP, VP, ctypes.c_int, VP, I32P, ctypes.c_int],
                          "edgernn_tok_bench_step": [VP, VP, ctypes.c_int, ctypes.c_int, DP]})
        self.ctx_size = lib.edgernn_tok_context_size()
        self.st_size = lib.edgernn_tok_dstate_size()
        self.max_src = int(manifest["c"]["max_src"])

    def encode(self, ids: list[int]):
        if not 1 <= len(ids) <= self.max_src:
            raise ValueError(f"the C artifact holds sources of 1..{self.max_src} tokens, got {len(ids)} "
                             f"(re-export with a larger max_src)")
        ctx = ctypes.create_string_buffer(self.ctx_size)
        st = ctypes.create_string_buffer(self.st_size)
        src = np.ascontiguousarray(ids, dtype=np.int32)
        rc = self.lib.edgernn_tok_encode(ctx, st, src.ctypes.data_as(I32P), len(ids))
        if rc:
            raise ValueError(f"the C encoder refused the source (code {rc}: a token id out of range)")
        return st, ctx

    def step(self, token: int, state):
        st, ctx = state
        logits, out = self._step(self.lib.edgernn_tok_step, (ctx,), st, token)
        return logits, (out, ctx)

    def state_arrays(self, state) -> list[np.ndarray]:
        """The decoder state (h, c) as float arrays (for comparisons with the other formats)."""
        return self._halves(state[0])

    def greedy(self, ids: list[int], max_out: int) -> list[int]:
        st, ctx = self.encode(ids)
        n, out = self._ids(self.lib.edgernn_tok_greedy, (ctx, st), max_out)
        return [int(v) for v in out[:n]]

    def beam(self, ids: list[int], width: int, max_out: int) -> list[int]:
        """The whole beam search in C (the library's own loop)."""
        st, ctx = self.encode(ids)
        work = ctypes.create_string_buffer(self.lib.edgernn_tok_beam_work_size())
        n, out = self._ids(self.lib.edgernn_tok_beam, (ctx, st, int(width), work), max_out)
        if n < 0:
            raise ValueError(f"the C beam search refused width {width} / max_out {max_out} (its limits: the header's "
                             "MAX_BEAM and MAX_SRC + 10)")
        return [int(v) for v in out[:n]]

    def bench_step(self, ids: list[int], reps: int = 200, inner: int = 200) -> np.ndarray:
        st, ctx = self.encode(ids)
        return self._time(self.lib.edgernn_tok_bench_step, (ctx, st), reps, inner)


class CLMEngine(_CTokenEngine):
    """A next-token header (`lm-PREC.h`): state = the bytes of its {prefix}_state struct (h, c), never changed in
    place (a beam keeps one per hypothesis)."""

    what = "next-token model"

    def __init__(self, path, manifest: dict):
        lib = self._open(path, manifest, lm_wrapper(manifest), ("edgernn_lm_state_size",),
                         {"edgernn_lm_step": [VP, ctypes.c_int32, FP, VP],
                          "edgernn_lm_prime": [VP, I32P, ctypes.c_int, I32P],
                          "edgernn_lm_greedy": [VP, ctypes.c_int32, I32P, ctypes.c_int],
                          "edgernn_lm_softmax": [FP, FP],
                          "edgernn_lm_bench_step": [VP, ctypes.c_int, ctypes.c_int, DP]})
        lib.edgernn_lm_softmax.restype = None
        self.st_size = lib.edgernn_lm_state_size()
        self.max_len = int(manifest["c"]["max_len"])

    def zero_state(self):
        return ctypes.create_string_buffer(self.st_size)  # zero bytes: h = c = 0.0f

    def step(self, token: int, state):
        """token id + state -> (logits [V] of the next token, new state)."""
        return self._step(self.lib.edgernn_lm_step, (), state, token)

    def state_arrays(self, state) -> list[np.ndarray]:
        return self._halves(state)

    def prime(self, ids: list[int]):
        """(the next input token, the state before it) from the C library's own priming: <bos> and the prompt
        but its last id through the step (no head); <bos> and zeros for an empty prompt."""
        st, nxt = ctypes.create_string_buffer(self.st_size), ctypes.c_int32(0)
        src = np.ascontiguousarray(list(ids) or [0], dtype=np.int32)
        rc = self.lib.edgernn_lm_prime(st, src.ctypes.data_as(I32P), len(ids), ctypes.byref(nxt))
        if rc:
            raise ValueError(f"the C next-token model refused the prompt (code {rc}: an id outside its vocabulary "
                             f"of {self.vocab})")
        return int(nxt.value), st

    def greedy(self, ids: list[int], max_out: int) -> list[int]:
        """The continuation of the prompt ids by the C library's own loops (prime + greedy), without <eos>."""
        token, st = self.prime(ids)
        n, out = self._ids(self.lib.edgernn_lm_greedy, (st, token), max_out)
        if n < 0:
            raise ValueError(f"the C greedy loop refused max_out {max_out} (its limit, the header's MAX_LEN, is "
                             f"{self.max_len})")
        return [int(v) for v in out[:n]]

    def probs(self, logits) -> np.ndarray:
        """The C library's softmax of one step's logits."""
        x = np.ascontiguousarray(logits, dtype=np.float32).reshape(-1)
        if x.size != self.vocab:
            raise ValueError(f"{x.size} logits for a vocabulary of {self.vocab}")
        out = np.empty_like(x)
        self.lib.edgernn_lm_softmax(x.ctypes.data_as(FP), out.ctypes.data_as(FP))
        return out

    def bench_step(self, reps: int = 200, inner: int = 200) -> np.ndarray:
        """ns per step from the zero state, timed inside C (one value per block of `inner` steps)."""
        return self._time(self.lib.edgernn_lm_bench_step, (self.zero_state(),), reps, inner)


class CClassifierEngine(_CTokenEngine):
    """A classifier or tagger header (`classifier-PREC.h`, `tagger-PREC.h`): the ids of one text in, the logits out."""

    what = "classifier"

    def __init__(self, path, manifest: dict):
        lib = self._open(path, manifest, classifier_wrapper(manifest), (),
                         {"edgernn_cls_logits": [I32P, ctypes.c_int, FP], "edgernn_cls_softmax": [FP, FP]})
        lib.edgernn_cls_softmax.restype = None
        self.tagger = manifest["part"] == "tagger"
        self.what = "tagger" if self.tagger else "classifier"
        self.classes, self.max_src = lib.edgernn_cls_classes(), lib.edgernn_cls_max_src()
        self.vocab = int(manifest["model"]["src_vocab"])
        if self.classes != int(manifest["model"]["num_outputs"]):
            raise ArtifactError(f"{path} has {self.classes} classes, its manifest says "
                                f"{manifest['model']['num_outputs']}; re-export the run")

    def logits(self, ids) -> np.ndarray:
        """[C] logits of a classifier, [S, C] of a tagger, computed by the C library."""
        ids = list(ids)
        if not 1 <= len(ids) <= self.max_src:
            raise ValueError(f"the C {self.what} takes texts of 1..{self.max_src} tokens, got {len(ids)} (define a "
                             "larger MAX_SRC, or re-export)")
        try:
            src = np.ascontiguousarray(ids, dtype=np.int32)
        except OverflowError as exc:
            raise ValueError(f"token ids {ids} do not fit the C {self.what}'s int32") from exc
        out = np.empty((len(ids), self.classes) if self.tagger else self.classes, np.float32)
        rc = self.lib.edgernn_cls_logits(src.ctypes.data_as(I32P), len(ids), out.ctypes.data_as(FP))
        if rc:
            raise ValueError(f"the C {self.what} refused the text (code {rc}: "
                             f"{'a token id outside its vocabulary of ' + str(self.vocab) if rc == -2 else 'length'})")
        return out

    def probs(self, logits) -> np.ndarray:
        """The C library's softmax of one row of logits."""
        x = np.ascontiguousarray(logits, dtype=np.float32).reshape(-1)
        if x.size != self.classes:
            raise ValueError(f"{x.size} logits for {self.classes} classes")
        out = np.empty_like(x)
        self.lib.edgernn_cls_softmax(x.ctypes.data_as(FP), out.ctypes.data_as(FP))
        return out
