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

The rule (see `recommend`): among the artifacts of one runtime and mode that were benchmarked on the
target, ship the one with the lowest p50 whose parity row exists and passed. An artifact with no
parity result never counts as passing. Sequence (per window) and step (per frame) latencies are only
compared within their own mode.
"""

from __future__ import annotations

import io
import json
from pathlib import Path

from edgernn.errors import ArtifactError, ConfigError
from edgernn.rundir import load_run
from edgernn.runtimes.files import atomic_write_bytes, atomic_write_json, atomic_write_text
from edgernn.runtimes.manifest import read_manifest

RUNTIME_COLORS = {"onnxruntime": "tab:blue", "litert": "tab:orange", "torch": "tab:gray"}
OTHER_COLOR = "tab:green"  # a runtime this table does not know yet
BOX_ALPHA = 0.6  # the one alpha every runtime patch uses, in the plot and in its legend
CELL_MARKERS = {"gru": "o", "lstm": "s", "rnn": "^"}
MODE_ORDER = {"sequence": 0, "step": 1}
DPI = 110
MODE_TITLE = {"sequence": "full sequence", "step": "streaming step"}


def _read_json(path: Path):
    if not path.is_file():
        return None
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as exc:
        raise ConfigError(f"{path} is corrupt ({exc}); re-run the command that writes it") from exc


def _unit(mode) -> str:
    """What one latency sample times: a whole window (sequence) or one frame (step)."""
    return "frame" if mode == "step" else "window"


def _runtime_color(runtime) -> str:
    return RUNTIME_COLORS.get(runtime, OTHER_COLOR)


def collect(run_dir, target: str | None = None) -> dict:
    """Everything known about one run: metrics, parity, bench (for `target`, else the newest bench),
    and the recommendations derived from them."""
    run = load_run(run_dir)
    parity = _read_json(run.path / "parity.json")
    all_benches = sorted(run.path.glob("bench-*.json"), key=lambda p: p.stat().st_mtime)
    emulated = [p for p in all_benches if p.name.endswith(f"{EMULATED_SUFFIX}.json")]
    # an emulated board's timings never choose what to ship: by default only real targets do
    benches = ([p for p in all_benches if p.name == f"bench-{target}.json"] if target
               else [p for p in all_benches if p not in emulated])
    bench = _read_json(benches[-1]) if benches else None
    if parity is None and bench is None:
        raise ConfigError(f"nothing to report for {run.path}: no parity.json and no bench-*.json"
                          + (f" for target {target}" if target and all_benches else "")
                          + f"; run `edgernn parity {run.path}` and `edgernn bench {run.path}` first")
    _check_current(run, parity, "parity.json", "parity")
    _check_current(run, bench, benches[-1].name if benches else "", "bench")
    rows = {}
    for r in (parity or {}).get("artifacts", []):
        rows[r["artifact"]] = {"artifact": r["artifact"], "format": r["format"], "precision": r["precision"],
                               "mode": r["mode"], "runtime": r["runtime"], "size_bytes": r["size_bytes"],
                               "compute_label": r.get("compute_label"), "parity": r}
    if (bench or {}).get("emulated"):
        bench = _omit_timings(bench)
    for r in (bench or {}).get("results", []):
        row = rows.setdefault(r["artifact"], {"artifact": r["artifact"], "format": r.get("format"),
                                              "precision": r.get("precision"), "mode": r.get("mode"),
                                              "runtime": r.get("runtime"), "size_bytes": r.get("size_bytes"),
                                              "compute_label": r.get("compute_label")})
        row["bench"] = r
    for row in rows.values():
        row["verdict"] = verdict(row)
        if row.get("format") == "c":  # the C block: prefix, state size, Cortex-M4 flash/RAM
            m = _read_json(run.artifacts_dir / f"{row['artifact']}.json")
            row["c"] = (m or {}).get("c")
    info = {"run": str(run.path), "name": run.path.name, "model": run.config.to_dict(), "metrics": run.metrics,
            "dataset": run.dataset.get("name"), "task": run.task, "has_parity": parity is not None,
            "parity_reference": (parity or {}).get("reference"), "parity_passed": (parity or {}).get("passed"),
            "bench_target": (bench or {}).get("target"), "requested_target": target,
            "bench_targets": [p.name[len("bench-"):-len(".json")] for p in all_benches],
            "machine": (bench or {}).get("machine"), "settings": (bench or {}).get("settings"),
            "torch_eager": (bench or {}).get("torch_eager"), "warnings": (bench or {}).get("warnings", []),
            "bench_emulated": (bench or {}).get("emulated"), "emulated": _emulated_parity(run, emulated),
            "artifacts": list(rows.values())}
    info["recommendations"], info["recommendation_note"] = recommend(info)
    return info


EMULATED_SUFFIX = "-emulated"  # bench-rpi4-emulated.json: `bench --target rpi4 --emulate`


def _omit_timings(bench: dict) -> dict:
    """An emulated bench with its latencies removed: qemu timings are not the board's, so the report
    shows none of them (its outputs, checked by on-device parity, are real ARM results)."""
    bench = dict(bench)
    bench["results"] = [{**r, "latency_us": {}, "stream_us": None, "mac_per_s": None} for r in bench["results"]]
    bench["torch_eager"] = None
    return bench


def _emulated_parity(run, paths: list) -> list[dict]:
    """Per emulated bench: where it ran and how its on-device (ARM) parity came out."""
    out = []
    for p in paths:
        b = _read_json(p)
        _check_current(run, b, p.name, "bench")
        dp = b.get("device_parity") or {}
        rows = dp.get("artifacts") or []
        vs = [r["vs_host"]["max_abs_diff"] for r in rows if r.get("vs_host")]
        out.append({"target": b.get("target"), "emulated": b.get("emulated") or {},
                    "checked": len(rows), "passed": sum(1 for r in rows if r.get("passed")),
                    "failed": [r["artifact"] for r in rows if not r.get("passed")],
                    "max_vs_host": max(vs) if vs else None})
    return out


def _check_current(run, results: dict | None, name: str, command: str) -> None:
    """Refuse results measured on another model, or on artifacts that were re-exported since."""
    if results is None:
        return
    fix = f"re-run `edgernn {command} {run.path}`"
    run.check_built_for(f"{run.path / name}", {"model_sha256": (results.get("model") or {}).get("sha256"),
                                               "model_summary": (results.get("model") or {}).get("summary")}, fix)
    rows = results.get("artifacts") or results.get("results") or []
    for r in rows:
        sha = r.get("sha256")
        m = run.artifacts_dir / (r.get("artifact") or "")
        if sha and m.is_file() and (m.with_name(m.name + ".json")).is_file():
            if read_manifest(m, verify=False).get("sha256") != sha:
                raise ArtifactError(f"{run.path / name} measured an older {m.name} (re-exported since): {fix}")


# ----------------------------------------------------------------------------- the decision


def verdict(a: dict) -> str:
    """PASS / FAIL from the artifact's parity row; "no parity" when it has none (never a pass)."""
    passed = (a.get("parity") or {}).get("passed")
    return "PASS" if passed is True else "FAIL" if passed is False else "no parity"


