"""
Report: join training metrics, parity and benchmark results of one or more runs into one Markdown
page, one JSON file and PNG plots, ending in a decision: which artifact to ship, and why.

    build_report(["runs/demo/gru", "runs/demo/lstm"], out_dir="runs/demo")
    edgernn report runs/demo/gru runs/demo/lstm --out runs/demo [--target rpi4]

Each run contributes its metrics.json, parity.json and one bench-<target>.json (`target`, else the
newest). Writes:

- OUT/report.md: per model, a table of full-sequence artifacts (latency per window) and one of
  streaming step artifacts (latency per frame), each row with its parity verdict (PASS / FAIL /
  no parity), then the decision table: for each (runtime, mode) the artifact to ship.
- OUT/report.json: everything collected, plus runs[i]["recommendations"].
- OUT/plots/latency.png: latency distribution per artifact, one panel per mode, coloured by runtime.
- OUT/plots/tradeoff.png: accuracy (or RMSE) vs p50 latency, one panel per model and mode; marker
  area = file size, colour = runtime, shape = cell, black edge = int8.

One file per stage, each importing only the ones above it in this list:

- decide.py: `recommend` (the rule: among the artifacts of one runtime and mode benchmarked on the
  target, ship the one with the lowest p50 whose parity row exists and passed) and `verdict`.
- collect.py: `collect` reads a run directory's JSON, checks it is current, attaches the decision.
- markdown.py: `markdown`, the page. plots.py: `plot` and the figures (matplotlib only in there,
  inside functions: the decision, collection and Markdown never import it).
"""

from __future__ import annotations

from pathlib import Path

from edgernn.errors import ConfigError
from edgernn.report.collect import collect
from edgernn.report.decide import recommend, verdict
from edgernn.report.markdown import markdown
from edgernn.report.plots import latency_figure, log_axis, place_labels, plot, tradeoff_figure
from edgernn.runtimes.files import atomic_write_json, atomic_write_text

__all__ = ["build_report", "collect", "latency_figure", "log_axis", "markdown", "place_labels", "plot", "recommend",
           "tradeoff_figure", "verdict"]


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
