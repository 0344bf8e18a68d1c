"""
C backend: runs a `--format c` artifact (one header-only C99 file) by compiling it with the system C
compiler into a shared library and calling it through ctypes. Standard library + numpy only.

    s = load("artifacts/step-float.h")    # compiles once, cached by the artifact's sha256
    s.predict(window)                      # raw window -> outputs (normalization inside the C code)
    st = s.stream(); st.step(frame)        # the C step function with a caller-owned state struct
    s.bench_c("step", frames, reps=200)    # per-frame ns timed inside C (no Python in the loop)

The library is built from a small wrapper .c that defines <PREFIX>_IMPLEMENTATION, includes the artifact
and exports prefix-free entry points (edgernn_step, edgernn_run_batch, edgernn_bench_step, ...) plus the
artifact's sha256, so a library can never be used with another artifact than its own.
Where it comes from, in order:
  1. `<artifact>.<machine>.so` beside the artifact (a remote target gets one cross-compiled by the host:
     a device needs no compiler), used when its embedded sha256 is the artifact's;
  2. the cache, $EDGERNN_CACHE_DIR/c (default ~/.cache/edgernn/c), keyed by sha256, compiler, flags and CPU;
  3. a fresh build with $CC, else cc, gcc or clang: -std=c99 -O3 -march=native -ffp-contract=fast
     (-march=native only where the compiler accepts it), written atomically into the cache.
"""

from __future__ import annotations

import contextlib
import ctypes
import functools
import hashlib
import os
import platform
import shutil
import subprocess
import tempfile
from pathlib import Path

import numpy as np

from edgernn.errors import ArtifactError, MissingDependencyError, RuntimeInputError
from edgernn.runtimes.files import cache_dir
from edgernn.runtimes.session import Session
from edgernn.runtimes.stream import check_frame
from edgernn.runtimes.tensor import Tensor

COMPILERS = ("cc", "gcc", "clang")
BASE_FLAGS = ["-std=c99", "-O3", "-ffp-contract=fast", "-fPIC", "-shared"]
INSTALL_HINT = "install one (Debian/Ubuntu: apt-get install gcc; Alpine: apk add gcc musl-dev) or set CC"


def find_compiler() -> str:
    """The C compiler to use: $CC, else the first of cc, gcc, clang on PATH (MissingDependencyError if none)."""
    cc = os.environ.get("CC")
    if cc:
        path = shutil.which(cc.split()[0])
        if not path:
            raise MissingDependencyError(f"CC={cc!r} is not an executable on PATH; {INSTALL_HINT}")
        return path
    for name in COMPILERS:
        path = shutil.which(name)
        if path:
            return path
    raise MissingDependencyError(f"C artifacts need a C compiler and none was found (looked for $CC, "
                                 f"{', '.join(COMPILERS)}); {INSTALL_HINT}")


@functools.lru_cache(maxsize=None)
def compiler_id(cc: str) -> str:
    """'gcc (Debian 12.2.0-14) 12.2.0' - the first line of `cc --version`."""
    try:
        out = subprocess.run([cc, "--version"], capture_output=True, text=True, timeout=30).stdout
    except (OSError, subprocess.SubprocessError):
        return Path(cc).name
    return (out.splitlines() or [Path(cc).name])[0].strip()


@functools.lru_cache(maxsize=None)
def native_flags(cc: str) -> tuple:
    """("-march=native",) when the compiler accepts it here, else ()."""
    with tempfile.TemporaryDirectory(prefix="edgernn-cc-") as tmp:
        src = Path(tmp) / "t.c"
        src.write_text("int f(int x) { return x + 1; }\n")
        try:
            ok = subprocess.run([cc, "-march=native", "-c", "-o", str(Path(tmp) / "t.o"), str(src)],
                                capture_output=True, timeout=60).returncode == 0
        except (OSError, subprocess.SubprocessError):
            ok = False
    return ("-march=native",) if ok else ()


def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.lower().startswith(("model name", "cpu part")):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor()


