"""
Benchmarks of token artifacts on this machine: per decoder step (one token), per encoder pass, per whole word.

    result = token_bench("runs/g2p")        # writes runs/g2p/bench-local.json ("kind": "tokens")

For each exported (format, precision) encoder-decoder: the decoder step's latency per token (p50/p90/p99 over
`steps` steps of one long generation after `warmup` steps, GC off, one thread) and tokens per second; the
encoder's latency per source; a whole word, greedy and beam (the run's width), from text to phonemes, per held-out
word (p50/p99 over `words` words). C artifacts are also timed inside C (`c_step_ns`: the step alone, no Python in
the loop), which is what a device app calling the library pays; the other timings include the Python loop of
edgernn.runtimes.generate. Cortex-M4 flash of C libraries comes from the export's manifest.
"""

from __future__ import annotations

import gc
import os
import platform
import time
from pathlib import Path

import numpy as np

from edgernn.errors import ConfigError
from edgernn.runtimes.files import atomic_write_json
from edgernn.runtimes.token_session import load_seq2seq
from edgernn.runtimes.vocab import BOS
from edgernn.tokens.parity import _pairs, artifact_files
from edgernn.tokens.run import load_token_run


def _pcts(us: list) -> dict:
    a = np.asarray(us, dtype=np.float64)
    return {"p50_us": float(np.percentile(a, 50)), "p90_us": float(np.percentile(a, 90)),
            "p99_us": float(np.percentile(a, 99)), "n": int(a.size)}


def _time_steps(sess, ids: list[int], steps: int, warmup: int) -> list:
    state = sess.encode(ids)
    token, out = BOS, []
    for k in range(warmup + steps):
        t0 = time.perf_counter()
        logits, state = sess.step(token, state)
        dt = time.perf_counter() - t0
        if k >= warmup:
            out.append(dt * 1e6)
        token = 4 + int(np.argmax(logits[4:]))  # a real token (never <eos>): the state runs on
    return out


def _cpu() -> str:
    """This machine's CPU model, parsed the way every bench reads /proc/cpuinfo (edgernn.runtimes.fingerprint)."""
    from edgernn.runtimes.fingerprint import parse_cpuinfo

    try:
        with open("/proc/cpuinfo") as f:
            return parse_cpuinfo(f.read()).get("cpu_model") or platform.processor()
    except OSError:
        return platform.processor()


