"""
Training token models into a run directory: teacher forcing for encoder-decoders, cross-entropy for
classify / tag, Adam, gradient clipping, a learning rate halved on plateaus, early stopping on a validation
split (held-out sources: a validation word is never trained on) with the best weights kept.

    metrics = train_tokens(TokenTrainConfig(dataset="g2p", hidden=48), "runs/g2p")

Seq2seq models are validated by greedy decoding (token error rate of what they generate, not the teacher-forced
loss: that is what a device sees); the test split is decoded with beam search (width `beam`) at the end.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, fields
from pathlib import Path

import numpy as np

from edgernn.data.tokens import TokenDataset, split_keys
from edgernn.errors import ConfigError, require
from edgernn.tokens.metrics import error_rates, lm_scores
from edgernn.tokens.models import TokenModelConfig, build_token_model, count_params


@dataclass
class TokenTrainConfig:
    dataset: str = "g2p"
    cell: str = "gru"
    embed: int = 32
    hidden: int = 48  # encoder units per direction (the decoder has 2x when bidirectional)
    layers: int = 1  # stacked encoder layers (a next-token model's stacked recurrence)
    bidirectional: bool = True
    attention: bool = True
    dropout: float = 0.0  # measured on g2p (hidden 48): 0.1 -> 9.6% validation PER after 21 epochs, 0.0 -> 9.2%
    epochs: int = 40  # upper bound; early stopping usually ends sooner
    batch_size: int = 128
    lr: float = 3e-3
    clip: float = 1.0
    val_fraction: float = 0.04  # of the training sources, held out for early stopping
    val_max: int = 3000  # validation sources decoded per epoch (greedy, batched): enough to rank epochs
    patience: int = 6  # epochs without a better validation score before stopping
    beam: int = 4  # test-time beam width (seq2seq); 1 = greedy
    seed: int = 0
    threads: int = 2
    limit: int = 0  # use only this many sources of a bundled set (quick runs, tests); 0 = all
    # token files (.csv/.tsv/.jsonl): how text is split and limited (edgernn.data.token_files)
    tokenizer: str = "chars"  # chars | words
    max_len: int = 64  # longest source / target in tokens; longer rows are refused with their row number
    max_vocab: int = 0  # 0 = every token of the training split
    calib: int = 256  # training sources saved for int8 calibration

    def __post_init__(self):
        for name in ("epochs", "batch_size", "patience", "threads", "beam", "embed", "hidden", "layers"):
            if int(getattr(self, name)) < 1:
                raise ConfigError(f"{name} must be >= 1, got {getattr(self, name)}")
        if not 0.0 < self.lr < 1.0:
            raise ConfigError(f"lr must be in (0, 1), got {self.lr}")

    @classmethod
    def from_dict(cls, d: dict) -> TokenTrainConfig:
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in d.items() if k in known})


def load_token_dataset(cfg: TokenTrainConfig) -> TokenDataset:
    from edgernn.data.registry import TOKEN_DATASETS
    from edgernn.data.registry import load_token_dataset as load

    if cfg.dataset in TOKEN_DATASETS:
        return load(cfg.dataset, seed=cfg.seed, limit=cfg.limit or None)
    return load(cfg.dataset, seed=cfg.seed, tokenizer=cfg.tokenizer, max_len=cfg.max_len,
                max_vocab=cfg.max_vocab or None)


def train_tokens(cfg: TokenTrainConfig, out_dir: Path | str, progress: bool = True,
                 dataset: TokenDataset | None = None, force: bool = False) -> dict:
    torch = require("torch", "train")
    out_dir = Path(out_dir)
    ds = dataset if dataset is not None else load_token_dataset(cfg)
    if out_dir.exists() and any(out_dir.iterdir()) and not force:
        raise ConfigError(f"--out {out_dir} is not empty: pass --force to replace the run there or choose another "
                          "--out")
    created = not out_dir.exists()
    try:
        return _train(torch, cfg, ds, out_dir, progress)
    except BaseException:
        if created and out_dir.is_dir() and not any(out_dir.iterdir()):
            out_dir.rmdir()
        raise


def _split(ds: TokenDataset, cfg: TokenTrainConfig):
    keys = ["".join(s) if ds.tokenizer == "chars" else " ".join(s) for s in ds.src_train]
    fit_keys, val_keys = split_keys(keys, cfg.val_fraction, cfg.seed + 1)
    fit = np.array([i for i, k in enumerate(keys) if k in fit_keys], dtype=np.int64)
    val = np.array([i for i, k in enumerate(keys) if k in val_keys], dtype=np.int64)[: cfg.val_max]
    return fit, val


def _train(torch, cfg: TokenTrainConfig, ds: TokenDataset, out_dir: Path, progress: bool) -> dict:
    from edgernn.progress import progressbar
    from edgernn.tokens.reference import decode_all, greedy_batch, lm_eval
    from edgernn.tokens.run import save_token_run

    t0 = time.perf_counter()
    torch.manual_seed(cfg.seed)
    torch.set_num_threads(cfg.threads)
    seq2seq, lm = ds.task == "seq2seq", ds.task == "next-token"
    mcfg = TokenModelConfig(kind=ds.task, cell=cfg.cell, src_vocab=len(ds.src_vocab),
                            tgt_vocab=len(ds.tgt_vocab) if seq2seq else 0,
                            num_outputs=len(ds.labels) if ds.task in ("classify", "tag") else 0, embed=cfg.embed,
                            hidden=cfg.hidden, layers=cfg.layers,
                            bidirectional=cfg.bidirectional, attention=cfg.attention, dropout=cfg.dropout)
    model = build_token_model(mcfg)
    src, src_len = ds.source_ids("train")
    src, src_len = torch.from_numpy(src), torch.from_numpy(src_len)
    if seq2seq or lm:
        tgt_in, tgt_out = (torch.from_numpy(a) for a in ds.target_ids("train"))
    else:
        labels = torch.from_numpy(ds.label_ids("train"))
    fit, val = _split(ds, cfg)
    opt = torch.optim.Adam(model.parameters(), lr=cfg.lr)
    sched = torch.optim.lr_scheduler.ReduceLROnPlateau(opt, factor=0.5, patience=max(1, cfg.patience // 3),
                                                       min_lr=cfg.lr / 64)
    gen = torch.Generator().manual_seed(cfg.seed)
    ce = torch.nn.CrossEntropyLoss(ignore_index=0 if seq2seq or lm else -1)

    def val_score() -> float:
        """Lower is better: greedy token error rate (seq2seq), error rate (classify/tag) or the negative
        log-likelihood per token (next-token)."""
        model.eval()
        if lm:
            nll, _, n = lm_eval(model, tgt_in[val].numpy(), tgt_out[val].numpy())
            return nll / max(n, 1)
        with torch.no_grad():
            if seq2seq:
                hyps = greedy_batch(model, src[val].numpy(), src_len[val].numpy())
                refs = [[ds.tgt_vocab.encode(ds.tgt_train[i])] for i in val]
                return error_rates(hyps, refs)[0]
            out = model(src[val], src_len[val])
            pred = out.argmax(-1)
            y = labels[val]
            keep = y >= 0
            return float((pred[keep] != y[keep]).float().mean())

    best, best_state, best_epoch, since, history = float("inf"), None, 0, 0, []
    bar = progressbar(length=cfg.epochs, label=f"train {ds.task} {cfg.cell} h{cfg.hidden} on {ds.name}",
                      enabled=progress, show=lambda s: s)
    epoch = 0
    with bar:
        for epoch in range(1, cfg.epochs + 1):
            model.train()
            perm = fit[torch.randperm(len(fit), generator=gen).numpy()]
            total = 0.0
            for i in range(0, len(perm), cfg.batch_size):
                idx = torch.from_numpy(perm[i:i + cfg.batch_size])
                n = int(src_len[idx].max())
                if lm:
                    m = int((tgt_out[idx] != 0).sum(1).max())
                    logits = model(tgt_in[idx, :m])
                    loss = ce(logits.reshape(-1, logits.shape[-1]), tgt_out[idx, :m].reshape(-1))
                elif seq2seq:
                    m = int((tgt_out[idx] != 0).sum(1).max())
                    logits = model(src[idx, :n], src_len[idx], tgt_in[idx, :m])
                    loss = ce(logits.reshape(-1, logits.shape[-1]), tgt_out[idx, :m].reshape(-1))
                elif ds.task == "tag":
                    logits = model(src[idx, :n], src_len[idx])
                    loss = ce(logits.reshape(-1, logits.shape[-1]), labels[idx, :n].reshape(-1))
                else:
                    loss = ce(model(src[idx, :n], src_len[idx]), labels[idx])
                opt.zero_grad()
                loss.backward()
                torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.clip)
                opt.step()
                total += float(loss.detach()) * len(idx)
            score = val_score() if len(val) else total / len(fit)
            history.append({"epoch": epoch, "train_loss": total / len(fit), "val_error": score,
                            "lr": opt.param_groups[0]["lr"]})
            lr_before = opt.param_groups[0]["lr"]
            sched.step(score)
            if opt.param_groups[0]["lr"] < lr_before and best_state is not None:
                model.load_state_dict(best_state)
            if score < best:
                best, best_epoch, since = score, epoch, 0
                best_state = {k: v.detach().clone() for k, v in model.state_dict().items()}
            else:
                since += 1
            bar.update(1, f"val error {score:.4f}")
            if since >= cfg.patience:
                break
    model.load_state_dict(best_state)
    model.eval()
    train_time = time.perf_counter() - t0

    test = {}
    if seq2seq:
        hyps = decode_all(model, ds.src_test, ds.src_vocab, ds.tgt_vocab, "beam" if cfg.beam > 1 else "greedy",
                          width=cfg.beam)
        per, wer = error_rates(hyps, ds.refs_test)
        s, n = ds.source_ids("test")
        g_per, g_wer = error_rates([ds.tgt_vocab.decode(h) for h in greedy_batch(model, s, n)], ds.refs_test)
        test = {"per": per, "wer": wer, "decoding": f"beam {cfg.beam}" if cfg.beam > 1 else "greedy",
                "greedy_per": g_per, "greedy_wer": g_wer}
        headline = "per"
    elif lm:
        from edgernn.tokens.baselines import ngram

        t_in, t_out = ds.target_ids("test")
        test = lm_scores(*lm_eval(model, t_in, t_out))
        test["baselines"] = [ngram(ds, k) for k in (1, 2, 3)]
        headline = "perplexity"
    else:
        from edgernn.tokens.baselines import bag_of_tokens, majority

        s, n = ds.source_ids("test")
        with torch.no_grad():
            pred = model(torch.from_numpy(s), torch.from_numpy(n)).argmax(-1).numpy()
        y = ds.label_ids("test")
        keep = y >= 0
        test = {"accuracy": float((pred[keep] == y[keep]).mean())}
        test["baselines"] = [majority(ds), bag_of_tokens(ds)]
        headline = "accuracy"
    params = count_params(model)
    metrics = {"dataset": ds.summary(), "task": ds.task, "headline_metric": headline, "test": test,
               f"test_{headline}": test[headline], "val_error": float(best), "best_epoch": best_epoch,
               "epochs_run": epoch, "parameters": params, "float_bytes": params * 4,
               "train_time_s": round(train_time, 1), "seed": cfg.seed, "torch_version": torch.__version__}
    rng = np.random.default_rng(cfg.seed)
    calib = sorted(rng.permutation(len(fit))[: cfg.calib].tolist())
    data = {"src_test": ds.src_test, "tgt_test": [] if lm else ds.tgt_test, "refs_test": ds.refs_test,
            "src_calib": [ds.src_train[fit[i]] for i in calib]}
    save_token_run(out_dir, model, mcfg, asdict(cfg), {**ds.summary(), "spec": cfg.dataset}, ds.tokenizer,
                   ds.src_vocab, ds.tgt_vocab, ds.labels, data, metrics, lower=ds.lowercase)
    from edgernn.runtimes.files import atomic_write_json

    atomic_write_json(out_dir / "history.json", history)
    return metrics
