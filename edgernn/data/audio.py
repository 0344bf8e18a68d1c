"""
Audio folders (the Speech Commands layout) -> a Dataset of raw PCM cut into hops, decoded once and cached.

    ds = load_audio_folder("speech_commands/", seed=0)          # 16 kHz, 1 s clips, 20 ms hops
    ds.X_train.shape                                             # [N, 50, 320] float32 PCM in [-1, 1]
    ds.audio                                                     # sample rate, clip, hop, speakers, notes

The layout: one sub-folder per label of clips (.wav, .flac, .ogg; decoded by libsndfile through
soundfile), optionally
  _background_noise_/   long recordings: a `_silence_` class is cut from them (unless a `_silence_`
                        folder exists) and they are mixed into part of the training clips;
  _unknown_/            a class like any other (words that are not keywords);
  testing_list.txt / validation_list.txt   relative paths of the test / validation clips.
Without the lists, whole speakers go to test (20%) and validation (10%), seeded: the speaker is the file
name's prefix before `_nohash_` (Speech Commands), else the file itself. Every clip is mixed down to mono,
resampled (soxr) to the sample rate, and padded with zeros or centre-cropped to the clip length.
Decoded clips are cached (int16, keyed by the folder's file names, sizes and times and the options) in
the user cache, so a second load of a Speech-Commands-size folder takes seconds.
"""

from __future__ import annotations

import hashlib
import json
import os
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from edgernn.data.dataset import Dataset
from edgernn.data.labels import natural_key
from edgernn.errors import DataError, require

AUDIO_EXTS = (".wav", ".flac", ".ogg")
BACKGROUND, SILENCE, UNKNOWN = "_background_noise_", "_silence_", "_unknown_"
TEST_FRACTION, VAL_FRACTION = 0.2, 0.1  # of the speakers, when the folder has no split lists
BACKGROUND_MIX = 0.8  # share of training clips that get background noise mixed in
BACKGROUND_GAIN = (0.0, 0.1)  # peak-relative gain range of the mixed-in noise (Speech Commands' recipe)


@dataclass(frozen=True)
class AudioOptions:
    sample_rate: int = 16000
    clip_ms: float = 1000.0
    hop_ms: float = 20.0

    @property
    def clip(self) -> int:
        return int(round(self.clip_ms * self.sample_rate / 1000))

    @property
    def hop(self) -> int:
        return int(round(self.hop_ms * self.sample_rate / 1000))


def cache_root() -> Path:
    return Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "edgernn" / "audio"


def speaker_of(name: str) -> str:
    stem = Path(name).stem
    return stem.split("_nohash_")[0] if "_nohash_" in stem else stem


def decode(path: Path, opts: AudioOptions) -> np.ndarray:
    """One file -> mono float32 at opts.sample_rate (any length). DataError naming the file if unreadable."""
    sf = require("soundfile", "audio")
    try:
        data, sr = sf.read(str(path), dtype="float32", always_2d=True)
    except Exception as exc:  # libsndfile's errors: corrupt header, unsupported format, truncated data
        raise DataError(f"{path}: cannot decode audio ({str(exc).splitlines()[0] if str(exc) else exc})") from exc
    if data.shape[0] == 0:
        raise DataError(f"{path}: the clip has 0 samples")
    x = data.mean(axis=1) if data.shape[1] > 1 else data[:, 0]
    if sr != opts.sample_rate:
        soxr = require("soxr", "audio")
        x = soxr.resample(x, sr, opts.sample_rate).astype(np.float32)
    if not np.isfinite(x).all():
        raise DataError(f"{path}: holds NaN or infinite samples")
    return x


def fit_clip(x: np.ndarray, n: int) -> np.ndarray:
    if len(x) >= n:
        start = (len(x) - n) // 2
        return x[start:start + n]
    return np.pad(x, (0, n - len(x)))


def scan(root: Path) -> tuple[dict, list, int]:
    """{label: [relative paths]}, background files, count of skipped non-audio files."""
    if not root.is_dir():
        raise DataError(f"{root}: not a directory of label folders")
    classes, background = {}, []
    lists = {"testing_list.txt", "validation_list.txt", "LICENSE", "README.md", "BUILD.json"}
    skipped = sum(1 for p in root.iterdir() if p.is_file() and not p.name.startswith(".") and p.name not in lists)
    for sub in sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith(".")):
        files = sorted(p for p in sub.rglob("*") if p.is_file())
        audio = [p for p in files if p.suffix.lower() in AUDIO_EXTS]
        skipped += len(files) - len(audio)
        if sub.name == BACKGROUND:
            background = [p.relative_to(root).as_posix() for p in audio]
            continue
        if not audio:
            raise DataError(f"{sub}: label folder holds no audio files ({', '.join(AUDIO_EXTS)}); remove it or "
                            "add clips")
        classes[sub.name] = [p.relative_to(root).as_posix() for p in audio]
    return classes, background, skipped