def wrapper_source(header_name: str, manifest: dict) -> str:
    """The .c file that turns the header into a library with prefix-free entry points."""
    c = manifest["c"]
    p, P = c["prefix"], c["prefix"].upper()
    K = int(manifest["model"]["num_outputs"])
    C = int(manifest["model"]["input_size"])
    tag = manifest["task"] == "tag"
    lines = ["#define _POSIX_C_SOURCE 199309L", f"#define {P}_IMPLEMENTATION", f'#include "{header_name}"',
             "#include <stddef.h>", "#include <time.h>", "",
             f'const char *edgernn_sha256(void) {{ return "{manifest["sha256"]}"; }}', "",
             "static double edgernn_now_ns(void)", "{", "    struct timespec ts;",
             "    clock_gettime(CLOCK_MONOTONIC, &ts);", "    return (double)ts.tv_sec * 1e9 + (double)ts.tv_nsec;", "}", "",
             "/* B windows x[B][T][C] -> out[B][K] (tag: [B][T][K]); 0, or the first error */",
             "int edgernn_run_batch(const float *x, int B, int T, float *out)", "{", "    int b, rc;",
             "    for (b = 0; b < B; b++) {",
             f"        rc = {p}_run(x + (long)b * T * {C}, T, out + (long)b * {f'T * {K}' if tag else K});",
             "        if (rc)", "            return rc;", "    }", "    return 0;", "}", "",
             "/* reps blocks of `inner` whole windows; ns_out[rep] = ns per window; buf: room for one window's outputs */",
             "int edgernn_bench_run(const float *x, int nwin, int T, int reps, int inner, float *buf, double *ns_out)",
             "{", "    volatile float sink = 0.0f;", "    int rep, k, i = 0;",
             "    for (rep = 0; rep < reps; rep++) {", "        double t0 = edgernn_now_ns();",
             "        for (k = 0; k < inner; k++, i++) {",
             f"            if ({p}_run(x + (long)(i % nwin) * T * {C}, T, buf))", "                return -1;",
             "            sink += buf[0];", "        }",
             "        ns_out[rep] = (edgernn_now_ns() - t0) / inner;", "    }", "    (void)sink;", "    return 0;", "}", ""]
    fe = (manifest.get("preprocessing") or {}).get("frontend")
    if fe:  # audio: the front end alone, for parity's front-end check (features of T hops from a zero tail)
        tail, feats = int(fe["tail"]), int(fe["features"])
        lines += ["void edgernn_features(const float *x, int T, float *feat)", "{",
                  f"    float tail[{max(1, tail)}] = {{0}};", "    int t;", "    for (t = 0; t < T; t++)",
                  f"        {p}_features(tail, x + (long)t * {C}, feat + (long)t * {feats});", "}", ""]
    if c.get("streaming"):
        lines += [f"size_t edgernn_state_size(void) {{ return sizeof({p}_state); }}",
                  f"void edgernn_reset(void *st) {{ {p}_reset(({p}_state *)st); }}",
                  f"void edgernn_step(void *st, const float *frame, float *out) {{ {p}_step(({p}_state *)st, frame, out); }}",
                  "",
                  "/* one continuous stream over nframes frames (cycled); ns_out[rep] = ns per frame over `inner` frames */",
                  "int edgernn_bench_step(const float *frames, int nframes, int reps, int inner, double *ns_out)", "{",
                  f"    {p}_state st;", f"    float out[{K}];", "    volatile float sink = 0.0f;",
                  "    int rep, k, i = 0;", f"    {p}_reset(&st);",
                  "    for (rep = 0; rep < reps; rep++) {", "        double t0 = edgernn_now_ns();",
                  "        for (k = 0; k < inner; k++, i++) {",
                  f"            {p}_step(&st, frames + (long)(i % nframes) * {C}, out);",
                  "            sink += out[0];", "        }",
                  "        ns_out[rep] = (edgernn_now_ns() - t0) / inner;", "    }", "    (void)sink;", "    return 0;", "}", ""]
    return "\n".join(lines)


