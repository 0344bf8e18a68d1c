"""
Board profiles: what a benchmark target is (CPU, cores, RAM, architecture) and how to reach it.

Profiles are TOML files: the packaged ones in edgernn/devices/boards/*.toml (rpi3b, rpi4, rpi5, rpi-zero-2w,
android-arm64, desktop), plus yours - a file path, or a directory named in $EDGERNN_BOARDS_DIR
(several joined with os.pathsep). A user profile with the name of a packaged one replaces it.

    from edgernn.devices.boards import list_boards, load_board
    load_board("rpi4")                    # packaged profile by name
    load_board("boards/my-pi.toml")       # your own file
    [b.name for b in list_boards()]

A profile file (every key below; unknown keys are an error, so a typo never passes silently):

    name = "rpi4"                         # defaults to the file name without .toml
    description = "Raspberry Pi 4 Model B"
    arch = "aarch64"                      # uname -m on the device; "any" = no check (desktop)
    cpu = "Broadcom BCM2711, 4x Cortex-A72 @ 1.5-1.8 GHz"
    cores = 4
    ram_mb = 4096
    transport = "ssh"                     # local | ssh | adb
    default_threads = 1
    runtimes = ["onnxruntime", "litert"]  # runtimes expected to be installable there
    install_hint = "python3 -m pip install numpy onnxruntime ai-edge-litert"   # run on the device
    python = "python3"                    # optional: the device's interpreter (e.g. a venv's python)
    qemu_cpu = "cortex-a72"               # optional: the core `bench --emulate` emulates (aarch64 boards)
    notes = "..."                         # optional

A microcontroller (transport = "mcu": C artifacts only, bare metal, run emulated with --emulate; see
docs/mcu.md) has instead of cores/ram_mb/threads/runtimes/install_hint:

    transport = "mcu"
    core = "cortex-m4"                    # the core edgernn.devices.mcu emulates: cortex-m4 | cortex-m7 | cortex-m55
    flash_kb = 1024                       # the board's flash and RAM: an artifact that does not fit is refused
    ram_kb = 128
    clock_mhz = 80                        # for the ESTIMATED time per inference (instructions / clock)
"""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path

from edgernn.errors import ConfigError, MissingDependencyError

PACKAGED_DIR = Path(__file__).resolve().parent / "boards"
ENV_DIRS = "EDGERNN_BOARDS_DIR"
TRANSPORTS = ("local", "ssh", "adb", "mcu")
KNOWN_RUNTIMES = ("onnxruntime", "litert")
# convenient names used in docs and the issue text
# qemu -cpu names -> (ARM "CPU part", /proc/cpuinfo Features) for the emulated /proc/cpuinfo. They matter:
# onnxruntime picks its int8 kernels from these Features (asimddp -> dot-product kernels), so a core's
# line must be what that core really has (the A72 and A53 lines are a Pi 4's and a Pi 3's; the A76 line a Pi 5's)
CORES = {
    "cortex-a53": ("0xd03", "fp asimd evtstrm crc32 cpuid"),
    "cortex-a72": ("0xd08", "fp asimd evtstrm crc32 cpuid"),
    "cortex-a76": ("0xd0b", "fp asimd evtstrm aes pmull sha1 sha2 crc32 atomics fphp asimdhp cpuid asimdrdm lrcpc "
                            "dcpop asimddp"),
    "neoverse-n1": ("0xd0c", "fp asimd evtstrm crc32 atomics fphp asimdhp cpuid asimdrdm lrcpc dcpop asimddp"),
}
# a failure on the board's core is re-checked on a core of another generation before blaming the model
SECOND_CORE = {"cortex-a53": "cortex-a72", "cortex-a72": "cortex-a53", "cortex-a76": "cortex-a72",
               "neoverse-n1": "cortex-a72"}

ALIASES = {"android": "android-arm64", "local": "desktop", "pi": "rpi4"}
# `uname -m` spellings of the same architecture
ARCH_SYNONYMS = {"arm64": "aarch64", "armv8l": "aarch64", "amd64": "x86_64", "x64": "x86_64",
                 "armv7": "armv7l", "armhf": "armv7l", "i686": "x86", "i386": "x86"}


