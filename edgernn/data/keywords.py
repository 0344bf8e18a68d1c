"""
The bundled keyword set: a synthetic Speech Commands-style folder (10 keywords, _unknown_ words,
_background_noise_), spoken by espeak-ng and flite voices and built deterministically at first use.

    path = build_keywords(keywords_cache_dir(0, "full"))      # 75 voices, 2625 clips: ~40 s on 2 cores, once
    path = build_keywords(tmp / "kw", voices="small")         # 8 voices, 3 keywords: a few seconds, for tests

It needs the engines: apt-get install espeak-ng flite.
Layout: <word>/<speaker>_nohash_<k>.wav (16 kHz mono int16, exactly 1.0 s), _unknown_/..., _background_noise_/
(60 s each: white, pink, brown, mains hum, babble of training voices, room), testing_list.txt and
validation_list.txt (whole held-out speakers: a test voice is never heard in training, validation or the
babble) and BUILD.json (written last; its presence means the folder is complete). A "speaker" is one engine +
voice + variant + base speed/pitch; every clip then varies speed, pitch and gain, and some get synthetic
reverberation and noise at 20/15/10/5 dB SNR. Same seed -> byte-identical files (given the same engine
versions, recorded in BUILD.json).

This is SYNTHETIC speech. A model trained only on it meets real voices, microphones and rooms as a domain
shift, so its accuracy here says little about real use. A real dataset in the same layout (Google Speech
Commands) is a drop-in replacement for this folder.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import tempfile
import time
import zlib
from concurrent.futures import FIRST_COMPLETED, ThreadPoolExecutor, wait
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import soundfile as sf
import soxr

from edgernn.errors import ConfigError, DataError

KEYWORDS = ("yes", "no", "up", "down", "left", "right", "on", "off", "stop", "go")
UNKNOWN_WORDS = ("bed", "bird", "cat", "dog", "happy", "house", "tree", "wow", "zero", "one", "two", "three", "four",
                 "five", "six", "seven", "eight", "nine", "marvin", "sheila")
# babble phrases are made of these (none is a keyword or an unknown word)
BABBLE_WORDS = ("hello", "water", "morning", "because", "about", "people", "little", "number", "picture", "coffee",
                "window", "table", "kitchen", "music", "yellow", "garden", "minute", "paper", "family", "question",
                "station", "winter", "basket", "river", "pencil", "orange", "doctor", "letter", "monday", "really")
NOISES = ("white", "pink", "brown", "hum", "babble", "room")
NOISE_FILES = {"white": "white_noise", "pink": "pink_noise", "brown": "brown_noise", "hum": "mains_hum",
               "babble": "babble", "room": "room_noise"}
SR = 16000
INSTALL = "apt-get install espeak-ng flite"
VERSION = 3

ESPEAK_ACCENTS = ("en-us", "en-gb", "en-gb-scotland", "en-029", "en-gb-x-rp", "en-us-nyc", "en-gb-x-gbclan",
                  "en-gb-x-gbcwmd")
# espeak-ng voice variants (espeak-ng-data/voices/!v), mixed so that any prefix has male, female and Klatt voices;
# left out: whisper, robot and effect variants (robosoft*, Demonic, announcer, ...), fast (a speed preset) and
# antonio (clips, very short vowels); -a 25 keeps the loudest (iven) from clipping
ESPEAK_VARIANTS = (
    "m3", "f2", "klatt", "Andy", "f1", "m1", "Alicia", "klatt2", "adam", "f3", "m2", "Andrea", "klatt3", "benjamin",
    "f4", "m4", "Annie", "klatt4", "boris", "f5", "m5", "aunty", "klatt5", "caleb", "belinda", "m6", "linda", "klatt6",
    "david", "steph", "m7", "steph2", "ed", "steph3", "m8", "anika", "edward", "grandma", "Alex", "Denis", "Diogo",
    "Gene", "Henrique", "Hugo", "Jacky", "Lee", "Marco", "Mario", "Michael", "Mike", "Nguyen", "Storm", "Tweaky",
    "michel", "grandpa", "gustave", "iven", "john", "max", "norbert", "paul", "travis")
# flite voice families (kal and kal16 are one speaker at two rates: they share a split), the voices' mean f0 (Hz,
# measured) and the base (duration stretch, f0 factor) settings; awb_time is left out (it only says clock times)
FLITE_FAMILIES = {"awb": ("awb",), "kal": ("kal", "kal16"), "rms": ("rms",), "slt": ("slt",)}
FLITE_F0 = {"awb": 133.0, "kal": 99.0, "kal16": 99.0, "rms": 103.0, "slt": 172.0}
FLITE_SETTINGS = ((1.0, 1.0), (0.88, 1.15), (1.15, 0.87))
# voices -> (flite settings per voice, espeak speakers, keywords, repetitions, unknown clips per speaker, noise s)
SIZES = {"full": (3, len(ESPEAK_VARIANTS), KEYWORDS, 8, 12, 60), "small": (1, 4, ("yes", "no", "stop"), 1, 2, 10)}
MAX_WORD = int(0.95 * SR)  # a longer word is re-synthesized faster (twice at most), then cropped to 1 s


@dataclass(frozen=True)
class Speaker:
    id: str
    engine: str  # "espeak-ng" | "flite"
    voice: str  # "en-gb-scotland+klatt2" | "slt"
    group: str  # speakers of one group always share a split
    speed: float  # espeak-ng: words per minute; flite: duration stretch (larger = slower)
    pitch: float  # espeak-ng: 0-99; flite: mean f0 in Hz


def keywords_cache_dir(seed: int, voices: str) -> Path:
    """Where the cached build for (seed, voices) lives: $XDG_CACHE_HOME/edgernn/datasets/keywords-v1-..."""
    base = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return base / "edgernn" / "datasets" / f"keywords-v{VERSION}-{voices}-seed{seed}"


def _rng(seed: int, *key) -> np.random.Generator:
    """A generator for one stable key (crc32 of its text, never Python's salted hash())."""
    return np.random.default_rng([seed, zlib.crc32("/".join(map(str, key)).encode())])


def speakers(voices: str = "full") -> list[Speaker]:
    """The speakers of a build: fixed (not seeded), so a speaker id names the same voice in every build."""
    per_flite, n_espeak = SIZES[voices][:2]
    out = []
    for fam, names in FLITE_FAMILIES.items():
        for name in names[-1:] if voices == "small" else names:  # small: one voice per family (kal16)
            n = max(1, per_flite - (len(names) > 1))  # a two-voice family (kal, kal16) gets a setting less each
            for j, (stretch, f0) in enumerate(FLITE_SETTINGS[:n]):
                out.append(Speaker(f"flite-{name}-{j}", "flite", name, f"flite-{fam}", stretch, FLITE_F0[name] * f0))
    rng = np.random.default_rng(zlib.crc32(b"espeak-speakers"))
    for i, variant in enumerate(ESPEAK_VARIANTS):
        accent = ESPEAK_ACCENTS[i % len(ESPEAK_ACCENTS)]
        speed, pitch = int(rng.integers(140, 196)), int(rng.integers(30, 71))
        if i < n_espeak:
            sid = re.sub(r"[^a-z0-9]+", "-", f"espeak-{accent}-{variant}".lower())
            out.append(Speaker(sid, "espeak-ng", f"{accent}+{variant}", sid, speed, pitch))
    return out


def split_speakers(spk: list[Speaker], seed: int) -> dict[str, str]:
    """speaker id -> "train" | "validation" | "test": whole groups, ~15% test and ~10% validation speakers.
    Test takes one flite family (train keeps the others: each flite family is a voice unlike any other, and a
    model that heard only one or two of them generalizes poorly to the next - measured: 30-50% accuracy on the
    held-out family with two in training), espeak-ng voices fill the quotas, so both engines are in train and
    test; validation is espeak-ng voices only."""
    rng = _rng(seed, "split")
    fams = sorted({s.group for s in spk if s.engine == "flite"})
    fams = [fams[i] for i in rng.permutation(len(fams))]
    esp = [s for s in spk if s.engine == "espeak-ng"]
    esp = [esp[i] for i in rng.permutation(len(esp))]
    out = {s.id: "train" for s in spk}
    quotas = (("test", max(2, round(0.15 * len(spk))), fams[0]),
              ("validation", max(1, round(0.10 * len(spk))), None))
    for name, quota, fam in quotas:
        chosen = [s for s in spk if s.group == fam]
        k = max(int(name == "test"), quota - len(chosen))
        chosen, esp = chosen + esp[:k], esp[k:]
        out.update({s.id: name for s in chosen})
    return out


def _check_engines(spk: list[Speaker]) -> dict[str, str]:
    """Both engines on PATH with every voice the build uses; returns their version strings."""
    for exe in ("espeak-ng", "flite"):
        if shutil.which(exe) is None:
            raise DataError(f"keyword set: {exe} is not installed (not on PATH); install both engines: {INSTALL}")
    run = lambda *a: subprocess.run(a, capture_output=True, text=True, check=False).stdout  # noqa: E731
    have = set(run("flite", "-lv").split(":")[-1].split())
    have |= {ln.split()[1] for ln in run("espeak-ng", "--voices=en").splitlines()[1:] if len(ln.split()) > 1}
    have |= {m.group(1) for m in re.finditer(r"!v/(\S+)", run("espeak-ng", "--voices=variant"))}
    need = {p for s in spk for p in s.voice.split("+")}
    if need - have:
        raise DataError(f"keyword set: the installed engines lack voices {', '.join(sorted(need - have))}; "
                        f"install the full engines: {INSTALL}")
    esp = run("espeak-ng", "--version").split("Data at")[0].strip()
    fl = next((ln.strip() for ln in run("flite", "--version").splitlines() if "version" in ln), "flite ?")
    return {"espeak-ng": esp, "flite": fl}


def _say(spk: Speaker, text: str, speed: float, pitch: float, tmp: Path, tag: str) -> tuple[np.ndarray, int]:
    """One engine call -> (audio trimmed of silence, float64, engine rate); speed and pitch are engine settings."""
    out = tmp / (re.sub(r"[^A-Za-z0-9]+", "-", tag) + ".wav")  # tags are unique within a build
    if spk.engine == "espeak-ng":
        cmd = ["espeak-ng", "-v", spk.voice, "-s", str(round(speed)), "-p", str(round(pitch)), "-a", "25",
               "-w", str(out), text]
    else:
        cmd = ["flite", "-voice", spk.voice, "--setf", f"duration_stretch={speed:.3f}",
               "--setf", f"int_f0_target_mean={pitch:.1f}", "-t", text, "-o", str(out)]
    res = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if res.returncode != 0 or not out.exists():
        last = (res.stderr.strip().splitlines() or [f"exit code {res.returncode}"])[-1]
        raise DataError(f"keyword set: {spk.engine} failed to say {text!r} with voice {spk.voice}: {last}")
    x, sr = sf.read(out, dtype="float64", always_2d=True)
    out.unlink()
    x = x.mean(axis=1)
    a = np.abs(x)
    if a.size == 0 or a.max() < 1e-3:
        raise DataError(f"keyword set: {spk.engine} said {text!r} with voice {spk.voice} as silence; "
                        f"check the voice: {' '.join(cmd[:3])}")
    # trim silence: above 1% of the peak and 3x the floor (awb's recordings hiss at ~0.7% of the peak)
    frames = a[: len(a) // (sr // 100) * (sr // 100)].reshape(-1, sr // 100).max(axis=1)
    floor = np.percentile(frames, 20) if frames.size else 0.0
    idx = np.flatnonzero(a > min(max(0.01 * a.max(), 3 * floor), 0.05 * a.max()))
    pad = sr // 60
    return x[max(0, idx[0] - pad): idx[-1] + pad + 1], sr


def _resample(x: np.ndarray, sr: float) -> np.ndarray:
    return soxr.resample(x, sr, SR) if sr != SR else x


def _fade(x: np.ndarray) -> np.ndarray:
    """5-ms fade in and out: no click at a trimmed or cropped edge."""
    ramp = np.sin(np.linspace(0, np.pi / 2, SR // 200)) ** 2
    x = x.copy()
    x[: len(ramp)] *= ramp
    x[-len(ramp):] *= ramp[::-1]
    return x


def _shaped(n: int, rng: np.random.Generator, shape) -> np.ndarray:
    """Gaussian noise whose spectrum is multiplied by shape(f) (f in Hz)."""
    f = np.fft.rfftfreq(n, 1 / SR)
    return np.fft.irfft(np.fft.rfft(rng.standard_normal(n)) * shape(np.maximum(f, 20.0)), n)


def make_noise(kind: str, n: int, rng: np.random.Generator, pool: list[np.ndarray]) -> np.ndarray:
    """n samples of one seeded noise kind (NOISES) at unit RMS; babble mixes phrases from `pool`."""
    if kind == "white":
        x = rng.standard_normal(n)
    elif kind == "pink":
        x = _shaped(n, rng, lambda f: f ** -0.5)
    elif kind == "brown":
        x = _shaped(n, rng, lambda f: 1 / f)
    elif kind == "hum":
        f0, t = float(rng.choice([50.0, 60.0])) * rng.uniform(0.995, 1.005), np.arange(n) / SR
        x = sum(rng.uniform(0.2, 1.0) / h * np.sin(2 * np.pi * f0 * h * t + rng.uniform(0, 2 * np.pi))
                for h in range(1, 9))
        x = x / np.sqrt(np.mean(x ** 2)) + 0.03 * rng.standard_normal(n)
    elif kind == "room":  # low rumble with a few room modes, plus faint ventilation hiss
        cut, modes = rng.uniform(150, 600), rng.uniform(40, 300, size=3)
        x = _shaped(n, rng, lambda f: 1 / (1 + (f / cut) ** 2) + 0.02
                    + sum(0.5 * np.exp(-0.5 * ((f - m) / 8) ** 2) for m in modes))
    elif kind == "babble":  # 5-10 overlapping streams of phrases at random levels
        x = np.zeros(n)
        for _ in range(int(rng.integers(5, 11))):
            pos = -int(rng.integers(0, SR))
            while pos < n:
                w = pool[int(rng.integers(len(pool)))] * 10 ** (rng.uniform(-12, 0) / 20)
                lo, hi = max(pos, 0), min(pos + len(w), n)
                if hi > lo:
                    x[lo:hi] += w[lo - pos: hi - pos]
                pos += len(w) + int(rng.uniform(0.05, 0.5) * SR)
    else:
        raise ValueError(kind)
    return x / (np.sqrt(np.mean(x ** 2)) + 1e-12)


def _reverb(x: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Convolve with an exponentially decaying noise impulse response (RT60 0.1-0.5 s, direct path first)."""
    rt60, drr = rng.uniform(0.1, 0.5), rng.uniform(0, 10)
    t = np.arange(int(rt60 * SR)) / SR
    h = rng.standard_normal(len(t)) * np.exp(-6.908 * t / rt60)
    h = h / np.sqrt(np.sum(h ** 2)) * 10 ** (-drr / 20)
    h[0] = 1.0
    m = 1 << int(np.ceil(np.log2(len(x) + len(h))))
    return np.fft.irfft(np.fft.rfft(x, m) * np.fft.rfft(h, m), m)[: len(x)]


def _write(path: Path, x: np.ndarray) -> None:
    sf.write(path, np.clip(np.round(x * 32767), -32768, 32767).astype(np.int16), SR, subtype="PCM_16")


def _clip(job, seed: int, pool: list[np.ndarray], tmp: Path, root: Path) -> None:
    """Synthesize, vary and write one 1-s clip; every random choice comes from the clip's own key."""
    spk, label, word, k, rel = job
    rng = _rng(seed, spk.id, label, word, k)
    speed_f, pitch_d, perturb = rng.uniform(0.88, 1.12), rng.uniform(-8, 8), rng.uniform(0.95, 1.05)
    gain_db, where = rng.uniform(-20, 0), rng.uniform()
    reverb, noisy = rng.uniform() < 0.3, rng.uniform() < 0.5
    kind, snr = NOISES[int(rng.integers(len(NOISES)))], float(rng.choice([20.0, 15.0, 10.0, 5.0]))
    sub = np.random.default_rng(rng.integers(2 ** 63, size=2))
    speed = spk.speed * speed_f if spk.engine == "espeak-ng" else spk.speed / speed_f
    pitch = spk.pitch + pitch_d if spk.engine == "espeak-ng" else spk.pitch * (1 + pitch_d / 100)
    for attempt in range(3):
        x, sr = _say(spk, word, speed, pitch, tmp, f"{rel}/{attempt}")
        x = _resample(x, sr * perturb)
        if len(x) <= MAX_WORD or attempt == 2:
            break
        faster = len(x) / (0.85 * SR)
        speed = speed * faster if spk.engine == "espeak-ng" else speed / faster
    x = _fade(x[:SR])  # still too long after two faster takes: cropped
    off = int(where * (SR - len(x)))
    y = np.zeros(SR)
    y[off: off + len(x)] = x / np.abs(x).max()
    if reverb:
        y = _reverb(y, sub)
    if noisy:
        p_speech = np.mean(y[off: off + len(x)] ** 2)
        y = y + make_noise(kind, SR, sub, pool) * np.sqrt(p_speech / 10 ** (snr / 10))
    _write(root / rel, y / np.abs(y).max() * 10 ** (gain_db / 20))


def _background(kind: str, seconds: int, seed: int, pool: list[np.ndarray], root: Path) -> None:
    x = make_noise(kind, seconds * SR, _rng(seed, "background", kind), pool) * (0.05 if kind == "babble" else 0.1)
    x = x * min(1.0, 0.95 / np.abs(x).max())
    _write(root / "_background_noise_" / f"{NOISE_FILES[kind]}.wav", x)


def _jobs(spk: list[Speaker], voices: str, seed: int) -> list[tuple]:
    """(speaker, label, word, k, relative path) for every clip, in a fixed order."""
    _, _, words, reps, n_unknown, _ = SIZES[voices]
    jobs = []
    for s in spk:
        jobs += [(s, w, w, k, f"{w}/{s.id}_nohash_{k}.wav") for w in words for k in range(reps)]
        unk = _rng(seed, "unknown", s.id).choice(UNKNOWN_WORDS, size=n_unknown, replace=False)
        jobs += [(s, "_unknown_", str(w), k, f"_unknown_/{s.id}_nohash_{k}.wav") for k, w in enumerate(unk)]
    return jobs


def _babble_pool(spk: list[Speaker], split: dict[str, str], seed: int, n: int, tmp: Path, ex) -> list[np.ndarray]:
    """n three-word phrases spoken by TRAINING speakers at their base settings, peak-normalized."""
    train = [s for s in spk if split[s.id] == "train"]
    rng = _rng(seed, "babble-pool")
    order = rng.permutation(len(train))
    picks = [(train[order[i % len(train)]], " ".join(rng.choice(BABBLE_WORDS, size=3))) for i in range(n)]

    def one(i):
        s, text = picks[i]
        x, sr = _say(s, text, s.speed, s.pitch, tmp, f"babble/{i}")
        x = _fade(_resample(x, sr))
        return x / np.abs(x).max()
    return list(ex.map(one, range(n)))


def _clean_stale(dest: Path) -> None:
    """Remove .build-<name>-<pid> folders whose process is gone (a killed build)."""
    for d in dest.parent.glob(f".build-{dest.name}-*"):
        pid = d.name.rsplit("-", 1)[-1]
        if not pid.isdigit() or int(pid) == os.getpid():
            continue
        try:
            os.kill(int(pid), 0)
        except ProcessLookupError:
            shutil.rmtree(d, ignore_errors=True)
        except OSError:
            pass


def build_keywords(dest: Path, seed: int = 0, voices: str = "full", progress=None) -> Path:
    """Build the synthetic keyword folder at dest (Speech Commands layout) and return dest.

    Cached: returns at once when dest/BUILD.json exists. Atomic: builds in dest.parent/.build-<name>-<pid>
    and renames it to dest when complete. progress(done, total) is called as each file is written.
    Raises DataError when espeak-ng or flite (or a voice) is missing, or a synthesis call fails."""
    dest = Path(dest)
    if (dest / "BUILD.json").exists():
        return dest
    if voices not in SIZES:
        raise ConfigError(f"keyword set: voices={voices!r}; choose one of: {', '.join(SIZES)}")
    if not isinstance(seed, int) or seed < 0:
        raise ConfigError(f"keyword set: seed={seed!r}; use an integer >= 0")
    if dest.exists() and (not dest.is_dir() or any(dest.iterdir())):
        raise DataError(f"keyword set: {dest} exists but is not a finished build (no BUILD.json); "
                        "remove it or choose another folder")
    spk = speakers(voices)
    engines = _check_engines(spk)
    split = split_speakers(spk, seed)
    jobs = _jobs(spk, voices, seed)
    seconds = SIZES[voices][5]
    dest.parent.mkdir(parents=True, exist_ok=True)
    _clean_stale(dest)
    work = dest.parent / f".build-{dest.name}-{os.getpid()}"
    shutil.rmtree(work, ignore_errors=True)
    t0 = time.perf_counter()
    tmp = Path(tempfile.mkdtemp(prefix="edgernn-kw-"))
    try:
        for d in {j[1] for j in jobs} | {"_background_noise_"}:
            (work / d).mkdir(parents=True)
        with ThreadPoolExecutor(max_workers=2) as ex:
            pool = _babble_pool(spk, split, seed, 48 if voices == "full" else 12, tmp, ex)
            futs = [ex.submit(_background, kind, seconds, seed, pool, work) for kind in NOISES]
            futs += [ex.submit(_clip, j, seed, pool, tmp, work) for j in jobs]
            total, done = len(futs), 0
            pending = set(futs)
            while pending:
                finished, pending = wait(pending, return_when=FIRST_COMPLETED)
                for f in finished:
                    if f.exception() is not None:
                        for p in pending:
                            p.cancel()
                        raise f.exception()
                    done += 1
                    if progress is not None:
                        progress(done, total)
        for name in ("test", "validation"):
            rel = sorted(j[4] for j in jobs if split[j[0].id] == name)
            (work / f"{'testing' if name == 'test' else name}_list.txt").write_text("".join(r + "\n" for r in rel))
        counts = {}
        for j in jobs:
            counts[j[1]] = counts.get(j[1], 0) + 1
        by_split = {n: sorted(s for s in split if split[s] == n) for n in ("train", "validation", "test")}
        info = {"dataset": "keywords", "version": VERSION, "seed": seed, "voices": voices, "engines": engines,
                "sample_rate": SR, "clip_samples": SR, "labels": counts, "clips": len(jobs),
                "background_seconds": seconds, "speakers": {n: len(v) for n, v in by_split.items()},
                "speakers_by_split": by_split, "build_seconds": round(time.perf_counter() - t0, 1)}
        (work / "BUILD.json").write_text(json.dumps(info, indent=1) + "\n")
        try:
            work.rename(dest)
        except OSError:
            if not (dest / "BUILD.json").exists():  # not a concurrent build of the same folder that finished first
                raise
            shutil.rmtree(work, ignore_errors=True)
    except BaseException:
        shutil.rmtree(work, ignore_errors=True)
        raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return dest
