"""
Writing files so that a reader never sees half of one: a temp file in the same directory, then rename.

Standard library + numpy only (device apps and the bench worker embed this). The one home for atomic
writes and the writability check: the run directory, exporters, reports and the worker all call these.

    atomic_write_json(run_dir / "parity.json", report)
    ensure_writable_dir(out_dir, hint="choose another with --out")   # ExportError-free: raises OSError text
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import sys
import tempfile
from pathlib import Path


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def atomic_write_bytes(path: Path | str, data: bytes) -> None:
    """Write `data` to `path` via a temp file in the same directory + os.replace: never a half file.
    The file gets the user's normal permissions (0666 & ~umask; mkstemp alone would make it 0600)."""
    path = Path(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.chmod(tmp, 0o666 & ~_umask())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def atomic_write_text(path: Path | str, text: str) -> None:
    atomic_write_bytes(path, text.encode("utf-8"))


def atomic_write_json(path: Path | str, obj) -> None:
    atomic_write_text(path, json.dumps(obj, indent=2) + "\n")


def atomic_copy(src: Path | str, dst: Path | str) -> None:
    atomic_write_bytes(dst, Path(src).read_bytes())


def atomic_save_npy(path: Path | str, arr) -> None:
    import numpy as np

    buf = io.BytesIO()
    np.save(buf, arr)
    atomic_write_bytes(path, buf.getvalue())


def atomic_save_npz(path: Path | str, **arrays) -> None:
    import numpy as np

    buf = io.BytesIO()
    np.savez_compressed(buf, **arrays)
    atomic_write_bytes(path, buf.getvalue())


def writable_dir_problem(d: Path | str) -> str | None:
    """Create `d` if needed and probe it with a temp file. None when writable, else why not (strerror)."""
    d = Path(d)
    try:
        d.mkdir(parents=True, exist_ok=True)
        fd, probe = tempfile.mkstemp(dir=d, prefix=".write-test-")
        os.close(fd)
        os.unlink(probe)
        return None
    except OSError as exc:
        return exc.strerror or str(exc)


CACHE_ENV = "EDGERNN_CACHE_DIR"


def cache_dir(sub: str) -> Path:
    """$EDGERNN_CACHE_DIR/SUB, else $XDG_CACHE_HOME/edgernn/SUB, else ~/.cache/edgernn/SUB (not created)."""
    base = os.environ.get(CACHE_ENV) or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache"), "edgernn")
    return Path(base).expanduser() / sub


@contextlib.contextmanager
def captured_fd2(out: list):
    """Capture file descriptor 2 - where C++ runtimes (LiteRT, TFLite Micro) print, past Python's sys.stderr -
    for the block; out receives the text. Without a usable fd 2 (e.g. a GUI app) nothing is captured."""
    try:
        sys.stderr.flush()
        saved = os.dup(2)
    except (OSError, ValueError):
        yield
        return
    with tempfile.TemporaryFile() as tmp:
        os.dup2(tmp.fileno(), 2)
        try:
            yield
        finally:
            os.dup2(saved, 2)
            os.close(saved)
            tmp.seek(0)
            out.append(tmp.read().decode("utf-8", "replace"))