@dataclass
class Board:
    name: str
    description: str
    arch: str
    cpu: str
    cores: int
    ram_mb: int
    transport: str
    default_threads: int
    runtimes: list = field(default_factory=list)
    install_hint: str = ""
    python: str = "python3"
    qemu_cpu: str = ""  # the core `--emulate` runs under qemu (one of CORES above); aarch64 ssh boards
    notes: str = ""
    core: str = ""  # mcu boards: the Cortex-M core (edgernn.devices.mcu.cores.CORES)
    flash_kb: int = 0
    ram_kb: int = 0
    clock_mhz: float = 0.0
    path: str = ""  # where the profile was read from (not a TOML key)

    def to_dict(self) -> dict:
        return asdict(self)

    def arch_matches(self, machine) -> bool:
        """True if the device's `uname -m` is this profile's architecture (or the profile says "any")."""
        return arch_matches(self.arch, machine)


REQUIRED = ("description", "arch", "cpu", "cores", "ram_mb", "transport", "default_threads", "runtimes",
            "install_hint")
REQUIRED_MCU = ("description", "arch", "cpu", "transport", "core", "flash_kb", "ram_kb", "clock_mhz")
MCU_DEFAULTS = {"cores": 1, "ram_mb": 0, "default_threads": 1, "runtimes": [], "install_hint": ""}
VALID_KEYS = tuple(f.name for f in fields(Board) if f.name != "path")


def normalize_arch(machine) -> str:
    m = str(machine or "").strip().lower()
    return ARCH_SYNONYMS.get(m, m)


def arch_matches(expected, machine) -> bool:
    if not expected or str(expected).lower() == "any" or not machine:
        return True
    return normalize_arch(expected) == normalize_arch(machine)


def _local_ram_mb() -> int:
    from edgernn.runtimes.fingerprint import parse_meminfo

    try:
        with open("/proc/meminfo") as f:
            return parse_meminfo(f.read())["ram_mb"] or 0
    except OSError:
        return 0


def _toml():
    try:
        import tomllib  # Python >= 3.11

        return tomllib
    except ImportError:  # pragma: no cover - Python 3.10
        try:
            import tomli

            return tomli
        except ImportError:
            raise MissingDependencyError(
                "reading board profiles on Python 3.10 needs tomli; install it with: pip install tomli"
            ) from None


def _check(data: dict, src: str, default_name: str) -> Board:
    unknown = sorted(set(data) - set(VALID_KEYS))
    if unknown:
        raise ConfigError(f"board profile {src}: unknown key(s) {', '.join(map(repr, unknown))}; "
                          f"valid keys: {', '.join(VALID_KEYS)}")
    required = REQUIRED_MCU if data.get("transport") == "mcu" else REQUIRED
    missing = [k for k in required if k not in data]
    if missing:
        raise ConfigError(f"board profile {src}: missing key(s) {', '.join(missing)}; "
                          f"a profile needs: {', '.join(required)}")
    data = dict(data)
    data.setdefault("name", default_name)
    if data["transport"] == "mcu":
        return _check_mcu(data, src)
    for key in ("name", "description", "arch", "cpu", "transport", "install_hint", "python", "qemu_cpu", "notes"):
        if key in data and not isinstance(data[key], str):
            raise ConfigError(f"board profile {src}: {key} must be a string, got {data[key]!r}")
    if data["transport"] not in TRANSPORTS:
        raise ConfigError(f"board profile {src}: transport {data['transport']!r} is not one of "
                          f"{', '.join(TRANSPORTS)}")
    for key in ("cores", "ram_mb", "default_threads"):
        v = data[key]
        # 0 = "this machine's, detected when the profile is read" (local boards only)
        lowest = 0 if data["transport"] == "local" and key != "default_threads" else 1
        if isinstance(v, bool) or not isinstance(v, int) or v < lowest:
            raise ConfigError(f"board profile {src}: {key} must be an integer >= {lowest}, got {v!r}")
    if data["transport"] == "local":
        if data["cores"] == 0:
            data["cores"] = os.cpu_count() or 1
        if data["ram_mb"] == 0:
            data["ram_mb"] = _local_ram_mb()
    if data.get("qemu_cpu"):
        if data["qemu_cpu"] not in CORES:
            raise ConfigError(f"board profile {src}: qemu_cpu {data['qemu_cpu']!r} is not one of {', '.join(CORES)}")
        if normalize_arch(data["arch"]) != "aarch64":
            raise ConfigError(f"board profile {src}: qemu_cpu is for aarch64 boards, this one is {data['arch']}")
    rts = data["runtimes"]
    if not isinstance(rts, list) or not all(isinstance(r, str) for r in rts):
        raise ConfigError(f"board profile {src}: runtimes must be a list of names, got {rts!r}")
    bad = [r for r in rts if r not in KNOWN_RUNTIMES]
    if bad:
        raise ConfigError(f"board profile {src}: unknown runtime(s) {', '.join(bad)}; "
                          f"choose from: {', '.join(KNOWN_RUNTIMES)}")
    if not data["name"] or any(c in data["name"] for c in "/\\ \t\n"):
        raise ConfigError(f"board profile {src}: name {data['name']!r} must be non-empty without spaces or "
                          "slashes (it becomes part of the bench-<name>.json file name)")
    return Board(**data, path=src)


