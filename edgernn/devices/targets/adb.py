"""
Android target: benchmark on a phone over adb with the runtimes' own command-line tools.

No Python runs on the phone. The artifact and the tool given with --tool are pushed to
/data/local/tmp/edgernn-<random>/ and run there:
  .tflite       TFLite's benchmark_model   (prebuilt android_aarch64_benchmark_model, see docs/targets.md)
  .onnx / .ort  onnxruntime_perf_test      (built from source with onnxruntime's build.sh --android)
Their text output is parsed into the same keys as the Python worker's RESULT.json (latency_us with
whatever percentiles the tool prints, load_s, first_inference_s, rss_mb when it reports memory), and the
directory is removed afterwards, also after an error or Ctrl-C.

    tgt = get_target(load_board("android-arm64"), tool="android_aarch64_benchmark_model", serial="R58M...")
    results = tgt.run(jobs)

    parse_benchmark_model(text) / parse_perf_test(text)    # the parsers, usable on saved logs

The tools feed random inputs and time the bare interpreter call (no normalization or (de)quantization in
Python), so on-device parity is not available here, and the numbers are comparable with each other but
a little lower than the Python worker's. `runner` (a callable(argv, input, timeout) ->
CompletedProcess with text stdout/stderr) can be replaced, e.g. to log or to test without a device.
"""

from __future__ import annotations

import re
import secrets
import shlex
import subprocess
import time
from pathlib import Path

from edgernn.devices.targets import BenchJob, Target
from edgernn.errors import ConfigError, TargetError

DEVICE_BASE = "/data/local/tmp"
# the dynamic dimension names edgernn's ONNX exporter writes (onnxruntime_perf_test -f name:value)
ONNX_DIMS = ("batch", "time")
TOOLS = {
    "benchmark_model": {"formats": ("tflite",), "runtime": "litert", "device_name": "benchmark_model"},
    "onnxruntime_perf_test": {"formats": ("onnx", "ort"), "runtime": "onnxruntime",
                              "device_name": "onnxruntime_perf_test"},
}
RC_MARK = "EDGERNN_RC="
# one adb shell call that prints everything the fingerprint needs, in marked sections
FINGERPRINT_SCRIPT = "; ".join([
    "echo @@uname", "uname -a", "echo @@machine", "uname -m", "echo @@cpuinfo", "cat /proc/cpuinfo",
    "echo @@meminfo", "cat /proc/meminfo", "echo @@governor",
    "cat /sys/devices/system/cpu/cpu0/cpufreq/scaling_governor", "echo @@curfreq",
    "cat /sys/devices/system/cpu/cpu0/cpufreq/scaling_cur_freq", "echo @@maxfreq",
    "cat /sys/devices/system/cpu/cpu0/cpufreq/cpuinfo_max_freq", "echo @@temp",
    "cat /sys/class/thermal/thermal_zone0/temp", "echo @@nproc", "nproc", "echo @@manufacturer",
    "getprop ro.product.manufacturer", "echo @@model", "getprop ro.product.model", "echo @@soc",
    "getprop ro.soc.model", "echo @@release", "getprop ro.build.version.release", "echo @@sdk",
    "getprop ro.build.version.sdk", "echo @@abi", "getprop ro.product.cpu.abi", "echo @@end",
])
_NUM = r"([-+]?\d+(?:\.\d+)?(?:[eE][-+]?\d+)?)"


def q(s) -> str:
    return shlex.quote(str(s))


def _f(x):
    return float(x) if x is not None else None


