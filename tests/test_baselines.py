"""Baselines (edgernn/baselines.py) and the training defaults that keep a model above them: exact baseline
numbers on hand-made data, metrics.json + the one-line train warning, the LSTM forget-gate bias, a tiny
validation split not trusted for early stopping, and the collapse rollback of the learning-rate schedule."""

import json

import numpy as np
from click.testing import CliRunner

from edgernn.baselines import baselines, beats_baseline
from edgernn.cli import main
from edgernn.data import Dataset
from edgernn.train import TrainConfig, train


def _ds(task="classify", **kw):
    base = dict(name="t", task=task, labels=["a", "b", "c"])
    base.update(kw)
    return Dataset(**base)


def test_majority_and_nearest_neighbour_exact():
    rng = np.random.default_rng(0)
    Xtr = rng.normal(size=(30, 5, 2)).astype(np.float32)
    ytr = np.array([0] * 20 + [1] * 7 + [2] * 3)
    # test windows: exact copies of training windows 0, 21, 28 (nearest = themselves) + a tiny perturbation
    pick = np.array([0, 21, 28, 5])
    Xte = Xtr[pick] + 1e-3
    yte = np.array([0, 1, 1, 0])  # the third copy carries a label its neighbour (class 2) does not have
    ds = _ds(X_train=Xtr, y_train=ytr, len_train=np.full(30, 5), X_test=Xte, y_test=yte, len_test=np.full(4, 5))
    b = baselines(ds, np.zeros(2, np.float32), np.ones(2, np.float32))
    assert b["majority"] == {"accuracy": 0.5, "n": 4, "class": "a"}
    assert b["nearest_neighbour"]["accuracy"] == 0.75
    ok, line = beats_baseline({"accuracy": 0.75}, b, "classify")
    assert not ok and line == "test accuracy 0.750 vs 1-nearest-neighbour 0.750: does NOT beat the baseline"
    assert beats_baseline({"accuracy": 0.8}, b, "classify")[0]


def test_last_value_forecast():
    X = np.zeros((2, 3, 2), np.float32)
    X[:, -1] = [[1, 2], [3, 4]]
    y = np.array([[1, 2, 2, 2], [3, 4, 3, 4]], np.float32)  # horizon 2: the last frame repeated, one miss of 1
    ds = _ds("forecast", X_train=X, y_train=y, len_train=np.full(2, 3), X_test=X, y_test=y, len_test=np.full(2, 3),
             labels=[], horizon=2)
    b = baselines(ds, np.zeros(2, np.float32), np.ones(2, np.float32))
    assert b == {"last_value": {"rmse": float(np.sqrt(1 / 8)), "mae": 1 / 8, "n": 2}}
    assert beats_baseline({"rmse": 0.1}, b, "forecast")[0] and not beats_baseline({"rmse": 0.5}, b, "forecast")[0]


def test_train_records_baselines_and_the_cli_warns_when_not_beaten(tmp_path):
    # one epoch of h4 on basic-motions: a model that has learned nothing yet
    r = CliRunner().invoke(main, ["train", "--dataset", "basic-motions", "--hidden", "4", "--epochs", "1",
                                  "--quiet", "--out", str(tmp_path / "bad")])
    assert r.exit_code == 0, r.output
    m = json.loads((tmp_path / "bad" / "metrics.json").read_text())
    assert set(m["baselines"]) == {"majority", "nearest_neighbour"} and m["beats_baseline"] is False
    assert r.stderr.startswith("WARNING: test accuracy ") and "does NOT beat the baseline" in r.stderr
    assert "at chance" in r.stderr or m["test"]["accuracy"] > m["baselines"]["majority"]["accuracy"]
    assert len(r.stderr.strip().splitlines()) == 1
    r = CliRunner().invoke(main, ["train", "--dataset", "basic-motions", "--cell", "lstm", "--hidden", "16",
                                  "--quiet", "--out", str(tmp_path / "good")])
    assert r.exit_code == 0 and r.stderr == "", r.stderr
    assert json.loads((tmp_path / "good" / "metrics.json").read_text())["beats_baseline"] is True


def test_lstm_forget_bias_and_tiny_validation_split(tmp_path):
    import torch

    from edgernn.rundir import load_run

    # basic-motions: 40 windows, so a 20% split is 8 windows < min_val_windows: all windows train, every epoch runs
    m = train(TrainConfig(dataset="basic-motions", cell="lstm", hidden=4, epochs=3, forget_bias=1.0), tmp_path / "a",
              progress=False)
    assert m["epochs_run"] == 3 and m["val"] == {} and m["train"]["n"] == 40
    assert m["early_stopping"].startswith("none") and "8 windows < min_val_windows 30" in m["notes"][0]
    m2 = train(TrainConfig(dataset="basic-motions", cell="lstm", hidden=4, epochs=1, lr=1e-9, forget_bias=1.0),
               tmp_path / "b", progress=False)
    rnn = load_run(tmp_path / "b").load_model().rnn
    forget = (rnn.bias_ih_l0 + rnn.bias_hh_l0)[4:8].detach()
    assert torch.allclose(forget, torch.ones(4), atol=1e-6), forget  # lr 1e-9: still the init
    assert m2["train"]["n"] == 40


def test_plateau_schedule_halves_the_learning_rate(tmp_path):
    # lr 0.5 on a tiny model does not keep improving: the schedule halves it (history.json records it);
    # with lr_schedule="none" it stays
    train(TrainConfig(dataset="synthetic", hidden=8, epochs=40, lr=0.5, patience=6, min_epochs=0), tmp_path / "a",
          progress=False)
    train(TrainConfig(dataset="synthetic", hidden=8, epochs=40, lr=0.5, patience=6, min_epochs=0, lr_schedule="none"),
          tmp_path / "b", progress=False)
    a, b = (json.loads((tmp_path / d / "history.json").read_text()) for d in "ab")
    assert min(e["lr"] for e in a) <= 0.25 and {e["lr"] for e in b} == {0.5}