def _p50(a: dict):
    return ((a.get("bench") or {}).get("latency_us") or {}).get("p50")


def _metric_key(task) -> str:
    return "rmse" if task == "forecast" else "accuracy"


def _why_not(a: dict, task) -> str:
    """Why an artifact cannot be shipped, in a few words."""
    if verdict(a) == "no parity":
        return "has no parity result"
    p = a["parity"]
    gate = p.get("gate") or ""
    key = _metric_key(task)
    if gate.startswith("max|diff|") and p.get("max_abs_diff") is not None:
        measured = f"max|diff| {p['max_abs_diff']:.3g}"
    elif p.get(key) is not None:
        measured = f"{key} {p[key]:.4f}"
    else:
        measured = "no metric recorded"
    return f"failed its gate: {measured}" + (f", gate `{gate}`" if gate else "")


def recommend(run: dict) -> tuple[list[dict], str | None]:
    """Per (runtime, mode): the fastest benchmarked artifact whose parity row passed, and why.

    Returns (recommendations, note); note says why there are none when a whole input is missing."""
    where = run.get("run", run.get("name", "RUN"))
    if not run.get("has_parity"):
        return [], (f"no recommendation: {where} has no parity.json, and an artifact without a parity result "
                    f"never counts as passing; run `edgernn parity {where}` first")
    target = run.get("bench_target")
    if run.get("bench_emulated"):
        return [], (f"no recommendation: `{target}` is an emulated board (qemu -cpu "
                    f"{run['bench_emulated'].get('qemu_cpu')} on this machine), and emulated timings are not the "
                    "board's; its outputs are real ARM results (see on-device parity). Bench a real board to choose")
    if target is None:
        wanted = run.get("requested_target")
        missing = f"bench-{wanted}.json" if wanted else "bench-<target>.json"
        return [], (f"no recommendation: {where} has no {missing}, so no artifact has a latency to rank; "
                    f"run `edgernn bench {where} --target {wanted or 'desktop'}` first")
    task = run.get("task")
    key = _metric_key(task)
    ref = (run.get("parity_reference") or {}).get(key)
    groups: dict = {}
    for a in run["artifacts"]:
        groups.setdefault((a.get("runtime"), a.get("mode")), []).append(a)
    recs = []
    for (runtime, mode) in sorted(groups, key=lambda k: (str(k[0]), MODE_ORDER.get(k[1], 9), str(k[1]))):
        unit = _unit(mode)
        timed = sorted((a for a in groups[(runtime, mode)] if _p50(a) is not None),
                       key=lambda a: (_p50(a), a.get("size_bytes") or 0, a["artifact"]))
        passing = [a for a in timed if verdict(a) == "PASS"]
        rec = {"target": target, "runtime": runtime, "mode": mode, "unit": unit, "artifact": None, "p50_us": None,
               "benchmarked": len(timed), "passing": len(passing), "rejected_faster": []}
        if not timed:
            rec["reason"] = f"nothing to ship: no {mode} artifact on {runtime} was benchmarked on {target}"
        elif not passing:
            which = (f"none of the {len(timed)} benchmarked {mode} artifacts on {runtime} passes" if len(timed) > 1
                     else f"the one benchmarked {mode} artifact on {runtime} does not pass")
            rec["reason"] = f"nothing to ship: {which}: " + "; ".join(
                f"{a['artifact']} ({_p50(a):.1f} us/{unit}) {_why_not(a, task)}" for a in timed)
        else:
            best = passing[0]
            p = best["parity"]
            quality = (f"{key} {p[key]:.4f}" if p.get(key) is not None else f"no {key}")
            if ref is not None:
                quality += f" (float {ref:.4f})"
            size = f", {best['size_bytes'] / 1024:.1f} KB" if best.get("size_bytes") else ""
            which = (f"fastest of {len(passing)} passing {mode} artifacts" if len(passing) > 1
                     else f"the only passing {mode} artifact")
            reason = (f"{which} on {runtime}: "
                      f"p50 {_p50(best):.1f} us/{unit}, {quality}{size}")
            for a in timed:
                if _p50(a) >= _p50(best):
                    break
                if a is not best and verdict(a) != "PASS":
                    why = _why_not(a, task)
                    rec["rejected_faster"].append({"artifact": a["artifact"], "p50_us": _p50(a), "why": why})
                    reason += f"; faster {a['artifact']} ({_p50(a):.1f} us/{unit}) {why}"
            rec.update(artifact=best["artifact"], p50_us=_p50(best), reason=reason)
        recs.append(rec)
    return recs, (None if recs else f"no recommendation: {where} has no artifacts in parity.json or its bench")


