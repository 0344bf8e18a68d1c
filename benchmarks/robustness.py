"""
Training robustness: train every cell on each dataset over several seeds and compare the test score
with the majority-class and 1-nearest-neighbour baselines (edgernn/baselines.py).

    python benchmarks/robustness.py                                  # gru,lstm,rnn x both bundled sets x 3 seeds
    python benchmarks/robustness.py --dataset gunpoint.npz --cells lstm --seeds 0,1,2,3,4
    python benchmarks/robustness.py --set patience=60 --set lr_schedule=none   # override TrainConfig fields

Prints a Markdown table (one row per cell x dataset x seed) and writes it with the raw metrics to --out
(JSON). Runs --jobs trainings at once (each uses one torch thread).
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path


def _one(job):
    from edgernn.train import TrainConfig, train

    dataset, cell, seed, hidden, overrides = job
    cfg = TrainConfig.from_dict({"dataset": dataset, "cell": cell, "hidden": hidden, "seed": seed, **overrides})
    with tempfile.TemporaryDirectory() as d:
        m = train(cfg, Path(d) / "run", progress=False)
    return {"dataset": dataset, "cell": cell, "seed": seed, "hidden": hidden, "overrides": overrides,
            "test_accuracy": m["test"].get("accuracy"), "train_accuracy": m["train"].get("accuracy"),
            "epochs_run": m["epochs_run"], "best_epoch": m["best_epoch"], "train_time_s": m["train_time_s"],
            "baselines": m.get("baselines", {}), "beats_baseline": m.get("beats_baseline")}


def _value(v: str):
    for cast in (int, float):
        try:
            return cast(v)
        except ValueError:
            pass
    return {"true": True, "false": False}.get(v.lower(), v)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--dataset", action="append", help="repeatable; default: basic-motions and japanese-vowels")
    ap.add_argument("--cells", default="gru,lstm,rnn")
    ap.add_argument("--seeds", default="0,1,2")
    ap.add_argument("--hidden", type=int, default=32)
    ap.add_argument("--set", action="append", default=[], metavar="FIELD=VALUE", help="TrainConfig override")
    ap.add_argument("--jobs", type=int, default=2)
    ap.add_argument("--out", default="robustness.json")
    a = ap.parse_args(argv)
    overrides = {k: _value(v) for k, v in (s.split("=", 1) for s in a.set)}
    datasets = a.dataset or ["basic-motions", "japanese-vowels"]
    jobs = [(d, c, int(s), a.hidden, overrides)
            for d in datasets for c in a.cells.split(",") for s in a.seeds.split(",")]
    with ProcessPoolExecutor(a.jobs) as pool:
        rows = list(pool.map(_one, jobs))
    print(f"hidden {a.hidden}, overrides {overrides or 'none (defaults)'}")
    print("| dataset | cell | seed | test acc | train acc | epochs (best) | time s | majority | 1-NN | beats 1-NN |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        b = r["baselines"]
        maj = b.get("majority", {}).get("accuracy", float("nan"))
        nn = b.get("nearest_neighbour", {}).get("accuracy", float("nan"))
        print(f"| {Path(r['dataset']).stem} | {r['cell']} | {r['seed']} | {r['test_accuracy']:.3f} | "
              f"{r['train_accuracy']:.3f} | {r['epochs_run']} ({r['best_epoch']}) | {r['train_time_s']:.0f} | "
              f"{maj:.3f} | {nn:.3f} | {'yes' if r['test_accuracy'] >= nn else 'NO'} |")
    Path(a.out).write_text(json.dumps(rows, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
