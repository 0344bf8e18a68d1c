"""
The bundled synthetic keyword set (edgernn.data.keywords), built with the real espeak-ng and flite:
the Speech Commands layout and audio format, whole held-out speakers (never in training, validation or the
babble), byte-identical rebuilds, the cache, the atomic build and the one-line errors.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from edgernn.data import keywords as kw
from edgernn.data.keywords import KEYWORDS, UNKNOWN_WORDS, build_keywords, keywords_cache_dir
from edgernn.errors import DataError

# skipped without the engines, except in CI (`make test` installs them): there a missing engine fails
engines = pytest.mark.skipif(not (shutil.which("espeak-ng") and shutil.which("flite"))
                             and os.environ.get("CI", "").strip().lower() in ("", "0", "false", "no"),
                             reason="needs the speech engines: apt-get install espeak-ng flite")
SMALL_WORDS = ("yes", "no", "stop")


def speaker_of(rel: str) -> str:
    return rel.rsplit("/", 1)[-1].split("_nohash_")[0]


def clips(root: Path) -> list[str]:
    return sorted(p.relative_to(root).as_posix() for p in root.glob("*/*.wav") if p.parent.name != "_background_noise_")


def digests(root: Path) -> dict[str, str]:
    return {p.relative_to(root).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file() and p.name != "BUILD.json"}


@pytest.fixture(scope="module")
def small(tmp_path_factory):
    """One small build (seed 0), recording progress calls and which speakers the engines were asked for."""
    calls, said = [], []
    real_say = kw._say

    def spy(spk, text, speed, pitch, tmp, tag):
        said.append((spk.id, tag))
        return real_say(spk, text, speed, pitch, tmp, tag)

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(kw, "_say", spy)
        root = build_keywords(tmp_path_factory.mktemp("kw") / "small", seed=0, voices="small",
                              progress=lambda done, total: calls.append((done, total)))
    return root, calls, said


@engines
def test_small_build_layout_format_and_held_out_speakers(small):
    root, calls, said = small
    info = json.loads((root / "BUILD.json").read_text())
    assert sorted(p.name for p in root.iterdir() if p.is_dir()) == sorted(("_background_noise_", "_unknown_")
                                                                          + SMALL_WORDS)
    assert calls and calls[-1][0] == calls[-1][1] == info["clips"] + len(kw.NOISES)
    assert [d for d, _ in calls] == list(range(1, len(calls) + 1))

    rels = clips(root)
    assert len(rels) == info["clips"] == sum(info["labels"].values())
    for rel in rels:
        assert re.fullmatch(r"(yes|no|stop|_unknown_)/[a-z0-9-]+_nohash_\d+\.wav", rel), rel
        meta = sf.info(root / rel)
        assert (meta.samplerate, meta.channels, meta.subtype, meta.frames) == (16000, 1, "PCM_16", 16000), rel
        x = sf.read(root / rel, dtype="int16")[0].astype(np.float64)
        assert np.abs(x).max() >= 32767 * 10 ** (-20.5 / 20) and np.sqrt(np.mean(x ** 2)) > 100, rel
    n_keyword = info["labels"]["yes"]
    assert info["labels"]["no"] == info["labels"]["stop"] == n_keyword
    assert 1.5 * n_keyword <= info["labels"]["_unknown_"] <= 2 * n_keyword

    noise = sorted((root / "_background_noise_").glob("*.wav"))
    assert len(noise) == 6
    for p in noise:
        meta = sf.info(p)
        assert (meta.samplerate, meta.channels, meta.subtype) == (16000, 1, "PCM_16") and meta.duration >= 10
        assert np.abs(sf.read(p, dtype="int16")[0]).max() > 1000

    test = (root / "testing_list.txt").read_text().splitlines()
    val = (root / "validation_list.txt").read_text().splitlines()
    assert test and val and set(test) <= set(rels) and set(val) <= set(rels) and not set(test) & set(val)
    spk_test, spk_val = {speaker_of(r) for r in test}, {speaker_of(r) for r in val}
    train = [r for r in rels if r not in set(test) | set(val)]
    spk_train = {speaker_of(r) for r in train}
    assert not spk_test & spk_train and not spk_test & spk_val and not spk_val & spk_train
    # same speaker -> same split: every clip of a held-out speaker is listed
    assert set(test) == {r for r in rels if speaker_of(r) in spk_test}
    assert set(val) == {r for r in rels if speaker_of(r) in spk_val}
    assert {n: sorted(s) for n, s in (("train", spk_train), ("validation", spk_val), ("test", spk_test))} \
        == info["speakers_by_split"]
    for group in (spk_train, spk_test):
        assert {s.split("-")[0] for s in group} == {"espeak", "flite"}
    # the babble noise is spoken by training voices only
    babble = {sid for sid, tag in said if tag.startswith("babble/")}
    assert babble and babble <= spk_train
    assert {sid for sid, tag in said if not tag.startswith("babble/")} == spk_train | spk_val | spk_test


@engines
def test_same_seed_is_byte_identical_and_another_seed_differs(small, tmp_path):
    root = small[0]
    again = tmp_path / "again"  # built by another process with another str-hash salt: no hash() in the seeding
    code = f"from pathlib import Path; from edgernn.data.keywords import build_keywords; " \
           f"build_keywords(Path({str(again)!r}), seed=0, voices='small')"
    subprocess.run([sys.executable, "-c", code], check=True, env={**os.environ, "PYTHONHASHSEED": "12345"},
                   cwd=Path(__file__).resolve().parents[1])
    other = build_keywords(tmp_path / "other", seed=1, voices="small")
    a, b, c = digests(root), digests(again), digests(other)
    assert len(a) == len(clips(root)) + 6 + 2 and a == b
    common = set(a) & set(c)
    assert sum(a[k] != c[k] for k in common) > 0.9 * len(common)


@engines
def test_a_finished_build_is_returned_at_once(small):
    root = small[0]
    before = (root / "BUILD.json").stat().st_mtime_ns
    assert build_keywords(root, seed=0, voices="small") == root
    assert (root / "BUILD.json").stat().st_mtime_ns == before
    assert not list(root.parent.glob(".build-*"))


@engines
def test_a_failed_build_leaves_nothing_at_dest(tmp_path, monkeypatch):
    real_say, n = kw._say, [0]

    def fail_on_the_20th(*a):
        n[0] += 1
        if n[0] == 20:
            raise DataError("injected")
        return real_say(*a)

    monkeypatch.setattr(kw, "_say", fail_on_the_20th)
    with pytest.raises(DataError, match="injected"):
        build_keywords(tmp_path / "kw", voices="small")
    assert list(tmp_path.iterdir()) == []


@engines
def test_a_failing_engine_call_names_word_voice_and_stderr(tmp_path):
    bad = kw.Speaker("espeak-bad", "espeak-ng", "xx-no-such-voice", "espeak-bad", 160, 50)
    with pytest.raises(DataError, match=r"espeak-ng failed to say 'yes' with voice xx-no-such-voice: .*does not exist"):
        kw._say(bad, "yes", 160, 50, tmp_path, "t")


def test_a_missing_engine_names_the_install_command(tmp_path, monkeypatch):
    (tmp_path / "empty").mkdir()
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))
    with pytest.raises(DataError, match="apt-get install espeak-ng flite") as err:
        build_keywords(tmp_path / "kw", voices="small")
    assert "\n" not in str(err.value)
    assert not (tmp_path / "kw").exists() and not list(tmp_path.glob(".build-*"))


def test_cache_dir_and_word_lists(monkeypatch, tmp_path):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    assert keywords_cache_dir(3, "small") == tmp_path / "edgernn" / "datasets" / "keywords-v3-small-seed3"
    assert len(KEYWORDS) == 10 and len(UNKNOWN_WORDS) >= 20 and not set(KEYWORDS) & set(UNKNOWN_WORDS)
    full = kw.speakers("full")
    split = kw.split_speakers(full, 0)
    assert 60 <= len(full) <= 80 and len({s.id for s in full}) == len(full)
    n = {name: sum(v == name for v in split.values()) for name in ("train", "validation", "test")}
    assert 0.12 <= n["test"] / len(full) <= 0.2 and 0.07 <= n["validation"] / len(full) <= 0.13
    for group in {s.group for s in full}:  # kal and kal16 are one voice: one split
        assert len({split[s.id] for s in full if s.group == group}) == 1
