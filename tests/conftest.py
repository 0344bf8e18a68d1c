"""
Shared fixtures: tiny seeded run directories built in seconds.

`make_run(cell=..., hidden=..., ...)` trains a small model for a few hundred Adam steps on a seeded
synthetic 4-class sine task (6 channels, T=40, raw scale far from unit so normalization matters) and
writes a complete run directory with edgernn.rundir.save_run. Results are cached per session.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import numpy as np
import pytest

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))


def synthetic_windows(n: int, seq_len: int = 40, channels: int = 6, classes: int = 4, seed: int = 0):
    """Class k = sine at frequency (k+1)/seq_len*2 on every channel with random phase, plus noise;
    channel c is scaled by (c+1)*3 and offset by 10*c (raw units, so normalization is needed)."""
    rng = np.random.default_rng(seed)
    y = rng.integers(0, classes, size=n)
    t = np.arange(seq_len)[None, :, None]
    phase = rng.uniform(0, 2 * np.pi, size=(n, 1, channels))
    freq = (y[:, None, None] + 1) * 2.0 * np.pi / seq_len * 1.5
    x = np.sin(freq * t + phase) + 0.1 * rng.standard_normal((n, seq_len, channels))
    scale = (np.arange(channels) + 1) * 3.0
    offset = np.arange(channels) * 10.0
    return (x * scale + offset).astype(np.float32), y.astype(np.int64)


def _build_run(path: Path, cell: str, hidden: int, layers: int, bidirectional: bool, steps: int, seed: int):
    import torch

    from edgernn.models import ModelConfig, build_model
    from edgernn.rundir import save_run

    torch.set_num_threads(1)  # 2 threads on a loaded 2-core box made a GRU forward 400x slower
    X, y = synthetic_windows(240, seed=seed)
    Xte, yte = synthetic_windows(80, seed=seed + 1)
    mean = X.reshape(-1, X.shape[-1]).mean(0)
    std = X.reshape(-1, X.shape[-1]).std(0) + 1e-6
    cfg = ModelConfig(cell=cell, input_size=6, hidden=hidden, layers=layers, bidirectional=bidirectional,
                      num_outputs=4)
    torch.manual_seed(seed)
    model = build_model(cfg)
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    xn = torch.from_numpy((X - mean) / std)
    yt = torch.from_numpy(y)
    g = torch.Generator().manual_seed(seed)
    model.train()
    for _ in range(steps):
        idx = torch.randint(0, len(X), (32,), generator=g)
        loss = torch.nn.functional.cross_entropy(model(xn[idx]), yt[idx])
        opt.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
    model.eval()
    with torch.no_grad():
        acc = float((model(torch.from_numpy((Xte - mean) / std)).argmax(-1).numpy() == yte).mean())
    save_run(
        path, model, cfg, train_config={"seed": seed, "steps": steps},
        dataset={"name": "synthetic", "task": "classify", "seq_len": 40, "channels": 6, "num_classes": 4},
        labels=["f1", "f2", "f3", "f4"], mean=mean, std=std,
        data={"X_calib": X[:100], "y_calib": y[:100], "X_test": Xte, "y_test": yte,
              "len_test": np.full(len(yte), 40, dtype=np.int64)},
        metrics={"test_accuracy": acc},
    )
    return path


@pytest.fixture(scope="session")
def make_run(tmp_path_factory):
    """Factory: make_run(cell="gru", hidden=16, layers=1, bidirectional=False, steps=300, seed=0)
    -> Path of a cached run directory. Copy it before modifying it (artifacts go inside)."""
    cache = {}

    def _make(cell="gru", hidden=16, layers=1, bidirectional=False, steps=300, seed=0):
        key = (cell, hidden, layers, bidirectional, steps, seed)
        if key not in cache:
            d = tmp_path_factory.mktemp(f"run-{cell}-h{hidden}-l{layers}-{'bi' if bidirectional else 'uni'}")
            cache[key] = _build_run(d, cell, hidden, layers, bidirectional, steps, seed)
        return cache[key]

    return _make


@pytest.fixture
def run_copy(make_run, tmp_path):
    """Factory returning a private copy of a cached run (safe to export into / damage)."""
    import shutil

    def _copy(**kw):
        src = make_run(**kw)
        dst = tmp_path / src.name
        shutil.copytree(src, dst)
        return dst

    return _copy


@pytest.fixture(scope="session")
def onnx_artifacts(make_run, tmp_path_factory):
    """Factory: onnx_artifacts(cell="lstm", hidden=16) -> {"sequence": Path, "step": Path, "windows": Path}.

    Float ONNX artifacts (full-sequence and streaming step, each with its manifest) exported from
    make_run(cell=..., hidden=...), and that run's first 8 raw test windows ([8, 40, 6] float32) saved as
    windows.npy beside them. Cached per (cell, hidden) for the session and shared between test files, so
    treat them as read-only: copy an artifact (and its .json) before damaging it."""
    cache = {}

    def _make(cell="lstm", hidden=16):
        key = (cell, hidden)
        if key not in cache:
            from edgernn.export.onnx.convert import export_onnx
            from edgernn.rundir import load_run

            run = load_run(make_run(cell=cell, hidden=hidden))
            out = tmp_path_factory.mktemp(f"onnx-{cell}-h{hidden}")
            paths = {mode: export_onnx(run, out, precision="float", mode=mode) for mode in ("sequence", "step")}
            paths["windows"] = out / "windows.npy"
            np.save(paths["windows"], run.data()["X_test"][:8].astype(np.float32))
            cache[key] = paths
        return dict(cache[key])

    return _make


@pytest.fixture
def quiet_calibration(monkeypatch):
    """Calibrate int8 on copies of the calibration windows shrunk 50x around the training mean."""
    from edgernn import gates

    real = gates.calibration_windows

    def quiet(run):
        X = real(run)
        mean = np.asarray(run.preprocessing()["mean"], np.float32)
        return (mean + (X - mean) * 0.02).astype(np.float32)

    monkeypatch.setattr(gates, "calibration_windows", quiet)
