"""
Small audio folders in the Speech Commands layout, written as real files (libsndfile through soundfile)
for the audio tests: tones per label, one file per speaker and take.

    root = tone_folder(tmp_path, labels=("low", "high"), speakers=6)
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

FREQS = {"low": 300.0, "mid": 1200.0, "high": 3000.0, "up": 700.0, "down": 2000.0}


def tone(freq: float, sr: int, seconds: float, rng, amp: float = 0.3) -> np.ndarray:
    t = np.arange(int(sr * seconds)) / sr
    x = amp * np.sin(2 * np.pi * freq * rng.uniform(0.95, 1.05) * t)
    x *= np.hanning(len(x))  # a word-like onset and decay
    return (x + rng.normal(0, 0.003, len(x))).astype(np.float32)


def tone_folder(root: Path, labels=("low", "high"), speakers: int = 6, takes: int = 2, sr: int = 16000,
                ext: str = ".wav", background: bool = False, seconds: float = 0.6, seed: int = 0) -> Path:
    import soundfile as sf

    rng = np.random.default_rng(seed)
    root.mkdir(parents=True, exist_ok=True)
    for lab in labels:
        (root / lab).mkdir(exist_ok=True)
        for s in range(speakers):
            for k in range(takes):
                x = tone(FREQS[lab], sr, seconds, rng)
                sf.write(str(root / lab / f"spk{s}_nohash_{k}{ext}"), x, sr,
                         subtype="PCM_16" if ext != ".ogg" else None)
    if background:
        (root / "_background_noise_").mkdir(exist_ok=True)
        for i in range(2):
            sf.write(str(root / "_background_noise_" / f"noise{i}.wav"),
                     rng.normal(0, 0.05, sr * 12).astype(np.float32), sr, subtype="PCM_16")
    return root