# ----------------------------------------------------------------------------- Markdown


def _int8_speed(r: dict) -> list[str]:
    """One plain sentence per quantized artifact: is it faster or slower than the float artifact of the
    same format and mode on this target (int8 is not always faster: x86 int8 LSTM kernels, Loop GRUs)."""
    by_key = {}
    for a in r["artifacts"]:  # names are MODE-PRECISION.EXT
        stem, _, ext = a["artifact"].rpartition(".")
        if _p50(a) is not None and "-" in stem:
            by_key[(ext, a.get("mode"), stem.split("-", 1)[1])] = a
    out = []
    for (fmt, mode, prec), a in sorted(by_key.items(), key=lambda kv: (kv[0][0], MODE_ORDER.get(kv[0][1], 9),
                                                                       str(kv[0][2]))):
        flt = by_key.get((fmt, mode, "float"))
        if prec == "float" or flt is None:
            continue
        ratio = _p50(a) / _p50(flt)
        if ratio > 1.05:
            verdict_, how = "SLOWER than", f"{ratio:.1f}x the time of `{flt['artifact']}`"
        elif ratio < 0.95:
            verdict_, how = "faster than", f"{1 / ratio:.1f}x faster than `{flt['artifact']}`"
        else:
            verdict_, how = "about as fast as", f"`{flt['artifact']}`"
        out.append(f"- `{a['artifact']}` is {verdict_} float here: p50 {_p50(a):.1f} vs {_p50(flt):.1f} "
                   f"us/{_unit(mode)} ({how})")
    return (["int8 vs float on this target:", ""] + out + [""]) if out else []




