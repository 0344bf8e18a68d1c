"""
The float PyTorch token model as the reference every token artifact is compared with: its decoder step in
the shape edgernn.runtimes.generate drives, batched greedy decoding for training-time validation, and
classification outputs.

    step, state = torch_decoder(model, src_ids)               # for generate.greedy / beam / sample
    hyps = greedy_batch(model, src, src_len, max_len=30)       # [N] id lists (no <bos>/<eos>), fast
    hyps = decode_all(model, sources, src_vocab, tgt_vocab, method="beam", width=4)   # token lists
"""

from __future__ import annotations

import numpy as np

from edgernn.runtimes import generate
from edgernn.runtimes.vocab import BOS, EOS


def _torch():
    from edgernn.errors import require

    return require("torch", "train")


def torch_decoder(model, src_ids: list[int]):
    """(step, first state) for one source: the encoder runs once, the step runs the decoder one token."""
    torch = _torch()
    with torch.no_grad():
        src = torch.tensor([src_ids], dtype=torch.int64)
        enc, state = model.encode(src, torch.tensor([len(src_ids)]))
    mask = torch.ones(1, len(src_ids), dtype=torch.bool)

    def step(token, st):
        with torch.no_grad():
            logits, new = model.step(torch.tensor([int(token)]), st, enc, mask)
        return logits[0].numpy(), new

    return step, state


def max_target_len(src_len: int) -> int:
    """How long a generated output may grow: targets of a source are rarely longer than it (G2P: 99.9%
    within +3); generation stops at <eos> anyway."""
    return int(src_len) + 10


def greedy_batch(model, src: np.ndarray, src_len: np.ndarray, batch: int = 1024) -> list[list[int]]:
    """Greedy decoding of many sources at once (validation during training); the same argmax rule as
    generate.greedy, so it returns what decoding one source at a time returns."""
    torch = _torch()
    out = []
    with torch.no_grad():
        for i in range(0, len(src), batch):
            s = torch.from_numpy(src[i:i + batch])
            n = torch.from_numpy(src_len[i:i + batch])
            enc, state = model.encode(s, n)
            mask = torch.arange(s.shape[1])[None, :] < n[:, None]
            token = torch.full((len(s),), BOS, dtype=torch.int64)
            done = torch.zeros(len(s), dtype=torch.bool)
            ids = []
            for _ in range(max_target_len(int(n.max()))):
                logits, state = model.step(token, state, enc, mask)
                token = logits.argmax(-1)
                ids.append(token)
                done |= token == EOS
                if bool(done.all()):
                    break
            seqs = torch.stack(ids, 1).numpy()
            for row, length in zip(seqs, n.numpy()):
                row = list(row[: max_target_len(int(length))])
                out.append(row[: row.index(EOS)] if EOS in row else row)
    return out


def decode_all(model, sources: list, src_vocab, tgt_vocab, method: str = "greedy", width: int = 4,
               progress=None) -> list[list[str]]:
    """Decode each source (a token list) one at a time through generate's loops; token lists out."""
    hyps = []
    for k, toks in enumerate(sources):
        ids = src_vocab.encode(toks)
        step, state = torch_decoder(model, ids)
        hyps.append(tgt_vocab.decode(generate.decode(step, state, BOS, EOS, max_target_len(len(ids)), method,
                                                     width=width)))
        if progress is not None:
            progress(k + 1)
    return hyps


def torch_lm_step(model):
    """(step, first state) of a next-token model: the state starts at zeros, the step is the decoder's."""
    torch = _torch()

    def step(token, st):
        with torch.no_grad():
            logits, new = model.step(torch.tensor([int(token)]), st, None, None)
        return logits[0].numpy(), new

    return step, model.init_state(1)


def lm_eval(model, inputs: np.ndarray, outputs: np.ndarray, batch: int = 1024) -> tuple[float, int, int]:
    """A next-token model on padded <bos> t1..tn -> t1..tn <eos> rows: (summed negative log-likelihood, top-1
    hits, predicted tokens), <pad> positions skipped."""
    torch = _torch()
    nll, hits, n = 0.0, 0, 0
    with torch.no_grad():
        for i in range(0, len(inputs), batch):
            x = torch.from_numpy(inputs[i:i + batch])
            y = torch.from_numpy(outputs[i:i + batch])
            keep = y != 0
            logp = torch.log_softmax(model(x), dim=-1)
            nll -= float(logp.gather(-1, y[..., None])[..., 0][keep].sum())
            hits += int((logp.argmax(-1) == y)[keep].sum())
            n += int(keep.sum())
    return nll, hits, n
