"""
Progress for long work, on stderr: click's bar on a terminal; plain lines when stderr is not a terminal (a
log, CI, nohup), so a redirected 20-minute export still says what it is doing; nothing when disabled
(--quiet, tests).

    with progressbar(items, label="export gru h32", show=lambda t: t) as bar:   # one line per item in a log
        for item in bar: ...
    with progressbar(length=300, label="train", show=lambda s: s) as bar:
        bar.update(1, "val loss 0.41")                  # in a log: a line at most every LINE_EVERY_S seconds
"""

from __future__ import annotations

import io
import sys
import time

import click

LINE_EVERY_S = 10.0  # a log gets a progress line at most this often for step updates (each item always gets one)


def progressbar(iterable=None, length=None, label: str = "", enabled: bool = True, show=None, file=None):
    """A context manager that iterates `iterable` (or counts to `length` through update()) and reports it:
    click.progressbar on a terminal, LineProgress elsewhere, silent when not enabled."""
    if not enabled:
        return click.progressbar(iterable, length=length, label=label, file=io.StringIO())
    stream = file if file is not None else click.get_text_stream("stderr")
    if _is_tty(stream):
        return click.progressbar(iterable, length=length, label=label, file=stream, item_show_func=show,
                                 show_eta=True)
    return LineProgress(iterable, length=length, label=label, show=show, file=stream)


def _is_tty(stream) -> bool:
    try:
        return bool(stream.isatty())
    except (AttributeError, ValueError):
        return False


class LineProgress:
    """The same interface as click's bar (context manager, iteration, update(n, current_item)), written as
    plain lines: `label: [3/12] tflite int8 step (41 s)` when an item starts, `label: 57/300 val loss 0.41
    (12 s)` for counted steps (at most every LINE_EVERY_S seconds, and at the end), `label: done ...` last."""

    def __init__(self, iterable=None, length=None, label: str = "", show=None, file=None):
        self.iterable, self.label, self.show = iterable, label, show
        self.length = length if length is not None else (len(iterable) if hasattr(iterable, "__len__") else None)
        self.file = file if file is not None else sys.stderr
        self.pos, self.t0, self._last, self._shown = 0, time.monotonic(), float("-inf"), None

    def _line(self, text: str) -> None:
        elapsed = time.monotonic() - self.t0
        click.echo(f"{self.label}: {text} ({elapsed:.0f} s)", file=self.file)
        self._last, self._shown = time.monotonic(), self.pos

    def _of(self) -> str:
        return f"{self.pos}/{self.length}" if self.length is not None else str(self.pos)

    def __enter__(self):
        self.t0 = time.monotonic()
        return self

    def __exit__(self, exc_type, *exc):
        if exc_type is not None:
            self._line(f"stopped at {self._of()}")
        elif self.iterable is not None or self._shown != self.pos:  # counted steps: unless that line was the last
            self._line(f"done, {self._of()}")
        return False

    def __iter__(self):
        for item in self.iterable:
            what = self.show(item) if self.show else ""
            self._line(f"[{self.pos + 1}/{self.length}] {what}".rstrip() if self.length else f"[{self.pos + 1}] {what}")
            yield item
            self.pos += 1

    def update(self, n_steps: int, current_item=None) -> None:
        self.pos += n_steps
        now = time.monotonic()
        if now - self._last >= LINE_EVERY_S or (self.length is not None and self.pos >= self.length):
            what = (self.show(current_item) if self.show else current_item) if current_item is not None else ""
            self._line(f"{self._of()} {what}".rstrip())
