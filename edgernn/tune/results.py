"""
What a tune study found: every trial as a row, the Pareto front (score, latency, size), the recommendation
(or the trial closest to the budget), and the outputs tune.json, tune.md and pareto.png.

    summary = summarize(study, cfg, task="classify")
    print(format_table(summary))               # the Pareto front and the recommendation, as Markdown
    paths = write_outputs(summary, cfg)        # {"json": ..., "markdown": ..., "plot": ...}
"""

from __future__ import annotations

from pathlib import Path

from edgernn.tune.config import TuneConfig
from edgernn.tune.storage import shown_url, storage_url


def trial_rows(study) -> list[dict]:
    """Every trial as a flat dict (finished or not)."""
    rows = []
    for t in study.get_trials(deepcopy=False):
        u = t.user_attrs
        # params["artifact"] is the format/precision choice, user_attrs["artifact"] the file it produced
        rows.append({"number": t.number, "state": t.state.name, **t.params, "artifact_choice": t.params.get("artifact"),
                     **{k: u.get(k) for k in ("score", "score_name", "float_score", "p50_us", "kb", "parity_passed",
                                              "recipe", "compute", "artifact", "run_dir", "host", "target",
                                              "constraints", "fail_reason", "seconds", "beats_baseline")},
                     "feasible": t.state.name == "COMPLETE" and all(v <= 0 for v in u.get("constraints", [1]))})
    return rows


def pareto(rows: list[dict], maximize: bool) -> list[dict]:
    """Feasible complete trials no other feasible trial beats on score, latency and size at once."""
    pts = [r for r in rows if r["feasible"]]

    def better_or_equal(a, b):
        s = a["score"] >= b["score"] if maximize else a["score"] <= b["score"]
        return s and a["p50_us"] <= b["p50_us"] and a["kb"] <= b["kb"]

    front = [r for r in pts if not any(better_or_equal(o, r) and (o["score"], o["p50_us"], o["kb"]) !=
                                       (r["score"], r["p50_us"], r["kb"]) for o in pts)]
    return sorted(front, key=lambda r: r["p50_us"])


def recommend(rows: list[dict], maximize: bool) -> dict | None:
    """The feasible trial with the best score; ties go to the faster, then the smaller artifact."""
    pts = [r for r in rows if r["feasible"]]
    if not pts:
        return None
    return min(pts, key=lambda r: (-r["score"] if maximize else r["score"], r["p50_us"], r["kb"]))


def closest(rows: list[dict], cfg: TuneConfig) -> dict | None:
    """The complete trial nearest the budget (sum of relative overshoots; a failed gate counts 1)."""
    done = [r for r in rows if r["state"] == "COMPLETE"]
    if not done:
        return None

    def miss(r):
        lat = max(0.0, r["p50_us"] / cfg.max_latency_us - 1) if cfg.max_latency_us else 0.0
        kb = max(0.0, r["kb"] / cfg.max_kb - 1) if cfg.max_kb else 0.0
        return lat + kb + (0.0 if r["parity_passed"] else 1.0)

    return min(done, key=miss)


def budget_text(cfg: TuneConfig) -> str:
    parts = [f"p50 <= {cfg.max_latency_us:g} us" if cfg.max_latency_us else "",
             f"size <= {cfg.max_kb:g} KB" if cfg.max_kb else "", "parity gate passed"]
    return ", ".join(p for p in parts if p)


def describe(r: dict) -> str:
    return (f"trial {r['number']}: {r['cell']} h{r['hidden']} x{r['layers']} {r['artifact_choice']} "
            f"({r['score_name']} {r['score']:.4f}, p50 {r['p50_us']:.1f} us, {r['kb']:.1f} KB)")


def summarize(study, cfg: TuneConfig, task: str) -> dict:
    rows = trial_rows(study)
    maximize = task != "forecast"
    states = {}
    for r in rows:
        states[r["state"]] = states.get(r["state"], 0) + 1
    front = pareto(rows, maximize)
    best = recommend(rows, maximize)
    near = None if best else closest(rows, cfg)
    return {"study": cfg.study, "storage": shown_url(storage_url(cfg)), "identity": study.user_attrs.get("identity"),
            "budget": budget_text(cfg), "states": states, "trials": rows, "pareto": [r["number"] for r in front],
            "recommended": best, "closest": near,
            "hosts": sorted({r["host"] for r in rows if r.get("host")})}


