"""`edgernn export` options that are about the command rather than a format: the converter's time budget."""

import pytest
from click.testing import CliRunner

from edgernn.cli import main

pytestmark = pytest.mark.export


def test_timeout_is_an_option_and_its_error_names_it(run_copy):
    run = run_copy(cell="gru", hidden=16)
    r = CliRunner().invoke(main, ["export", str(run), "--format", "tflite", "--precision", "float",
                                  "--timeout", "0.001", "-q"])
    assert r.exit_code == 1 and "Traceback" not in r.output
    assert "ran out of its time budget" in r.output and "--timeout" in r.output
    assert not list((run / "artifacts").glob("*.tflite")) if (run / "artifacts").exists() else True
    bad = CliRunner().invoke(main, ["export", str(run), "--timeout", "0", "-q"])
    assert bad.exit_code == 2 and "--timeout" in bad.output
    ok = CliRunner().invoke(main, ["export", str(run), "--format", "tflite", "--precision", "float",
                                   "--timeout", "300", "-q"])
    assert ok.exit_code == 0, ok.output
