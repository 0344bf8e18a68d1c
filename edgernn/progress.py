"""Progress bars for long work (click's bar on stderr; silent when disabled, e.g. in tests or --quiet)."""

from __future__ import annotations

import io

import click


def progressbar(iterable=None, length=None, label: str = "", enabled: bool = True, show=None):
    """click.progressbar drawn on stderr when enabled, else writing nowhere. Use as a context manager."""
    return click.progressbar(iterable, length=length, label=label, file=click.get_text_stream("stderr")
                             if enabled else io.StringIO(), item_show_func=show, show_eta=True)
