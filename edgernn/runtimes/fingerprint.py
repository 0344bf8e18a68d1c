"""
Machine fingerprint: what a benchmark ran on (standard library only: it is pushed to devices).

Runs on the desktop and on a device (Raspberry Pi over SSH) before and after a benchmark, so a result
says which CPU, how much RAM, which OS/Python/runtime versions, the CPU frequency governor and, on a
Raspberry Pi, the SoC temperature and whether the firmware throttled the CPU (`vcgencmd`).

    python3 edgernn/runtimes/fingerprint.py        # prints JSON (works without numpy installed)
    python -m edgernn.runtimes.fingerprint         # same, when edgernn (and so numpy) is importable
    python3 edgernn/runtimes/fingerprint.py --require numpy --require "ai_edge_litert|tflite_runtime"
                                                   # + "imports": can this python import them?
    ssh pi@raspberrypi.local python3 - --require numpy < edgernn/runtimes/fingerprint.py   # no copy needed

    from edgernn.runtimes.fingerprint import fingerprint
    fp = fingerprint()   # {"arch": "aarch64", "cpu_model": "4x Cortex-A72", "ram_mb": 3793, ...}

Every field that cannot be read on this machine is null, never a guess. Package versions are read from
installed metadata without importing the packages (importing tensorflow on a Pi takes seconds).
"""

from __future__ import annotations

import json
import os
import platform
import re
import shutil
import subprocess
import sys
import time

# ARM implementer 0x41 part numbers -> core names (the same table the kernel's cputype.h and lscpu use);
# aarch64 /proc/cpuinfo has no "model name" line, only these numbers
ARM_PARTS = {
    "0xd03": "Cortex-A53", "0xd04": "Cortex-A35", "0xd05": "Cortex-A55", "0xd07": "Cortex-A57",
    "0xd08": "Cortex-A72", "0xd09": "Cortex-A73", "0xd0a": "Cortex-A75", "0xd0b": "Cortex-A76",
    "0xd0c": "Neoverse-N1", "0xd0d": "Cortex-A77", "0xd41": "Cortex-A78", "0xd44": "Cortex-X1",
    "0xd46": "Cortex-A510", "0xd47": "Cortex-A710", "0xd48": "Cortex-X2", "0xd4d": "Cortex-A715",
    "0xd4e": "Cortex-X3", "0xd80": "Cortex-A520", "0xd81": "Cortex-A720", "0xd82": "Cortex-X4",
}

# vcgencmd get_throttled bits (Raspberry Pi firmware documentation)
THROTTLE_BITS = {
    0: "under-voltage detected now",
    1: "ARM frequency capped now",
    2: "throttled now",
    3: "soft temperature limit active now",
    16: "under-voltage has occurred since boot",
    17: "ARM frequency capping has occurred since boot",
    18: "throttling has occurred since boot",
    19: "soft temperature limit has occurred since boot",
}

# distribution names whose versions are recorded (metadata only, nothing is imported)
PACKAGES = ("numpy", "onnxruntime", "ai-edge-litert", "tflite-runtime", "tensorflow", "tensorflow-cpu", "torch")

CPUFREQ = "/sys/devices/system/cpu/cpu0/cpufreq"


def _read(path: str):
    try:
        with open(path, encoding="utf-8", errors="replace") as f:
            return f.read()
    except OSError:
        return None


# ---- parsers (pure functions: also used on text fetched from a device over adb) --------------------
def parse_cpuinfo(text) -> dict:
    """/proc/cpuinfo -> {"cpu_model", "board_model", "hardware"}. x86 has "model name"; aarch64 has
    "CPU part" numbers (mapped to Cortex names, big.LITTLE listed as e.g. "4x Cortex-A55 + 4x Cortex-A76")
    and, on a Raspberry Pi, "Model" (the board) and "Hardware"."""
    out = {"cpu_model": None, "board_model": None, "hardware": None}
    if not text:
        return out
    names, parts = [], []
    for line in text.splitlines():
        if ":" not in line:
            continue
        key, _, value = line.partition(":")
        key, value = key.strip().lower(), value.strip()
        if key == "model name" and value:
            names.append(value)
        elif key == "cpu part" and value:
            parts.append(value.lower())
        elif key == "model" and value and not value.isdigit():  # x86 "model : 17" is a number, a Pi's is a name
            out["board_model"] = value
        elif key == "hardware" and value:
            out["hardware"] = value
    if names and not all(n.lower().startswith("arm") and "processor" in n.lower() for n in names):
        out["cpu_model"] = _count_join(names)
    elif parts:
        out["cpu_model"] = _count_join([ARM_PARTS.get(p, f"ARM part {p}") for p in parts])
    elif names:
        out["cpu_model"] = _count_join(names)
    return out