def _fmt(v, spec, missing="-"):
    return missing if v is None else format(v, spec)


def _artifact_table(r: dict, mode: str) -> list[str]:
    arts = [a for a in r["artifacts"] if a.get("mode") == mode]
    if not arts:
        return []
    key = _metric_key(r["task"])
    metric = "RMSE" if key == "rmse" else "accuracy"
    unit = _unit(mode)
    T = r["metrics"].get("seq_len") or (r.get("settings") or {}).get("window_length")
    if mode == "sequence":
        title = f"Full-sequence artifacts: one call per window{f' of T={T} frames' if T else ''}, latency per window"
    else:
        title = "Streaming step artifacts: one call per frame, latency per frame (state carried between calls)"
    head = (f"| artifact | runtime | int8 | parity | {metric} | change vs float | agreement | size KB "
            f"| p50 us/{unit} | p99 us/{unit} |")
    if mode == "step":
        head += " stream p50 us/frame |"
    head += " peak RSS MB |"
    lines = [f"{title}:", "", head, "|" + "---|" * (head.count("|") - 1)]
    arts.sort(key=lambda a: (str(a.get("runtime")), _p50(a) is None, _p50(a) or 0, a["artifact"]))
    for a in arts:
        p, b = a.get("parity") or {}, a.get("bench") or {}
        lat = b.get("latency_us") or {}
        rss = (b.get("rss_mb") or {}).get("inference_peak")
        size = f"{a['size_bytes'] / 1024:.1f}" if a.get("size_bytes") else "-"
        label = a.get("compute_label") or "-"
        if p.get("recipe") and p.get("precision") == "int8":
            label += f" (recipe {p['recipe']})"
        row = (f"| {a['artifact']} | {a['runtime']} | {label} | {a['verdict']} "
               f"| {_fmt(p.get(key), '.4f')} | {_fmt(p.get(key + '_change'), '+.4f')} "
               f"| {_fmt(p.get('agreement'), '.3f')} | {size} | {_fmt(lat.get('p50'), '.1f')} "
               f"| {_fmt(lat.get('p99'), '.1f')} |")
        if mode == "step":
            row += f" {_fmt((b.get('stream_us') or {}).get('p50'), '.1f')} |"
        row += f" {_fmt(rss, '.1f')} |"
        lines.append(row)
    return lines + [""]