def _read_list(root: Path, name: str) -> set | None:
    p = root / name
    if not p.is_file():
        return None
    return {line.strip().replace("\\", "/") for line in p.read_text(encoding="utf-8").splitlines() if line.strip()}


def _cache_key(root: Path, files: list, opts: AudioOptions) -> str:
    h = hashlib.sha256(json.dumps([opts.sample_rate, opts.clip]).encode())
    for rel in files:
        st = (root / rel).stat()
        h.update(f"{rel}\0{st.st_size}\0{st.st_mtime_ns}\n".encode())
    return h.hexdigest()[:24]


def decode_all(root: Path, files: list, opts: AudioOptions, progress: bool = False) -> np.ndarray:
    """[len(files), clip] int16, from the cache when the folder has not changed (progress: a bar while
    decoding)."""
    from edgernn.progress import progressbar
    from edgernn.runtimes.files import atomic_save_npz

    key = _cache_key(root, files, opts)
    cached = cache_root() / f"clips-{key}.npz"
    if cached.is_file():
        try:
            with np.load(cached) as z:
                return z["pcm"]
        except Exception:  # a damaged cache file is rebuilt, never trusted
            pass
    out = np.empty((len(files), opts.clip), np.int16)
    with progressbar(length=len(files), label=f"decode {root.name}", enabled=bool(progress)) as bar:
        for i, rel in enumerate(files):
            x = fit_clip(decode(root / rel, opts), opts.clip)
            out[i] = np.round(np.clip(x, -1.0, 32767 / 32768) * 32768).astype(np.int16)
            bar.update(1)
    try:
        cached.parent.mkdir(parents=True, exist_ok=True)
        atomic_save_npz(cached, pcm=out)
    except OSError:
        pass  # a read-only cache only costs the next load its decoding time
    return out


def cached_features(ds: Dataset, fe) -> tuple[np.ndarray, np.ndarray]:
    """Front-end features (un-normalized) of ds's training and test clips, computed once per folder state,
    seed and front end, and kept in the user cache beside the decoded clips."""
    from edgernn.runtimes.files import atomic_save_npz

    fe_key = hashlib.sha256(json.dumps({k: v for k, v in fe.to_dict().items() if k not in ("mean", "std")},
                                       sort_keys=True).encode()).hexdigest()[:12]
    path = cache_root() / f"features-{ds.audio['cache_key']}-{fe_key}.npz"
    if path.is_file():
        try:
            with np.load(path) as z:
                if z["train"].shape[0] == len(ds.X_train) and z["test"].shape[0] == len(ds.X_test):
                    return z["train"], z["test"]
        except Exception:  # a damaged cache file is recomputed
            pass
    train, test = fe.features(ds.X_train), fe.features(ds.X_test)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        atomic_save_npz(path, train=train, test=test)
    except OSError:
        pass
    return train, test


def _silence(noise: list, n: int, clip: int, rng, part: tuple) -> np.ndarray:
    """n clips cut at random from the given part (start, end fractions) of the background recordings,
    at random gains (one in ten digital zero)."""
    out = np.zeros((n, clip), np.float32)
    usable = [x for x in noise if int(len(x) * (part[1] - part[0])) > clip]
    for i in range(n):
        if not usable or i % 10 == 0:
            continue
        x = usable[rng.integers(len(usable))]
        lo, hi = int(len(x) * part[0]), int(len(x) * part[1]) - clip
        s = rng.integers(lo, hi)
        out[i] = x[s:s + clip] * rng.uniform(0.05, 1.0)
    return out


