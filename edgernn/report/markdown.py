"""
Markdown: the report page for collected runs (edgernn.report.collect): per model its facts and
baselines, a table of full-sequence artifacts (latency per window) and one of streaming step artifacts
(latency per frame), each row with its parity verdict, the C libraries, then the decision table (for
each runtime and mode the artifact to ship, edgernn.report.decide) and, plainly, where int8 is slower.
Text only: no files, no matplotlib.

    md = markdown([collect("runs/demo/gru")], plots={"Latency distribution per artifact": "plots/latency.png"})
"""

from __future__ import annotations

from edgernn.report.collect import EMULATED_SUFFIX
from edgernn.report.decide import MODE_ORDER, metric_key, p50_of, recommend_mcu, unit_of


def _int8_speed(r: dict) -> list[str]:
    """One plain sentence per quantized artifact: is it faster or slower than the float artifact of the
    same format and mode on this target (int8 is not always faster: x86 int8 LSTM kernels, Loop GRUs)."""
    by_key = {}
    for a in r["artifacts"]:  # names are MODE-PRECISION.EXT
        stem, _, ext = a["artifact"].rpartition(".")
        if p50_of(a) is not None and "-" in stem:
            by_key[(ext, a.get("mode"), stem.split("-", 1)[1])] = a
    out = []
    for (fmt, mode, prec), a in sorted(by_key.items(), key=lambda kv: (kv[0][0], MODE_ORDER.get(kv[0][1], 9),
                                                                       str(kv[0][2]))):
        flt = by_key.get((fmt, mode, "float"))
        if prec == "float" or flt is None:
            continue
        ratio = p50_of(a) / p50_of(flt)
        if ratio > 1.05:
            verdict_, how = "SLOWER than", f"{ratio:.1f}x the time of `{flt['artifact']}`"
        elif ratio < 0.95:
            verdict_, how = "faster than", f"{1 / ratio:.1f}x faster than `{flt['artifact']}`"
        else:
            verdict_, how = "about as fast as", f"`{flt['artifact']}`"
        out.append(f"- `{a['artifact']}` is {verdict_} float here: p50 {p50_of(a):.1f} vs {p50_of(flt):.1f} "
                   f"us/{unit_of(mode)} ({how})")
    return (["int8 vs float on this target:", ""] + out + [""]) if out else []


def _fmt(v, spec, missing="-"):
    return missing if v is None else format(v, spec)


def _artifact_table(r: dict, mode: str) -> list[str]:
    arts = [a for a in r["artifacts"] if a.get("mode") == mode]
    if not arts:
        return []
    key = metric_key(r["task"])
    metric = "RMSE" if key == "rmse" else "accuracy"
    unit = unit_of(mode)
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
    arts.sort(key=lambda a: (str(a.get("runtime")), p50_of(a) is None, p50_of(a) or 0, a["artifact"]))
    for a in arts:
        p, b = a.get("parity") or {}, a.get("bench") or {}
        lat = b.get("latency_us") or {}
        rss = (b.get("rss_mb") or {}).get("inference_peak")
        size = f"{a['size_bytes'] / 1024:.1f}" if a.get("size_bytes") else "-"
        label = a.get("compute_label") or "-"
        if p.get("recipe") and p.get("precision") == "int8":
            label += f" (recipe {p['recipe']}{', integer-only' if p.get('integer_only') else ''})"
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
                and a.get("verdict") == "PASS" and p50_of(a)]
    cstep = [a for a in arts if a.get("mode") == "step" and a.get("precision") == "float"
             and ((a.get("bench") or {}).get("c_loop_us") or {}).get("p50")]
    lines.append("")
    if runtimes and cstep:
        best = min(runtimes, key=p50_of)
        c = cstep[0]["bench"]["c_loop_us"]["p50"]
        lines += [f"Per frame, `{cstep[0]['artifact']}` takes {c:.3f} us in C against {p50_of(best):.1f} us for "
                  f"the fastest runtime artifact, `{best['artifact']}` ({p50_of(best) / c:.0f}x): the runtimes' "
                  "cost is call overhead, not arithmetic.", ""]
    return lines