def _c_table(r: dict) -> list[str]:
    """C libraries: the C-loop latency (no Python in the loop) against the fastest runtime artifact and the
    CPU's multiply-add bound, and what each needs on a Cortex-M4 (arm-none-eabi-gcc -Os)."""
    arts = [a for a in r["artifacts"] if a.get("format") == "c" and a.get("c")]
    if not arts:
        return []
    lines = ["C libraries (`--format c`; C loop = timed inside a compiled loop, no Python call overhead; Cortex-M4 "
             "= arm-none-eabi-gcc -Os, flash = code + const weights, stack = upper bound):", "",
             "| artifact | C loop p50 us | x MAC bound | Cortex-M4 flash KB | static RAM B | stack B <= | state B |",
             "|---|---|---|---|---|---|---|"]
    for a in sorted(arts, key=lambda a: (a.get("mode") != "step", a["artifact"])):
        c, loop = a["c"], (a.get("bench") or {}).get("c_loop_us") or {}
        m4 = (c.get("targets") or {}).get("cortex-m4") or {}
        flash = f"{m4['flash_bytes'] / 1024:.1f}" if m4.get("flash_bytes") else m4.get("skipped", "-")
        lines.append(f"| {a['artifact']} | {_fmt(loop.get('p50'), '.3f')} per {loop.get('unit', '-')} "
                     f"| {_fmt(loop.get('x_mac_bound'), '.1f')} | {flash} | {_fmt(m4.get('ram_static_bytes'), 'd')} "
                     f"| {_fmt(m4.get('stack_bytes_upper'), 'd')} | {c.get('state_bytes') or '-'} |")
    runtimes = [a for a in r["artifacts"] if a.get("mode") == "step" and a.get("format") != "c"
                and a.get("verdict") == "PASS" and _p50(a)]
    cstep = [a for a in arts if a.get("mode") == "step" and a.get("precision") == "float"
             and ((a.get("bench") or {}).get("c_loop_us") or {}).get("p50")]
    lines.append("")
    if runtimes and cstep:
        best = min(runtimes, key=_p50)
        c = cstep[0]["bench"]["c_loop_us"]["p50"]
        lines += [f"Per frame, `{cstep[0]['artifact']}` takes {c:.3f} us in C against {_p50(best):.1f} us for the fastest "
                  f"runtime artifact, `{best['artifact']}` ({_p50(best) / c:.0f}x): the runtimes' cost is call "
                  "overhead, not arithmetic.", ""]
    return lines


def _decision(r: dict) -> list[str]:
    target = r.get("bench_target") or r.get("requested_target") or "?"
    lines = [f"### Decision: what to ship from {r['name']} on `{target}`", ""]
    if not r["recommendations"]:
        return lines + [r["recommendation_note"], ""]
    lines += ["| runtime | mode | ship | p50 | why |", "|---|---|---|---|---|"]
    for rec in r["recommendations"]:
        ship = f"`{rec['artifact']}`" if rec["artifact"] else "nothing"
        p50 = f"{rec['p50_us']:.1f} us/{rec['unit']}" if rec["p50_us"] is not None else "-"
        lines.append(f"| {rec['runtime']} | {rec['mode']} | {ship} | {p50} | {rec['reason']} |")
    lines.append("")
    lines += _int8_speed(r)
    others = [t for t in r.get("bench_targets", []) if t != r.get("bench_target")
              and not t.endswith(EMULATED_SUFFIX)]  # emulated ones have their "on ARM" line above
    if others:
        lines += [f"Also benchmarked on {', '.join(others)}: re-run `edgernn report` with `--target NAME` for "
                  "that target's decision.", ""]
    return lines


def _baseline_lines(m: dict) -> list[str]:
    """The baselines the model must beat (metrics.json; runs trained before baselines existed have none)."""
    from edgernn.baselines import NAMES

    b = m.get("baselines")
    if not b:
        return ["- baselines: not in metrics.json (trained by an older edgernn); retrain to compare"]
    parts = []
    for name, v in b.items():
        score = v.get("rmse") if "rmse" in v else v.get("accuracy")
        unit = "RMSE" if "rmse" in v else "accuracy"
        parts.append(f"{NAMES.get(name, name)} {unit} {_fmt(score, '.4f')}")
    line = "- baselines on the test windows: " + ", ".join(parts)
    if m.get("beats_baseline") is False:
        return [line, f"- **WARNING: {m.get('baseline_verdict')}**: do not ship this model; retrain it or "
                      "collect more data"]
    return [line + (f" ({m['baseline_verdict']})" if m.get("baseline_verdict") else "")]