def build_library(header: Path, manifest: dict, out: Path, cc: str | None = None, flags=None,
                  wrapper: str | None = None) -> Path:
    """Compile `header` (+ the wrapper: wrapper_source's, or the given text) into the shared library `out`
    (atomically). A compiler error is an ArtifactError with the compiler's first error line: generated code must
    always compile."""
    cc = cc or find_compiler()
    flags = list(BASE_FLAGS) + list(native_flags(cc) if flags is None else flags)
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="edgernn-cbuild-") as tmp:
        tmp = Path(tmp)
        shutil.copyfile(header, tmp / "model.h")
        (tmp / "wrapper.c").write_text(wrapper if wrapper is not None else wrapper_source("model.h", manifest))
        so = tmp / "lib.so"
        try:
            proc = subprocess.run([cc, *flags, "-o", str(so), str(tmp / "wrapper.c")], capture_output=True,
                                  text=True, timeout=300)
        except subprocess.TimeoutExpired:
            raise ArtifactError(f"compiling {Path(header).name} with {cc} took over 300 s") from None
        if proc.returncode != 0:
            err = next((ln for ln in proc.stderr.splitlines() if "error" in ln), proc.stderr.strip()[:300])
            raise ArtifactError(f"{Path(header).name} does not compile with {compiler_id(cc)} ({err}); re-export it with "
                                "`edgernn export --format c` (generated code should always compile: please report this)")
        fd, part = tempfile.mkstemp(prefix=f".{out.name}.", dir=out.parent)
        os.close(fd)
        shutil.copyfile(so, part)
        os.replace(part, out)
    return out


def _embedded_sha(lib) -> str | None:
    try:
        fn = lib.edgernn_sha256
    except AttributeError:
        return None
    fn.argtypes, fn.restype = [], ctypes.c_char_p
    return fn().decode()


def library_for(path: Path, manifest: dict, wrapper: str | None = None) -> tuple[Path, str]:
    """(shared library for this artifact, how it was obtained: "prebuilt" | "cached" | "compiled"); wrapper: the
    entry points' .c text when not wrapper_source's (token models)."""
    machine = platform.machine()
    prebuilt = Path(path).with_name(f"{Path(path).name}.{machine}.so")
    if prebuilt.is_file():
        try:
            lib = ctypes.CDLL(str(prebuilt))
        except OSError as exc:
            raise ArtifactError(f"{prebuilt.name} does not load on this {machine} machine ({exc}); remove it to "
                                "compile here") from exc
        if _embedded_sha(lib) != manifest["sha256"]:
            raise ArtifactError(f"{prebuilt.name} was built from another version of {Path(path).name}; remove it or "
                                "re-export")
        return prebuilt, "prebuilt"
    cc = find_compiler()
    flags = list(BASE_FLAGS) + list(native_flags(cc))
    key = hashlib.sha256("\n".join([manifest["sha256"], compiler_id(cc), " ".join(flags), machine, _cpu_model(),
                                    wrapper if wrapper is not None else wrapper_source("model.h", manifest)]
                             ).encode()).hexdigest()[:24]
    lib = cache_dir("c") / f"{Path(path).stem}-{key}.so"
    if lib.is_file():
        return lib, "cached"
    return build_library(path, manifest, lib, cc, wrapper=wrapper), "compiled"


PEAK_SOURCE = """
#define _POSIX_C_SOURCE 199309L
#include <time.h>
/* the float multiply-add rate this compiler + CPU reach at best: 64 independent accumulators (no
   dependency stalls), operands in registers/L1, compiled with the same flags as the artifacts */
double edgernn_peak_macs(long iters)
{
    float acc[64], a[64], b[64];
    struct timespec t0, t1;
    long it;
    int j;
    volatile float sink = 0.0f;
    for (j = 0; j < 64; j++) { acc[j] = 0.0f; a[j] = 0.999f + 1e-6f * j; b[j] = 1e-4f * j; }
    clock_gettime(CLOCK_MONOTONIC, &t0);
    for (it = 0; it < iters; it++)
        for (j = 0; j < 64; j++)
            acc[j] = acc[j] * a[j] + b[j];
    clock_gettime(CLOCK_MONOTONIC, &t1);
    for (j = 0; j < 64; j++) sink += acc[j];
    (void)sink;
    return (double)iters * 64.0 / ((double)(t1.tv_sec - t0.tv_sec) + 1e-9 * (double)(t1.tv_nsec - t0.tv_nsec));
}
"""