def _mcu_table(r: dict) -> list[str]:
    """C artifacts on emulated Cortex-M boards (instructions exact, times ESTIMATED), and which .tflite
    artifacts TFLite Micro runs."""
    benches = r.get("mcu") or []
    if not benches:
        return []
    lines = ["### On microcontrollers (emulated)", "",
             "C artifacts cross-compiled bare metal and run under qemu-system-arm (`edgernn bench RUN --target BOARD "
             "--emulate`). Instructions are counted exactly by the emulator; **est. us is an ESTIMATE** (instructions "
             "/ board clock at 1 instruction per cycle), never a measurement. Stack is measured (painted); flash = "
             "the model's code + constants, RAM = its state + stack.", "",
             "| artifact | board (core) | instructions | est. us* | stack B | flash B | RAM B | fits | parity on MCU |",
             "|---|---|---|---|---|---|---|---|---|"]
    for b in benches:
        board = b["board"]
        for a in b["artifacts"]:
            v = b["parity"].get(a["artifact"])
            verdict = "-" if v is None else (("PASS" if v["passed"] else "FAIL")
                                             + (", bit-exact" if v.get("bit_exact") else ""))
            lines.append(f"| {a['artifact']} | {board['name']} ({board['core']}, {board['clock_mhz']:g} MHz) "
                         f"| {a['instructions']:,.0f} per {a['per']} | {a['estimated_us']:,.1f} "
                         f"| {a['stack_bytes'] or 0:,} | {a['flash_bytes']:,} | {a['ram_bytes']:,} "
                         f"| {'yes' if a['fits'] else 'NO'} | {verdict} |")
    lines.append("")
    for b in benches:
        for mode, ratio in (b.get("int8_vs_float_instructions") or {}).items():
            lines.append(f"- {b['board']['name']}: int8 C executes {ratio:.2f}x the instructions of float C ({mode})")
    tflm = next((b["tflm"] for b in benches if b.get("tflm")), [])
    if tflm:
        lines += ["", "TFLite Micro (its interpreter, built for this machine, allocating each .tflite artifact; the "
                  "time is x86 host timing of the MCU interpreter, not an MCU figure):", "",
                  "| .tflite artifact | runs on TFLite Micro | arena B | x86 host us | why not |",
                  "|---|---|---|---|---|"]
        for t in tflm:
            host = f"{t['host_us_p50']:,.1f} per {t['host_us_per']}" if t.get("host_us_p50") else "-"
            lines.append(f"| {t['artifact']} | {'yes' if t['runs'] else 'no'} | {_fmt(t.get('arena_bytes'), ',d')} "
                         f"| {host} | {t.get('reason') or ''} |")
    lines += ["", f"*{benches[0]['estimate_note']}", ""]
    recs = recommend_mcu(r)
    if recs:
        lines += ["What to ship on each microcontroller (C or TFLite Micro only):", ""]
        lines += [f"- {x['board']}, {x['mode']}: {x['reason']}" for x in recs]
        lines.append("")
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


def _integer_only_line(r: dict) -> list[str]:
    """Per format, how many quantized artifacts compute in integers end to end (what TFLite Micro and NPUs run;
    dynamic-range ones keep float activations)."""
    counts: dict = {}
    for a in r["artifacts"]:
        p = a.get("parity") or {}
        if p.get("precision") in ("int8", "dynamic"):
            c = counts.setdefault(p.get("format") or "?", [0, 0])
            c[0] += bool(p.get("integer_only"))
            c[1] += 1
    if not counts:
        return []
    return ["- integer-only (no float op on the inference path: what TFLite Micro and NPUs run): "
            + ", ".join(f"{fmt} {n} of {total} quantized" for fmt, (n, total) in sorted(counts.items()))]


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


def _detection_table(r: dict) -> list[str]:
    """Keyword spotting on the continuous test stream (parity.json "detection"): per step artifact."""
    d = r.get("detection")
    if not d:
        return []
    chosen = d.get("chosen_for") or {}
    lines = ["### Keyword spotting on a continuous stream", "",
             f"{d['stream']}. Detector: posteriors averaged over {d['detector']['smooth_s']:g} s, a refractory time of "
             f"{d['detector']['refractory_s']:g} s, per-keyword thresholds chosen at export for <= "
             f"{chosen.get('max_fa_per_hour', '?')} false accepts/h on {chosen.get('on', 'a validation stream')}. "
             f"Gate: {d['gate']}.", "",
             "| artifact | runtime | false reject rate | false accepts / h | gate |", "|---|---|---|---|---|"]
    for row in d["rows"]:
        frr = "-" if row["frr"] is None else f"{row['frr']:.3f}"
        lines.append(f"| {row['artifact']} | {row['runtime']} | {frr} | {row['fa_per_hour']:.2f} | "
                     f"{'PASS' if row['passed'] else 'FAIL ' + row['why']} |")
    return lines + [""]


def markdown(runs: list[dict], plots: dict) -> str:
    lines = ["# edgernn report", ""]
    for r in runs:
        m = r["metrics"]
        cfg = r["model"]
        key = m.get("headline_metric") or metric_key(r["task"])
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
            lines += _integer_only_line(r)
        else:
            lines.append("- parity: no parity.json, so no artifact counts as passing")
        st = r.get("stream_stability")
        if st:
            lines.append(f"- streaming horizon of the float model: {st['text']}"
                         + ("; trained with --stream-stable" if r.get("stream_stable_training") else ""))
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
        lines += _mcu_table(r)
        lines += _detection_table(r)
        for w in r.get("warnings", []):
            lines += [f"> warning: {w}", ""]
        lines += _decision(r)
    if plots:
        lines += ["## Plots", ""]
    for title, path in plots.items():
        lines += [f"![{title}]({path})", ""]
    return "\n".join(lines)
