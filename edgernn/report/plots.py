"""
Plots: the report's PNG figures for collected runs (edgernn.report.collect), drawn with matplotlib on
the Agg canvas; matplotlib is imported only inside these functions, and without it `plot` writes nothing.

    plot(runs, Path("runs/demo"))   # -> {"Latency distribution per artifact": "plots/latency.png", ...}
    fig = latency_figure(runs)      # box plot of latency per artifact, one panel per mode, colour = runtime
    fig = tradeoff_figure(runs)     # accuracy (or RMSE) vs p50, marker area = size, shape = cell, edge = int8
    log_axis(ax, values); place_labels(ax, points)   # shared with edgernn tune's Pareto plot

OUT/plots/latency.png: latency distribution per artifact, one panel per mode, coloured by runtime.
OUT/plots/tradeoff.png: accuracy (or RMSE) vs p50 latency, one panel per model and mode; marker area =
file size, colour = runtime, shape = cell, black edge = int8.
"""

from __future__ import annotations

import io
from pathlib import Path

from edgernn.report.decide import MODE_ORDER, metric_key, p50_of, unit_of
from edgernn.runtimes.files import atomic_write_bytes

RUNTIME_COLORS = {"onnxruntime": "tab:blue", "litert": "tab:orange", "torch": "tab:gray"}
OTHER_COLOR = "tab:green"  # a runtime this table does not know yet
BOX_ALPHA = 0.6  # the one alpha every runtime patch uses, in the plot and in its legend
CELL_MARKERS = {"gru": "o", "lstm": "s", "rnn": "^"}
DPI = 110
MODE_TITLE = {"sequence": "full sequence", "step": "streaming step"}


def _runtime_color(runtime) -> str:
    return RUNTIME_COLORS.get(runtime, OTHER_COLOR)


def log_axis(ax, values, axis="x"):
    """Log scale with plain-number tick labels (20, 50, 100; not 2x10^1)."""
    from matplotlib.ticker import FuncFormatter, LogLocator, NullFormatter

    lo, hi = min(values), max(values)
    dense = hi / max(lo, 1e-9) < 20
    subs = (1.0, 1.5, 2.0, 3.0, 4.0, 5.0, 7.0) if dense else (1.0, 2.0, 5.0)
    a = ax.xaxis if axis == "x" else ax.yaxis
    (ax.set_xscale if axis == "x" else ax.set_yscale)("log")
    a.set_major_locator(LogLocator(base=10, subs=subs))
    a.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
    a.set_minor_formatter(NullFormatter())


def _samples(b: dict) -> list:
    return b.get("samples_us") or [b["latency_us"][k] for k in ("min", "p50", "p90", "p99", "max")]


