"""
Report: join training metrics, parity and benchmark results of one or more runs into one Markdown
page, one JSON file and PNG plots.

    build_report(["runs/demo/gru", "runs/demo/lstm"], out_dir="runs/demo")
    edgernn report runs/demo/gru runs/demo/lstm --out runs/demo

Writes OUT/report.md, OUT/report.json, OUT/plots/latency.png (latency distribution per artifact,
coloured by runtime) and OUT/plots/tradeoff.png (accuracy vs p50 latency, marker area = file size).
"""

from __future__ import annotations

import json
from pathlib import Path

from .errors import ConfigError
from .rundir import atomic_write_json, atomic_write_text, load_run

RUNTIME_COLORS = {"onnxruntime": "tab:blue", "litert": "tab:orange", "torch": "tab:gray"}


def _read_json(path: Path):
    if not path.is_file():
        return None
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as exc:
        raise ConfigError(f"{path} is corrupt ({exc}); re-run the command that writes it") from None


def collect(run_dir, target: str | None = None) -> dict:
    """Everything known about one run: metrics, parity, bench (for `target`, else the newest bench)."""
    run = load_run(run_dir)
    parity = _read_json(run.path / "parity.json")
    benches = sorted(run.path.glob("bench-*.json"), key=lambda p: p.stat().st_mtime)
    if target:
        benches = [p for p in benches if p.name == f"bench-{target}.json"]
    bench = _read_json(benches[-1]) if benches else None
    rows = {}
    for r in (parity or {}).get("artifacts", []):
        rows[r["artifact"]] = {"artifact": r["artifact"], "format": r["format"], "precision": r["precision"],
                               "mode": r["mode"], "runtime": r["runtime"], "size_bytes": r["size_bytes"],
                               "fully_int8": r.get("fully_int8"), "parity": r}
    for r in (bench or {}).get("results", []):
        row = rows.setdefault(r["artifact"], {"artifact": r["artifact"], "format": r.get("format"),
                                              "precision": r.get("precision"), "mode": r.get("mode"),
                                              "runtime": r.get("runtime"), "size_bytes": r.get("size_bytes")})
        row["bench"] = r
    return {"run": str(run.path), "name": run.path.name, "model": run.config.to_dict(), "metrics": run.metrics,
            "task": run.task, "parity_reference": (parity or {}).get("reference"),
            "parity_passed": (parity or {}).get("passed"), "bench_target": (bench or {}).get("target"),
            "machine": (bench or {}).get("machine"), "settings": (bench or {}).get("settings"),
            "torch_eager": (bench or {}).get("torch_eager"), "warnings": (bench or {}).get("warnings", []),
            "artifacts": list(rows.values())}


def _fmt(v, spec, missing="-"):
    return missing if v is None else format(v, spec)


def markdown(runs: list[dict], plots: dict) -> str:
    lines = ["# edgernn report", ""]
    for r in runs:
        m = r["metrics"]
        cfg = r["model"]
        key = m.get("headline_metric", "accuracy")
        lines += [f"## {r['name']}: {cfg['cell'].upper()} h{cfg['hidden']} x{cfg['layers']}"
                  f"{' bidirectional' if cfg['bidirectional'] else ''} on {m.get('dataset', {}).get('name', '?')}", ""]
        lines.append(f"- test {key} (torch float): **{_fmt(m.get('test', {}).get(key), '.4f')}**, "
                     f"{m.get('parameters')} parameters, {m.get('macs_per_inference')} MACs per inference "
                     f"(T={m.get('seq_len')}), trained in {m.get('train_time_s')} s")
        if r.get("machine"):
            mc, s = r["machine"], r["settings"] or {}
            lines.append(f"- bench target `{r['bench_target']}`: {mc.get('cpu_model', '?')}, {mc.get('cores', '?')} "
                         f"cores, {mc.get('os', '')}; threads {s.get('threads')}, batch 1, {s.get('runs')} timed runs "
                         f"x {s.get('repeat')} repeat(s)")
        te = r.get("torch_eager")
        if te:
            lines.append(f"- PyTorch eager reference: p50 {te['latency_us']['p50']:.1f} us, p99 "
                         f"{te['latency_us']['p99']:.1f} us")
        if r.get("parity_passed") is not None:
            lines.append(f"- parity gate: **{'all passed' if r['parity_passed'] else 'FAILED'}**")
        lines.append("")
        metric = "RMSE" if r["task"] == "forecast" else "accuracy"
        lines.append(f"| artifact | runtime | {metric} | change vs float | agreement | size KB | p50 us | p99 us "
                     "| frame p50 us | peak RSS MB | int8 |")
        lines.append("|---|---|---|---|---|---|---|---|---|---|---|")
        best = None
        for a in r["artifacts"]:
            p, b = a.get("parity") or {}, a.get("bench") or {}
            mkey = "rmse" if r["task"] == "forecast" else "accuracy"
            lat = b.get("latency_us") or {}
            stream = b.get("stream_us") or {}
            rss = (b.get("rss_mb") or {}).get("inference_peak")
            int8 = "all RNN ops" if a.get("fully_int8") else ("head only" if a["precision"] != "float" else "-")
            lines.append(
                f"| {a['artifact']} | {a['runtime']} | {_fmt(p.get(mkey), '.4f')} "
                f"| {_fmt(p.get(mkey + '_change'), '+.4f')} "
                f"| {_fmt(p.get('agreement'), '.3f')} | {a['size_bytes'] / 1024:.1f} | {_fmt(lat.get('p50'), '.1f')} "
                f"| {_fmt(lat.get('p99'), '.1f')} | {_fmt(stream.get('p50'), '.1f')} | {_fmt(rss, '.1f')} | {int8} |")
            if a["mode"] == "sequence" and lat.get("p50") and p.get("passed", True):
                if best is None or lat["p50"] < best[1]:
                    best = (a["artifact"], lat["p50"])
        if best and te:
            lines += ["", f"Fastest passing full-sequence artifact: `{best[0]}` at p50 {best[1]:.1f} us, "
                      f"{te['latency_us']['p50'] / best[1]:.1f}x faster than PyTorch eager."]
        for w in r.get("warnings", []):
            lines.append(f"\n> warning: {w}")
        lines.append("")
    for title, path in plots.items():
        lines += [f"![{title}]({path})", ""]
    return "\n".join(lines)


