"""
Audio front ends: what turns raw PCM into the features a recurrent model reads, defined once.

    fe = FrontEnd(sample_rate=16000, frame_ms=30, hop_ms=20, mels=40)     # edgernn.frontends.logmel
    feats = fe.features(pcm_hops)          # [N, T, hop] PCM in [-1, 1] -> [N, T, features] (numpy, training)
    module = fe.torch_module(mean, std)    # the same features in torch ops that export (inside every artifact)

An artifact of an audio run takes raw PCM, one hop of samples per time step: a window is [T, hop] (a 1 s
clip at 16 kHz and 20 ms hops is [50, 320]), a streaming step takes one hop plus the audio tail the next
frame overlaps. The front end has no trained weights; its feature normalization (per feature, from the
training clips) is part of it.
"""

from edgernn.frontends.logmel import FRONTENDS, FrontEnd

__all__ = ["FRONTENDS", "FrontEnd"]
