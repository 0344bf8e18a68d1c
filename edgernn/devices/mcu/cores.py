"""
The Cortex-M cores edgernn emulates and how: the QEMU board for each (Debian's qemu-system-arm), the
memory of that board the firmware is linked into, and the compiler flags for the core.

    CORES["cortex-m4"].machine        # "mps2-an386"
    check_tools()                     # MissingDependencyError with the apt-get line if a tool is missing

The emulated board's memory is not the real board's: a profile (edgernn/devices/boards/*.toml, transport
"mcu") gives the real flash and RAM, and an artifact that does not fit them is refused before it runs;
the emulator only needs room for it. Facts measured here (qemu 7.2, arm-none-eabi-gcc 12.2):
- mps2-an386 / mps2-an500: code memory at 0x0 (4 MB), data at 0x20000000 (4 MB);
- mps3-an547: ITCM at 0x0 (512 KB) holds the code; SRAM at 0x21000000 (4 MB) the data (its DTCM at
  0x20000000 is only 512 KB);
- SysTick runs on the processor clock (25 MHz on mps2, 32 MHz on mps3): with `-icount shift=0` one
  instruction is one ns of virtual time, so it ticks once per 40 (31.25) instructions. The firmware
  calibrates this itself with a loop of known length, so no clock is hard-coded here.
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path

from edgernn.errors import MissingDependencyError

APT = "apt-get install qemu-system-arm gcc-arm-none-eabi libnewlib-arm-none-eabi"


@dataclass(frozen=True)
class Core:
    name: str
    machine: str  # qemu-system-arm -M
    flags: tuple  # arm-none-eabi-gcc flags for the core (hard float: the FPU is enabled at reset)
    flash: tuple  # (origin, bytes) the firmware's code and constants are linked into
    ram: tuple  # (origin, bytes) for data, bss, heap and stack
    arch: str  # what the core implements, for tables
    dsp: bool  # the DSP extension (dual 16-bit MAC: SMLAD)


CORES = {
    "cortex-m4": Core("cortex-m4", "mps2-an386",
                      ("-mcpu=cortex-m4", "-mthumb", "-mfloat-abi=hard", "-mfpu=fpv4-sp-d16"),
                      (0x0, 4 << 20), (0x20000000, 4 << 20), "Armv7E-M + FPv4-SP", True),
    "cortex-m7": Core("cortex-m7", "mps2-an500",
                      ("-mcpu=cortex-m7", "-mthumb", "-mfloat-abi=hard", "-mfpu=fpv5-sp-d16"),
                      (0x0, 4 << 20), (0x20000000, 4 << 20), "Armv7E-M + FPv5-SP", True),
    "cortex-m55": Core("cortex-m55", "mps3-an547",
                       ("-mcpu=cortex-m55", "-mthumb", "-mfloat-abi=hard"),
                       (0x0, 512 << 10), (0x21000000, 4 << 20), "Armv8.1-M + MVE (Helium)", True),
}


def core(name: str) -> Core:
    from edgernn.errors import ConfigError

    if name not in CORES:
        raise ConfigError(f"unknown Cortex-M core {name!r}; edgernn emulates {', '.join(CORES)}")
    return CORES[name]


def check_tools() -> dict:
    """{"qemu": path, "gcc": path, "size": path} or MissingDependencyError naming the apt-get line. newlib
    (libnewlib-arm-none-eabi) is checked by its semihosting spec file, which the firmware links with."""
    found = {k: shutil.which(exe) for k, exe in (("qemu", "qemu-system-arm"), ("gcc", "arm-none-eabi-gcc"),
                                                 ("size", "arm-none-eabi-size"))}
    missing = [exe for k, exe in (("qemu", "qemu-system-arm"), ("gcc", "arm-none-eabi-gcc"),
                                  ("size", "arm-none-eabi-size")) if not found[k]]
    if not missing and not any(Path(d).is_file() for d in ("/usr/lib/arm-none-eabi/newlib/rdimon.specs",
                                                           "/usr/lib/arm-none-eabi/lib/rdimon.specs")):
        missing.append("newlib (rdimon.specs)")
    if missing:
        raise MissingDependencyError(f"emulating a Cortex-M needs {', '.join(missing)}: {APT} "
                                     "(`make mcu-deps` does it as root)")
    return found


def qemu_version(qemu: str) -> str:
    import subprocess

    try:
        out = subprocess.run([qemu, "--version"], capture_output=True, text=True, timeout=30).stdout
    except (OSError, subprocess.SubprocessError):
        return "?"
    first = (out.splitlines() or ["?"])[0]
    return first.replace("QEMU emulator version", "").strip()