@functools.lru_cache(maxsize=None)
def peak_mac_rate() -> float | None:
    """Multiply-adds per second a compiled float loop reaches on this CPU at best (best of 5 runs of
    ~50 ms; None without a compiler): the "MAC bound" a model's C step is compared with."""
    try:
        cc = find_compiler()
    except MissingDependencyError:
        return None
    flags = [f for f in BASE_FLAGS] + list(native_flags(cc))
    key = hashlib.sha256("\n".join([PEAK_SOURCE, compiler_id(cc), " ".join(flags), platform.machine(),
                                     _cpu_model()]).encode()).hexdigest()[:24]
    lib_path = cache_dir("c") / f"peak-{key}.so"
    if not lib_path.is_file():
        lib_path.parent.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory(prefix="edgernn-peak-") as tmp:
            src = Path(tmp) / "peak.c"
            src.write_text(PEAK_SOURCE)
            so = Path(tmp) / "peak.so"
            if subprocess.run([cc, *flags, "-o", str(so), str(src)], capture_output=True, timeout=120).returncode:
                return None
            part = lib_path.with_name(f".{lib_path.name}.{os.getpid()}")
            shutil.copyfile(so, part)
            os.replace(part, lib_path)
    fn = ctypes.CDLL(str(lib_path)).edgernn_peak_macs
    fn.argtypes, fn.restype = [ctypes.c_long], ctypes.c_double
    iters = 1000
    while True:  # calibrate to ~50 ms
        rate = fn(iters)
        if iters * 64 / rate > 0.05 or iters > 1 << 30:
            break
        iters *= 4
    return max(fn(iters) for _ in range(5))


class CSession(Session):
    runtime_name = "c"

    def _open(self, threads: int) -> None:
        m = self.manifest
        if "c" not in m:
            raise ArtifactError(f"{self.path.name}.json has no 'c' block; re-run `edgernn export --format c`")
        lib_path, self.how = library_for(self.path, m)
        self.library = lib_path
        self._lib = ctypes.CDLL(str(lib_path))
        self.runtime_package = "c"
        self.runtime_version = compiler_id(find_compiler()) if self.how != "prebuilt" else f"prebuilt {lib_path.name}"
        self.inputs = [Tensor(t, np.float32) for t in m["inputs"]]
        self.outputs = [Tensor(t, np.float32) for t in m["outputs"]]
        self._K = int(m["model"]["num_outputs"])
        vp, ci = ctypes.c_void_p, ctypes.c_int
        self._run_batch = self._lib.edgernn_run_batch
        self._run_batch.argtypes, self._run_batch.restype = [vp, ci, ci, vp], ci
        self._bench_run = self._lib.edgernn_bench_run
        self._bench_run.argtypes, self._bench_run.restype = [vp, ci, ci, ci, ci, vp, vp], ci
        self.streaming = bool(m["c"].get("streaming"))
        if self.streaming:
            self._lib.edgernn_state_size.restype = ctypes.c_size_t
            self._state_size = int(self._lib.edgernn_state_size())
            self._reset_fn = self._lib.edgernn_reset
            self._reset_fn.argtypes, self._reset_fn.restype = [vp], None
            self._step_fn = self._lib.edgernn_step
            self._step_fn.argtypes, self._step_fn.restype = [vp, vp, vp], None
            self._bench_step = self._lib.edgernn_bench_step
            self._bench_step.argtypes, self._bench_step.restype = [vp, ci, ci, ci, vp], ci

    def features(self, window) -> np.ndarray:
        """Audio: the C front end alone on a raw window [T, hop] from a zero tail -> features [T, F]."""
        fe = self.frontend
        if not fe:
            raise ArtifactError(f"{self.path.name} has no audio front end")
        x = np.ascontiguousarray(self._as_float(window, "window"), dtype=np.float32).reshape(-1, int(fe["hop"]))
        out = np.zeros((len(x), int(fe["features"])), np.float32)
        fn = self._lib.edgernn_features
        fn.argtypes, fn.restype = [ctypes.c_void_p, ctypes.c_int, ctypes.c_void_p], None
        fn(x.ctypes.data, len(x), out.ctypes.data)
        return out

    def _predict_padded(self, window) -> np.ndarray:
        """Raw window [T, C] or batch [B, T, C] -> outputs; the C library normalizes and (de)quantizes."""
        raw, _, batched, T = self._prepare_window(window)
        raw = np.ascontiguousarray(raw, dtype=np.float32)
        B, TT, _ = raw.shape
        tag = self.task == "tag"
        out = np.empty((B, TT, self._K) if tag else (B, self._K), np.float32)
        rc = self._run_batch(raw.ctypes.data, B, TT, out.ctypes.data)
        if rc:
            raise RuntimeInputError(f"{self.path.name} refused a window of {TT} steps (its longest is "
                                    f"{self.manifest['c'].get('max_t')}: bidirectional C buffers the window on the "
                                    "stack); re-export after raising it, or pass shorter windows")
        if tag and out.shape[1] != T:
            out = out[:, -T:]
        return out if batched else out[0]

    def run_normalized(self, x) -> np.ndarray:
        x = np.asarray(x, dtype=np.float32)
        return self.predict(x * self._std + self._mean)

    def stream(self, warn: bool = True) -> "CStream":
        if self.mode != "step" or not self.streaming:
            raise RuntimeInputError(f"{self.path.name} is a {self.mode} artifact and cannot stream frame by frame; "
                                    "export with --streaming and load step-*.h (or call predict(window))")
        return CStream(self)

    # ---- timing inside C ----------------------------------------------------------------------------
    def bench_c(self, windows: np.ndarray, reps: int = 200, inner: int | None = None) -> np.ndarray:
        """ns per call timed by clock_gettime inside C, one value per block of `inner` calls: per frame over
        one continuous stream (step artifacts) or per window (sequence artifacts)."""
        x = np.ascontiguousarray(windows, dtype=np.float32)
        ns = np.empty(int(reps), np.float64)
        if self.mode == "step":
            frames = np.ascontiguousarray(x.reshape(-1, x.shape[-1]))
            inner = inner or 100
            rc = self._bench_step(frames.ctypes.data, len(frames), int(reps), int(inner), ns.ctypes.data)
        else:
            inner = inner or 1
            buf = np.empty(x.shape[1] * self._K, np.float32)
            rc = self._bench_run(x.ctypes.data, x.shape[0], x.shape[1], int(reps), int(inner), buf.ctypes.data,
                                 ns.ctypes.data)
        if rc:
            raise RuntimeInputError(f"{self.path.name}: the C timing loop refused these windows (code {rc})")
        return ns

    def close(self) -> None:
        self._lib = None


