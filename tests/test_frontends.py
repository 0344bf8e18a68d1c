"""The audio front end (edgernn.frontends): the numpy featurizer against first principles, the torch
module (what every artifact carries) against the numpy one, streaming against whole windows."""

from __future__ import annotations

import numpy as np
import pytest

from edgernn.errors import ConfigError
from edgernn.frontends import FrontEnd


def _tone(freq, fe: FrontEnd, T=10, amp=0.5):
    n = np.arange(T * fe.hop)
    return (amp * np.sin(2 * np.pi * freq * n / fe.sample_rate)).astype(np.float32).reshape(1, T, fe.hop)


def test_sizes_and_description():
    fe = FrontEnd()
    assert (fe.hop, fe.frame, fe.tail, fe.n_fft, fe.bins, fe.size) == (320, 480, 160, 512, 257, 40)
    assert FrontEnd(mfcc=13).size == 13
    assert "40 log-mel" in fe.describe() and "FFT 512" in fe.describe()


def test_a_tone_lands_in_its_mel_band_with_the_hann_window_energy():
    fe = FrontEnd()
    mel = fe.mel_matrix()
    freqs = np.arange(fe.bins) * fe.sample_rate / fe.n_fft
    centres = (freqs[:, None] * mel).sum(0) / mel.sum(0)
    for f in (250.0, 1000.0, 3000.0, 6000.0):
        F = fe.features(_tone(f, fe))[0, 5]  # a frame well inside the tone
        band = int(F.argmax())
        assert abs(centres[band] - f) <= np.diff(centres).max(), (f, band, centres[band])
    # first principles: a bin-centred sine of amplitude A through a periodic Hann window of N samples gives
    # |X_k| = A N / 4 at its bin, so the band holding that bin has energy ~ (A N / 4)^2 * weight
    fe = FrontEnd(frame_ms=32, hop_ms=16)  # frame = n_fft = 512: no zero padding
    k = 64
    F = fe.features(_tone(k * fe.sample_rate / fe.n_fft, fe, amp=0.5))[0, 5]
    peak = (0.5 * 512 / 4) ** 2
    mel = fe.mel_matrix()
    # the Hann window spreads the tone over bins k-1, k, k+1 with |X| = N A / 8 at the neighbours
    want = np.log(peak * mel[k] + peak / 4 * (mel[k - 1] + mel[k + 1]) + fe.log_eps)
    assert np.allclose(F, want, atol=1e-3)


def test_mfcc_is_the_orthonormal_dct_of_the_log_mels():
    rng = np.random.default_rng(0)
    X = (rng.standard_normal((3, 8, 320)) * 0.1).astype(np.float32)
    fe = FrontEnd(mfcc=13)
    D = fe.dct_matrix()
    full = FrontEnd(mfcc=40).dct_matrix()
    assert np.allclose(full.T @ full, np.eye(40), atol=1e-12)  # orthonormal
    assert np.allclose(fe.features(X), FrontEnd().features(X) @ D, atol=1e-4)


def test_torch_module_matches_numpy_and_streams_like_the_window():
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(1)
    X = (rng.standard_normal((4, 20, 320)) * 0.05).astype(np.float32)
    X[:, 10:] *= 1e-3  # quiet frames: the log of weak bands is where float32 matrix products differ most
    for fe in (FrontEnd(), FrontEnd(mfcc=10), FrontEnd(frame_ms=20, hop_ms=20)):
        F = fe.features(X)
        fe = fe.with_stats(F.mean((0, 1)), F.std((0, 1)))
        m = fe.torch_module()
        with torch.no_grad():
            G = m(torch.from_numpy(X)).numpy()
            assert np.abs(G - fe.normalize(F)).max() < 1e-3
            tail = torch.zeros(4, fe.tail)
            steps = []
            for t in range(20):
                f, tail = m(torch.from_numpy(X[:, t]), tail)
                steps.append(f.numpy())
        # the same ops on the same frames (a [B, T, frame] product may take another BLAS path than [B, frame])
        assert np.abs(np.stack(steps, 1) - G).max() < 1e-5


def test_frames_overlap_by_the_previous_hops_tail():
    fe = FrontEnd()
    x = np.arange(3 * 320, dtype=np.float32).reshape(1, 3, 320)
    fr = fe.frames(x)
    assert fr.shape == (1, 3, 480)
    assert np.array_equal(fr[0, 0, :160], np.zeros(160)) and np.array_equal(fr[0, 0, 160:], x[0, 0])
    assert np.array_equal(fr[0, 2, :160], x[0, 1, 160:]) and np.array_equal(fr[0, 2, 160:], x[0, 2])


@pytest.mark.parametrize("kw, msg", [
    (dict(hop_ms=20, frame_ms=50), "between --hop-ms"),
    (dict(hop_ms=0.01), "whole number of samples"),
    (dict(mels=10, mfcc=13), "mfcc <= mels"),
    (dict(fmax=9000), "fmax"),
    (dict(kind="cqt"), "unknown front end"),
])
def test_bad_parameters_are_one_line_errors(kw, msg):
    with pytest.raises(ConfigError, match=msg):
        FrontEnd(**kw)


def test_round_trip_through_a_manifest_dict():
    fe = FrontEnd(mfcc=12).with_stats(np.arange(12.0), np.ones(12))
    d = fe.to_dict()
    d.update(hop=320, describe="...", input="...", integer_arithmetic="none")  # the manifest's extra keys
    assert FrontEnd.from_dict(d) == fe
    with pytest.raises(ConfigError, match="unknown front-end keys"):
        FrontEnd.from_dict({**fe.to_dict(), "wat": 1})