def plot(runs: list[dict], out_dir: Path) -> dict:
    """Write PNG plots; returns {title: relative path}. Skips (returns {}) without matplotlib."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return {}
    plots_dir = out_dir / "plots"
    plots_dir.mkdir(parents=True, exist_ok=True)
    made = {}
    seq = [(r, a) for r in runs for a in r["artifacts"] if a.get("bench") and a["mode"] == "sequence"]
    if seq:
        fig, ax = plt.subplots(figsize=(10, 0.42 * len(seq) + 1.8))
        labels, data, colors = [], [], []
        for r, a in seq:
            b = a["bench"]
            samples = b.get("samples_us") or [b["latency_us"][k] for k in ("min", "p50", "p90", "p99", "max")]
            data.append(samples)
            labels.append(f"{r['name']}/{a['artifact']}")
            colors.append(RUNTIME_COLORS.get(a["runtime"], "tab:green"))
        for r in runs:
            te = r.get("torch_eager")
            if te:
                data.append(te.get("samples_us") or [te["latency_us"][k] for k in ("min", "p50", "p90", "p99", "max")])
                labels.append(f"{r['name']}/torch eager")
                colors.append(RUNTIME_COLORS["torch"])
        bp = ax.boxplot(data, vert=False, whis=(1, 99), showfliers=False, patch_artist=True)
        for patch, c in zip(bp["boxes"], colors):
            patch.set_facecolor(c)
            patch.set_alpha(0.6)
        ax.set_yticks(range(1, len(labels) + 1), labels, fontsize=8)
        ax.set_xscale("log")
        ax.set_xlabel("latency per window, us (log; box p25-p75, line p50, whiskers p1-p99)")
        ax.set_title("Full-sequence latency per artifact (batch 1)")
        handles = [plt.Rectangle((0, 0), 1, 1, color=c, alpha=0.6) for c in RUNTIME_COLORS.values()]
        ax.legend(handles, list(RUNTIME_COLORS), loc="lower right", fontsize=8)
        fig.tight_layout()
        fig.savefig(plots_dir / "latency.png", dpi=110)
        plt.close(fig)
        made["Latency distribution per artifact"] = "plots/latency.png"
    pts = [(r, a) for r, a in seq if a.get("parity")]
    if pts:
        fig, ax = plt.subplots(figsize=(8, 5.5))
        key = "rmse" if runs[0]["task"] == "forecast" else "accuracy"
        for r, a in pts:
            x, y = a["bench"]["latency_us"]["p50"], a["parity"][key]
            size = max(20.0, a["size_bytes"] / 1024 * 4)
            marker = "o" if r["model"]["cell"] == "gru" else "s"
            ax.scatter(x, y, s=size, c=RUNTIME_COLORS.get(a["runtime"], "tab:green"), marker=marker, alpha=0.6,
                       edgecolors="k" if a["precision"] != "float" else "none")
            ax.annotate(f"{r['name']} {a['format']} {a['precision']}", (x, y), fontsize=7,
                        xytext=(4, 3), textcoords="offset points")
        ax.set_xscale("log")
        ax.set_xlabel("p50 latency per window, us (log)")
        ax.set_ylabel(f"test {key} (artifact, real runtime)")
        ax.set_title("Deployment trade-off: accuracy vs latency; marker area = file size\n"
                     "(blue onnxruntime, orange LiteRT; circle GRU, square LSTM; black edge = int8)", fontsize=9)
        ax.grid(alpha=0.3)
        fig.tight_layout()
        fig.savefig(plots_dir / "tradeoff.png", dpi=110)
        plt.close(fig)
        made["Accuracy vs latency vs size"] = "plots/tradeoff.png"
    return made


def build_report(run_dirs, out_dir=None, target: str | None = None) -> dict:
    run_dirs = [Path(p) for p in run_dirs]
    if not run_dirs:
        raise ConfigError("give at least one run directory")
    runs = [collect(p, target) for p in run_dirs]  # validates every run before anything is written
    out_dir = Path(out_dir) if out_dir else run_dirs[0]
    out_dir.mkdir(parents=True, exist_ok=True)
    plots = plot(runs, out_dir)
    md = markdown(runs, plots)
    atomic_write_text(out_dir / "report.md", md)
    data = {"runs": runs, "plots": plots}
    atomic_write_json(out_dir / "report.json", data)
    return {"markdown": md, "paths": {"markdown": str(out_dir / "report.md"), "json": str(out_dir / "report.json"),
                                      **{k: str(out_dir / v) for k, v in plots.items()}}}
