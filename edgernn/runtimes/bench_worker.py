"""
Benchmark worker: measures ONE artifact in a fresh process (locally, or on a device over SSH/adb).

Embeddable like the rest of edgernn.runtimes: standard library + numpy + the one backend the artifact
needs; never torch. edgernn.bench starts one of these per artifact and repeat. The PyTorch eager row is
the same worker started as `python -m edgernn.reference ... --torch-run RUN_DIR`, which hands it the torch session.

    python -m edgernn.runtimes.bench_worker --artifact artifacts/sequence-int8.tflite --input windows.npy \\
        --out result.json [--runs 200] [--warmup 20] [--threads 1] [--stream-frames 200] \\
        [--parity-input X.npy --parity-out Y.npy] [--torch-run RUN_DIR]

Phases, in order: baseline RSS; import the backend + load the session (load_s, load peak RSS); first
inference (first_inference_s); warm-up; timed runs; streaming (step artifacts); then, untimed, the
optional parity outputs. Each timed call is session.predict(raw window) (sequence artifacts) or
stream.step(raw frame) (step artifacts) - exactly what a device app calls, normalization and
(de)quantization included - with time.perf_counter_ns around it, batch 1, cycling the windows of
--input. Peak RSS per phase is VmHWM from /proc/self/status, reset by writing 5 to
/proc/self/clear_refs before each phase; where that file is missing or not writable, the values are
null and "rss_note" says why.

Exit 0 with RESULT.json written atomically, or exit 1 with a one-line error on stderr (and
{"error": "..."} in RESULT.json when it can be written). Bad command-line usage exits 2.
"""

from __future__ import annotations

import argparse
import gc
import os
import platform
import sys
import time
from pathlib import Path

import numpy as np

from edgernn.runtimes.files import atomic_save_npy, atomic_write_json

STATUS = "/proc/self/status"
CLEAR_REFS = "/proc/self/clear_refs"


# ---- statistics -------------------------------------------------------------------------------------
def summarize(samples_ns) -> dict:
    """Latency statistics in microseconds from nanosecond samples: n, p50/p90/p99 (numpy percentile,
    linear interpolation), mean, std (population, ddof=0), min, max."""
    a = np.asarray(samples_ns, dtype=np.float64).ravel()
    if a.size == 0:
        raise ValueError("summarize() needs at least one sample")
    us = a / 1e3
    p50, p90, p99 = np.percentile(us, [50, 90, 99], method="linear")
    return {"n": int(us.size), "p50": float(p50), "p90": float(p90), "p99": float(p99),
            "mean": float(us.mean()), "std": float(us.std()), "min": float(us.min()), "max": float(us.max())}


# ---- memory ---------------------------------------------------------------------------------------
class PeakRSS:
    """Per-phase peak resident memory (VmHWM) in MB; values are None where /proc does not allow it."""

    def __init__(self):
        self.note = None
        if not os.path.exists(STATUS):
            self.note = f"{STATUS} does not exist on {platform.system()}: peak RSS not measured"
        elif not os.access(CLEAR_REFS, os.W_OK):
            self.note = (f"{CLEAR_REFS} is not writable here (kernel or container policy): peak RSS per phase "
                         "cannot be reset, so it is not measured")
        else:
            try:
                self.reset()
                if self.read() is None:
                    self.note = f"{STATUS} has no VmHWM line: peak RSS not measured"
            except OSError as exc:
                self.note = f"cannot reset {CLEAR_REFS} ({exc.strerror}): peak RSS per phase not measured"

    @property
    def ok(self) -> bool:
        return self.note is None

    def reset(self) -> None:
        with open(CLEAR_REFS, "w") as f:
            f.write("5")

    def read(self):
        with open(STATUS) as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024.0  # kB -> MB
        return None

    def start(self) -> None:
        if self.ok:
            self.reset()

    def peak(self):
        return round(self.read(), 3) if self.ok else None


# ---- helpers ----------------------------------------------------------------------------------------
def _load_windows(path, what: str) -> np.ndarray:
    from edgernn.errors import RuntimeInputError

    try:
        x = np.load(path, allow_pickle=False)
    except FileNotFoundError:
        raise RuntimeInputError(f"{what} file {path} does not exist") from None
    except (ValueError, OSError) as exc:
        raise RuntimeInputError(f"{what} file {path} is not a .npy array ({str(exc).splitlines()[0]})") from exc
    if x.ndim != 3 or x.shape[0] < 1 or x.dtype.kind not in "fiu":
        raise RuntimeInputError(f"{what} {path} must be numeric windows [N, T, C] with N >= 1, got shape "
                                f"{list(x.shape)} dtype {x.dtype}")
    return np.ascontiguousarray(x, dtype=np.float32)