def _figure(**kw):
    """A matplotlib Figure on the Agg canvas (PNG, no display, no pyplot global state)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(dpi=DPI, **kw)  # labels are placed at this dpi, and saved at it
    FigureCanvasAgg(fig)
    return fig


def latency_figure(runs: list[dict]):
    """Box plot of latency samples per artifact, one panel per mode (its own x axis and unit), boxes
    coloured by runtime; the legend is built from exactly the colours used. None if nothing was timed."""
    from matplotlib.patches import Patch

    shipped = {(r["name"], rec["artifact"]) for r in runs for rec in r["recommendations"] if rec["artifact"]}
    panels = []
    for mode in ("sequence", "step"):
        items = []
        for r in runs:
            arts = [a for a in r["artifacts"] if a.get("bench") and a.get("mode") == mode]
            arts.sort(key=lambda a: (str(a.get("runtime")), p50_of(a), a["artifact"]))
            for a in arts:
                tag = {"PASS": "", "FAIL": "  [FAIL]", "no parity": "  [no parity]"}[a["verdict"]]
                if (r["name"], a["artifact"]) in shipped:
                    tag = "  [ship]"
                items.append((f"{r['name']}  {a['artifact']}{tag}", _samples(a["bench"]), a.get("runtime"), r["name"]))
            te = r.get("torch_eager")
            if mode == "sequence" and te:
                items.append((f"{r['name']}  PyTorch eager (reference)", _samples(te), "torch", r["name"]))
        if items:
            panels.append((mode, items))
    if not panels:
        return None
    heights = [len(items) for _, items in panels]
    fig = _figure(figsize=(10, 0.34 * sum(heights) + 1.6 * len(panels) + 0.6))
    axes = fig.subplots(len(panels), 1, gridspec_kw={"height_ratios": [h + 2.5 for h in heights]}, squeeze=False)
    used = {}  # runtime -> facecolor, in order of first use: the legend is made from exactly these
    for ax, (mode, items) in zip(axes[:, 0], panels):
        data = [s for _, s, _, _ in items]
        style = {"whis": (1, 99), "showfliers": False, "patch_artist": True, "widths": 0.6,
                 "medianprops": {"color": "black", "linewidth": 1.6}}
        try:
            bp = ax.boxplot(data, orientation="horizontal", **style)
        except TypeError:  # matplotlib < 3.10 spells it vert=False
            bp = ax.boxplot(data, vert=False, **style)
        for patch, (_, _, runtime, _) in zip(bp["boxes"], items):
            color = _runtime_color(runtime)
            used.setdefault(runtime, color)
            patch.set_facecolor(color)
            patch.set_alpha(BOX_ALPHA)
            patch.set_edgecolor("black")
        ax.set_yticks(range(1, len(items) + 1), [label for label, _, _, _ in items], fontsize=8)
        for k in range(1, len(items)):
            if items[k][3] != items[k - 1][3]:  # a thin line between models
                ax.axhline(k + 0.5, color="0.6", lw=0.8)
        for tick, (label, _, _, _) in zip(ax.get_yticklabels(), items):
            if label.endswith("[ship]"):
                tick.set_fontweight("bold")
            elif label.endswith("]"):
                tick.set_color("firebrick")
        ax.invert_yaxis()  # first item at the top, as in the tables
        flat = [v for s in data for v in s if v > 0]
        log_axis(ax, flat)
        ax.set_xlim(min(flat) / 1.15, max(flat) * 1.15)
        ax.grid(axis="x", which="major", alpha=0.3)
        ax.set_xlabel(f"latency per {unit_of(mode)}, us (log scale)", fontsize=9)
        ax.set_title(f"{MODE_TITLE[mode].capitalize()} artifacts: latency per {unit_of(mode)} (batch 1); "
                     "box p25-p75, black line p50, whiskers p1-p99", fontsize=9)
    handles = [Patch(facecolor=c, alpha=BOX_ALPHA, edgecolor="black", label=rt) for rt, c in used.items()]
    fig.legend(handles=handles, title="runtime", loc="upper right", fontsize=8, title_fontsize=8,
               bbox_to_anchor=(0.995, 0.995), ncol=len(handles))
    fig.tight_layout(rect=(0, 0, 1, 1 - 0.45 / fig.get_figheight()))
    return fig


def place_labels(ax, pts: list[dict], avoid=(), fontsize: float = 7.5):
    """Annotate each point without collisions. Points are taken by y (top first) then x; each label
    takes the first offset (beside the marker, then 9, 18, ... points further up/down with a leader
    line) whose box overlaps no earlier label, no other marker and none of the `avoid` artists, and
    stays inside the axes. A label starts on the side away from its nearest neighbour, so a pair of
    close points gets labels that diverge. Labels sit on a white background so grid and reference
    lines never strike through them. Deterministic for the same inputs."""
    fig = ax.figure
    renderer = fig.canvas.get_renderer()
    px_per_pt = fig.dpi / 72.0
    ax_box = ax.get_window_extent(renderer)
    fixed = [tuple(a.get_window_extent(renderer).extents) for a in avoid]
    disp = [ax.transData.transform((p["x"], p["y"])) for p in pts]
    radius = [(p["area"] ** 0.5) / 2 for p in pts]  # points
    markers = [(x - r * px_per_pt - 1, y - r * px_per_pt - 1, x + r * px_per_pt + 1, y + r * px_per_pt + 1)
               for (x, y), r in zip(disp, radius)]
    placed = []

    def overlaps(a, b):
        return a[0] < b[2] and b[0] < a[2] and a[1] < b[3] and b[1] < a[3]

    for i in sorted(range(len(pts)), key=lambda k: (-disp[k][1], disp[k][0])):
        p = pts[i]
        near = [k for k in range(len(pts)) if k != i and abs(disp[k][1] - disp[i][1]) < 30]
        nearest = min(near, key=lambda k: abs(disp[k][0] - disp[i][0]), default=None)
        first = -1 if nearest is not None and disp[nearest][0] > disp[i][0] else 1
        gap = radius[i] + 4
        style = {"textcoords": "offset points", "va": "center", "fontsize": fontsize, "color": p["color"],
                 "fontweight": "bold" if p.get("bold") else "normal", "zorder": 4,
                 "bbox": {"boxstyle": "square,pad=0.1", "facecolor": "white", "edgecolor": "none", "alpha": 0.85}}
        chosen = None
        for dy in (0, 9, -9, 18, -18, 27, -27, 36, -36, 45, -45, 54, -54):
            for side in (first, -first):
                dx = side * (gap if dy == 0 else 8)
                t = ax.annotate(p["label"], (p["x"], p["y"]), xytext=(dx, dy), ha="left" if dx > 0 else "right",
                                **style)
                bb = t.get_window_extent(renderer)
                t.remove()
                box = (bb.x0 - 5, bb.y0 - 2, bb.x1 + 5, bb.y1 + 2)
                inside = (bb.x0 >= ax_box.x0 and bb.x1 <= ax_box.x1 and bb.y0 >= ax_box.y0 and bb.y1 <= ax_box.y1)
                others = fixed + placed + [m for k, m in enumerate(markers) if k != i]
                if inside and not any(overlaps(box, o) for o in others):
                    chosen = (dx, dy, box)
                    break
            if chosen:
                break
        dx, dy, box = chosen or (gap, 0, None)  # crowded beyond the search: plain right-hand label
        ax.annotate(p["label"], (p["x"], p["y"]), xytext=(dx, dy), ha="left" if dx > 0 else "right", **style,
                    arrowprops={"arrowstyle": "-", "color": "0.55", "lw": 0.6, "shrinkA": 0, "shrinkB": 3}
                    if dy else None)
        if box:
            placed.append(box)


def _size_area(kb: float) -> float:
    """Marker area (points^2) for a file of `kb` kilobytes: proportional, with a floor to stay visible."""
    return max(25.0, kb * 8)


def tradeoff_figure(runs: list[dict]):
    """Accuracy (or RMSE) vs p50 latency, one panel per model (rows) and mode (columns, each with its
    own x axis and unit); labels placed without collisions. None if no artifact has both numbers."""
    from matplotlib.lines import Line2D

    key = metric_key(runs[0]["task"])
    shipped = {(r["name"], rec["artifact"]) for r in runs for rec in r["recommendations"] if rec["artifact"]}
    modes = sorted({a["mode"] for r in runs for a in r["artifacts"] if a.get("bench") and a.get("parity")
                    and a["parity"].get(key) is not None}, key=lambda m: MODE_ORDER.get(m, 9))
    rows = [r for r in runs if any(a.get("bench") and a.get("parity") and a["parity"].get(key) is not None
                                   for a in r["artifacts"])]
    if not rows:
        return None
    fig = _figure(figsize=(6.2 * len(modes), 3.9 * len(rows) + 1.5))
    axes = fig.subplots(len(rows), len(modes), squeeze=False, sharex="col")
    panels, used_rt, used_cells = [], {}, {}
    for i, r in enumerate(rows):
        cell = r["model"]["cell"]
        marker = CELL_MARKERS.get(cell, "D")
        ref = (r.get("parity_reference") or {}).get(key)
        for j, mode in enumerate(modes):
            ax = axes[i, j]
            pts = []
            for a in r["artifacts"]:
                if a.get("mode") != mode or not a.get("bench") or (a.get("parity") or {}).get(key) is None:
                    continue
                color = _runtime_color(a.get("runtime"))
                used_rt.setdefault(a.get("runtime"), color)
                used_cells.setdefault(cell, marker)
                label = f"{a['format']} {a['precision']}"
                if a["verdict"] != "PASS":
                    label += " FAIL" if a["verdict"] == "FAIL" else " (no parity)"
                ship = (r["name"], a["artifact"]) in shipped
                if ship:
                    label += " - ship"
                pts.append({"x": p50_of(a), "y": a["parity"][key], "label": label, "bold": ship,
                            "area": _size_area((a.get("size_bytes") or 0) / 1024), "marker_color": color,
                            "color": color if a["verdict"] == "PASS" else "firebrick",
                            "int8": a.get("precision") != "float", "fail": a["verdict"] != "PASS"})
            title = f"{r['name']} ({cell.upper()} h{r['model']['hidden']}): {MODE_TITLE.get(mode, mode)}"
            ax.set_title(title, fontsize=9)
            if not pts:
                ax.text(0.5, 0.5, f"no benchmarked {mode} artifact with parity", ha="center", va="center",
                        transform=ax.transAxes, fontsize=8, color="0.4")
                ax.set_yticks([])
                continue
            for p in pts:
                ax.scatter(p["x"], p["y"], s=p["area"], c=p["marker_color"], marker=marker, alpha=0.75, zorder=3,
                           edgecolors="black" if p["int8"] else "none", linewidths=1.2)
            ys = [p["y"] for p in pts] + ([ref] if ref is not None else [])
            avoid = []
            if ref is not None:
                ax.axhline(ref, color="0.4", ls="--", lw=0.8, zorder=1)
                avoid.append(ax.annotate(f"torch float {ref:.4f}", (0.01, ref), xycoords=("axes fraction", "data"),
                                         xytext=(0, 4), textcoords="offset points", fontsize=7, color="0.35",
                                         va="bottom"))
            lo, hi = min(ys), max(ys)
            pad = max((hi - lo) * 0.35, abs(hi) * 0.01, 1e-6)
            ax.set_ylim(lo - pad, hi + pad)
            ax.set_ylabel(f"test {key}" + (" (lower is better)" if key == "rmse" else ""), fontsize=8)
            ax.grid(alpha=0.3)
            ax.tick_params(labelsize=8)
            panels.append((ax, pts, avoid))
    for j, mode in enumerate(modes):
        xs = [p["x"] for ax, pts, _ in panels if ax in axes[:, j] for p in pts]
        if xs:
            log_axis(axes[0, j], xs)
            axes[0, j].set_xlim(min(xs) / 1.3, max(xs) * 2.2)  # room on the right for labels
        for ax in axes[:, j]:
            ax.tick_params(axis="x", labelbottom=True)
        axes[-1, j].set_xlabel(f"p50 latency per {unit_of(mode)}, us (log scale)", fontsize=9)
    handles = [Line2D([], [], ls="", marker="o", markersize=8, markerfacecolor=c, markeredgecolor="none", alpha=0.75,
                      label=rt) for rt, c in used_rt.items()]
    handles += [Line2D([], [], ls="", marker=mk, markersize=8, markerfacecolor="0.75", markeredgecolor="none",
                       label=cell.upper()) for cell, mk in used_cells.items()]
    handles += [Line2D([], [], ls="", marker="o", markersize=8, markerfacecolor="white", markeredgecolor="black",
                       markeredgewidth=1.2, label="black edge: int8 / dynamic"),
                *(Line2D([], [], ls="", marker="o", markersize=_size_area(kb) ** 0.5, markerfacecolor="0.75",
                         markeredgecolor="none", label=f"{kb} KB") for kb in (5, 20)),
                Line2D([], [], ls="--", color="0.4", lw=0.8, label="torch float reference")]
    fig.suptitle(f"Deployment trade-off: test {key} vs p50 latency; marker area = file size; "
                 "label = format precision (red: parity gate failed; bold: ship)", fontsize=9)
    fig.legend(handles=handles, loc="lower center", ncol=len(handles), fontsize=8, frameon=False)
    fig.tight_layout(rect=(0, 0.7 / fig.get_figheight(), 1, 1 - 0.35 / fig.get_figheight()))
    fig.canvas.draw()  # fix the layout first: labels are placed in screen space
    for ax, pts, avoid in panels:
        place_labels(ax, pts, avoid)
    return fig


def plot(runs: list[dict], out_dir: Path) -> dict:
    """Write PNG plots; returns {title: relative path}. Skips (returns {}) without matplotlib."""
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        return {}
    plots_dir = out_dir / "plots"
    plots_dir.mkdir(parents=True, exist_ok=True)
    made = {}
    for title, name, make in (("Latency distribution per artifact", "latency.png", latency_figure),
                              ("Accuracy vs latency vs size", "tradeoff.png", tradeoff_figure)):
        fig = make(runs)
        if fig is not None:
            buf = io.BytesIO()
            fig.savefig(buf, format="png", dpi=DPI)
            atomic_write_bytes(plots_dir / name, buf.getvalue())
            made[title] = f"plots/{name}"
    for r in runs:  # keyword spotters: the DET curve of every step artifact beside the float model's
        d = r.get("detection")
        if d:
            from edgernn.detection_eval import plot_det

            name = f"det-{r['name']}.png"
            curves = {row["artifact"]: {k: [float("nan") if v is None else v for v in row["det"][k]]
                                        for k in ("threshold", "frr", "fa_per_hour")} for row in d["rows"]}
            plot_det(curves, plots_dir / name, max_fa_per_hour=(d.get("chosen_for") or {}).get("max_fa_per_hour"))
            made[f"{r['name']}: keyword detection (DET curve)"] = f"plots/{name}"
    return made