def _mix_background(X: np.ndarray, noise: list, rng) -> None:
    usable = [x for x in noise if len(x) > X.shape[1]]
    if not usable:
        return
    for i in np.flatnonzero(rng.random(len(X)) < BACKGROUND_MIX):
        x = usable[rng.integers(len(usable))]
        s = rng.integers(0, len(x) * 4 // 5 - X.shape[1]) if len(x) * 4 // 5 > X.shape[1] else 0
        X[i] = np.clip(X[i] + x[s:s + X.shape[1]] * rng.uniform(*BACKGROUND_GAIN), -1.0, 1.0)


def load_audio_folder(path, seed: int = 0, sample_rate: int = 16000, clip_ms: float = 1000.0,
                      hop_ms: float = 20.0, progress: bool = False, name: str | None = None) -> Dataset:
    """Load a folder of labelled clips (see the module docstring) as [N, clip / hop, hop] float32 PCM."""
    root = Path(path)
    opts = AudioOptions(int(sample_rate), float(clip_ms), float(hop_ms))
    if opts.hop < 1 or opts.clip % opts.hop:
        raise DataError(f"--clip-ms {clip_ms} is not a whole number of {hop_ms:g} ms hops at {sample_rate} Hz")
    classes, background, skipped = scan(root)
    labels = sorted(classes, key=natural_key)
    if not background and SILENCE not in classes:
        pass  # no silence class: nothing to cut it from
    elif SILENCE not in classes:
        labels = sorted(labels + [SILENCE], key=natural_key)
    if len(labels) < 2:
        raise DataError(f"{root}: only {len(labels)} class ({', '.join(labels) or 'none'}); a classifier needs at "
                        "least 2 label folders")
    files = [rel for lab in sorted(classes) for rel in classes[lab]]
    y_all = np.array([labels.index(rel.split("/")[0]) for rel in files], np.int64)
    test_list, val_list = _read_list(root, "testing_list.txt"), _read_list(root, "validation_list.txt")
    speakers = [speaker_of(rel) for rel in files]
    if test_list is not None or val_list is not None:
        split = np.array(["test" if rel in (test_list or ()) else "val" if rel in (val_list or ()) else "train"
                          for rel in files])
        how = "testing_list.txt / validation_list.txt"
    else:
        uniq = sorted(set(speakers))
        rng = np.random.default_rng(seed)
        order = [uniq[i] for i in rng.permutation(len(uniq))]
        n_test = max(1, int(round(len(uniq) * TEST_FRACTION)))
        n_val = int(round(len(uniq) * VAL_FRACTION)) if len(uniq) - n_test > 2 else 0
        which = {s: "test" for s in order[:n_test]} | {s: "val" for s in order[n_test:n_test + n_val]}
        split = np.array([which.get(s, "train") for s in speakers])
        how = f"by speaker, seeded ({len(uniq)} speakers: {n_test} test, {n_val} validation)"
    if not (split == "test").any() or (split == "test").all():
        raise DataError(f"{root}: the split leaves {'no' if not (split == 'test').any() else 'only'} test clips; "
                        "add speakers or fix testing_list.txt")
    pcm = decode_all(root, files, opts, progress=progress).astype(np.float32) / 32768.0
    key = f"{_cache_key(root, files + background, opts)}-seed{seed}"  # the clips, mixed as seeded below
    noise = [decode(root / rel, opts) for rel in background]  # long recordings, decoded whole
    rng = np.random.default_rng(zlib.crc32(f"audio-{seed}".encode()))
    parts = {"train": [], "val": [], "test": []}
    for s in parts:
        idx = np.flatnonzero(split == s)
        X, y, groups = pcm[idx], y_all[idx], [speakers[i] for i in idx]
        if SILENCE in labels and SILENCE not in classes and len(idx):
            n_sil = max(1, int(round(len(idx) / max(1, len(classes)))))
            part = (0.8, 1.0) if s == "test" else (0.0, 0.8)  # test silence from recording ends never trained on
            X = np.concatenate([X, _silence(noise, n_sil, opts.clip, rng, part)])
            y = np.concatenate([y, np.full(n_sil, labels.index(SILENCE), np.int64)])
            groups += [f"{BACKGROUND}{s}"] * n_sil  # cut from the background recordings' {s} part
        if s != "test" and noise:
            X = X.copy()
            _mix_background(X, noise, rng)
        parts[s] = (X, y, groups)
    X_tr = np.concatenate([parts["train"][0], parts["val"][0]])
    y_tr = np.concatenate([parts["train"][1], parts["val"][1]])
    missing = [labels[c] for c in range(len(labels)) if not (y_tr == c).any()]
    if missing:
        raise DataError(f"{root}: no training clips for {', '.join(missing)} (all of them are in the test or "
                        "validation lists)")
    T = opts.clip // opts.hop
    X_te, y_te = parts["test"][0], parts["test"][1]
    ds = Dataset(
        name=name or root.name, task="classify",
        X_train=X_tr.reshape(len(X_tr), T, opts.hop).astype(np.float32), y_train=y_tr,
        len_train=np.full(len(X_tr), T, np.int64),
        X_test=X_te.reshape(len(X_te), T, opts.hop).astype(np.float32), y_test=y_te,
        len_test=np.full(len(X_te), T, np.int64), labels=labels,
        description=f"audio clips from {root}: {len(files)} clips, {len(labels)} classes, split {how}",
    )
    ds.val_index = np.arange(len(parts["train"][0]), len(X_tr)) if len(parts["val"][0]) else None
    ds.groups = parts["train"][2] + parts["val"][2]
    ds.test_groups = parts["test"][2]
    ds.audio = {"sample_rate": opts.sample_rate, "clip_ms": opts.clip_ms, "hop_ms": opts.hop_ms,
                "clips": len(files), "background_files": len(background), "skipped_non_audio": skipped,
                "split": how, "cache_key": key}
    return ds
