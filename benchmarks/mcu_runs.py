"""
The microcontroller tables of docs/results.md, from run directories the pipeline's `mcu` stage (or
`edgernn parity|bench RUN --target BOARD --emulate`) has filled:

    python benchmarks/mcu_runs.py runs/demo runs/bm-h64 runs/jv-h32 runs/jv-h64 > /tmp/mcu.md

Each argument is a pipeline output directory (with gru/ and lstm/ inside) or a run directory. Prints, per
run: MCU parity (C bare metal + TFLite Micro), instructions per frame on each core, int8/float ratios, stack,
flash, RAM; and which .tflite artifacts TFLite Micro runs, with the arena.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path


def runs_in(paths: list) -> list[Path]:
    out = []
    for p in map(Path, paths):
        out += [p / c for c in ("gru", "lstm") if (p / c / "config.json").is_file()] or [p]
    return out


def load(path: Path):
    return json.loads(path.read_text()) if path.is_file() else None


def main(argv: list) -> None:
    runs = runs_in(argv)
    print("| run | artifacts passing on emulated Cortex-M4 (C + TFLite Micro) | int8 C bit-exact with x86 |")
    print("|---|---|---|")
    for r in runs:
        for board in ("cortex-m4", "cortex-m7", "cortex-m55"):
            p = load(r / f"parity-{board}-emulated.json")
            if not p:
                continue
            rows = p["artifacts"]
            c = [x for x in rows if x["artifact"].endswith(".h")]
            exact = sum(1 for x in c if (x.get("vs_host") or {}).get("bit_exact"))
            failed = ", ".join(x["artifact"] for x in rows if not x["passed"]) or "all pass"
            print(f"| {r.parent.name}/{r.name} on {board} | {sum(x['passed'] for x in rows)} of {len(rows)} "
                  f"({failed}) | {exact} of {len(c)} |")
    print()
    print("| run | core | step-float.h instr/frame | step-int8.h instr/frame | int8/float | "
          "int8 est. us @ clock | int8 stack B | int8 flash B | int8 RAM B |")
    print("|---|---|---|---|---|---|---|---|---|")
    for r in runs:
        for board in ("cortex-m4", "cortex-m7", "cortex-m55"):
            b = load(r / f"bench-{board}-emulated.json")
            if not b:
                continue
            a = {x["artifact"]: x for x in b["artifacts"]}
            f, i = a.get("step-float.h"), a.get("step-int8.h")
            if not f or not i:
                continue
            print(f"| {r.parent.name}/{r.name} | {board} | {f['instructions']:,.0f} | {i['instructions']:,.0f} "
                  f"| {i['instructions'] / f['instructions']:.2f} | {i['estimated_us']:,.0f} @ "
                  f"{b['board']['clock_mhz']:g} MHz | {i['stack_bytes']:,} | {i['flash_bytes']:,} "
                  f"| {i['ram_bytes']:,} |")
    print()
    print("| run | .tflite artifacts TFLite Micro runs (arena) | refused |")
    print("|---|---|---|")
    for r in runs:
        b = load(r / "bench-cortex-m4-emulated.json")
        if not b:
            continue
        ok = [f"{t['artifact']} ({t['arena_bytes'] / 1024:.0f} KB)" for t in b["tflm"] if t["runs"]]
        no = [t["artifact"] for t in b["tflm"] if not t["runs"]]
        print(f"| {r.parent.name}/{r.name} | {', '.join(ok)} | {', '.join(no) or '-'} |")


if __name__ == "__main__":
    main(sys.argv[1:])