# ---- parsers ------------------------------------------------------------------------------------------
def parse_benchmark_model(text: str) -> dict:
    """TFLite benchmark_model output -> {"latency_us": {...}, "load_s", "first_inference_s",
    "warmup_mean_us", "rss_mb": {...} or None}. Handles the INFO:-prefixed (TF >= 2.x, with p5/median/p95)
    and the older unprefixed format. Raises ValueError when there are no timings at all."""
    text = text.replace("\r", "")
    summary = re.search(r"Inference timings in us: Init: " + _NUM + r", First inference: " + _NUM
                        + r", Warmup \(avg\): " + _NUM + r", Inference \(avg\): " + _NUM, text)
    old = re.search(r"Average inference timings in us: Warmup: " + _NUM + r", Init: " + _NUM
                    + r", (?:no stats|Inference): " + _NUM, text)
    end = summary.start() if summary else (old.start() if old else len(text))
    # the timed run's statistics: the last "count=" line before the summary (the first one is warm-up)
    stats = None
    for m in re.finditer(r"count=(\d+)([^\n]*)", text[:end]):
        stats = m
    if stats is None and summary is None and old is None:
        raise ValueError("no 'Inference timings in us' or 'count=' line: is this benchmark_model output?")
    lat = {"n": None, "p50": None, "p90": None, "p99": None, "mean": None, "std": None, "min": None, "max": None}
    if stats is not None:
        kv = dict(re.findall(r"(\w+)=" + _NUM, stats.group(0)))
        lat.update(n=int(stats.group(1)), mean=_f(kv.get("avg")), std=_f(kv.get("std")), min=_f(kv.get("min")),
                   max=_f(kv.get("max")), p50=_f(kv.get("median")))
        if "p5" in kv:
            lat["p5"] = float(kv["p5"])
        if "p95" in kv:
            lat["p95"] = float(kv["p95"])
    out = {"latency_us": lat, "load_s": None, "first_inference_s": None, "warmup_mean_us": None, "rss_mb": None}
    if summary:
        init, first, warm, mean = (float(x) for x in summary.groups())
        out.update(load_s=init / 1e6, first_inference_s=first / 1e6, warmup_mean_us=warm)
        if lat["mean"] is None:
            lat["mean"] = mean
    elif old:
        warm, init, mean = (float(x) for x in old.groups())
        out.update(load_s=init / 1e6, warmup_mean_us=warm)
        if lat["mean"] is None:
            lat["mean"] = mean
    mem = re.search(r"(Memory footprint delta from the start of the tool|Peak memory footprint) \(MB\): init="
                    + _NUM + r" overall=" + _NUM, text)
    if mem:
        out["rss_mb"] = {"init": float(mem.group(2)), "overall": float(mem.group(3)),
                         "measure": "benchmark_model: " + mem.group(1).lower()}
    peak = re.search(r"Overall peak memory footprint \(MB\) via periodic monitoring: " + _NUM, text)
    if peak:
        out["rss_mb"] = dict(out["rss_mb"] or {}, peak=float(peak.group(1)))
        out["rss_mb"].setdefault("measure", "benchmark_model: periodic monitoring")
    return out


def parse_perf_test(text: str) -> dict:
    """onnxruntime_perf_test output -> same keys as parse_benchmark_model. Latency percentiles are
    printed by newer versions ("P50 Latency: 0.0995 s", or "P50 Latency is 0.0587 sec" in some);
    older ones print only the average. Raises ValueError when there is no average."""
    text = text.replace("\r", "")

    def grab(pattern):
        m = re.search(pattern, text)
        return float(m.group(1)) if m else None

    mean_ms = grab(r"Average (?:inference )?time cost(?: total)?:\s*" + _NUM + r"\s*ms")
    if mean_ms is None:
        raise ValueError("no 'Average inference time cost' line: is this onnxruntime_perf_test output?")
    n = grab(r"Total (?:inference requests|iterations):\s*(\d+)")

    def lat_s(label):
        v = grab(label + r" Latency(?::| is)\s*" + _NUM + r"\s*s")
        return v * 1e6 if v is not None else None

    lat = {"n": int(n) if n is not None else None, "p50": lat_s("P50"), "p90": lat_s("P90"), "p99": lat_s("P99"),
           "mean": mean_ms * 1e3, "std": None, "min": lat_s("Min"), "max": lat_s("Max")}
    for extra in ("P95", "P999"):
        v = lat_s(extra)
        if v is not None:
            lat[extra.lower()] = v
    first_ms = grab(r"First inference time cost:\s*" + _NUM + r"\s*ms")
    peak = grab(r"Peak working set size:\s*(\d+)\s*bytes")
    cpu = grab(r"(?:Avg|Total) CPU usage:\s*" + _NUM + r"\s*%")
    return {"latency_us": lat, "load_s": grab(r"Session creation time cost:\s*" + _NUM + r"\s*s"),
            "first_inference_s": first_ms / 1e3 if first_ms is not None else None, "warmup_mean_us": None,
            "rss_mb": {"peak": round(peak / 2**20, 3), "measure": "onnxruntime_perf_test: peak working set"}
            if peak is not None else None,
            "cpu_usage_pct": cpu, "throughput_per_s": grab(r"Number of inferences per second:\s*" + _NUM)}


def parse_sections(text: str) -> dict:
    """Output of FINGERPRINT_SCRIPT -> {section: text}."""
    out, cur = {}, None
    for line in text.replace("\r", "").splitlines():
        if line.startswith("@@"):
            cur = line[2:].strip()
            out[cur] = []
        elif cur is not None:
            out[cur].append(line)
    return {k: "\n".join(v).strip() for k, v in out.items()}


