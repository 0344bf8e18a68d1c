"""
Compact recurrent models: GRU / LSTM / vanilla RNN with a classify, tag or forecast head.

Inputs are always *normalized* windows [batch, time, channels]; normalization lives outside the
network (in the run directory and in every artifact's manifest) so that int8 runtimes see a
well-scaled input. An audio model (ModelConfig.frontend) starts with its front end instead: raw PCM hops
[batch, time, hop] in, the front end's normalized features into the recurrent layer (model.body).
Two views of the same weights:

    model = build_model(ModelConfig(cell="gru", input_size=6, hidden=32, num_outputs=4))
    logits = model(x)                        # full sequence: [B, T, C] -> [B, K] (or [B, T, K] for tag)
    step = StepModel(model)                  # streaming: one frame + state -> output + new state
    y, h = step(x[:, 0], torch.zeros(model.state_shape(batch=B)))

The step view reproduces the full-sequence output at the last frame exactly (same weights, same ops),
which is what streaming artifacts are exported from. An audio model's step also carries the front end's
audio tail: step(hop[B, hop], tail[B, tail], h (, c)) -> (output, new tail, h_new (, c_new)).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields

from edgernn.errors import ConfigError
from edgernn.runtimes.manifest import TASKS

CELLS = ("gru", "lstm", "rnn")
GATES = {"gru": 3, "lstm": 4, "rnn": 1}  # gate blocks per cell: torch stacks them in W_ih/W_hh [gates x hidden, in]
HEADS = TASKS  # a head per task: the tasks of the manifest schema devices embed


@dataclass
class ModelConfig:
    cell: str = "gru"  # gru | lstm | rnn. GRU/LSTM gate away vanishing gradients; rnn is a baseline.
    input_size: int = 6  # channels per time step
    hidden: int = 32  # 32-64 is the sweet spot for MCU/Pi-class latency; MACs grow with hidden^2
    layers: int = 1  # stacked layers; each adds T*g*H*(H+H) MACs
    bidirectional: bool = False  # better offline accuracy, but cannot stream (needs the future)
    dropout: float = 0.0  # between stacked layers and before the head; 0 keeps tiny models stable
    head: str = "classify"  # classify: sequence -> label; tag: label per step; forecast: next values
    num_outputs: int = 4  # classes (classify/tag) or horizon*channels (forecast)
    horizon: int = 1  # forecast only: how many future steps are predicted
    frontend: dict | None = None  # audio: the front end (edgernn.frontends) the model starts with; input_size is
    #                               then the samples per hop (raw PCM in) and the recurrent layer reads its features

    def __post_init__(self):
        if self.cell not in CELLS:
            raise ConfigError(f"unknown cell {self.cell!r}; choose one of: {', '.join(CELLS)}")
        if self.head not in HEADS:
            raise ConfigError(f"unknown head {self.head!r}; choose one of: {', '.join(HEADS)}")
        for name in ("input_size", "hidden", "layers", "num_outputs", "horizon"):
            if int(getattr(self, name)) < 1:
                raise ConfigError(f"{name} must be >= 1, got {getattr(self, name)}")
        if not 0.0 <= float(self.dropout) < 1.0:
            raise ConfigError(f"dropout must be in [0, 1), got {self.dropout}")
        if self.frontend is not None and self.front_end().hop != int(self.input_size):
            raise ConfigError(f"the front end takes {self.front_end().hop} samples per step, but input_size is "
                              f"{self.input_size}")

    def front_end(self):
        """The audio front end (edgernn.frontends.FrontEnd), or None for feature inputs."""
        if self.frontend is None:
            return None
        from edgernn.frontends import FrontEnd

        return FrontEnd.from_dict(self.frontend)

    @property
    def features(self) -> int:
        """What the first recurrent layer reads per step: the front end's features, else input_size."""
        return self.front_end().size if self.frontend is not None else int(self.input_size)

    @property
    def directions(self) -> int:
        return 2 if self.bidirectional else 1

    @property
    def gates(self) -> int:
        return GATES[self.cell]

    def to_dict(self) -> dict:
        d = asdict(self)
        if d["frontend"] is None:  # feature models: the config (and so every run's identity hash) as before
            del d["frontend"]
        return d

    @classmethod
    def from_dict(cls, d: dict) -> "ModelConfig":
        known = {f.name for f in fields(cls)}
        unknown = set(d) - known
        if unknown:
            raise ConfigError(f"unknown model config keys: {sorted(unknown)}")
        return cls(**d)

    def parameter_count(self) -> int:
        """Parameters, computed analytically (matches sum(p.numel()) of the torch model)."""
        total = 0
        g, h, d = self.gates, self.hidden, self.directions
        for layer in range(self.layers):
            inp = self.features if layer == 0 else h * d
            total += d * (g * h * inp + g * h * h + 2 * g * h)
        total += (h * d) * self.num_outputs + self.num_outputs
        return total

    def macs(self, seq_len: int) -> int:
        """Multiply-accumulates for one inference over seq_len steps: T*g*H*(in+H) per layer and
        direction, plus the head (once for classify/forecast, every step for tag)."""
        g, h, d = self.gates, self.hidden, self.directions
        total = 0
        for layer in range(self.layers):
            inp = self.features if layer == 0 else h * d
            total += d * seq_len * g * h * (inp + h)
        head = h * d * self.num_outputs
        total += head * (seq_len if self.head == "tag" else 1)
        return total

    def step_states(self, batch=1) -> list[tuple[str, list]]:
        """(name, shape) of each state a step artifact feeds back, in argument order after the frame: the audio
        front end's tail [batch, tail] (when frames overlap), then h [layers, batch, hidden] (and the LSTM's c).
        batch may be None (a dynamic axis)."""
        fe = self.front_end()
        states = [("tail", [batch, fe.tail])] if fe is not None and fe.tail else []
        states += [(n, [self.layers, batch, self.hidden]) for n in (("h", "c") if self.cell == "lstm" else ("h",))]
        return states

    def step_macs(self) -> int:
        """MACs for one streaming frame (unidirectional only)."""
        return self.macs(1)