def _check_mcu(data: dict, src: str) -> Board:
    from edgernn.devices.mcu.cores import CORES

    for key, value in MCU_DEFAULTS.items():
        if key in data and data[key] != value:
            raise ConfigError(f"board profile {src}: {key} does not apply to a microcontroller (transport mcu)")
        data[key] = value
    for key in ("name", "description", "arch", "cpu", "core", "notes"):
        if key in data and not isinstance(data[key], str):
            raise ConfigError(f"board profile {src}: {key} must be a string, got {data[key]!r}")
    if data["core"] not in CORES:
        raise ConfigError(f"board profile {src}: core {data['core']!r} is not one of {', '.join(CORES)}")
    for key in ("flash_kb", "ram_kb", "clock_mhz"):
        v = data[key]
        if isinstance(v, bool) or not isinstance(v, (int, float)) or v <= 0:
            raise ConfigError(f"board profile {src}: {key} must be a number > 0, got {v!r}")
    if not data["name"] or any(c in data["name"] for c in "/\\ \t\n"):
        raise ConfigError(f"board profile {src}: name {data['name']!r} must be non-empty without spaces or slashes")
    return Board(**data, path=src)


def read_board_file(path) -> Board:
    """Parse and validate one profile file."""
    p = Path(path)
    try:
        raw = p.read_bytes()
    except OSError as exc:
        raise ConfigError(f"cannot read board profile {p}: {exc.strerror or exc}") from exc
    toml = _toml()
    try:
        data = toml.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, toml.TOMLDecodeError) as exc:
        raise ConfigError(f"board profile {p} is not valid TOML ({exc}); see docs/targets.md for the format") from exc
    return _check(data, str(p), p.stem)


def _dirs(extra_dirs=()) -> list[Path]:
    dirs = [PACKAGED_DIR]
    env = os.environ.get(ENV_DIRS, "")
    dirs += [Path(d).expanduser() for d in env.split(os.pathsep) if d.strip()]
    dirs += [Path(d).expanduser() for d in extra_dirs]
    return dirs


def list_boards(extra_dirs=()) -> list[Board]:
    """Packaged profiles, then $EDGERNN_BOARDS_DIR, then extra_dirs; a later file with the same name
    replaces an earlier one. Sorted by name. A bad user file raises ConfigError naming it."""
    found: dict[str, Board] = {}
    for i, d in enumerate(_dirs(extra_dirs)):
        if not d.is_dir():
            if i > 0:
                raise ConfigError(f"board profile directory {d} (from ${ENV_DIRS} or extra_dirs) does not exist")
            continue
        for f in sorted(d.glob("*.toml")):
            b = read_board_file(f)
            found[b.name] = b
    return sorted(found.values(), key=lambda b: b.name)


def load_board(name_or_path, extra_dirs=()) -> Board:
    """A profile by name (packaged or user) or by path to a .toml file."""
    if isinstance(name_or_path, Board):
        return name_or_path
    s = str(name_or_path)
    p = Path(s).expanduser()
    if s.endswith(".toml") or os.sep in s or (os.altsep and os.altsep in s):
        if not p.is_file():
            raise ConfigError(f"board profile file {p} does not exist")
        return read_board_file(p)
    boards = {b.name: b for b in list_boards(extra_dirs)}
    name = s if s in boards else ALIASES.get(s, s)
    if name not in boards:
        raise ConfigError(f"unknown board {s!r}; choose one of: {', '.join(boards)} "
                          f"(or give a path to your own profile .toml, or set ${ENV_DIRS})")
    return boards[name]
