"""
A token run directory: what a trained token model needs to be exported, checked and benchmarked.

    runs/g2p/
      model.pt      torch state_dict
      config.json   {"kind": "tokens", "model": TokenModelConfig, "train": TokenTrainConfig, "dataset": summary}
      vocab.json    {"tokenizer": "chars", "src": Vocab, "tgt": Vocab | null, "labels": [...]}
      data.json     held-out sources and accepted targets (parity), training sources (int8 calibration)
      metrics.json  validation / test scores of the float model, parameters, training time
      artifacts/    written by export (a manifest beside each artifact)

    run = load_token_run("runs/g2p")
    model = run.load_model()      # torch module in eval mode
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path

from edgernn.errors import ArtifactError, ConfigError
from edgernn.runtimes.files import atomic_write_bytes, atomic_write_json
from edgernn.runtimes.vocab import Vocab
from edgernn.tokens.models import TokenModelConfig

TOKEN_RUN_FILES = ("model.pt", "config.json", "vocab.json", "data.json")


@dataclass
class TokenRun:
    path: Path
    config: TokenModelConfig
    train_config: dict
    dataset: dict
    tokenizer: str
    src_vocab: Vocab
    tgt_vocab: Vocab | None
    labels: list
    metrics: dict = field(default_factory=dict)
    lower: bool = False  # sources are lower-cased before tokenizing
    _data: dict | None = None

    @property
    def artifacts_dir(self) -> Path:
        return self.path / "artifacts"

    def data(self) -> dict:
        if self._data is None:
            self._data = json.loads((self.path / "data.json").read_text())
        return self._data

    def load_model(self):
        from edgernn.errors import require
        from edgernn.tokens.models import build_token_model

        torch = require("torch", "train")
        model = build_token_model(self.config)
        state = torch.load(self.path / "model.pt", map_location="cpu", weights_only=True)
        model.load_state_dict(state)
        return model.eval()

    def model_sha256(self) -> str:
        """Identity of the model an artifact came from: its weights, config and vocabularies."""
        h = hashlib.sha256((self.path / "model.pt").read_bytes())
        cfg = self.config.to_dict()
        if cfg.get("layers") == 1:  # added later with this default: runs and artifacts from before keep their identity
            cfg.pop("layers")
        h.update(json.dumps(cfg, sort_keys=True).encode())
        h.update((self.path / "vocab.json").read_bytes())
        return h.hexdigest()


def is_token_run(path: Path | str) -> bool:
    try:
        return json.loads((Path(path) / "config.json").read_text()).get("kind") == "tokens"
    except (OSError, ValueError, AttributeError):
        return False


def load_token_run(path: Path | str) -> TokenRun:
    path = Path(path)
    missing = [f for f in TOKEN_RUN_FILES if not (path / f).is_file()]
    if missing:
        raise ConfigError(f"{path} is not a token run directory (missing {', '.join(missing)}); "
                          "train one with `edgernn train --dataset g2p --out DIR`")
    try:
        cfg = json.loads((path / "config.json").read_text())
        voc = json.loads((path / "vocab.json").read_text())
        metrics = json.loads((path / "metrics.json").read_text()) if (path / "metrics.json").is_file() else {}
        return TokenRun(path=path, config=TokenModelConfig(**cfg["model"]), train_config=cfg.get("train", {}),
                        dataset=cfg.get("dataset", {}), tokenizer=voc["tokenizer"],
                        src_vocab=Vocab.from_dict(voc["src"]),
                        tgt_vocab=Vocab.from_dict(voc["tgt"]) if voc.get("tgt") else None,
                        labels=list(voc.get("labels") or []), metrics=metrics, lower=bool(voc.get("lower")))
    except (ValueError, KeyError, TypeError) as exc:
        raise ArtifactError(f"{path}: a token run file is corrupt ({exc}); retrain the run") from exc


def save_token_run(path: Path, model, config: TokenModelConfig, train_config: dict, dataset: dict,
                   tokenizer: str, src_vocab: Vocab, tgt_vocab: Vocab | None, labels: list, data: dict,
                   metrics: dict, lower: bool = False) -> Path:
    import io

    from edgernn.errors import require

    torch = require("torch", "train")
    path.mkdir(parents=True, exist_ok=True)
    buf = io.BytesIO()
    torch.save(model.state_dict(), buf)
    atomic_write_bytes(path / "model.pt", buf.getvalue())
    atomic_write_json(path / "config.json", {"kind": "tokens", "model": config.to_dict(), "train": train_config,
                                             "dataset": dataset})
    atomic_write_json(path / "vocab.json", {"tokenizer": tokenizer, "src": src_vocab.to_dict(),
                                            "tgt": tgt_vocab.to_dict() if tgt_vocab else None,
                                            "labels": list(labels), "lower": bool(lower)})
    atomic_write_json(path / "data.json", data)
    atomic_write_json(path / "metrics.json", metrics)
    return path