def _count_join(items: list) -> str:
    """['A', 'A', 'B'] -> 'A' if all equal, else '2x A + 1x B' (first-seen order)."""
    counts: dict = {}
    for it in items:
        counts[it] = counts.get(it, 0) + 1
    if len(counts) == 1:
        return items[0]
    return " + ".join(f"{n}x {name}" for name, n in counts.items())


def parse_meminfo(text) -> dict:
    """/proc/meminfo -> {"ram_mb": MemTotal, "ram_available_mb": MemAvailable} in MiB (int or None)."""
    out = {"ram_mb": None, "ram_available_mb": None}
    for line in (text or "").splitlines():
        m = re.match(r"(MemTotal|MemAvailable):\s+(\d+)\s*kB", line)
        if m:
            out["ram_mb" if m.group(1) == "MemTotal" else "ram_available_mb"] = int(m.group(2)) // 1024
    return out


def parse_os_release(text):
    """/etc/os-release -> PRETTY_NAME (or NAME VERSION), None if absent."""
    fields = {}
    for line in (text or "").splitlines():
        if "=" in line and not line.startswith("#"):
            k, _, v = line.partition("=")
            fields[k.strip()] = v.strip().strip('"').strip("'")
    if fields.get("PRETTY_NAME"):
        return fields["PRETTY_NAME"]
    name = " ".join(x for x in (fields.get("NAME"), fields.get("VERSION")) if x)
    return name or None


def parse_vcgencmd_temp(text):
    """`vcgencmd measure_temp` output "temp=48.3'C" -> 48.3 (None if unparsable)."""
    m = re.search(r"temp=\s*(-?\d+(?:\.\d+)?)", text or "")
    return float(m.group(1)) if m else None


def parse_throttled(text):
    """`vcgencmd get_throttled` output "throttled=0x50000" -> ("0x50000", 327680); (None, None) if unparsable."""
    m = re.search(r"throttled=\s*(0x[0-9a-fA-F]+|\d+)", text or "")
    if not m:
        return None, None
    raw = m.group(1)
    return raw, int(raw, 16) if raw.lower().startswith("0x") else int(raw)


def decode_throttled(value) -> list:
    """Bit field of get_throttled -> the firmware's meaning of each set bit (empty list for 0)."""
    if not value:
        return []
    return [text for bit, text in sorted(THROTTLE_BITS.items()) if value & (1 << bit)]


def parse_thermal_millic(text):
    """/sys/class/thermal/thermal_zone0/temp ("48312", millidegrees C) -> 48.3."""
    try:
        return round(int((text or "").strip()) / 1000.0, 1)
    except ValueError:
        return None


def _int_or_none(text):
    try:
        return int((text or "").strip())
    except ValueError:
        return None


# ---- collectors ---------------------------------------------------------------------------------------
def _vcgencmd(*args):
    exe = shutil.which("vcgencmd") or next((p for p in ("/usr/bin/vcgencmd", "/opt/vc/bin/vcgencmd")
                                            if os.access(p, os.X_OK)), None)
    if exe is None:
        return None
    try:
        res = subprocess.run([exe, *args], capture_output=True, text=True, timeout=5)
    except (OSError, subprocess.SubprocessError):
        return None
    return res.stdout if res.returncode == 0 else None


def package_versions(names=PACKAGES) -> dict:
    """Installed versions from package metadata (no imports); None where not installed."""
    try:
        import importlib.metadata as md
    except ImportError:  # pragma: no cover - Python < 3.8
        return {n: None for n in names}
    out = {}
    for n in names:
        try:
            out[n] = md.version(n)
        except Exception:  # PackageNotFoundError, or broken metadata
            out[n] = None
    return out


