"""
The table of bundled datasets (name -> loader) and load_dataset, the one entry point: a bundled name or a
path to the user's .npz / .csv file.

    ds = load_dataset("basic-motions")       # a bundled set (see DATASETS)
    ds = load_dataset("synthetic", seed=1)   # seeded; loader keyword arguments pass through
    ds = load_dataset("my_data.npz")         # a user file (edgernn.data.files)
    ds = load_dataset("keywords")            # bundled synthetic speech, built once (edgernn.data.keywords)
    ds = load_dataset("speech_commands/", audio={"sample_rate": 16000, "clip_ms": 1000, "hop_ms": 20})

A new kind of input (an audio folder, a bundled keyword set, token/text sets) gets a module of its own and
a row here.
"""

from __future__ import annotations

from pathlib import Path

from edgernn.data.audio import load_audio_folder
from edgernn.data.dataset import Dataset
from edgernn.data.files import load_csv, load_npz
from edgernn.data.synthetic import synthetic, synthetic_forecast
from edgernn.data.uea import basic_motions, japanese_vowels
from edgernn.errors import DataError


def keywords(seed: int = 0, voices: str = "full", progress: bool = False, **audio) -> Dataset:
    """The bundled keyword set: synthesized at first use into the user cache (edgernn.data.keywords), then
    loaded like any audio folder. Test voices are never heard in training."""
    from edgernn.data.keywords import build_keywords, keywords_cache_dir
    from edgernn.progress import progressbar

    target = keywords_cache_dir(seed, voices)
    if (target / "BUILD.json").is_file():
        path = target
    else:
        with progressbar(length=1, label="build the keyword set (synthetic speech, once)", enabled=progress) as bar:
            def tick(done, total):
                bar.length = total
                bar.update(done - bar.pos)

            path = build_keywords(target, seed=seed, voices=voices, progress=tick)
    return load_audio_folder(path, seed=seed, name="keywords", progress=progress, **audio)


DATASETS = {
    "basic-motions": basic_motions,
    "japanese-vowels": japanese_vowels,
    "synthetic": synthetic,
    "synthetic-forecast": synthetic_forecast,
    "keywords": keywords,
}
AUDIO = {"keywords"}  # loaders that take the audio options (sample rate, clip and hop lengths)


def audio_summary(name: str) -> dict:
    """What `edgernn datasets` lists for a bundled audio set without building it (its counts once built)."""
    from edgernn.data.keywords import KEYWORDS, keywords_cache_dir

    built = keywords_cache_dir(0, "full") / "BUILD.json"
    info = {"name": name, "task": "classify", "seq_len": 50, "channels": 320, "num_classes": len(KEYWORDS) + 2,
            "n_train": "-", "n_test": "-", "description": (
                f"synthetic speech (espeak-ng + flite voices): {len(KEYWORDS)} keywords + unknown + silence, 1 s "
                f"clips at 16 kHz as 50 hops of 20 ms; built at first use into {built.parent}"
                + (" (built)" if built.is_file() else " (not built yet: about 2 minutes)"))}
    return info


TOKEN_DATASETS = {  # token sets: name -> "module:function" (imported on first use)
    "g2p": "edgernn.data.tokens:g2p",
    "names": "edgernn.data.names:names",
    "words": "edgernn.data.tokens:words",
}
TOKEN_SUFFIXES = (".tsv", ".jsonl")  # .csv too when its header has a text / source column (edgernn.data.token_files)


def is_token_spec(spec: str) -> bool:
    """True for a bundled token set or a token file (text,label / text,tags / source,target / text)."""
    if spec in TOKEN_DATASETS:
        return True
    p = Path(spec)
    if p.suffix.lower() in TOKEN_SUFFIXES:
        return True
    if p.suffix.lower() == ".csv" and p.is_file():
        try:
            with open(p, encoding="utf-8", errors="replace") as f:
                header = {c.strip().strip('"').lstrip("\ufeff") for c in f.readline().strip().lower().split(",")}
        except OSError:
            return False
        return bool(header & {"text", "source"})
    return False


def load_token_dataset(spec: str, seed: int = 0, limit: int | None = None, **kw):
    """A bundled token set (TOKEN_DATASETS) or a token file (edgernn.data.token_files) -> TokenDataset."""
    import importlib

    if spec in TOKEN_DATASETS:
        module, func = TOKEN_DATASETS[spec].split(":")
        loader = getattr(importlib.import_module(module), func)
        return loader(seed=seed, **({"limit": limit} if limit and spec in ("g2p", "words") else {}), **kw)
    from edgernn.data.token_files import load_token_file

    return load_token_file(spec, seed=seed, **kw)


def load_dataset(spec: str, seed: int = 0, audio: dict | None = None, progress: bool = False, **kw) -> Dataset:
    """A bundled dataset name (see DATASETS), a .npz / .csv file, or a folder of labelled audio clips.
    audio: sample_rate / clip_ms / hop_ms for audio sets (ignored by the others); progress: bars while an audio
    set is built or decoded."""
    if spec in DATASETS:
        extra = {**(audio or {}), "progress": progress} if spec in AUDIO else {}
        return DATASETS[spec](seed=seed, **extra, **kw)
    p = Path(spec)
    if p.is_dir():
        return load_audio_folder(p, seed=seed, progress=progress, **(audio or {}), **kw)
    if p.suffix.lower() == ".npz":
        return load_npz(p, seed=seed)
    if p.suffix.lower() == ".csv":
        return load_csv(p, seed=seed)
    if p.exists():
        raise DataError(f"{spec}: unsupported file type {p.suffix or '(none)'}; use .npz (X [N,T,C], y [N]) or .csv")
    raise DataError(f"unknown dataset {spec!r}; choose one of: {', '.join(DATASETS)}, or give a .npz/.csv path or "
                    "a folder of audio clips (one sub-folder per label)")
