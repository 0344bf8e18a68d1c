"""
The ship decision: from one collected run (edgernn.report.collect), which artifact to ship for each
(runtime, mode) on the benchmarked target, and why; plus each artifact's parity verdict. Pure
dictionaries in, dictionaries out: no files, no matplotlib, so the decision is testable on its own.

    recs, note = recommend(run)     # run = collect("runs/demo/gru") or a hand-made dict of the same shape
    verdict(run["artifacts"][0])    # "PASS" / "FAIL" / "no parity"

The rule: among the artifacts of one runtime and mode that were benchmarked on the target, ship the one
with the lowest p50 whose parity row exists and passed. An artifact with no parity result never counts
as passing. Sequence (per window) and step (per frame) latencies are only compared within their own mode.
An emulated board's timings never choose (they are qemu's, not the board's).
"""

from __future__ import annotations

MODE_ORDER = {"sequence": 0, "step": 1}


def unit_of(mode) -> str:
    """What one latency sample times: a whole window (sequence) or one frame (step)."""
    return "frame" if mode == "step" else "window"


def p50_of(a: dict):
    """An artifact's benchmarked p50 latency in us, or None when it was not timed."""
    return ((a.get("bench") or {}).get("latency_us") or {}).get("p50")


def metric_key(task) -> str:
    """The quality number of a task: "rmse" for forecasting, else "accuracy"."""
    return "rmse" if task == "forecast" else "accuracy"


def verdict(a: dict) -> str:
    """PASS / FAIL from the artifact's parity row; "no parity" when it has none (never a pass)."""
    passed = (a.get("parity") or {}).get("passed")
    return "PASS" if passed is True else "FAIL" if passed is False else "no parity"


def _why_not(a: dict, task) -> str:
    """Why an artifact cannot be shipped, in a few words."""
    if verdict(a) == "no parity":
        return "has no parity result"
    p = a["parity"]
    gate = p.get("gate") or ""
    key = metric_key(task)
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
    m = run.get("metrics") or {}
    if m.get("beats_baseline") is False:  # the model itself is not worth shipping: no artifact of it is
        return [], (f"no recommendation: the model does not beat its baseline ({m.get('baseline_verdict')}), so "
                    f"no artifact of it should ship, however fast or faithful; retrain it (more --epochs, "
                    "another --lr or --hidden, more data) first")
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
    key = metric_key(task)
    ref = (run.get("parity_reference") or {}).get(key)
    groups: dict = {}
    for a in run["artifacts"]:
        groups.setdefault((a.get("runtime"), a.get("mode")), []).append(a)
    recs = []
    for (runtime, mode) in sorted(groups, key=lambda k: (str(k[0]), MODE_ORDER.get(k[1], 9), str(k[1]))):
        unit = unit_of(mode)
        timed = sorted((a for a in groups[(runtime, mode)] if p50_of(a) is not None),
                       key=lambda a: (p50_of(a), a.get("size_bytes") or 0, a["artifact"]))
        passing = [a for a in timed if verdict(a) == "PASS"]
        rec = {"target": target, "runtime": runtime, "mode": mode, "unit": unit, "artifact": None, "p50_us": None,
               "benchmarked": len(timed), "passing": len(passing), "rejected_faster": []}
        if not timed:
            rec["reason"] = f"nothing to ship: no {mode} artifact on {runtime} was benchmarked on {target}"
        elif not passing:
            which = (f"none of the {len(timed)} benchmarked {mode} artifacts on {runtime} passes" if len(timed) > 1
                     else f"the one benchmarked {mode} artifact on {runtime} does not pass")
            rec["reason"] = f"nothing to ship: {which}: " + "; ".join(
                f"{a['artifact']} ({p50_of(a):.1f} us/{unit}) {_why_not(a, task)}" for a in timed)
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
                      f"p50 {p50_of(best):.1f} us/{unit}, {quality}{size}")
            for a in timed:
                if p50_of(a) >= p50_of(best):
                    break
                if a is not best and verdict(a) != "PASS":
                    why = _why_not(a, task)
                    rec["rejected_faster"].append({"artifact": a["artifact"], "p50_us": p50_of(a), "why": why})
                    reason += f"; faster {a['artifact']} ({p50_of(a):.1f} us/{unit}) {why}"
            rec.update(artifact=best["artifact"], p50_us=p50_of(best), reason=reason)
        recs.append(rec)
    return recs, (None if recs else f"no recommendation: {where} has no artifacts in parity.json or its bench")


def recommend_mcu(run: dict) -> list[dict]:
    """Per emulated microcontroller and mode: the C artifact to ship - it passed parity here (and on the MCU
    when that ran), fits the board, and executes the fewest instructions (exact counts from the emulator, so
    they may rank; times are estimates and never do) - plus the .tflite artifacts TFLite Micro runs that
    passed parity, as the interpreter-based alternative. Only C and TFLite Micro artifacts are considered:
    nothing else runs on a microcontroller; of the quantized ones only integer-only artifacts (parity row
    `integer_only`; rows from before the field have none and count by their recipe as C int8 always was)."""
    parity = {a["artifact"]: verdict(a) for a in run.get("artifacts") or []}
    precision = {a["artifact"]: (a.get("parity") or {}).get("precision") for a in run.get("artifacts") or []}
    integer = {a["artifact"]: (a.get("parity") or {}).get("integer_only") for a in run.get("artifacts") or []}
    recs = []
    for b in run.get("mcu") or []:
        board = b["board"]
        # a quantized artifact ships to a microcontroller only when it is integer-only (no float activations)
        tflm = [t for t in b.get("tflm") or [] if t.get("runs") and parity.get(t["artifact"]) == "PASS"
                and (precision.get(t["artifact"]) == "float" or integer.get(t["artifact"]) is not False)]
        for mode in ("sequence", "step"):
            rows = [a for a in b["artifacts"] if a["mode"] == mode]
            if not rows:
                continue
            ok = [a for a in rows if parity.get(a["artifact"]) == "PASS" and a["fits"]
                  and (b["parity"].get(a["artifact"]) or {}).get("passed", True)
                  and (precision.get(a["artifact"]) != "int8" or integer.get(a["artifact"]) is not False)]
            rec = {"board": board["name"], "mode": mode, "artifact": None,
                   "tflm": [t["artifact"] for t in tflm if t["artifact"].startswith(mode + "-")]}
            if not ok:
                rec["reason"] = (f"no C {mode} artifact passes parity and fits {board['name']}: "
                                 + "; ".join(f"{a['artifact']} " + ("does not fit" if not a["fits"] else "fails parity")
                                             for a in rows))
            else:
                best = min(ok, key=lambda a: (a["instructions"], a["flash_bytes"]))
                rec.update(artifact=best["artifact"], instructions=best["instructions"],
                           reason=(f"{best['artifact']}: fewest instructions of {len(ok)} passing C {mode} artifact(s) "
                                   f"that fit, {best['instructions']:,.0f} per {best['per']} (ESTIMATE "
                                   f"{best['estimated_us']:,.1f} us at {board['clock_mhz']:g} MHz), "
                                   f"{best['flash_bytes'] / 1024:.1f} KB flash, {best['ram_bytes']:,} B RAM"))
            if rec["tflm"]:
                rec["reason"] += f"; TFLite Micro alternative: {', '.join(rec['tflm'])}"
            recs.append(rec)
    return recs
