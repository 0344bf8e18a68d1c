"""
What every `edgernn` command shares: error handling (one-line errors, exit codes), option types, the
gate options (their defaults read from edgernn.gates.Gates, the one home of every gate default) and
help texts used by several commands.

    @click.command("parity")
    @gate_option("--min-agreement", click.FloatRange(0.0, 1.0), help="...")   # default: Gates().min_agreement
    @handle_errors                                   # EdgernnError -> one line, exit 1; Ctrl-C -> 130
    def parity_cmd(min_agreement, ...): ...

Library errors (edgernn.errors.EdgernnError) become one-line messages and exit code 1; usage errors
exit 2 (click). No tracebacks for user mistakes.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import os
import sys

import click

from edgernn.errors import EdgernnError
from edgernn.gates import Gates


def debug_enabled() -> bool:
    return os.environ.get("EDGERNN_DEBUG", "").strip() not in ("", "0")


def print_debug(exc: BaseException) -> None:
    """EDGERNN_DEBUG=1: the chained traceback (and a child process's saved traceback) on stderr, before
    the usual one-line error."""
    import traceback

    click.echo("".join(traceback.format_exception(exc)).rstrip(), err=True)
    detail = getattr(exc, "detail", "")
    if detail:
        click.echo(detail.rstrip(), err=True)


def handle_errors(fn):
    """Turn EdgernnError into a one-line click error (exit 1), Ctrl-C into exit 130 and SIGTERM into 143
    (both after the same cleanup: see edgernn.interrupts). With
    EDGERNN_DEBUG=1 the chained traceback is printed first (the one-line error still ends the output)."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except EdgernnError as exc:
            if debug_enabled():
                print_debug(exc)
            raise click.ClickException(str(exc)) from None
        except OSError as exc:  # disk full, permission denied, ...: the environment, not a bug
            if debug_enabled():
                print_debug(exc)
            raise click.ClickException(f"{exc.strerror or exc} ({exc.filename or 'file system'})") from None
        except KeyboardInterrupt as exc:  # Ctrl-C, or SIGTERM (edgernn.interrupts.Terminated)
            from edgernn.interrupts import Terminated

            if isinstance(exc, Terminated):
                click.echo("terminated", err=True)
                sys.exit(143)
            click.echo("interrupted", err=True)
            sys.exit(130)

    return wrapper


class CommaChoice(click.ParamType):
    """A comma-separated list of choices ("onnx,tflite"), validated; usage error (exit 2) otherwise."""

    name = "list"

    def __init__(self, choices):
        self.choices = tuple(choices)

    def get_metavar(self, param, ctx=None):
        return "[" + "|".join(self.choices) + "],..."

    def convert(self, value, param, ctx):
        if isinstance(value, tuple):
            return value
        items = [v.strip() for v in str(value).split(",") if v.strip()]
        bad = [v for v in items if v not in self.choices]
        if bad or not items:
            self.fail(f"{', '.join(map(repr, bad)) or 'nothing'} given; choose from {', '.join(self.choices)} "
                      "(comma-separated)", param, ctx)
        return tuple(dict.fromkeys(items))


class IntList(click.ParamType):
    """A comma-separated list of positive integers ("8,16,32")."""

    name = "ints"

    def convert(self, value, param, ctx):
        if isinstance(value, tuple):
            return value
        try:
            items = tuple(dict.fromkeys(int(v) for v in str(value).split(",") if v.strip()))
        except ValueError:
            self.fail(f"{value!r}: give comma-separated whole numbers, e.g. 8,16,32", param, ctx)
        if not items or min(items) < 1:
            self.fail(f"{value!r}: give positive whole numbers", param, ctx)
        return items


# The gate's thresholds by option name: every field of Gates is one option, named like the field
GATE_FIELDS = tuple(f.name for f in dataclasses.fields(Gates))


def gate_option(name: str, type: click.ParamType, help: str):
    """A parity gate option (--min-agreement -> Gates.min_agreement) whose default is the Gates field's."""
    field = name.lstrip("-").replace("-", "_")
    if field not in GATE_FIELDS:
        raise ValueError(f"{name} is not a gate option (Gates fields: {', '.join(GATE_FIELDS)})")
    return click.option(name, field, type=type, default=getattr(Gates(), field), show_default=True, help=help)


def gates_from(kwargs: dict) -> Gates:
    """The Gates of a command's gate options, taken out of its keyword arguments."""
    return Gates(**{f: kwargs.pop(f) for f in GATE_FIELDS})


def format_help() -> str:
    """--format's help: every export format with what it is and its precisions."""
    from edgernn.export import FORMATS

    return "Comma-separated formats: " + "; ".join(
        f"{f.name} ({f.help}; precisions {'/'.join(f.precisions)})" for f in FORMATS.values()) + "."


EMULATE_HELP = ("Run an aarch64 board (rpi4, rpi5, rpi3b, rpi-zero-2w) emulated here: a cached arm64 Debian "
                "with its own python and runtimes under qemu, reached over its own sshd on 127.0.0.1 (needs root; "
                "the first run builds the rootfs, ~6 min). Outputs are real ARM results; timings are not the "
                "board's. See `edgernn emulate --help`. A microcontroller (cortex-m4, cortex-m7, cortex-m55, "
                "nucleo-l476rg, nrf52840-dk, nucleo-h743zi, alif-e7-m55) runs its C artifacts bare metal under "
                "qemu-system-arm instead: no root, seconds; instruction counts, stack, flash and RAM "
                "(docs/mcu.md).")


def echo_json(obj) -> None:
    click.echo(json.dumps(obj, indent=2, default=str))
