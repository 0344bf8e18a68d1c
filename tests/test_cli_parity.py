"""`edgernn parity`'s gate options: one option per field of edgernn.gates.Gates, each defaulting to the
field's value (Gates is the one home of every gate default; the CLI reads it, never repeats it)."""

import dataclasses

from click.testing import CliRunner

from edgernn.cli import main
from edgernn.gates import Gates


def test_every_gate_option_defaults_to_its_gates_field():
    params = {p.name: p for p in main.commands["parity"].params}
    for field in dataclasses.fields(Gates):
        assert field.name in params, f"Gates.{field.name} has no `edgernn parity` option"
        opt = params[field.name]
        assert opt.opts == ["--" + field.name.replace("_", "-")] and opt.show_default
        assert opt.default == field.default, (field.name, opt.default, field.default)


def test_parity_help_shows_the_gates_defaults():
    out = CliRunner().invoke(main, ["parity", "--help"], terminal_width=400).output
    for field in dataclasses.fields(Gates):
        assert f"[default: {field.default};" in out, field.name