def markdown(runs: list[dict], plots: dict) -> str:
    lines = ["# edgernn report", ""]
    for r in runs:
        m = r["metrics"]
        cfg = r["model"]
        key = m.get("headline_metric") or _metric_key(r["task"])
        test = (m.get("test") or {}).get(key, m.get(f"test_{key}"))
        dataset = (m.get("dataset") or {}).get("name") or r.get("dataset") or "?"
        lines += [f"## {r['name']}: {cfg['cell'].upper()} h{cfg['hidden']} x{cfg['layers']}"
                  f"{' bidirectional' if cfg['bidirectional'] else ''} on {dataset}", ""]
        facts = [f"test {key} (torch float): **{_fmt(test, '.4f')}**"]
        for label, k in (("parameters", "parameters"), ("MACs per window", "macs_per_inference")):
            if m.get(k) is not None:
                facts.append(f"{m[k]} {label}")
        if m.get("seq_len"):
            facts.append(f"T={m['seq_len']}")
        if m.get("train_time_s") is not None:
            facts.append(f"trained in {m['train_time_s']} s")
        lines.append("- " + ", ".join(facts))
        lines += _baseline_lines(m)
        if r.get("bench_emulated"):
            e = r["bench_emulated"]
            lines.append(f"- bench target `{r['bench_target']}` is EMULATED (qemu {e.get('qemu_version')} -cpu "
                         f"{e.get('qemu_cpu')} on {e.get('host_cpu', 'this machine')}): latencies are omitted, "
                         "they are not the board's")
        elif r.get("machine"):
            mc, s = r["machine"], r["settings"] or {}
            lines.append(f"- bench target `{r['bench_target']}`: {mc.get('cpu_model', '?')}, {mc.get('cores', '?')} "
                         f"cores, {mc.get('os', '')}; threads {s.get('threads')}, batch 1, {s.get('runs')} timed runs "
                         f"x {s.get('repeat')} repeat(s)")
        else:
            lines.append("- no benchmark for this run: latency columns are empty")
        te = r.get("torch_eager")
        if te:
            line = (f"- PyTorch eager reference: p50 {te['latency_us']['p50']:.1f} us/window, p99 "
                    f"{te['latency_us']['p99']:.1f} us/window")
            seq = [x for x in r["recommendations"] if x["mode"] == "sequence" and x["p50_us"]]
            if seq:
                best = min(seq, key=lambda x: x["p50_us"])
                line += (f"; the fastest passing full-sequence artifact, `{best['artifact']}`, is "
                         f"{te['latency_us']['p50'] / best['p50_us']:.1f}x faster than PyTorch eager")
            lines.append(line)
        if r.get("has_parity"):
            n = len([a for a in r["artifacts"] if a.get("parity")])
            failed = [a["artifact"] for a in r["artifacts"] if a["verdict"] == "FAIL"]
            lines.append(f"- parity: {n - len(failed)} of {n} artifacts pass their gate"
                         + (f"; failed: {', '.join(failed)}" if failed else ""))
        else:
            lines.append("- parity: no parity.json, so no artifact counts as passing")
        for e in r.get("emulated") or []:
            em = e["emulated"]
            vs = "-" if e["max_vs_host"] is None else f"{e['max_vs_host']:.2g}"
            lines.append(f"- on ARM (`{e['target']}`: real aarch64 runtimes under qemu -cpu {em.get('qemu_cpu')}; "
                         f"timings not shown, they are not the board's): {e['passed']} of {e['checked']} artifacts "
                         f"pass their gate, max |output difference| from this machine {vs}"
                         + (f"; failed: {', '.join(e['failed'])}" if e["failed"] else ""))
        lines.append("")
        for mode in sorted({a.get("mode") for a in r["artifacts"]}, key=lambda x: (MODE_ORDER.get(x, 9), str(x))):
            lines += _artifact_table(r, mode)
        lines += _c_table(r)
        for w in r.get("warnings", []):
            lines += [f"> warning: {w}", ""]
        lines += _decision(r)
    if plots:
        lines += ["## Plots", ""]
    for title, path in plots.items():
        lines += [f"![{title}]({path})", ""]
    return "\n".join(lines)


# ----------------------------------------------------------------------------- plots


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
            arts.sort(key=lambda a: (str(a.get("runtime")), _p50(a), a["artifact"]))
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
        ax.set_xlabel(f"latency per {_unit(mode)}, us (log scale)", fontsize=9)
        ax.set_title(f"{MODE_TITLE[mode].capitalize()} artifacts: latency per {_unit(mode)} (batch 1); "
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

    key = _metric_key(runs[0]["task"])
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
                pts.append({"x": _p50(a), "y": a["parity"][key], "label": label, "bold": ship,
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
        axes[-1, j].set_xlabel(f"p50 latency per {_unit(mode)}, us (log scale)", fontsize=9)
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
