"""
Tests for board profiles (edgernn.devices.boards): the packaged profiles and their specs, user profiles by path
and from $EDGERNN_BOARDS_DIR, and every validation error (unknown key, missing key, bad values, bad TOML).

    .venv/bin/pytest tests/test_boards.py
"""

from __future__ import annotations

import os

import pytest

from edgernn.devices.boards import (
    ALIASES,
    VALID_KEYS,
    Board,
    arch_matches,
    list_boards,
    load_board,
    normalize_arch,
    read_board_file,
)
from edgernn.errors import ConfigError

GOOD = """\
name = "my-pi"
description = "my Pi 4 with a venv"
arch = "aarch64"
cpu = "4x Cortex-A72 @ 1.8 GHz"
cores = 4
ram_mb = 8192
transport = "ssh"
default_threads = 2
runtimes = ["onnxruntime"]
install_hint = "~/venv/bin/pip install numpy onnxruntime"
python = "~/venv/bin/python"
"""


@pytest.fixture(autouse=True)
def no_user_dirs(monkeypatch):
    monkeypatch.delenv("EDGERNN_BOARDS_DIR", raising=False)


def test_packaged_boards_exist_with_real_specs():
    boards = {b.name: b for b in list_boards()}
    assert {"rpi3b", "rpi4", "rpi5", "rpi-zero-2w", "android-arm64", "desktop"} <= set(boards)
    rpi4, rpi5, rpi3, zero, android, desk = (boards[n] for n in ("rpi4", "rpi5", "rpi3b", "rpi-zero-2w",
                                                                 "android-arm64", "desktop"))
    assert (rpi4.arch, rpi4.cores, rpi4.transport) == ("aarch64", 4, "ssh") and "Cortex-A72" in rpi4.cpu
    assert "1.5" in rpi4.cpu and "1.8" in rpi4.cpu
    assert "Cortex-A76" in rpi5.cpu and "2.4 GHz" in rpi5.cpu
    assert "Cortex-A53" in rpi3.cpu and "1.2 GHz" in rpi3.cpu and rpi3.ram_mb == 1024
    assert "Cortex-A53" in zero.cpu and "1 GHz" in zero.cpu and zero.ram_mb == 512
    assert android.transport == "adb" and android.arch == "aarch64"
    assert desk.transport == "local" and desk.arch == "any"
    assert desk.cores == os.cpu_count() and desk.ram_mb > 0  # 0 in the file = detected
    for b in boards.values():
        if b.transport == "mcu":  # microcontrollers run C bare metal (emulated): a core, flash, RAM and clock
            assert b.core in {"cortex-m4", "cortex-m7", "cortex-m55"} and b.description and b.cpu
            assert b.flash_kb >= 256 and b.ram_kb >= 64 and b.clock_mhz >= 25 and not b.runtimes
            continue
        assert b.default_threads >= 1 and b.runtimes and b.install_hint and b.description
        assert set(b.runtimes) <= {"onnxruntime", "litert"}
    mcus = {n: b for n, b in boards.items() if b.transport == "mcu"}
    assert {"cortex-m4", "cortex-m7", "cortex-m55", "nucleo-l476rg", "nrf52840-dk"} <= set(mcus)
    assert (mcus["nucleo-l476rg"].flash_kb, mcus["nucleo-l476rg"].ram_kb, mcus["nucleo-l476rg"].clock_mhz) == \
        (1024, 128, 80)
    for b in (rpi3, rpi4, rpi5, zero):  # the exact line to run on the device
        assert "pip install numpy onnxruntime ai-edge-litert" in b.install_hint
        assert b.python.endswith("/bin/python")


def test_load_by_name_alias_and_dataclass_dict():
    b = load_board("rpi4")
    assert isinstance(b, Board) and b.to_dict()["name"] == "rpi4"
    assert load_board("android").name == ALIASES["android"] == "android-arm64"
    assert load_board(b) is b


def test_unknown_board_lists_the_valid_ones():
    with pytest.raises(ConfigError) as e:
        load_board("rpi9")
    msg = str(e.value)
    assert "'rpi9'" in msg and "rpi4" in msg and "desktop" in msg and "EDGERNN_BOARDS_DIR" in msg


