"""
Host-side builds of C artifacts for other machines: the warning-free check on every compiler installed,
the Cortex-M4 flash/RAM of an artifact, and libraries cross-compiled for a device (so the device needs
no compiler). The runtime build for THIS machine lives in edgernn.runtimes.c_backend.

    checks = compile_checks(Path("step-int8.h"), "gru_step_int8")   # {"gcc": {...}, "clang": {...}, ...}
    sizes = target_sizes(Path("step-int8.h"), "gru_step_int8")      # {"cortex-m4": {"flash_bytes": ...}}
    cross_library(Path("step-int8.h"), manifest, "aarch64", out)     # aarch64-linux-gnu-gcc -> out

Compilers (Debian packages): gcc, clang, gcc-aarch64-linux-gnu, gcc-arm-none-eabi + libnewlib-arm-none-eabi
(`make system-deps` installs them). A compiler that is not installed is reported as skipped, with the package.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import tempfile
from pathlib import Path

from edgernn.errors import ExportError, MissingDependencyError

STRICT = ["-std=c99", "-Wall", "-Wextra", "-Werror", "-pedantic"]
CORTEX_M4 = ["-mcpu=cortex-m4", "-mthumb", "-mfloat-abi=hard", "-mfpu=fpv4-sp-d16", "-Os"]
# name -> (executable, extra flags, Debian package)
COMPILERS = {
    "gcc": ("gcc", ["-O2"], "gcc"),
    "clang": ("clang", ["-O2"], "clang"),
    "aarch64-linux-gnu-gcc": ("aarch64-linux-gnu-gcc", ["-O2"], "gcc-aarch64-linux-gnu"),
    "arm-none-eabi-gcc": ("arm-none-eabi-gcc", CORTEX_M4, "gcc-arm-none-eabi libnewlib-arm-none-eabi"),
}
CROSS = {"aarch64": ("aarch64-linux-gnu-gcc", "gcc-aarch64-linux-gnu"),
         "armv7l": ("arm-linux-gnueabihf-gcc", "gcc-arm-linux-gnueabihf")}


def _unit(header: Path, prefix: str, tmp: Path) -> Path:
    """A translation unit that compiles the implementation (and calls nothing: only the library's code)."""
    shutil.copyfile(header, tmp / "model.h")
    unit = tmp / "unit.c"
    unit.write_text(f'#define {prefix.upper()}_IMPLEMENTATION\n#include "model.h"\n')
    return unit


def compile_checks(header: Path, prefix: str, compilers=None) -> dict:
    """Compile the artifact with -std=c99 -Wall -Wextra -Werror -pedantic under every compiler of
    COMPILERS that is installed: {name: {"version", "flags", "clean": bool, "error"}} or {"skipped": why}."""
    from edgernn.runtimes.c_backend import compiler_id

    out = {}
    with tempfile.TemporaryDirectory(prefix="edgernn-cchk-") as tmp:
        tmp = Path(tmp)
        unit = _unit(header, prefix, tmp)
        for name in compilers or COMPILERS:
            exe, extra, pkg = COMPILERS[name]
            path = shutil.which(exe)
            if not path:
                out[name] = {"skipped": f"{exe} is not installed (apt-get install {pkg})"}
                continue
            flags = STRICT + extra
            proc = subprocess.run([path, *flags, "-c", "-o", str(tmp / f"{name}.o"), str(unit)],
                                  capture_output=True, text=True, timeout=300)
            res = {"version": compiler_id(path), "flags": " ".join(flags), "clean": proc.returncode == 0
                   and not proc.stderr.strip()}
            if not res["clean"]:
                res["error"] = (proc.stderr.strip().splitlines() or ["exit code %d" % proc.returncode])[0][:300]
            out[name] = res
    return out


def target_sizes(header: Path, prefix: str) -> dict:
    """{"cortex-m4": {"flash_bytes", "ram_static_bytes", "stack_bytes_upper", "text", "data", "bss", "flags"}}
    from arm-none-eabi-gcc -Os and arm-none-eabi-size: flash = .text (code + const weights) + .data, static
    RAM = .data + .bss (0: no globals). The stack bound is the sum of every function's frame (-fstack-usage),
    an upper bound on any call chain. Or {"cortex-m4": {"skipped": why}} without the toolchain."""
    exe, flags, pkg = COMPILERS["arm-none-eabi-gcc"]
    gcc, size = shutil.which(exe), shutil.which("arm-none-eabi-size")
    if not gcc or not size:
        return {"cortex-m4": {"skipped": f"arm-none-eabi-gcc is not installed (apt-get install {pkg})"}}
    with tempfile.TemporaryDirectory(prefix="edgernn-cm4-") as tmp:
        tmp = Path(tmp)
        unit = _unit(header, prefix, tmp)
        obj = tmp / "unit.o"
        proc = subprocess.run([gcc, "-std=c99", *flags, "-fstack-usage", "-c", "-o", str(obj), str(unit)],
                              capture_output=True, text=True, timeout=300, cwd=tmp)
        if proc.returncode != 0:
            first = (proc.stderr.splitlines() or ["?"])[0]
            raise ExportError(f"{header.name} does not compile for Cortex-M4 ({first})")
        berkeley = subprocess.run([size, str(obj)], capture_output=True, text=True, timeout=60).stdout.splitlines()
        text, data, bss = (int(v) for v in berkeley[-1].split()[:3])
        su = tmp / "unit.su"
        frames = [int(m.group(1)) for m in re.finditer(r"\t(\d+)\t", su.read_text())] if su.is_file() else []
    return {"cortex-m4": {"flash_bytes": text + data, "ram_static_bytes": data + bss,
                          "stack_bytes_upper": sum(frames) if frames else None, "text": text, "data": data,
                          "bss": bss, "flags": " ".join(["-std=c99", *flags])}}


def cross_library(header: Path, manifest: dict, machine: str, out: Path) -> Path:
    """The runtime library for a device of another architecture, built here with its cross compiler (no
    -march=native: the device's CPU is not this one's)."""
    from edgernn.runtimes.c_backend import build_library

    if machine not in CROSS:
        raise MissingDependencyError(f"no cross compiler known for {machine}: install a C compiler on the device")
    exe, pkg = CROSS[machine]
    path = shutil.which(exe)
    if not path:
        raise MissingDependencyError(f"C artifacts for an {machine} device are cross-compiled here with {exe}; install "
                                     f"it: apt-get install {pkg}")
    return build_library(header, manifest, out, cc=path, flags=[])
