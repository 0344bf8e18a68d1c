"""
The run directory: everything a trained model needs to be exported, checked and benchmarked.

    runs/gru/
      model.pt            torch state_dict
      config.json         {"model": ModelConfig, "train": TrainConfig, "dataset": {...}}
      normalization.json  {"mean": [...], "std": [...], "pad_side": "left", "pad_value": 0.0}
      labels.json         ["label0", ...]   (empty list for forecasting)
      metrics.json        train/val/test accuracy or error, parameters, MACs
      data.npz            raw (un-normalized) X_calib/y_calib (training windows for int8
                          calibration) and X_test/y_test/len_test (held-out set for parity)
      artifacts/          written by `edgernn export` (one manifest JSON beside each artifact)

A run directory is self-contained: export, parity and bench need nothing else, so it can be copied
to another machine.

    run = load_run("runs/gru")
    model = run.load_model()            # torch module in eval mode
    xn = run.normalize(run.data()["X_test"])
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .errors import ConfigError
from .models import ModelConfig
from .runtimes.files import atomic_save_npz, atomic_write_bytes, atomic_write_json

REQUIRED = ("model.pt", "config.json", "normalization.json", "labels.json", "data.npz")


@dataclass
class Run:
    path: Path
    config: ModelConfig
    train_config: dict
    dataset: dict
    labels: list
    mean: np.ndarray
    std: np.ndarray
    pad_side: str = "left"
    pad_value: float = 0.0
    metrics: dict = field(default_factory=dict)
    _data: dict | None = None

    @property
    def task(self) -> str:
        return self.config.head

    @property
    def seq_len(self) -> int:
        return int(self.dataset["seq_len"])

    @property
    def artifacts_dir(self) -> Path:
        return self.path / "artifacts"

    def data(self) -> dict:
        if self._data is None:
            try:
                with np.load(self.path / "data.npz") as z:
                    self._data = {k: z[k] for k in z.files}
            except Exception as exc:
                raise ConfigError(f"{self.path}/data.npz is unreadable ({exc}); re-run `edgernn train`") from exc
        return self._data

    def normalize(self, x: np.ndarray) -> np.ndarray:
        return ((np.asarray(x, dtype=np.float32) - self.mean) / self.std).astype(np.float32)

    def preprocessing(self) -> dict:
        """The manifest's preprocessing block: what a runtime applies to a raw window."""
        pre = {
            "mean": [float(v) for v in self.mean],
            "std": [float(v) for v in self.std],
            "pad_side": self.pad_side,
            "pad_value": float(self.pad_value),
            "max_length": self.seq_len,
        }
        if "output_mean" in self.dataset:  # forecast: outputs are normalized; y = out * std + mean
            pre["output"] = {"mean": self.dataset["output_mean"], "std": self.dataset["output_std"]}
        return pre

    def load_model(self):
        from .errors import require
        from .models import build_model

        torch = require("torch", "train")
        model = build_model(self.config)
        try:
            state = torch.load(self.path / "model.pt", map_location="cpu", weights_only=True)
            model.load_state_dict(state)
        except Exception as exc:
            raise ConfigError(
                f"{self.path}/model.pt does not load into a {self.config.cell} h{self.config.hidden} "
                f"model ({str(exc).splitlines()[0]}); re-run `edgernn train`"
            ) from exc
        return model.eval()


def load_run(path: Path | str) -> Run:
    """Read a run directory, checking every required file; raises ConfigError naming what is wrong."""
    path = Path(path)
    if not path.is_dir():
        raise ConfigError(f"run directory {path} does not exist; create one with `edgernn train`")
    missing = [name for name in REQUIRED if not (path / name).is_file()]
    if missing:
        raise ConfigError(
            f"{path} is not a complete run directory: missing {', '.join(missing)}; "
            "re-run `edgernn train --out " + str(path) + "`"
        )
    try:
        cfg = json.loads((path / "config.json").read_text())
        norm = json.loads((path / "normalization.json").read_text())
        labels = json.loads((path / "labels.json").read_text())
        metrics_path = path / "metrics.json"
        metrics = json.loads(metrics_path.read_text()) if metrics_path.is_file() else {}
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{path} has a corrupt JSON file ({exc}); re-run `edgernn train`") from exc
    try:
        model_cfg = ModelConfig.from_dict(cfg["model"])
        mean = np.asarray(norm["mean"], dtype=np.float32)
        std = np.asarray(norm["std"], dtype=np.float32)
        dataset = cfg["dataset"]
        int(dataset["seq_len"])
    except (KeyError, TypeError, ValueError) as exc:
        raise ConfigError(f"{path}/config.json or normalization.json is missing a field ({exc})") from exc
    if mean.shape != (model_cfg.input_size,) or std.shape != (model_cfg.input_size,):
        raise ConfigError(
            f"{path}/normalization.json has {mean.shape[0]} channels but the model expects "
            f"{model_cfg.input_size}"
        )
    return Run(
        path=path,
        config=model_cfg,
        train_config=cfg.get("train", {}),
        dataset=dataset,
        labels=list(labels),
        mean=mean,
        std=std,
        pad_side=norm.get("pad_side", "left"),
        pad_value=float(norm.get("pad_value", 0.0)),
        metrics=metrics,
    )


def save_run(
    path: Path | str,
    model,
    config: ModelConfig,
    train_config: dict,
    dataset: dict,
    labels: list,
    mean: np.ndarray,
    std: np.ndarray,
    data: dict,
    metrics: dict | None = None,
) -> Path:
    """Write a run directory (each file atomically). `data` holds raw arrays X_calib, y_calib,
    X_test, y_test (and len_test)."""
    import io

    from .errors import require

    torch = require("torch", "train")
    path = Path(path)
    path.mkdir(parents=True, exist_ok=True)
    buf = io.BytesIO()
    torch.save(model.state_dict(), buf)
    atomic_write_bytes(path / "model.pt", buf.getvalue())
    atomic_write_json(path / "config.json", {"model": config.to_dict(), "train": train_config, "dataset": dataset})
    atomic_write_json(
        path / "normalization.json",
        {"mean": [float(v) for v in mean], "std": [float(v) for v in std], "pad_side": "left", "pad_value": 0.0},
    )
    atomic_write_json(path / "labels.json", list(labels))
    atomic_save_npz(path / "data.npz", **data)
    if metrics is not None:
        atomic_write_json(path / "metrics.json", metrics)
    return path
