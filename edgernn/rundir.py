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

Every artifact's manifest records the identity of the model it was exported from (source.model_sha256:
a hash of the weights, the model config, the normalization and the labels); parity, bench and report
refuse an artifact or a result whose identity is not the run's (`check_artifact`), so a stale artifact
(the run was retrained, or files were copied between runs) never passes a gate.

A run directory is self-contained: export, parity and bench need nothing else, so it can be copied
to another machine.

    run = load_run("runs/gru")
    model = run.load_model()            # torch module in eval mode
    xn = run.normalize(run.data()["X_test"])
"""

from __future__ import annotations

import hashlib
import json
import shutil
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from edgernn.errors import ArtifactError, ConfigError
from edgernn.models import ModelConfig
from edgernn.runtimes.files import atomic_save_npz, atomic_write_bytes, atomic_write_json

REQUIRED = ("model.pt", "config.json", "normalization.json", "labels.json", "data.npz")
# what `edgernn export`, `parity`, `bench` and `report` derive from the model: stale once it is retrained
DERIVED = ("artifacts", "parity.json", "bench-*.json", "report.md", "report.json", "plots", "explain")


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
    _identity: dict | None = None

    @property
    def task(self) -> str:
        return self.config.head

    @property
    def mask_padding(self) -> bool:
        """Trained with `--mask-padding`: the model's answer for a window is its real frames alone."""
        return bool(self.train_config.get("mask_padding", False))

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
        if self.mask_padding:  # runtimes drop leading pad_value frames and run the real ones alone
            pre["mask_padding"] = True
        fe = self.config.front_end()
        if fe is not None:  # audio: raw PCM in; the front end is inside the artifact, in float arithmetic
            pre["frontend"] = {**fe.to_dict(), "hop": fe.hop, "frame": fe.frame, "tail": fe.tail, "n_fft": fe.n_fft,
                               "features": fe.size, "describe": fe.describe(),
                               "input": f"PCM at {fe.sample_rate} Hz, {fe.hop} samples per step: float in [-1, 1] "
                                        "or int16 (the runtime scales it by 1/32768)",
                               "integer_arithmetic": "none: the front end computes in float32 in every format "
                                                     "(int8 recipes leave its nodes float)"}
        if "output_mean" in self.dataset:  # forecast: outputs are normalized; y = out * std + mean
            pre["output"] = {"mean": self.dataset["output_mean"], "std": self.dataset["output_std"]}
        return pre

    @property
    def identity(self) -> dict:
        """{"sha256": hash of weights + model config + normalization + labels, "summary": "GRU h32"}."""
        if self._identity is None:
            h = hashlib.sha256((self.path / "model.pt").read_bytes())
            h.update(json.dumps({"model": self.config.to_dict(), "mean": [float(v) for v in self.mean],
                                 "std": [float(v) for v in self.std], "pad": [self.pad_side, self.pad_value],
                                 "labels": self.labels, **({"mask_padding": True} if self.mask_padding else {})},
                                sort_keys=True).encode())
            self._identity = {"sha256": h.hexdigest(), "summary": describe(self.config.to_dict())}
        return self._identity

    def check_built_for(self, what: str, source: dict | None, fix: str) -> None:
        """Refuse `what` (an artifact, or a results file) when its recorded model identity (`source`:
        {"model_sha256", "model_summary"}) is not this run's, in one line ending in `fix`."""
        source = source or {}
        have = self.identity
        sha = source.get("model_sha256")
        if sha == have["sha256"]:
            return
        if sha is None:
            raise ArtifactError(f"{what} does not record which model it came from (made by an older edgernn): {fix}")
        built = source.get("model_summary") or "another model"
        if built != have["summary"]:
            raise ArtifactError(f"{what} was built for {built}, run {self.path} is {have['summary']}: {fix}")
        raise ArtifactError(f"{what} was built from other weights of {built} (model sha256 {sha[:12]}, run "
                            f"{self.path} has {have['sha256'][:12]}: retrained or copied since): {fix}")

    def check_artifact(self, artifact: Path | str, manifest: dict) -> None:
        """Refuse an artifact exported from another model than this run's (see check_built_for)."""
        self.check_built_for(Path(artifact).name, manifest.get("source"),
                             f"re-export with `edgernn export {self.path}`")

    def load_model(self):
        from edgernn.errors import require
        from edgernn.models import build_model

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


def describe(model: dict) -> str:
    """"GRU h32", "LSTM h64 x2 bidirectional": how messages name a model config."""
    text = f"{str(model.get('cell', '?')).upper()} h{model.get('hidden', '?')}"
    if int(model.get("layers", 1)) > 1:
        text += f" x{model['layers']}"
    return text + (" bidirectional" if model.get("bidirectional") else "")


def stale_files(path: Path | str) -> list[Path]:
    """The files and directories in a run directory derived from its model (DERIVED)."""
    path = Path(path)
    return sorted({p for pattern in DERIVED for p in path.glob(pattern)})


def remove_stale(path: Path | str) -> list[Path]:
    """Delete what was derived from a previous model in this run directory; returns what was removed."""
    gone = stale_files(path)
    for p in gone:
        shutil.rmtree(p) if p.is_dir() and not p.is_symlink() else p.unlink(missing_ok=True)
    return gone


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

    def read(name: str, optional: bool = False):
        f = path / name
        if optional and not f.is_file():
            return {}
        try:
            return json.loads(f.read_text())
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise ConfigError(f"{f} is not valid JSON ({exc}); re-run `edgernn train --out {path}`") from exc

    cfg, norm, labels = read("config.json"), read("normalization.json"), read("labels.json")
    metrics = read("metrics.json", optional=True)
    where = "config.json"
    try:
        model_cfg = ModelConfig.from_dict(cfg["model"])
        dataset = cfg["dataset"]
        int(dataset["seq_len"])
        where = "normalization.json"
        mean = np.asarray(norm["mean"], dtype=np.float32)
        std = np.asarray(norm["std"], dtype=np.float32)
        where = "labels.json"
        if not isinstance(labels, list):
            raise TypeError(f"expected a list of class names, got {type(labels).__name__}")
    except (KeyError, TypeError, ValueError, ConfigError) as exc:
        raise ConfigError(f"{path / where} is missing or has a bad field ({exc}); "
                          f"re-run `edgernn train --out {path}`") from exc
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

    from edgernn.errors import require

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