def fingerprint() -> dict:
    """Everything readable about this machine now (see the module docstring). Never raises."""
    u = platform.uname()
    cpu = parse_cpuinfo(_read("/proc/cpuinfo"))
    if cpu["cpu_model"] is None:
        cpu["cpu_model"] = platform.processor() or None
    if cpu["board_model"] is None:
        dt = _read("/sys/firmware/devicetree/base/model") or _read("/proc/device-tree/model")
        cpu["board_model"] = dt.strip("\x00\n ") if dt else None
    mem = parse_meminfo(_read("/proc/meminfo"))
    try:
        available = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        available = None
    temp_text = _vcgencmd("measure_temp")
    throttled_text = _vcgencmd("get_throttled")
    temperature, temp_source = parse_vcgencmd_temp(temp_text), "vcgencmd" if temp_text else None
    if temperature is None:
        temperature = parse_thermal_millic(_read("/sys/class/thermal/thermal_zone0/temp"))
        temp_source = "thermal_zone0" if temperature is not None else None
    throttled_raw, throttled_value = parse_throttled(throttled_text)
    cur_khz = _int_or_none(_read(f"{CPUFREQ}/scaling_cur_freq"))
    max_khz = _int_or_none(_read(f"{CPUFREQ}/cpuinfo_max_freq"))
    governor = _read(f"{CPUFREQ}/scaling_governor")
    try:
        load = [round(x, 2) for x in os.getloadavg()]
    except (AttributeError, OSError):
        load = None
    return {
        "time_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "hostname": u.node,
        "uname": " ".join(x for x in (u.system, u.node, u.release, u.version, u.machine) if x),
        "system": u.system,
        "kernel": u.release,
        "arch": u.machine,
        "machine": u.machine,
        "cpu_model": cpu["cpu_model"],
        "board_model": cpu["board_model"],
        "hardware": cpu["hardware"],
        "cores": os.cpu_count(),
        "cores_available": available,
        "ram_mb": mem["ram_mb"],
        "ram_available_mb": mem["ram_available_mb"],
        "os": parse_os_release(_read("/etc/os-release")) or f"{u.system} {u.release}",
        "python": platform.python_version(),
        "python_executable": sys.executable,
        "packages": package_versions(),
        "governor": governor.strip() if governor else None,
        "cpu_mhz": round(cur_khz / 1000) if cur_khz else None,
        "cpu_max_mhz": round(max_khz / 1000) if max_khz else None,
        "loadavg": load,
        "temperature_c": temperature,
        "temperature_source": temp_source,
        "throttled": throttled_raw,
        "throttled_flags": decode_throttled(throttled_value) if throttled_raw is not None else None,
        "vcgencmd": temp_text is not None or throttled_text is not None,
    }


def check_imports(requirements) -> dict:
    """Try to import each requirement ("numpy", or alternatives "ai_edge_litert|tflite_runtime"):
    {requirement: {"ok": bool, "module": the one that imported, "version": str|None, "error": str|None}}.
    Unlike fingerprint(), this really imports (a broken install fails here, not in the middle of a run)."""
    import importlib

    out = {}
    for req in requirements:
        errors = []
        for mod in [m for m in req.split("|") if m]:
            try:
                m = importlib.import_module(mod)
            except Exception as exc:  # ImportError, or a binary wheel that fails to load
                errors.append(f"{mod}: {type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}")
                continue
            out[req] = {"ok": True, "module": mod, "version": getattr(m, "__version__", None), "error": None}
            break
        else:
            out[req] = {"ok": False, "module": None, "version": None, "error": "; ".join(errors)}
    return out


def main(argv=None) -> int:
    import argparse

    ap = argparse.ArgumentParser(prog="python3 edgernn/runtimes/fingerprint.py",
                                 description="Print this machine's fingerprint as JSON.")
    ap.add_argument("--require", action="append", default=[], metavar="MOD[|ALT...]",
                    help="also try importing MOD (or the first importable ALT); results under \"imports\"")
    args = ap.parse_args(argv)
    fp = fingerprint()
    if args.require:
        fp["imports"] = check_imports(args.require)
    print(json.dumps(fp, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
