"""Audio folders (edgernn.data.audio): real files written and decoded by libsndfile, resampled by soxr,
split by speaker; bad input in one line; an audio run trained, exported to ONNX with its front end inside,
and run from raw PCM (float and int16) by the runtime."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).parent))
from audio_folders import tone_folder  # noqa: E402

from edgernn.data import load_dataset  # noqa: E402
from edgernn.errors import DataError  # noqa: E402

sf = pytest.importorskip("soundfile")


@pytest.fixture(autouse=True)
def _own_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))


def test_folder_layout_speaker_split_and_silence(tmp_path):
    root = tone_folder(tmp_path / "d", labels=("low", "mid", "high"), speakers=10, takes=2, background=True)
    (root / "README.txt").write_text("not audio")
    (root / "low" / "notes.md").write_text("not audio either")
    ds = load_dataset(str(root), seed=3)
    assert ds.labels == ["_silence_", "high", "low", "mid"]
    assert ds.X_train.shape[1:] == (50, 320) and ds.X_test.shape[1:] == (50, 320)
    assert ds.audio["skipped_non_audio"] == 2 and ds.audio["background_files"] == 2
    assert np.abs(ds.X_train).max() <= 1.0
    # speakers never cross splits: test speakers are none of the training (or validation) ones
    counts = np.bincount(ds.y_test, minlength=4)
    assert (counts > 0).all()  # every class, silence included, is in the test split
    n_val = len(ds.val_index)
    assert n_val > 0 and set(ds.groups[-n_val:]).isdisjoint(ds.groups[:-n_val])
    speakers = {g for g in ds.test_groups if not g.startswith("_background_noise_")}
    assert len(speakers) == 2 and speakers.isdisjoint(ds.groups)
    assert "by speaker" in ds.description
    # the same seed, the same split; the second load comes from the decoded-clip cache
    again = load_dataset(str(root), seed=3)
    assert np.array_equal(again.X_test, ds.X_test) and np.array_equal(again.y_train, ds.y_train)
    assert list((tmp_path / "cache" / "edgernn" / "audio").glob("clips-*.npz"))


def test_split_lists_any_rate_stereo_flac_ogg(tmp_path):
    root = tmp_path / "d"
    tone_folder(root, labels=("low",), speakers=4, takes=1, sr=44100, ext=".flac")
    tone_folder(root, labels=("high",), speakers=4, takes=1, sr=8000, ext=".ogg", seed=1)
    stereo = np.stack([np.sin(np.arange(16000) / 3), np.zeros(16000)], 1).astype(np.float32) * 0.2
    sf.write(str(root / "high" / "spk9_nohash_0.wav"), stereo, 16000)  # stereo, mixed down
    long = np.zeros(40000, np.float32)
    long[20000:20100] = 0.5
    sf.write(str(root / "low" / "spk8_nohash_0.wav"), long, 16000)  # 2.5 s: centre-cropped
    (root / "testing_list.txt").write_text("low/spk0_nohash_0.flac\nhigh/spk0_nohash_0.ogg\n")
    (root / "validation_list.txt").write_text("low/spk1_nohash_0.flac\n")
    ds = load_dataset(str(root))
    assert len(ds.X_test) == 2 and len(ds.X_train) == 8 and len(ds.val_index) == 1
    assert "testing_list.txt" in ds.description
    i = [k for k, g in enumerate(ds.groups) if g == "spk8"][0]
    assert np.abs(ds.X_train[i].reshape(-1)[7900:8200]).max() == pytest.approx(0.5, abs=1e-3)  # the centre kept
    j = [k for k, g in enumerate(ds.groups) if g == "spk9"][0]
    assert np.abs(ds.X_train[j]).max() == pytest.approx(0.1, abs=2e-3)  # (left + right) / 2


def _write(path: Path, data: bytes) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return path


@pytest.mark.parametrize("case, match", [
    ("corrupt", r"yes/bad_nohash_0.wav: cannot decode audio"),
    ("empty_clip", r"yes/empty_nohash_0.wav: the clip has 0 samples"),
    ("empty_folder", r"/no: label folder holds no audio files"),
    ("one_class", r"only 1 class \(yes\)"),
    ("not_a_dir", r"not a directory"),
])
def test_bad_input_is_one_line_naming_the_file(tmp_path, case, match):
    root = tone_folder(tmp_path / "d", labels=("low", "high"), speakers=4, takes=1)
    if case == "corrupt":
        _write(root / "yes" / "bad_nohash_0.wav", b"RIFF\x10\x00\x00\x00WAVEjunkjunkjunk")
    elif case == "empty_clip":
        (root / "yes").mkdir()
        sf.write(str(root / "yes" / "empty_nohash_0.wav"), np.zeros(0, np.float32), 16000)
    elif case == "empty_folder":
        (root / "no").mkdir()
        (root / "no" / "readme.txt").write_text("x")
    elif case == "one_class":
        root = tone_folder(tmp_path / "single", labels=("low",), speakers=4, takes=1)
        (root / "low").rename(root / "yes")
    elif case == "not_a_dir":
        from edgernn.data.audio import load_audio_folder

        with pytest.raises(DataError, match=match):
            load_audio_folder(tmp_path / "missing")
        return
    with pytest.raises(DataError, match=match) as err:
        load_dataset(str(root))
    assert "\n" not in str(err.value)


def test_bad_clip_length_for_the_hop(tmp_path):
    root = tone_folder(tmp_path / "d", labels=("low", "high"), speakers=4, takes=1)
    with pytest.raises(DataError, match="not a whole number of 20 ms hops"):
        load_dataset(str(root), audio={"clip_ms": 1010})


@pytest.mark.slow
def test_audio_run_trains_exports_onnx_with_the_front_end_and_runs_from_pcm(tmp_path):
    from edgernn.export import export_run
    from edgernn.runtimes import load
    from edgernn.train import TrainConfig, train

    root = tone_folder(tmp_path / "d", labels=("low", "mid", "high"), speakers=8, takes=2)
    run = tmp_path / "run"
    m = train(TrainConfig(dataset=str(root), hidden=16, epochs=40, min_epochs=40, mfcc=12, augment=False), run,
              progress=False)
    cfg = json.loads((run / "config.json").read_text())
    assert cfg["model"]["frontend"]["mfcc"] == 12 and cfg["model"]["input_size"] == 320
    assert m["dataset"]["audio"]["sample_rate"] == 16000
    assert m["test"]["accuracy"] >= 0.9, m["test"]
    results = export_run(run, formats=("onnx",), precisions=("float",), streaming=True, progress=False)
    assert all(r.path is not None and not r.error for r in results), [r.to_dict() for r in results]
    man = json.loads((run / "artifacts" / "step-float.onnx.json").read_text())
    assert man["preprocessing"]["frontend"]["tail"] == 160
    assert [t["name"] for t in man["inputs"]] == ["x", "tail", "h"]
    assert man["inputs"][0]["shape"] == [None, 320]
    z = np.load(run / "data.npz")
    X, y = z["X_test"], z["y_test"]
    seq = load(run / "artifacts" / "sequence-float.onnx")
    probs = seq.predict(X)
    assert (probs.argmax(-1) == y).mean() >= 0.9
    # int16 PCM straight from a microphone buffer gives the float answer (to int16 rounding)
    pcm16 = np.round(X[0] * 32768).clip(-32768, 32767).astype(np.int16)
    assert np.abs(seq.predict(pcm16) - probs[0]).max() < 1e-3
    # streaming one 20 ms hop at a time (the tail state carried) equals the whole window
    st = load(run / "artifacts" / "step-float.onnx").stream()
    for hop in pcm16:
        out = st.step(hop)
    assert np.abs(out - probs[0]).max() < 1e-3


def test_feature_augmentation_is_seeded_and_keeps_shapes():
    torch = pytest.importorskip("torch")
    from edgernn.train import augment_features

    x = torch.randn(4, 50, 40, generator=torch.Generator().manual_seed(0))
    a = augment_features(torch, x, torch.Generator().manual_seed(1))
    b = augment_features(torch, x, torch.Generator().manual_seed(1))
    c = augment_features(torch, x, torch.Generator().manual_seed(2))
    assert a.shape == x.shape and torch.equal(a, b) and not torch.equal(a, c)
    assert 0.05 < float((a - x).std()) < 2.0  # changed, but still the same features, not noise


def test_features_are_computed_once_and_cached(tmp_path):
    from edgernn.data.audio import cache_root, cached_features
    from edgernn.frontends import FrontEnd

    root = tone_folder(tmp_path / "d", labels=("low", "high"), speakers=4, takes=1)
    ds = load_dataset(str(root))
    fe = FrontEnd(mels=20)
    a_train, a_test = cached_features(ds, fe)
    files = list(cache_root().glob("features-*.npz"))
    assert len(files) == 1 and np.array_equal(a_train, fe.features(ds.X_train))
    mtime = files[0].stat().st_mtime_ns
    b_train, _ = cached_features(load_dataset(str(root)), fe)
    assert np.array_equal(a_train, b_train) and files[0].stat().st_mtime_ns == mtime  # read, not rewritten
    cached_features(ds, FrontEnd(mels=24))  # another front end: its own entry
    cached_features(load_dataset(str(root), seed=1), fe)  # another seed mixes other noise: its own entry
    assert len(list(cache_root().glob("features-*.npz"))) == 3
