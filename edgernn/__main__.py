"""`python -m edgernn ...` = the `edgernn` command (e.g. under sudo, where the venv's script may not be on PATH)."""

from edgernn.cli import main

main(prog_name="edgernn")