def fingerprint_from_sections(sec: dict) -> dict:
    from edgernn.runtimes.fingerprint import parse_cpuinfo, parse_meminfo, parse_thermal_millic

    cpu = parse_cpuinfo(sec.get("cpuinfo"))
    mem = parse_meminfo(sec.get("meminfo"))

    def val(k):
        v = (sec.get(k) or "").strip()
        return v if v and "No such file" not in v and "not found" not in v and "Permission denied" not in v else None

    def khz_to_mhz(k):
        v = val(k)
        return round(int(v) / 1000) if v and v.isdigit() else None

    cores = val("nproc")
    if not (cores and cores.isdigit()):
        cores = sum(1 for ln in (sec.get("cpuinfo") or "").splitlines() if re.match(r"processor\s*:", ln)) or None
    temp = parse_thermal_millic(val("temp"))
    model = " ".join(x for x in (val("manufacturer"), val("model")) if x) or cpu["board_model"]
    release, sdk = val("release"), val("sdk")
    return {
        "time_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "uname": val("uname"), "arch": val("machine"), "machine": val("machine"),
        "cpu_model": cpu["cpu_model"], "board_model": model, "hardware": val("soc") or cpu["hardware"],
        "cores": int(cores) if cores else None, "ram_mb": mem["ram_mb"], "ram_available_mb": mem["ram_available_mb"],
        "os": f"Android {release} (SDK {sdk})" if release else None, "abi": val("abi"),
        "python": None, "packages": {}, "governor": val("governor"), "cpu_mhz": khz_to_mhz("curfreq"),
        "cpu_max_mhz": khz_to_mhz("maxfreq"), "temperature_c": temp,
        "temperature_source": "thermal_zone0" if temp is not None else None,
        "throttled": None, "throttled_flags": None, "vcgencmd": False,
    }


def detect_tool_kind(tool) -> str:
    name = Path(str(tool)).name.lower()
    if "benchmark_model" in name:
        return "benchmark_model"
    if "perf_test" in name:
        return "onnxruntime_perf_test"
    raise ConfigError(f"--tool {tool}: cannot tell which tool this is from its name; expected TFLite's "
                      "benchmark_model (e.g. android_aarch64_benchmark_model) or onnxruntime_perf_test "
                      "(or pass tool_kind='benchmark_model' / 'onnxruntime_perf_test')")


def default_runner(argv, input=None, timeout=None) -> subprocess.CompletedProcess:
    return subprocess.run(argv, input=input, capture_output=True, text=True, timeout=timeout)