def test_user_profile_by_path(tmp_path):
    f = tmp_path / "mine.toml"
    f.write_text(GOOD)
    b = load_board(str(f))
    assert (b.name, b.default_threads, b.runtimes, b.python, b.path) == ("my-pi", 2, ["onnxruntime"],
                                                                          "~/venv/bin/python", str(f))
    f2 = tmp_path / "nameless.toml"
    f2.write_text(GOOD.replace('name = "my-pi"\n', ""))
    assert load_board(str(f2)).name == "nameless"  # defaults to the file name
    with pytest.raises(ConfigError, match="does not exist"):
        load_board(str(tmp_path / "missing.toml"))


def test_unknown_key_names_it_and_the_valid_keys(tmp_path):
    f = tmp_path / "typo.toml"
    f.write_text(GOOD + 'defualt_threads = 4\n')
    with pytest.raises(ConfigError) as e:
        read_board_file(f)
    msg = str(e.value)
    assert "'defualt_threads'" in msg and str(f) in msg
    for k in VALID_KEYS:
        assert k in msg


@pytest.mark.parametrize("edit, needle", [
    (lambda s: s.replace('cores = 4\n', ''), "missing key(s) cores"),
    (lambda s: s.replace('transport = "ssh"', 'transport = "telnet"'), "transport 'telnet'"),
    (lambda s: s.replace('cores = 4', 'cores = "four"'), "cores must be an integer"),
    (lambda s: s.replace('cores = 4', 'cores = 0'), "cores must be an integer >= 1"),
    (lambda s: s.replace('default_threads = 2', 'default_threads = true'), "default_threads must be"),
    (lambda s: s.replace('runtimes = ["onnxruntime"]', 'runtimes = ["tensorrt"]'), "unknown runtime(s) tensorrt"),
    (lambda s: s.replace('runtimes = ["onnxruntime"]', 'runtimes = "onnxruntime"'), "runtimes must be a list"),
    (lambda s: s.replace('name = "my-pi"', 'name = "my pi"'), "without spaces"),
    (lambda s: s.replace('arch = "aarch64"', 'arch = 64'), "arch must be a string"),
    (lambda s: s + "this is = not toml =\n", "not valid TOML"),
])
def test_invalid_profiles(tmp_path, edit, needle):
    f = tmp_path / "bad.toml"
    f.write_text(edit(GOOD))
    with pytest.raises(ConfigError) as e:
        load_board(str(f))
    assert needle in str(e.value)


def test_boards_dir_env_adds_and_overrides(tmp_path, monkeypatch):
    d = tmp_path / "boards"
    d.mkdir()
    (d / "my-pi.toml").write_text(GOOD)
    (d / "rpi4.toml").write_text(GOOD.replace('name = "my-pi"', 'name = "rpi4"').replace("ram_mb = 8192",
                                                                                       "ram_mb = 2048"))
    monkeypatch.setenv("EDGERNN_BOARDS_DIR", str(d))
    names = [b.name for b in list_boards()]
    assert names == sorted(names) and "my-pi" in names and names.count("rpi4") == 1
    assert load_board("rpi4").ram_mb == 2048 and load_board("rpi4").path == str(d / "rpi4.toml")
    assert load_board("my-pi").default_threads == 2
    monkeypatch.setenv("EDGERNN_BOARDS_DIR", str(tmp_path / "nope"))
    with pytest.raises(ConfigError, match="does not exist"):
        list_boards()


def test_a_broken_user_file_is_named(tmp_path):
    (tmp_path / "broken.toml").write_text(GOOD + "colour = 'red'\n")
    with pytest.raises(ConfigError, match="broken.toml.*'colour'"):
        list_boards(extra_dirs=[tmp_path])


def test_arch_matching():
    assert arch_matches("aarch64", "aarch64") and arch_matches("aarch64", "arm64")
    assert arch_matches("x86_64", "AMD64") and arch_matches("any", "riscv64") and arch_matches("aarch64", None)
    assert not arch_matches("aarch64", "x86_64") and not arch_matches("aarch64", "armv7l")
    assert normalize_arch("arm64") == "aarch64"
    assert load_board("rpi4").arch_matches("arm64") and not load_board("rpi4").arch_matches("x86_64")