def token_bench(run_dir: Path | str, steps: int = 2000, warmup: int = 200, words: int = 200,
                progress: bool = False, write: bool = True) -> dict:
    from edgernn.progress import progressbar

    run = load_token_run(run_dir)
    if run.config.kind == "next-token":
        return lm_bench(run, steps, warmup, words, progress, write)
    pairs = _pairs(run.artifacts_dir)
    if not pairs:
        raise ConfigError(f"{run.artifacts_dir} has no encoder-decoder; run `edgernn export {run.path}` first")
    srcs = run.data()["src_test"]
    ids = run.src_vocab.encode(max(srcs, key=len))
    sample = [srcs[i] for i in np.random.default_rng(0).permutation(len(srcs))[:words]]
    width = int(run.train_config.get("beam", 4))
    rows = []
    with progressbar(length=len(pairs), label=f"bench {len(pairs)} token artifacts", enabled=progress) as bar:
        for fmt, precision in pairs:
            sess = load_seq2seq(run.artifacts_dir, fmt, precision)
            gc_was = gc.isenabled()
            gc.disable()
            try:
                step_us = _time_steps(sess, ids, steps, warmup)
                enc_us, greedy_us, beam_us, out_tokens = [], [], [], 0
                for w in sample:
                    t0 = time.perf_counter()
                    src = sess.source_ids(w)
                    sess.encode(src)
                    enc_us.append((time.perf_counter() - t0) * 1e6)
                    t0 = time.perf_counter()
                    out_tokens += len(sess.generate_ids(src, method="greedy")) + 1
                    greedy_us.append((time.perf_counter() - t0) * 1e6)
                    t0 = time.perf_counter()
                    sess.generate_ids(src, method="beam", width=width)
                    beam_us.append((time.perf_counter() - t0) * 1e6)
            finally:
                if gc_was:
                    gc.enable()
            step = _pcts(step_us)
            row = {"format": fmt, "precision": precision, "runtime": sess.engine.runtime_name,
                   "runtime_version": sess.runtime_version,
                   "files": [p.name for p in artifact_files(run.artifacts_dir, fmt, precision)],
                   "bytes": sum(p.stat().st_size for p in artifact_files(run.artifacts_dir, fmt, precision)),
                   "step": step, "tokens_per_s": 1e6 / step["p50_us"], "encoder": _pcts(enc_us),
                   "word_greedy": _pcts(greedy_us), f"word_beam{width}": _pcts(beam_us),
                   "greedy_tokens_per_word": out_tokens / len(sample)}
            if fmt == "c":
                ns = sess.engine.bench_step(ids, reps=100, inner=max(1, steps // 10))
                row["c_step_ns"] = {"p50": float(np.median(ns)), "min": float(ns.min()), "max": float(ns.max()),
                                    "note": "timed inside C: blocks of steps, no Python in the loop"}
                targets = sess.manifest.get("c", {}).get("targets", {}).get("cortex-m4", {})
                row["cortex_m4"] = {k: targets.get(k) for k in ("flash_bytes", "ram_static_bytes",
                                                                 "stack_bytes_upper")}
                ctx_bytes = 4 * (int(sess.manifest["c"]["max_src"]) * run.config.dec_hidden + 1)
                row["cortex_m4"]["context_bytes"] = ctx_bytes  # the caller-owned context struct
            rows.append(row)
            bar.update(1)
    out = {"kind": "tokens", "run": run.path.name, "target": "local", "machine": platform.machine(), "cpu": _cpu(),
           "cores": os.cpu_count(), "threads": 1, "steps": steps, "warmup": warmup, "words": len(sample),
           "beam_width": width, "artifacts": rows}
    if write:
        atomic_write_json(run.path / "bench-local.json", out)
    return out


def lm_bench(run, steps: int, warmup: int, words: int, progress: bool, write: bool) -> dict:
    """A next-token model's step artifacts: latency per token (one long generation from the zero state), tokens per
    second, and a word completion (the first letter of a held-out word typed, greedy to <eos>) per word."""
    from edgernn.progress import progressbar
    from edgernn.runtimes.token_lm import lm_artifact, load_lm
    from edgernn.tokens.lm_parity import lm_pairs

    pairs = lm_pairs(run.artifacts_dir)
    if not pairs:
        raise ConfigError(f"{run.artifacts_dir} has no next-token step artifact; run `edgernn export {run.path}` first")
    srcs = run.data()["src_test"]
    sample = [srcs[i] for i in np.random.default_rng(0).permutation(len(srcs))[:words]]
    rows = []
    with progressbar(length=len(pairs), label=f"bench {len(pairs)} next-token artifacts", enabled=progress) as bar:
        for fmt, precision in pairs:
            lm = load_lm(run.artifacts_dir, fmt, precision)
            gc_was = gc.isenabled()
            gc.disable()
            try:
                step_us = _time_steps(_LMSession(lm), [], steps, warmup)
                word_us, out_tokens = [], 0
                for w in sample:
                    t0 = time.perf_counter()
                    out_tokens += len(lm.generate_ids(lm.ids(w[:1]), method="greedy")) + 1
                    word_us.append((time.perf_counter() - t0) * 1e6)
            finally:
                if gc_was:
                    gc.enable()
            step = _pcts(step_us)
            path = lm_artifact(run.artifacts_dir, fmt, precision)
            row = {"format": fmt, "precision": precision, "runtime": lm.engine.runtime_name,
                   "runtime_version": lm.runtime_version, "files": [path.name], "bytes": path.stat().st_size,
                   "step": step, "tokens_per_s": 1e6 / step["p50_us"], "word_complete": _pcts(word_us),
                   "tokens_per_word": out_tokens / len(sample)}
            if fmt == "c":
                ns = lm.engine.bench_step(reps=100, inner=max(1, steps // 10))
                row["c_step_ns"] = {"p50": float(np.median(ns)), "min": float(ns.min()), "max": float(ns.max()),
                                    "note": "timed inside C: blocks of steps, no Python in the loop"}
                targets = lm.manifest.get("c", {}).get("targets", {}).get("cortex-m4", {})
                row["cortex_m4"] = {k: targets.get(k) for k in ("flash_bytes", "ram_static_bytes",
                                                                 "stack_bytes_upper")}
                row["cortex_m4"]["context_bytes"] = 4 * 2 * run.config.dec_hidden  # the caller-owned state (h, c)
            rows.append(row)
            bar.update(1)
    out = {"kind": "tokens", "task": "next-token", "run": run.path.name, "target": "local",
           "machine": platform.machine(), "cpu": _cpu(), "cores": os.cpu_count(), "threads": 1, "steps": steps,
           "warmup": warmup, "words": len(sample), "artifacts": rows}
    if write:
        atomic_write_json(run.path / "bench-local.json", out)
    return out


class _LMSession:
    """A next-token model in the shape _time_steps drives (encode gives the zero state)."""

    def __init__(self, lm):
        self.lm = lm

    def encode(self, ids):
        return self.lm.engine.zero_state()

    def step(self, token, state):
        return self.lm.step(token, state)


def format_token_bench(r: dict) -> str:
    if r.get("task") == "next-token":
        return format_lm_bench(r)
    w = r["beam_width"]
    lines = [f"{r['run']} on {r['cpu']} ({r['machine']}, 1 thread): decoder step per token over {r['steps']:,} "
             f"steps; a word = text -> phonemes, {r['words']} held-out words",
             f"{'artifact':<14} {'step p50':>9} {'p99':>8} {'tok/s':>8} {'C step':>8} {'encoder':>8} "
             f"{'word greedy':>11} {f'word beam{w}':>11} {'M4 flash':>9}"]
    for a in r["artifacts"]:
        c = f"{a['c_step_ns']['p50'] / 1000:7.2f}u" if "c_step_ns" in a else f"{'-':>8}"
        flash = (a.get("cortex_m4") or {}).get("flash_bytes")
        name = a["format"] + " " + a["precision"]
        lines.append(f"{name:<14} {a['step']['p50_us']:8.1f}u {a['step']['p99_us']:7.1f}u "
                     f"{a['tokens_per_s']:8.0f} {c} {a['encoder']['p50_us']:7.1f}u "
                     f"{a['word_greedy']['p50_us']:10.0f}u {a[f'word_beam{w}']['p50_us']:10.0f}u "
                     f"{(f'{flash / 1024:.0f} KB' if flash else '-'):>9}")
    lines.append("u = microseconds; step/encoder/word include the Python loop (edgernn.runtimes.generate); C step = "
                 "timed inside C")
    return "\n".join(lines)


def format_lm_bench(r: dict) -> str:
    lines = [f"{r['run']} on {r['cpu']} ({r['machine']}, 1 thread): step per token over {r['steps']:,} steps of one "
             f"generation; a word = complete a held-out word from its first letter, {r['words']} words",
             f"{'artifact':<14} {'step p50':>9} {'p99':>8} {'tok/s':>8} {'C step':>8} {'word':>9} {'M4 flash':>9}"]
    for a in r["artifacts"]:
        c = f"{a['c_step_ns']['p50'] / 1000:7.2f}u" if "c_step_ns" in a else f"{'-':>8}"
        flash = (a.get("cortex_m4") or {}).get("flash_bytes")
        lines.append(f"{a['format'] + ' ' + a['precision']:<14} {a['step']['p50_us']:8.1f}u "
                     f"{a['step']['p99_us']:7.1f}u {a['tokens_per_s']:8.0f} {c} {a['word_complete']['p50_us']:8.0f}u "
                     f"{(f'{flash / 1024:.0f} KB' if flash else '-'):>9}")
    lines.append("u = microseconds; step/word include the Python loop (edgernn.runtimes.generate); C step = timed "
                 "inside C")
    return "\n".join(lines)