class AdbTarget(Target):
    name = "adb"

    def __init__(self, board, tool=None, serial: str | None = None, adb: str = "adb", runner=None,
                 tool_kind: str | None = None, device_base: str = DEVICE_BASE, cpu_mask: str | None = None,
                 job_timeout: float | None = 1800.0, extra_args=()):
        super().__init__(board)
        self.tool = Path(tool) if tool else None
        if tool_kind is not None and tool_kind not in TOOLS:
            raise ConfigError(f"tool_kind {tool_kind!r}: choose one of {', '.join(TOOLS)}")
        self.kind = tool_kind or (detect_tool_kind(tool) if tool else None)
        if serial is not None and (not re.fullmatch(r"[A-Za-z0-9._:\-]+", str(serial))):
            raise ConfigError(f"adb serial {serial!r} is not a device serial (see `adb devices`)")
        self.serial = serial
        self.adb = adb
        self.runner = runner or default_runner
        self.device_base = device_base
        if cpu_mask is not None and not re.fullmatch(r"[0-9a-fA-F]+", str(cpu_mask)):
            raise ConfigError(f"cpu_mask {cpu_mask!r} must be a hex CPU mask for taskset, e.g. f0")
        self.cpu_mask = cpu_mask
        self.job_timeout = job_timeout
        self.extra_args = list(extra_args)
        self.calls = []  # argv of every adb call made (for the report and for tests)

    def describe(self) -> str:
        return f"{self.board.name} over adb{' ' + self.serial if self.serial else ''} ({self.kind})"

    # ---- adb plumbing --------------------------------------------------------------------------------
    def _base(self) -> list:
        return [self.adb] + (["-s", self.serial] if self.serial else [])

    def _call(self, args: list, what: str, timeout: float | None = 120):
        argv = self._base() + list(args)
        self.calls.append(argv)
        try:
            proc = self.runner(argv, None, timeout)
        except FileNotFoundError:
            raise TargetError(f"adb ({self.adb}) is not installed: install Android platform-tools "
                              "(Debian/Ubuntu: apt-get install adb)") from None
        except subprocess.TimeoutExpired:
            raise TargetError(f"{what} over adb did not finish within {timeout:g} s") from None
        return proc

    def _fail(self, proc, what: str) -> TargetError:
        text = ((proc.stderr or "") + "\n" + (proc.stdout or "")).strip()
        line = next((ln for ln in reversed(text.splitlines()) if ln.strip() and RC_MARK not in ln), "") or \
            f"exit code {proc.returncode}"
        if "no devices/emulators found" in text or "device not found" in text or "no device" in text:
            return TargetError(f"no Android device visible to adb ({line}): connect the phone, enable USB "
                               "debugging, accept the prompt, and check `adb devices`")
        if "more than one device" in text:
            return TargetError(f"several devices are connected ({line}): pick one with --host SERIAL "
                               "(see `adb devices`)")
        if "unauthorized" in text:
            return TargetError(f"the phone has not authorized this computer ({line}): accept the USB debugging "
                               "prompt on the phone")
        return TargetError(f"{what} failed on the Android device: {line.strip()}")

    def shell(self, script: str, what: str, timeout: float | None = 120) -> str:
        """Run a sh script on the device; returns stdout (without the exit-code marker). The script is
        one argument: adb hands it to the device's shell, so every dynamic part must be quoted."""
        proc = self._call(["shell", script + f"; echo {RC_MARK}$?"], what, timeout)
        out = (proc.stdout or "").replace("\r", "")
        m = re.search(RC_MARK + r"(\d+)\s*$", out)
        rc = int(m.group(1)) if m else proc.returncode
        if proc.returncode != 0 and not m:
            raise self._fail(proc, what)
        if rc != 0:
            raise self._fail(subprocess.CompletedProcess(proc.args, rc, out[:m.start()] if m else out,
                                                         proc.stderr), what)
        return out[:m.start()] if m else out

    def push(self, local: Path, remote: str, what: str) -> None:
        # adb push moves bytes with its sync protocol: the remote path is not parsed by a shell
        proc = self._call(["push", str(local), remote], what, timeout=600)
        if proc.returncode != 0:
            raise self._fail(proc, what)

    # ---- commands --------------------------------------------------------------------------------------
    def tool_argv(self, job: BenchJob, manifest: dict, device_artifact: str, device_tool: str, seq_len: int) -> list:
        """The benchmark tool's argv on the device (before quoting)."""
        if self.kind == "benchmark_model":
            argv = [device_tool, f"--graph={device_artifact}", f"--num_threads={int(job.threads)}",
                    f"--num_runs={int(job.runs)}", f"--warmup_runs={int(job.warmup)}",
                    "--report_peak_memory_footprint=true"]
            x = (manifest.get("inputs") or [{}])[0]
            shape = x.get("shape") or []
            if manifest.get("mode") == "sequence" and (None in shape or not shape):
                c = len(manifest["preprocessing"]["mean"])
                argv += [f"--input_layer={x.get('name', 'x')}", f"--input_layer_shape=1,{seq_len},{c}"]
        else:
            argv = [device_tool, "-I", "-m", "times", "-r", str(int(job.runs)), "-x", str(int(job.threads)),
                    "-e", "cpu", "-s", "-f", f"{ONNX_DIMS[0]}:1"]
            if manifest.get("mode") == "sequence" and manifest.get("sequence_length") is None:
                argv += ["-f", f"{ONNX_DIMS[1]}:{seq_len}"]
            argv += [device_artifact]
        return argv + self.extra_args

    def run_script(self, workdir: str, argv: list) -> str:
        cmd = " ".join(q(a) for a in argv)
        if self.cpu_mask:
            cmd = f"taskset {q(self.cpu_mask)} {cmd}"
        return f"cd {q(workdir)} && {cmd}"

    # ---- Target API ----------------------------------------------------------------------------------
    def fingerprint(self) -> dict:
        out = self.shell(FINGERPRINT_SCRIPT + " 2>/dev/null; true", "reading the device fingerprint", timeout=60)
        fp = fingerprint_from_sections(parse_sections(out))
        fp["serial"] = self.serial
        return fp

    def run(self, jobs: list, progress=None) -> list:
        import numpy as np

        if self.tool is None:
            raise ConfigError("the adb target needs --tool: TFLite's benchmark_model (for .tflite) or "
                              "onnxruntime_perf_test (for .onnx/.ort); see docs/targets.md for where to get them")
        if not self.tool.is_file():
            raise ConfigError(f"--tool {self.tool} does not exist")
        manifests = self._check_jobs(jobs, allow_torch=False)
        spec = TOOLS[self.kind]
        wrong = sorted({Path(a).name for a, m in manifests.items() if m["format"] not in spec["formats"]})
        if wrong:
            other = "onnxruntime_perf_test" if self.kind == "benchmark_model" else "benchmark_model"
            rt = spec["runtime"]
            raise ConfigError(f"{self.kind} runs {'/'.join('.' + f for f in spec['formats'])} files only, not "
                              f"{', '.join(wrong)}: add --runtime {rt}, or bench those with --tool {other}")
        update, close_progress = self._progress(progress, len(jobs))
        workdir = f"{self.device_base}/edgernn-{secrets.token_hex(4)}"
        created = False
        primary, results = None, []
        try:
            before = self.fingerprint()
            self.shell(f"mkdir -p {q(workdir)}", "creating the work dir")
            created = True
            t0 = time.perf_counter()
            device_tool = f"{workdir}/{spec['device_name']}"
            self.push(self.tool, device_tool, f"pushing {self.tool.name}")
            self.shell(f"chmod 755 {q(device_tool)}", "making the tool executable")
            names = {}
            for a in manifests:
                names[a] = f"{workdir}/a{len(names)}{a.suffix}"
                self.push(a, names[a], f"pushing {a.name}")
            push_s = time.perf_counter() - t0
            raw = []
            for job in jobs:
                m = manifests[Path(job.artifact)]
                seq_len = int(np.load(job.input, mmap_mode="r").shape[1])
                argv = self.tool_argv(job, m, names[Path(job.artifact)], device_tool, seq_len)
                t1 = time.perf_counter()
                text = self.shell(self.run_script(workdir, argv) + " 2>&1", f"{self.kind} on {job.label}",
                                  timeout=self.job_timeout)
                wall = time.perf_counter() - t1
                raw.append((self._result(job, m, text), wall))
                update(job)
            after = self.fingerprint()
            share = push_s / max(1, len(jobs))
            results = [self._finish(r, before, after, share, wall) for r, wall in raw]
        except BaseException as exc:  # noqa: B036 - also Ctrl-C: clean up, then re-raise
            primary = exc
        finally:
            close_progress()
        cleanup_error = None
        if created:
            try:
                self.shell(f"rm -rf {q(workdir)}", "removing the work dir", timeout=60)
            except (TargetError, KeyboardInterrupt) as exc:
                cleanup_error = (f"could not remove {workdir} on the device ({exc}); remove it by hand: "
                                 f"adb shell rm -rf {workdir}")
        if primary is not None:
            if cleanup_error:
                raise TargetError(f"{primary}; {cleanup_error}") from primary
            raise primary
        for r in results:
            if cleanup_error:
                r["warnings"].append(cleanup_error)
        return results

    def _result(self, job: BenchJob, manifest: dict, text: str) -> dict:
        try:
            parsed = parse_benchmark_model(text) if self.kind == "benchmark_model" else parse_perf_test(text)
        except ValueError as exc:
            tail = " | ".join(ln for ln in text.strip().splitlines()[-3:])
            raise TargetError(f"{self.kind} on {job.label} printed no timings ({exc}); its last lines: "
                              f"{tail}") from exc
        lat = parsed["latency_us"]
        step = manifest.get("mode") == "step"
        result = {
            "artifact": manifest.get("artifact", Path(job.artifact).name), "format": manifest.get("format"),
            "precision": manifest.get("precision"), "mode": manifest.get("mode"), "task": manifest.get("task"),
            "runtime": TOOLS[self.kind]["runtime"], "runtime_version": None, "runtime_package": self.kind,
            "tool": self.kind, "threads": int(job.threads), "runs": int(job.runs), "warmup": int(job.warmup),
            "load_s": parsed["load_s"], "first_inference_s": parsed["first_inference_s"],
            "latency_us": lat, "latency_unit": "frame" if step else "window",
            "throughput_per_s": parsed.get("throughput_per_s") or (1e6 / lat["mean"] if lat.get("mean") else None),
            "stream_us": None, "rss_mb": parsed["rss_mb"], "size_bytes": int(manifest["size_bytes"]),
            "tool_output_tail": "\n".join(text.strip().splitlines()[-40:]),
            "warnings": [f"measured by {self.kind} on random inputs: the bare interpreter call, without "
                         "edgernn's normalization and (de)quantization; no on-device parity on adb targets"],
        }
        if step:
            result["warnings"].append("step artifact: one tool run = one frame from the tool's own state inputs; "
                                      "streaming latency (stream_us) is not measured on adb targets")
        return result
