"""
Collect: read one run directory's metrics, parity.json and bench-<target>.json, refuse results that
are not current (measured on another model, or on artifacts re-exported since), and join them into
one dictionary per run, with the ship decision (edgernn.report.decide) attached.

    run = collect("runs/demo/gru")                  # the newest bench of a real (not emulated) target
    run = collect("runs/demo/gru", target="rpi4")   # bench-rpi4.json
    run["artifacts"], run["recommendations"], run["recommendation_note"]
"""

from __future__ import annotations

import json
from pathlib import Path

from edgernn.errors import ArtifactError, ConfigError
from edgernn.report.decide import recommend, verdict
from edgernn.rundir import load_run
from edgernn.runtimes.manifest import read_manifest

EMULATED_SUFFIX = "-emulated"  # bench-rpi4-emulated.json: `bench --target rpi4 --emulate`


def _read_json(path: Path):
    if not path.is_file():
        return None
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as exc:
        raise ConfigError(f"{path} is corrupt ({exc}); re-run the command that writes it") from exc


def collect(run_dir, target: str | None = None) -> dict:
    """Everything known about one run: metrics, parity, bench (for `target`, else the newest bench),
    and the recommendations derived from them."""
    run = load_run(run_dir)
    parity = _read_json(run.path / "parity.json")
    all_benches = sorted(run.path.glob("bench-*.json"), key=lambda p: p.stat().st_mtime)
    emulated = [p for p in all_benches if p.name.endswith(f"{EMULATED_SUFFIX}.json")]
    mcu = [p for p in emulated if (_read_json(p) or {}).get("kind") == "mcu"]  # bench --target cortex-m4 --emulate
    emulated = [p for p in emulated if p not in mcu]
    # an emulated board's timings never choose what to ship: by default only real targets do
    # an MCU bench (instructions, not latency) has its own section and ship choice: never this decision's bench
    benches = ([p for p in all_benches if p.name == f"bench-{target}.json"] if target
               else [p for p in all_benches if p not in emulated and p not in mcu])
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
            "stream_stability": (parity or {}).get("stream_stability"),
            "detection": (parity or {}).get("detection"),
            "stream_stable_training": bool((run.train_config or {}).get("stream_stable")),
            "bench_target": (bench or {}).get("target"), "requested_target": target,
            "bench_targets": [p.name[len("bench-"):-len(".json")] for p in all_benches],
            "machine": (bench or {}).get("machine"), "settings": (bench or {}).get("settings"),
            "torch_eager": (bench or {}).get("torch_eager"), "warnings": (bench or {}).get("warnings", []),
            "bench_emulated": (bench or {}).get("emulated"), "emulated": _emulated_parity(run, emulated),
            "mcu": _mcu(run, mcu),
            "artifacts": list(rows.values())}
    info["recommendations"], info["recommendation_note"] = recommend(info)
    return info


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


def _mcu(run, paths: list) -> list[dict]:
    """Per emulated microcontroller: its bench (instructions, stack, flash, RAM, TFLite Micro) and, when
    `parity --target BOARD --emulate` ran too, each artifact's verdict there."""
    out = []
    for p in paths:
        b = _read_json(p)
        _check_current(run, b, p.name, "bench")
        parity = _read_json(run.path / f"parity-{b['target']}.json") or {}
        _check_current(run, parity or None, f"parity-{b['target']}.json", "parity")
        verdicts = {r["artifact"]: {"passed": r.get("passed"), "bit_exact": (r.get("vs_host") or {}).get("bit_exact")}
                    for r in parity.get("artifacts") or []}
        out.append({**b, "parity": verdicts})
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