def timing_overhead_ns(n: int = 2000) -> float:
    """Median cost of an empty timed call (perf_counter_ns pair around a no-op), in ns."""
    clock = time.perf_counter_ns
    noop = _noop
    samples = np.empty(n, dtype=np.int64)
    for i in range(n):
        t0 = clock()
        noop(None)
        samples[i] = clock() - t0
    return float(np.median(samples))


def _noop(_x):
    return None


# ---- the measurement ------------------------------------------------------------------------------
def measure(artifact=None, windows=None, runs: int = 200, warmup: int = 20, threads: int = 1,
            stream_frames: int = 200, torch_run=None, parity_windows=None, rss: PeakRSS | None = None,
            torch_session=None):
    """Run every phase in this process; returns (result dict, parity outputs or None)."""
    rss = rss or PeakRSS()
    result = {"pid": os.getpid(), "timer": "perf_counter_ns", "python": platform.python_version(),
              "numpy": np.__version__, "machine": platform.machine(), "platform": platform.platform(),
              "runs": runs, "warmup": warmup, "warnings": []}
    rss.start()
    baseline = rss.peak()

    # phase: import backend + load session
    rss.start()
    t0 = time.perf_counter()
    if torch_run is not None:
        if torch_session is None:  # this module never imports torch: the caller hands the reference in
            from edgernn.errors import ConfigError

            raise ConfigError("--torch-run times the PyTorch model: run it as `python -m edgernn.reference`")
        session = torch_session(torch_run, threads=threads)
        size = session.manifest["size_bytes"]
    else:
        from edgernn.runtimes import load

        session = load(artifact, threads=threads)
        size = Path(artifact).stat().st_size
    load_s = time.perf_counter() - t0
    load_peak = rss.peak()
    m = session.manifest
    step_mode = m["mode"] == "step"

    # phase: inference (first call, warm-up, timed, streaming)
    rss.start()
    clock = time.perf_counter_ns
    if step_mode:
        stream = session.stream()
        frames = [np.ascontiguousarray(f) for w in windows for f in w]
        T = windows.shape[1]
        call = stream.step
        items = frames
    else:
        items = [np.ascontiguousarray(w) for w in windows]
        call = session.predict
        stream, T = None, 0
    n = len(items)
    t0 = clock()
    call(items[0])
    first_s = (clock() - t0) / 1e9
    for i in range(1, warmup + 1):
        if step_mode and i % T == 0:
            stream.reset()
        call(items[i % n])
    samples = np.empty(runs, dtype=np.int64)
    # garbage collection off inside the timed loops (as timeit does): a collection triggered by the
    # harness's own allocations would land in a random sample
    gc_was_enabled = gc.isenabled()
    gc.collect()
    gc.disable()
    try:
        stream_us = _timed_loops(call, items, samples, step_mode, stream, T, stream_frames, clock)
    finally:
        if gc_was_enabled:
            gc.enable()
    inference_peak = rss.peak()

    c_loop = None
    if hasattr(session, "bench_c"):  # a C artifact: also time it inside C, without Python's call overhead
        c_loop = c_loop_timing(session, windows, runs, step_mode)
    parity_out = None
    if parity_windows is not None:
        parity_out = np.asarray(session.predict(parity_windows), dtype=np.float32)

    lat = summarize(samples)
    overhead_us = timing_overhead_ns() / 1e3
    result.update({
        "artifact": m.get("artifact", Path(str(artifact)).name), "format": m.get("format"),
        "precision": m.get("precision"), "mode": m.get("mode"), "task": m.get("task"),
        "runtime": session.runtime_name, "runtime_version": session.runtime_version,
        "runtime_package": session.runtime_package, "threads": threads,
        "load_s": load_s, "first_inference_s": first_s,
        "latency_us": lat, "latency_unit": "frame" if step_mode else "window",
        # raw samples (every k-th with k = ceil(runs / 500), so at most 500; 0.1 us) for distribution plots
        "samples_us": [round(float(v) / 1e3, 1) for v in samples[:: -(-runs // 500)]],
        "gc": "disabled inside timed loops",
        "window_shape": [int(d) for d in windows.shape[1:]],
        "throughput_per_s": 1e6 / lat["mean"] if lat["mean"] > 0 else None,
        "stream_us": stream_us,
        "rss_mb": {"baseline": baseline, "load_peak": load_peak, "inference_peak": inference_peak},
        "size_bytes": int(size), "timing_overhead_us": overhead_us,
    })
    if c_loop is not None:
        result["c_loop_us"] = c_loop
    if not rss.ok:
        result["rss_note"] = rss.note
        result["warnings"].append(rss.note)
    if lat["p50"] > 0 and overhead_us > 0.05 * lat["p50"]:
        result["warnings"].append(f"the timer itself costs {overhead_us:.2f} us, over 5% of the p50 "
                                  f"{lat['p50']:.2f} us: treat differences below that as noise")
    session.close()
    return result, parity_out


def c_loop_timing(session, windows, runs: int, step_mode: bool) -> dict:
    """Latency of a C artifact timed by clock_gettime inside a compiled loop: per frame over one continuous
    stream (blocks of 100 frames) or per window; plus this CPU's peak float multiply-add rate."""
    from edgernn.runtimes.c_backend import peak_mac_rate

    inner = 100 if step_mode else 1
    ns = session.bench_c(windows, reps=max(1, runs), inner=inner)
    out = summarize(ns)
    out.update({"unit": "frame" if step_mode else "window", "calls_per_sample": inner,
                "timer": "clock_gettime(CLOCK_MONOTONIC) inside C", "peak_mac_per_s": peak_mac_rate()})
    return out


def _timed_loops(call, items, samples, step_mode, stream, T, stream_frames, clock):
    """The timed runs (filling `samples`, ns) and, for step artifacts, one continuous stream of
    stream_frames frames; returns the stream summary or None."""
    n = len(items)
    if step_mode:
        stream.reset()
        for i in range(len(samples)):
            if i % T == 0 and i:
                stream.reset()  # a new window: independent sequence (untimed)
            x = items[i % n]
            t0 = clock()
            call(x)
            samples[i] = clock() - t0
    else:
        for i in range(len(samples)):
            x = items[i % n]
            t0 = clock()
            call(x)
            samples[i] = clock() - t0
    if not (step_mode and stream_frames > 0):
        return None
    stream.reset()  # one continuous sensor stream, no resets
    ss = np.empty(stream_frames, dtype=np.int64)
    for i in range(stream_frames):
        x = items[i % n]
        t0 = clock()
        call(x)
        ss[i] = clock() - t0
    full = summarize(ss)
    return {k: full[k] for k in ("n", "p50", "p99", "mean")}


def _parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="python -m edgernn.runtimes.bench_worker",
                                 description="Measure one artifact (or the torch eager model) in this process.")
    src = ap.add_mutually_exclusive_group(required=True)
    src.add_argument("--artifact", help="exported artifact (its .json manifest must be beside it)")
    src.add_argument("--torch-run", help="time the PyTorch eager model of this run directory instead")
    ap.add_argument("--input", required=True, help="raw windows [N, T, C] as .npy (cycled, batch 1)")
    ap.add_argument("--out", required=True, help="RESULT.json to write")
    ap.add_argument("--runs", type=int, default=200)
    ap.add_argument("--warmup", type=int, default=20)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--stream-frames", type=int, default=200)
    ap.add_argument("--parity-input", help="raw windows [N, T, C] .npy: predict() every one, untimed")
    ap.add_argument("--parity-out", help="where to save the parity outputs (.npy)")
    return ap


def main(argv=None, torch_session=None) -> int:
    """The worker's command line. torch_session(run_dir, threads) -> Session is given by edgernn.reference,
    whose own __main__ is this worker with --torch-run enabled (runtimes never import torch)."""
    ap = _parser()
    args = ap.parse_args(argv)
    out = Path(args.out)
    try:
        from edgernn.errors import ConfigError

        if args.runs < 1 or args.warmup < 0 or args.threads < 1 or args.stream_frames < 0:
            raise ConfigError(f"need --runs >= 1, --warmup >= 0, --threads >= 1, --stream-frames >= 0 (got "
                              f"{args.runs}, {args.warmup}, {args.threads}, {args.stream_frames})")
        if bool(args.parity_input) != bool(args.parity_out):
            raise ConfigError("--parity-input and --parity-out go together; give both or neither")
        if not out.parent.is_dir():
            raise ConfigError(f"output directory {out.parent} does not exist")
        rss = PeakRSS()  # before anything heavy: the baseline
        windows = _load_windows(args.input, "--input")
        parity = _load_windows(args.parity_input, "--parity-input") if args.parity_input else None
        result, parity_out = measure(args.artifact, windows, runs=args.runs, warmup=args.warmup,
                                     threads=args.threads, stream_frames=args.stream_frames,
                                     torch_run=args.torch_run, parity_windows=parity, rss=rss,
                                     torch_session=torch_session)
        if parity_out is not None:
            atomic_save_npy(Path(args.parity_out), parity_out)
            result["parity_out_path"] = str(args.parity_out)
        atomic_write_json(out, result)
        return 0
    except Exception as exc:  # the worker always answers with one line, never a traceback
        from edgernn.errors import EdgernnError

        msg = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        if not isinstance(exc, EdgernnError):
            msg = f"{type(exc).__name__}: {msg}"
        msg = f"{args.artifact or args.torch_run}: {msg}"
        print(f"error: {msg}", file=sys.stderr)
        try:
            if out.parent.is_dir():
                atomic_write_json(out, {"error": msg, "artifact": Path(str(args.artifact or args.torch_run)).name,
                                         "pid": os.getpid()})
        except OSError:
            pass
        return 1


if __name__ == "__main__":
    sys.exit(main())
