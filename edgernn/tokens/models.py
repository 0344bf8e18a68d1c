"""
Token models: an embedding in front of the GRU/LSTM, and an encoder-decoder for sequence-to-sequence.

    cfg = TokenModelConfig(kind="seq2seq", src_vocab=33, tgt_vocab=43, hidden=48, attention=True)
    model = build_token_model(cfg)
    logits = model(src, src_len, tgt_in)          # teacher forcing: [B, T, V_tgt]
    enc, state = model.encode(src, src_len)        # enc [B, S, Hd]; state: decoder's first state
    logits, state = model.step(token, state, enc, mask)   # one decoder step: what a device runs per token

The decoder is Luong-style with attention after the recurrence (no input feeding): the recurrent layer reads
only the previous token's embedding, then a dot-product attention of its state over the encoder outputs gives
a context, and the output layer reads [state; context]. Training runs the decoder over the whole target at
once; the step view computes the same numbers one token at a time (tested). The decoder's state size Hd is the
encoder's output size (2 x hidden when bidirectional), its first state the encoder's final states.

kind="classify": embedding -> GRU/LSTM (uni/bi) -> a label from the final states; kind="tag": a label per token.
kind="next-token": a language model - embedding -> GRU/LSTM (one direction) -> logits over the same vocabulary,
built from the decoder's parts (tgt_embed, decoder, out) with a zero first state and no encoder: its step is the
decoder step without a context, so the step artifacts, decoding loops and soak of encoder-decoders serve it.

    logits = lm(ids)                                # [B, T, V]: <bos> t1 .. tn -> t1 .. tn <eos>
    logits, state = lm.step(token, lm.init_state(1), None, None)
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

from edgernn.errors import ConfigError

TOKEN_KINDS = ("classify", "tag", "seq2seq", "next-token")
TOKEN_CELLS = ("gru", "lstm")


@dataclass
class TokenModelConfig:
    kind: str = "seq2seq"  # classify | tag | seq2seq | next-token
    cell: str = "gru"  # gru | lstm
    src_vocab: int = 33  # source ids incl. the 4 specials
    tgt_vocab: int = 0  # seq2seq: target ids incl. specials
    num_outputs: int = 0  # classify / tag: classes
    embed: int = 32  # embedding width; small vocabularies (characters) need little
    hidden: int = 48  # encoder hidden per direction; the decoder's is 2x when bidirectional
    layers: int = 1  # stacked encoder layers (next-token: stacked layers of its one recurrence)
    bidirectional: bool = True  # the encoder reads the whole input before the decoder starts: the future is there
    attention: bool = True  # dot-product attention over the encoder outputs (seq2seq)
    dropout: float = 0.0

    def __post_init__(self):
        if self.kind not in TOKEN_KINDS:
            raise ConfigError(f"unknown token model {self.kind!r}; choose one of: {', '.join(TOKEN_KINDS)}")
        if self.cell not in TOKEN_CELLS:
            raise ConfigError(f"token models use {' or '.join(TOKEN_CELLS)}, not {self.cell!r}")
        for name in ("src_vocab", "embed", "hidden", "layers"):
            if int(getattr(self, name)) < 1:
                raise ConfigError(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.kind == "next-token":  # one direction, no encoder to attend to; predicts its own vocabulary
            self.bidirectional, self.attention, self.tgt_vocab = False, False, self.src_vocab
        if self.kind in ("seq2seq", "next-token") and self.tgt_vocab < 5:
            raise ConfigError(f"a {self.kind} model needs a vocabulary of >= 5 ids (4 specials + tokens)")
        if self.kind in ("classify", "tag") and self.num_outputs < 2:
            raise ConfigError(f"a {self.kind} model needs num_outputs >= 2 classes")

    @property
    def directions(self) -> int:
        return 2 if self.bidirectional else 1

    @property
    def dec_hidden(self) -> int:
        return self.hidden * self.directions

    def to_dict(self) -> dict:
        return asdict(self)


def _torch():
    from edgernn.errors import require

    return require("torch", "train")


def build_token_model(cfg: TokenModelConfig):
    torch = _torch()
    nn = torch.nn
    rnn_cls = {"gru": nn.GRU, "lstm": nn.LSTM}[cfg.cell]

    class TokenModel(nn.Module):
        def __init__(self):
            super().__init__()
            self.cfg = cfg
            self.drop = nn.Dropout(cfg.dropout)
            between = cfg.dropout if cfg.layers > 1 else 0.0  # dropout between stacked layers
            if cfg.kind != "next-token":
                self.src_embed = nn.Embedding(cfg.src_vocab, cfg.embed, padding_idx=0)
                self.encoder = rnn_cls(cfg.embed, cfg.hidden, num_layers=cfg.layers, batch_first=True,
                                       bidirectional=cfg.bidirectional, dropout=between)
            if cfg.kind in ("seq2seq", "next-token"):
                hd = cfg.dec_hidden
                self.tgt_embed = nn.Embedding(cfg.tgt_vocab, cfg.embed, padding_idx=0)
                self.decoder = rnn_cls(cfg.embed, hd, num_layers=cfg.layers if cfg.kind == "next-token" else 1,
                                       batch_first=True, dropout=between if cfg.kind == "next-token" else 0.0)
                self.out = nn.Linear(hd * (2 if cfg.attention else 1), cfg.tgt_vocab)
            else:
                self.head = nn.Linear(cfg.dec_hidden, cfg.num_outputs)

        # ---- encoder
        def encode(self, src, src_len):
            """src [B, S] right-padded ids, src_len [B] -> outputs [B, S, Hd] (zero past each length) and the
            final state(s) [1, B, Hd] of the last layer (fwd final ++ bwd final per direction)."""
            emb = self.drop(self.src_embed(src))
            packed = nn.utils.rnn.pack_padded_sequence(emb, src_len.cpu().clamp(min=1), batch_first=True,
                                                       enforce_sorted=False)
            out, state = self.encoder(packed)
            out, _ = nn.utils.rnn.pad_packed_sequence(out, batch_first=True, total_length=src.shape[1])
            states = state if cfg.cell == "lstm" else (state,)
            # [layers * directions, B, H] -> the last layer's [1, B, directions*H]
            merged = tuple(torch.cat(list(s[-cfg.directions:]), dim=-1).unsqueeze(0) for s in states)
            return out, merged

        def init_state(self, batch: int):
            """The first state of a next-token model: zeros (h, and c for an LSTM), [layers, B, Hd] each."""
            z = torch.zeros(cfg.layers, batch, cfg.dec_hidden, dtype=self.out.weight.dtype)
            return (z, z.clone()) if cfg.cell == "lstm" else (z,)

        def forward(self, src, src_len=None, tgt_in=None):
            if cfg.kind == "next-token":  # src: <bos> t1 .. tn, right-padded: logits for t1 .. tn <eos>
                return self.decode(src, self.init_state(src.shape[0]), None, None)[0]
            enc, state = self.encode(src, src_len)
            if cfg.kind == "classify":
                return self.head(self.drop(state[0][0]))
            if cfg.kind == "tag":
                return self.head(self.drop(enc))
            mask = torch.arange(src.shape[1])[None, :] < src_len[:, None]
            return self.decode(tgt_in, state, enc, mask)[0]

        # ---- decoder
        def decode(self, tgt_in, state, enc, mask):
            """tgt_in [B, T] ids (teacher forcing, or T=1 for one step) -> logits [B, T, V], new state."""
            emb = self.drop(self.tgt_embed(tgt_in))
            out, new = self.decoder(emb, state if cfg.cell == "lstm" else state[0])
            new = new if cfg.cell == "lstm" else (new,)
            if cfg.attention:
                scores = torch.bmm(out, enc.transpose(1, 2))  # [B, T, S]
                scores = scores.masked_fill(~mask[:, None, :], -1e9)
                ctx = torch.bmm(torch.softmax(scores, dim=-1), enc)  # [B, T, Hd]
                out = torch.cat([out, ctx], dim=-1)
            return self.out(self.drop(out)), new

        def step(self, token, state, enc, mask):
            """One decoder step: token [B] -> logits [B, V], new state."""
            logits, new = self.decode(token[:, None], state, enc, mask)
            return logits[:, 0], new

    return TokenModel()


def count_params(model) -> int:
    return int(sum(p.numel() for p in model.parameters()))