class CStream:
    """Frame-by-frame inference through the C step function; the state struct lives in a ctypes buffer
    owned by this object. saturation is not counted for C (the int16 state saturates inside C)."""

    def __init__(self, session: CSession):
        self.session = session
        self._st = ctypes.create_string_buffer(max(1, session._state_size))
        self._addr = ctypes.addressof(self._st)
        self._out = np.empty(session._K, np.float32)
        self._out_addr = self._out.ctypes.data
        self._frames = 0
        self.reset()

    @property
    def saturation(self) -> dict:
        return {"frames": self._frames, "input": None, "state": None}

    @property
    def state(self) -> dict:
        return {"raw": bytes(self._st.raw)}

    def reset(self) -> None:
        self.session._reset_fn(self._addr)

    def step(self, frame) -> np.ndarray:
        s = self.session
        x = np.ascontiguousarray(check_frame(s, frame)[0])
        s._step_fn(self._addr, x.ctypes.data, self._out_addr)
        self._frames += 1
        return self._out.copy()


@contextlib.contextmanager
def compile_and_open(header: Path, manifest: dict):
    """A CSession over a header that has no final manifest yet (the exporter's check): built in a scratch
    directory, never cached."""
    with tempfile.TemporaryDirectory(prefix="edgernn-ccheck-") as tmp:
        lib = build_library(header, manifest, Path(tmp) / "check.so")
        m = dict(manifest)
        session = CSession.__new__(CSession)
        # open with the freshly built library: pretend it is the prebuilt one beside the artifact
        prebuilt = Path(tmp) / f"{Path(header).name}.{platform.machine()}.so"
        os.replace(lib, prebuilt)
        shutil.copyfile(header, Path(tmp) / Path(header).name)
        Session.__init__(session, Path(tmp) / Path(header).name, m, 1)
        session.runtime_version = compiler_id(find_compiler())
        try:
            yield session
        finally:
            session.close()
