"""Quantization-aware fine-tuning (edgernn.qat, `edgernn finetune --qat`) on the synthetic fixture runs."""

from __future__ import annotations

import hashlib
import json

import numpy as np
import pytest
from click.testing import CliRunner

from edgernn.cli import main
from edgernn.errors import ConfigError


def test_fake_quantization_rounds_to_the_int8_grid_and_passes_gradients():
    import torch

    from edgernn.qat import Quantizer, fake_weight

    x = torch.linspace(-3, 5, 1000, requires_grad=True)
    q = Quantizer()
    y = q(torch, x, training=True)
    scale = (q.hi - q.lo) / 255
    codes = (y.detach() / scale).numpy() + round(-q.lo / scale)
    assert np.allclose(codes, np.round(codes), atol=1e-3) and len(np.unique(np.round(codes))) <= 256
    assert float((y - x).detach().abs().max()) <= scale / 2 + 1e-6
    y.sum().backward()
    assert torch.allclose(x.grad, torch.ones_like(x))  # straight-through
    w = torch.randn(8, 20)
    wq = fake_weight(torch, w)
    for row, qrow in zip(w, wq):  # one scale per row, 255 symmetric levels
        s = float(row.abs().max()) / 127
        assert np.allclose(qrow.numpy() / s, np.round(qrow.numpy() / s), atol=1e-4)


@pytest.mark.parametrize("cell", ["gru", "lstm"])
def test_finetune_writes_a_new_run_and_leaves_the_source(make_run, tmp_path, cell):
    src = make_run(cell=cell)
    before = hashlib.sha256((src / "model.pt").read_bytes()).hexdigest()
    out = tmp_path / "qat"
    r = CliRunner().invoke(main, ["finetune", str(src), "--qat", "--out", str(out), "--epochs", "3", "-q"])
    assert r.exit_code == 0, r.output
    assert "simulated int8" in r.output
    assert hashlib.sha256((src / "model.pt").read_bytes()).hexdigest() == before
    cfg = json.loads((out / "config.json").read_text())["train"]["qat"]
    assert cfg["epochs"] == 3 and cfg["source_model"]["sha256"] and "l0.h" in cfg["ranges"]
    # a GRU's projections are rounded per gate, as the full-int8 loop's one matrix per gate; an LSTM's as one
    per_gate = {f"l0.{side}.{k}" for side in ("gi", "gh") for k in "rzn"}
    assert (per_gate <= set(cfg["ranges"])) == (cell == "gru") and ("l0.gi" in cfg["ranges"]) == (cell == "lstm")
    m = json.loads((out / "metrics.json").read_text())["qat"]
    assert m["simulated_int8_test"]["accuracy"] >= m["float_test"]["accuracy"] - 0.1, m
    from edgernn.rundir import load_run

    run = load_run(out)
    assert run.identity["sha256"] != load_run(src).identity["sha256"]  # the weights moved
    r = CliRunner().invoke(main, ["finetune", str(src), "--qat", "--out", str(out), "-q"])
    assert r.exit_code == 1 and "is not empty" in r.output
    r = CliRunner().invoke(main, ["finetune", str(src), "--qat", "--out", str(src), "-q"])
    assert r.exit_code == 1 and "must be a new directory" in r.output


def test_bidirectional_is_refused(make_run, tmp_path):
    from edgernn.qat import finetune_qat

    with pytest.raises(ConfigError, match="bidirectional"):
        finetune_qat(make_run(cell="gru", bidirectional=True), tmp_path / "x", epochs=1, progress=False)
    assert not (tmp_path / "x").exists()
