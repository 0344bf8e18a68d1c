"""CLI behaviour of `edgernn train`, `datasets`, `pipeline` via click's CliRunner: exit codes and output."""

import json
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
from click.testing import CliRunner

from edgernn.cli import main

FAST = ["--dataset", "synthetic", "--hidden", "8", "--epochs", "4", "--patience", "2", "--quiet"]


def test_train_writes_run_and_prints_summary(tmp_path):
    r = CliRunner().invoke(main, ["train", *FAST, "--out", str(tmp_path / "run")])
    assert r.exit_code == 0, r.output
    assert re.search(r"gru h8 on synthetic: train accuracy \d\.\d{4} val accuracy \d\.\d{4} test accuracy \d\.\d{4}",
                     r.output)
    assert (tmp_path / "run" / "metrics.json").is_file()


def test_train_json(tmp_path):
    r = CliRunner().invoke(main, ["train", *FAST, "--cell", "lstm", "--out", str(tmp_path / "run"), "--json"])
    assert r.exit_code == 0, r.output
    m = json.loads(r.output)
    assert m["task"] == "classify" and 0.0 <= m["test"]["accuracy"] <= 1.0 and m["parameters"] > 0


def test_train_on_user_npz(tmp_path):
    rng = np.random.default_rng(0)
    y = rng.integers(0, 2, size=60)
    X = rng.normal(size=(60, 12, 3)) + y[:, None, None] * 2.0
    np.savez(tmp_path / "mine.npz", X=X, y=y)
    r = CliRunner().invoke(main, ["train", "--dataset", str(tmp_path / "mine.npz"), "--hidden", "8", "--epochs",
                                  "40", "--quiet", "--out", str(tmp_path / "run"), "--json"])
    assert r.exit_code == 0, r.output
    m = json.loads(r.output)
    assert m["dataset"]["name"] == "mine" and m["dataset"]["n_test"] == 15 and m["test"]["accuracy"] >= 0.8


def test_bad_data_is_one_line_error_and_writes_nothing(tmp_path):
    np.savez(tmp_path / "bad.npz", X=np.zeros((4, 5)), y=np.zeros(4))
    r = CliRunner().invoke(main, ["train", "--dataset", str(tmp_path / "bad.npz"), "--out", str(tmp_path / "run")])
    assert r.exit_code == 1
    assert r.output.startswith("Error: ") and "expected 3-D [N, T, C]" in r.output
    assert len(r.output.strip().splitlines()) == 1 and "Traceback" not in r.output
    assert not (tmp_path / "run").exists()


def test_unknown_dataset_and_bad_option(tmp_path):
    r = CliRunner().invoke(main, ["train", "--dataset", "nope", "--out", str(tmp_path / "r")])
    assert r.exit_code == 1 and "unknown dataset 'nope'; choose one of: basic-motions" in r.output
    r = CliRunner().invoke(main, ["train", "--cell", "transformer", "--out", str(tmp_path / "r")])
    assert r.exit_code == 2 and "'transformer' is not one of 'gru', 'lstm', 'rnn'" in r.output
    r = CliRunner().invoke(main, ["train", "--hidden", "0", "--out", str(tmp_path / "r")])
    assert r.exit_code == 2
    r = CliRunner().invoke(main, ["train"])
    assert r.exit_code == 2 and "Missing option '--out'" in r.output


def test_out_is_a_file(tmp_path):
    (tmp_path / "f").write_text("x")
    r = CliRunner().invoke(main, ["train", *FAST, "--out", str(tmp_path / "f")])
    assert r.exit_code == 2  # click.Path(file_okay=False) refuses it before any work


def test_train_help_explains_every_option():
    r = CliRunner().invoke(main, ["train", "--help"])
    assert r.exit_code == 0
    for opt in ("--dataset", "--cell", "--hidden", "--layers", "--bidirectional", "--dropout", "--epochs",
                "--batch-size", "--lr", "--clip", "--val-fraction", "--patience", "--seed", "--threads", "--out"):
        assert opt in r.output
    # every option line has help text after it
    assert "Gradient-norm clipping" in r.output and "early stopping" in r.output


def test_datasets_table_and_json():
    r = CliRunner().invoke(main, ["datasets"])
    assert r.exit_code == 0 and "basic-motions" in r.output and "japanese-vowels" in r.output
    rows = json.loads(CliRunner().invoke(main, ["datasets", "--json"]).output)
    assert {r["name"] for r in rows} >= {"basic-motions", "japanese-vowels", "synthetic"}


def test_every_command_is_documented_in_readme():
    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text()
    for name in main.commands:
        assert f"edgernn {name}" in readme, f"`edgernn {name}` is not documented in README.md"


def test_import_edgernn_is_light():
    code = ("import sys, edgernn, edgernn.cli, edgernn.errors, edgernn.models, edgernn.data; "
            "bad = [m for m in ('torch', 'tensorflow', 'onnx', 'onnxruntime') if m in sys.modules]; "
            "assert not bad, bad")
    subprocess.run([sys.executable, "-c", code], check=True)
