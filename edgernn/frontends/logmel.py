"""
The log-mel / MFCC front end: framing, Hann window, power spectrum, mel filterbank, log, optional DCT
(MFCC), per-feature normalization - one definition, used to featurize training clips (numpy FFT) and
compiled into artifacts (the same arithmetic as matrix products: torch ops that every format exports).

    fe = FrontEnd(frame_ms=30, hop_ms=20, mels=40)       # 16 kHz: frame 480, hop 320, FFT 512, tail 160
    X = pcm.reshape(N, -1, fe.hop)                       # clips cut into hops: [N, T, hop]
    F = fe.features(X)                                   # [N, T, 40] log-mel, un-normalized (numpy, float32)
    fe = fe.with_stats(F.mean((0, 1)), F.std((0, 1)))    # feature normalization from the training clips
    net = fe.torch_module()                              # [B, T, hop] -> [B, T, 40] normalized, in torch

Frame t is the `frame` samples that end with hop t: its first `tail = frame - hop` samples are the end of
hop t-1 (zeros before the first hop), so a stream that hands over one hop at a time (the step artifacts:
hop + tail state in, features + new tail out) and a whole window give the same features. The spectrum is
the DFT of the windowed frame zero-padded to n_fft (the next power of two), |X_k|^2 for k = 0..n_fft/2;
the mel filters are HTK-style triangles between fmin and fmax; the log is natural, of (energy + log_eps).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields, replace

import numpy as np

from edgernn.errors import ConfigError

FRONTENDS = ("logmel",)  # logmel with mfcc > 0 adds the DCT-II (orthonormal): MFCCs


@dataclass(frozen=True)
class FrontEnd:
    sample_rate: int = 16000  # Hz; audio of any rate is resampled to this before the front end
    frame_ms: float = 30.0  # analysis window; 25-40 ms is usual for speech
    hop_ms: float = 20.0  # one RNN step per hop: 20 ms = 50 steps per second (TFLite Micro's micro_speech)
    mels: int = 40  # mel bands
    mfcc: int = 0  # 0: log-mel features; k > 0: the first k MFCCs (DCT of the log-mel bands)
    fmin: float = 20.0  # Hz, lowest mel band edge
    fmax: float = 0.0  # Hz, highest band edge; 0 = sample_rate / 2
    log_eps: float = 1e-6  # added to each band energy before the log (about the int16 noise floor's energy)
    kind: str = "logmel"
    mean: tuple = field(default=(), repr=False)  # per-feature normalization (empty until with_stats)
    std: tuple = field(default=(), repr=False)

    def __post_init__(self):
        if self.kind not in FRONTENDS:
            raise ConfigError(f"unknown front end {self.kind!r}; choose one of: {', '.join(FRONTENDS)}")
        if int(self.sample_rate) < 1000:
            raise ConfigError(f"sample rate must be >= 1000 Hz, got {self.sample_rate}")
        hop, frame = self.hop, self.frame
        if abs(self.hop_ms * self.sample_rate / 1000 - hop) > 1e-6 or hop < 1:
            raise ConfigError(f"--hop-ms {self.hop_ms} is not a whole number of samples at {self.sample_rate} Hz")
        if abs(self.frame_ms * self.sample_rate / 1000 - frame) > 1e-6:
            raise ConfigError(f"--frame-ms {self.frame_ms} is not a whole number of samples at {self.sample_rate} Hz")
        if not hop <= frame <= 2 * hop:
            raise ConfigError(f"--frame-ms {self.frame_ms} must be between --hop-ms {self.hop_ms} and twice it "
                              "(each frame overlaps only the hop before it)")
        if int(self.mels) < 1 or int(self.mfcc) < 0 or int(self.mfcc) > int(self.mels):
            raise ConfigError(f"need mels >= 1 and 0 <= mfcc <= mels, got mels {self.mels}, mfcc {self.mfcc}")
        if not 0 <= self.fmin < self.f_max <= self.sample_rate / 2:
            raise ConfigError(f"need 0 <= fmin < fmax <= {self.sample_rate / 2:g} Hz, got {self.fmin}, {self.fmax}")
        if self.mean and (len(self.mean) != self.size or len(self.std) != self.size):
            raise ConfigError(f"front-end normalization has {len(self.mean)} means / {len(self.std)} stds for "
                              f"{self.size} features")

    # -- sizes ---------------------------------------------------------------------------------------
    @property
    def hop(self) -> int:
        return int(round(self.hop_ms * self.sample_rate / 1000))

    @property
    def frame(self) -> int:
        return int(round(self.frame_ms * self.sample_rate / 1000))

    @property
    def tail(self) -> int:
        """Samples of the previous hop each frame starts with (the streaming state of the front end)."""
        return self.frame - self.hop

    @property
    def n_fft(self) -> int:
        return 1 << (self.frame - 1).bit_length()

    @property
    def bins(self) -> int:
        return self.n_fft // 2 + 1

    @property
    def f_max(self) -> float:
        return float(self.fmax) if self.fmax else self.sample_rate / 2

    @property
    def size(self) -> int:
        """Features per frame: what the recurrent layer reads."""
        return int(self.mfcc) if self.mfcc else int(self.mels)

    def describe(self) -> str:
        what = f"{self.mfcc} MFCC of {self.mels} mel" if self.mfcc else f"{self.mels} log-mel"
        return (f"{what}, {self.frame_ms:g} ms Hann frames every {self.hop_ms:g} ms at {self.sample_rate} Hz "
                f"(FFT {self.n_fft})")

    # -- (de)serialization: config.json and every manifest -------------------------------------------
    def to_dict(self) -> dict:
        d = asdict(self)
        d["mean"], d["std"] = [float(v) for v in self.mean], [float(v) for v in self.std]
        return d

    @classmethod
    def from_dict(cls, d: dict) -> "FrontEnd":
        known = {f.name for f in fields(cls)}
        derived = {"hop", "frame", "tail", "n_fft", "features", "describe", "input", "integer_arithmetic"}  # manifests
        unknown = set(d) - known - derived
        if unknown:
            raise ConfigError(f"unknown front-end keys: {sorted(unknown)}")
        kw = {k: v for k, v in d.items() if k in known}
        kw["mean"], kw["std"] = tuple(kw.get("mean", ())), tuple(kw.get("std", ()))
        return cls(**kw)

    def with_stats(self, mean, std) -> "FrontEnd":
        std = np.where(np.asarray(std) < 1e-6, 1.0, np.asarray(std))
        return replace(self, mean=tuple(float(v) for v in np.asarray(mean)), std=tuple(float(v) for v in std))

    # -- the constants ------------------------------------------------------------------------------
    def window(self) -> np.ndarray:
        """Periodic Hann window of `frame` samples (float64)."""
        n = np.arange(self.frame)
        return 0.5 - 0.5 * np.cos(2 * np.pi * n / self.frame)

    def mel_matrix(self) -> np.ndarray:
        """[bins, mels] HTK triangles on the FFT bin frequencies (float64)."""
        def mel(f):
            return 2595.0 * np.log10(1.0 + np.asarray(f) / 700.0)

        def hz(m):
            return 700.0 * (10.0 ** (np.asarray(m) / 2595.0) - 1.0)

        edges = hz(np.linspace(mel(self.fmin), mel(self.f_max), self.mels + 2))
        freqs = np.arange(self.bins) * self.sample_rate / self.n_fft
        lo, mid, hi = edges[:-2, None], edges[1:-1, None], edges[2:, None]
        up = (freqs[None, :] - lo) / (mid - lo)
        down = (hi - freqs[None, :]) / (hi - mid)
        return np.maximum(0.0, np.minimum(up, down)).T

    def dct_matrix(self) -> np.ndarray:
        """[mels, mfcc] orthonormal DCT-II (float64)."""
        m, k = np.arange(self.mels)[:, None], np.arange(self.mfcc)[None, :]
        d = np.cos(np.pi / self.mels * (m + 0.5) * k) * np.sqrt(2.0 / self.mels)
        d[:, 0] /= np.sqrt(2.0)
        return d

    def dft_matrices(self) -> tuple[np.ndarray, np.ndarray]:
        """Windowed real DFT as two [frame, bins] matrices (cos, -sin): frame @ C, frame @ S = Re, Im of
        the FFT of the windowed, zero-padded frame."""
        n, k = np.arange(self.frame)[:, None], np.arange(self.bins)[None, :]
        ang = 2 * np.pi * ((n * k) % self.n_fft) / self.n_fft
        w = self.window()[:, None]
        return w * np.cos(ang), -w * np.sin(ang)

    # -- numpy: training featurization ----------------------------------------------------------------
    def frames(self, X: np.ndarray) -> np.ndarray:
        """[N, T, hop] -> [N, T, frame]: each hop preceded by the previous hop's last `tail` samples."""
        X = np.asarray(X)
        if X.ndim != 3 or X.shape[2] != self.hop:
            raise ConfigError(f"audio windows must be [N, T, {self.hop}] (hops of {self.hop_ms:g} ms), "
                              f"got {list(X.shape)}")
        if not self.tail:
            return X
        prev = np.concatenate([np.zeros_like(X[:, :1]), X[:, :-1]], axis=1)[:, :, self.hop - self.tail:]
        return np.concatenate([prev, X], axis=2)

    def features(self, X: np.ndarray, normalize: bool = False, chunk: int = 2048) -> np.ndarray:
        """Front-end features of [N, T, hop] PCM (float, [-1, 1]) -> float32 [N, T, size], by numpy's FFT
        (the reference the artifacts' matrix form is checked against). normalize: apply mean/std."""
        X = np.asarray(X)
        out = np.empty(X.shape[:2] + (self.size,), np.float32)
        win, mel = self.window(), self.mel_matrix()
        dct = self.dct_matrix() if self.mfcc else None
        for i in range(0, len(X), chunk):
            fr = self.frames(X[i:i + chunk].astype(np.float64)) * win
            spec = np.fft.rfft(fr, n=self.n_fft, axis=-1)
            f = np.log((spec.real ** 2 + spec.imag ** 2) @ mel + self.log_eps)
            out[i:i + chunk] = f @ dct if dct is not None else f
        if normalize:
            out = self.normalize(out)
        return out

    def normalize(self, F: np.ndarray) -> np.ndarray:
        if not self.mean:
            raise ConfigError("the front end has no feature normalization yet (with_stats on training features)")
        return ((F - np.asarray(self.mean, np.float32)) / np.asarray(self.std, np.float32)).astype(np.float32)

    # -- torch: the same arithmetic as matrix products, inside the model ------------------------------
    def torch_module(self):
        """A torch module: [B, T, hop] PCM -> [B, T, size] normalized features (sequence), and
        module(hop [B, hop], tail [B, tail]) -> (features [B, size], new tail [B, tail]) for streaming.
        Exported graphs name its nodes under /frontend/ (the int8 recipes leave them float).
        Constants are non-persistent buffers: the front end is rebuilt from its config, never trained."""
        from edgernn.errors import require

        torch = require("torch", "train")
        fe = self
        cos, sin = self.dft_matrices()
        mel = self.mel_matrix()
        dct = self.dct_matrix() if self.mfcc else None
        mean = np.asarray(self.mean or [0.0] * self.size, np.float64)
        std = np.asarray(self.std or [1.0] * self.size, np.float64)

        class LogMel(torch.nn.Module):
            def __init__(self):
                super().__init__()
                self.hop, self.tail = fe.hop, fe.tail
                for name, v in (("cos", cos), ("sin", sin), ("mel", mel), ("scale", 1.0 / std),
                                ("shift", -mean / std)):
                    self.register_buffer(name, torch.tensor(v, dtype=torch.float32), persistent=False)
                self.register_buffer("dct", None if dct is None else torch.tensor(dct, dtype=torch.float32),
                                     persistent=False)

            def _features(self, frames):
                re, im = frames @ self.cos, frames @ self.sin
                f = torch.log((re * re + im * im) @ self.mel + fe.log_eps)
                if self.dct is not None:
                    f = f @ self.dct
                return f * self.scale + self.shift

            def forward(self, x, tail=None):
                """x [B, T, hop] -> features [B, T, size]; or one hop x [B, hop] (+ tail [B, tail]) ->
                (features [B, size], new tail [B, tail], or None without overlap)."""
                if x.dim() == 2:
                    frame = torch.cat([tail, x], dim=1) if self.tail else x
                    return self._features(frame), (frame[:, self.hop:] if self.tail else None)
                if self.tail:
                    prev = torch.cat([torch.zeros_like(x[:, :1]), x[:, :-1]], dim=1)[:, :, self.hop - self.tail:]
                    x = torch.cat([prev, x], dim=2)
                return self._features(x)

            def step(self, hop, tail=None):
                return self(hop, tail)

        return LogMel().eval()