def _torch():
    from edgernn.errors import require

    return require("torch", "train")


def build_model(cfg: ModelConfig):
    """Create the torch module for a config (weights randomly initialised; seed before calling)."""
    torch = _torch()
    nn = torch.nn

    class RNNModel(nn.Module):
        def __init__(self, cfg: ModelConfig):
            super().__init__()
            self.cfg = cfg
            rnn_cls = {"gru": nn.GRU, "lstm": nn.LSTM, "rnn": nn.RNN}[cfg.cell]
            fe = cfg.front_end()
            self.frontend = fe.torch_module() if fe is not None else None  # no trained weights: rebuilt from cfg
            self.rnn = rnn_cls(
                input_size=cfg.features,
                hidden_size=cfg.hidden,
                num_layers=cfg.layers,
                batch_first=True,
                bidirectional=cfg.bidirectional,
                dropout=cfg.dropout if cfg.layers > 1 else 0.0,
            )
            self.drop = nn.Dropout(cfg.dropout)
            self.head = nn.Linear(cfg.hidden * cfg.directions, cfg.num_outputs)

        def state_shape(self, batch: int = 1):
            return (self.cfg.layers * self.cfg.directions, batch, self.cfg.hidden)

        def forward(self, x):
            if self.frontend is not None:
                x = self.frontend(x)
            return self.body(x)

        def body(self, x):
            """The recurrent layers and head on (front-end) features [B, T, features]."""
            out, _ = self.rnn(x)
            if self.cfg.head == "tag":
                return self.head(self.drop(out))
            h = self.cfg.hidden
            if self.cfg.bidirectional:
                # forward direction ends at the last step, backward direction at the first
                feat = torch.cat([out[:, -1, :h], out[:, 0, h:]], dim=-1)
            else:
                feat = out[:, -1]
            return self.head(self.drop(feat))

    return RNNModel(cfg)


def StepModel(model):
    """Wrap a unidirectional model as a one-frame stepper: (frame[B,C], h[L,B,H] (, c)) ->
    (output[B,K], h_new (, c_new)). Raises ConfigError for bidirectional models."""
    torch = _torch()
    cfg = model.cfg
    if cfg.bidirectional:
        raise ConfigError(
            "bidirectional models cannot stream: the backward direction needs the whole future "
            "sequence. Retrain with --no-bidirectional to get a streaming artifact."
        )

    class _Step(torch.nn.Module):
        def __init__(self, inner):
            super().__init__()
            self.inner = inner
            self.cfg = inner.cfg

        def forward(self, x, *state):
            if self.inner.frontend is not None and self.inner.frontend.tail:
                feats, tail = self.inner.frontend(x, state[0])
                out = self._rnn(feats, *state[1:])
                return (out[0], tail, *out[1:])
            if self.inner.frontend is not None:
                x = self.inner.frontend(x)[0]
            return self._rnn(x, *state)

        def _rnn(self, x, h, c=None):
            x = x.unsqueeze(1)
            if self.cfg.cell == "lstm":
                out, (h2, c2) = self.inner.rnn(x, (h, c))
                return self.inner.head(out[:, 0]), h2, c2
            out, h2 = self.inner.rnn(x, h)
            return self.inner.head(out[:, 0]), h2

    return _Step(model).eval()


def forward_real(model, x, lengths):
    """The model on each window's REAL frames only, from a zero state, as a stream from a reset sees them:
    x [B, T, C] left-padded (the last lengths[i] frames of window i are real) -> [B, K]. The padding never
    reaches the recurrence (packed sequences), so a window padded to T and its real frames alone give the same
    answer. Classify/forecast heads (a tag model scores every frame: not supported here)."""
    torch = _torch()
    cfg = model.cfg
    if cfg.head == "tag":
        raise ConfigError("masked padding (--mask-padding) is for classify and forecast models, not tag")
    B, T = x.shape[0], x.shape[1]
    lengths = torch.as_tensor(lengths, dtype=torch.int64).clamp(1, T)
    # move each window's real frames to the front (the packed sequence reads the first lengths[i] frames)
    idx = (torch.arange(T)[None, :] + (T - lengths)[:, None]) % T
    front = torch.gather(x, 1, idx[:, :, None].expand(B, T, x.shape[2]))
    packed = torch.nn.utils.rnn.pack_padded_sequence(front, lengths, batch_first=True, enforce_sorted=False)
    _, h_n = model.rnn(packed)
    if cfg.cell == "lstm":
        h_n = h_n[0]
    # h_n [layers * directions, B, H]: the top layer's forward state after the last real frame (and, when
    # bidirectional, its backward state after the first real frame)
    feat = torch.cat([h_n[-2], h_n[-1]], dim=-1) if cfg.bidirectional else h_n[-1]
    return model.head(model.drop(feat))