def format_table(summary: dict) -> str:
    front = [r for r in summary["trials"] if r["number"] in summary["pareto"]]
    feasible = sum(1 for r in summary["trials"] if r["feasible"])
    lines = [f"Pareto front: {len(front)} of the {feasible} trials that meet {summary['budget']} (trials by state: "
             + ", ".join(f"{k.lower()} {v}" for k, v in sorted(summary["states"].items())) + ")",
             "| trial | cell | hidden | layers | lr | artifact | recipe | score | p50 us | KB | host:run dir |",
             "|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in front:
        lines.append(f"| {r['number']} | {r['cell']} | {r['hidden']} | {r['layers']} | {r['lr']:.2g} | "
                     f"{r['artifact_choice']} | {r['recipe'] or '-'} | {r['score']:.4f} | {r['p50_us']:.1f} | "
                     f"{r['kb']:.1f} | {r['host']}:{r['run_dir']} |")
    if not front:
        lines.append("| - | no trial meets the budget yet | | | | | | | | | |")
    best, near = summary["recommended"], summary["closest"]
    if best:
        lines.append(f"\nRecommended: {describe(best)}\n  artifact {best['artifact']} (on {best['host']})")
    elif near:
        lines.append(f"\nNo trial meets {summary['budget']}. Closest: {describe(near)}"
                     + ("" if near["parity_passed"] else ", parity gate FAILED")
                     + ". Relax the budget or run more trials.")
    else:
        lines.append("\nNo trial has finished yet.")
    failed = [r for r in summary["trials"] if r["state"] == "FAIL" and r.get("fail_reason")]
    for r in failed[-5:]:
        lines.append(f"failed trial {r['number']}: {r['fail_reason']}")
    return "\n".join(lines)


def plot(summary: dict, cfg: TuneConfig, path: Path) -> Path | None:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return None
    done = [r for r in summary["trials"] if r["state"] == "COMPLETE"]
    if not done:
        return None
    front = [r for r in done if r["number"] in summary["pareto"]]
    fig, ax = plt.subplots(figsize=(8, 5))
    kb = [r["kb"] for r in done]
    scale = 400 / max(max(kb), 1e-9)
    for group, color, label in ((lambda r: not r["feasible"], "#bbbbbb", "outside budget / parity failed"),
                                (lambda r: r["feasible"] and r["number"] not in summary["pareto"], "#4c72b0",
                                 "meets budget"),
                                (lambda r: r["number"] in summary["pareto"], "#dd5533", "Pareto front")):
        pts = [r for r in done if group(r)]
        if pts:
            ax.scatter([r["p50_us"] for r in pts], [r["score"] for r in pts], s=[20 + r["kb"] * scale for r in pts],
                       c=color, alpha=0.8, edgecolors="black", linewidths=0.5, label=label)
    labels = []
    for r in front:
        recipe = f" ({r['recipe']})" if r["artifact_choice"].endswith("int8") and r.get("recipe") else ""
        text = f"#{r['number']} {r['cell']} h{r['hidden']}x{r['layers']} {r['artifact_choice']}{recipe}"
        labels.append({"x": r["p50_us"], "y": r["score"], "area": 20 + r["kb"] * scale, "color": "black",
                       "label": text})
    if cfg.max_latency_us:
        ax.axvline(cfg.max_latency_us, color="#dd5533", linestyle="--", linewidth=1, label="latency budget")
    from edgernn.report import log_axis, place_labels

    log_axis(ax, [r["p50_us"] for r in done])
    ax.set_xlabel(f"p50 latency per {'window' if cfg.mode == 'sequence' else 'frame'} on "
                  f"{done[0].get('target') or cfg.target} (us, log scale)")
    ax.set_ylabel(f"{done[0]['score_name']} of the exported artifact (parity)")
    ax.set_title(f"edgernn tune: {cfg.dataset}, {len(done)} trials (marker area = artifact size)")
    ax.grid(alpha=0.3)
    legend = ax.legend(fontsize=8, loc="lower right")
    fig.tight_layout()
    fig.canvas.draw()  # labels are placed in screen space, clear of each other, the markers and the legend
    place_labels(ax, labels, avoid=[legend])
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def write_outputs(summary: dict, cfg: TuneConfig) -> dict:
    from edgernn.runtimes.files import atomic_write_json, atomic_write_text

    paths = {"json": cfg.out / "tune.json", "markdown": cfg.out / "tune.md"}
    atomic_write_json(paths["json"], summary)
    png = plot(summary, cfg, cfg.out / "pareto.png")
    md = f"# edgernn tune: {cfg.dataset} on {cfg.target}\n\n{format_table(summary)}\n"
    if png:
        paths["plot"] = png
        md += "\n![Pareto front](pareto.png)\n"
    atomic_write_text(paths["markdown"], md)
    return {k: str(v) for k, v in paths.items()}
