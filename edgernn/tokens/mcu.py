"""
Token models on an EMULATED MICROCONTROLLER: every C token artifact of a run (`seq2seq-PREC.h`, `lm-PREC.h`; float
and int8) cross-compiled bare metal for the board's Cortex-M core and run under qemu-system-arm
(edgernn.devices.mcu.token_firmware) over a sample of held-out words, judged and measured there.

    r = token_mcu_run("runs/g2p", "cortex-m4")      # -> RUN/mcu-cortex-m4-emulated.json
    print(format_token_mcu(r))                      # the gate and the costs
    edgernn parity runs/g2p --target cortex-m4 --emulate    # the gate (exit 1 when it fails)
    edgernn bench  runs/g2p --target nucleo-l476rg --emulate   # the costs

The gate, per artifact:
  - the MCU's outputs (generated ids, every decoder step's logits) are BIT-IDENTICAL to the same harness built for
    this machine from identical source (-O2 -ffp-contract=off on both: the same IEEE operations in the same order);
  - its generated ids (greedy; beam for an encoder-decoder) equal the host C engine's (edgernn.runtimes.token_c,
    the library the desktop runtime calls), word for word; its logits are within ENGINE_TOL x max(1, |logit|) of
    that engine's, fed the same tokens (the engine is built -O3 -march=native -ffp-contract=fast: fused multiply-adds
    round differently, so bits may differ there - the measured max |diff| is in the report);
  - an encoder-decoder's step loop (one P_step at a time, first maximum) yields P_greedy's ids;
  - it fits the board: flash = code + constants + data of the model's own object; RAM = its data + bss + the
    caller-owned context/state + the measured stack (beam search's workspace is reported on top).
The costs: instructions per decoder step and per word (p50, max), counted by qemu -icount through SysTick around the
model calls only; an ESTIMATED time at the board clock (ESTIMATE_NOTE); the stack reached (painted and measured).
"""

from __future__ import annotations

import platform
from pathlib import Path

import numpy as np

from edgernn.devices.mcu import token_firmware as tfw
from edgernn.devices.mcu.cores import check_tools, qemu_version
from edgernn.devices.mcu.cores import core as get_core
from edgernn.errors import ArtifactError, ConfigError, TargetError
from edgernn.runtimes.files import atomic_write_json, cache_dir
from edgernn.runtimes.token_manifest import read_token_manifest
from edgernn.runtimes.vocab import BOS, EOS
from edgernn.tokens.publish import TOLERANCE
from edgernn.tokens.run import load_token_run

CPI = 1.0
ESTIMATE_NOTE = ("ESTIMATE: instructions counted by qemu (-icount) / board clock, assuming 1 instruction per "
                 "cycle; not a measurement (loads, branches and divides take several cycles on a Cortex-M4)")
ENGINE_TOL = TOLERANCE  # logits vs the host C engine: max |diff| <= this x max(1, max |logit|)
HOST_BUILD_RULE = "bit-identical (the same harness and flags built for this machine)"
WORD_NOTE = {"seq2seq": "word = encode + the library's greedy loop (P_greedy); step = one P_step",
             "next-token": "word = prime(first half of the word) + greedy completion; step = one teacher-forced P_step"}


def mcu_board(target):
    """The board profile of an MCU target (transport "mcu"), else a one-line ConfigError."""
    from edgernn.devices.boards import list_boards, load_board

    board = load_board(target)
    if board.transport != "mcu":
        mcus = ", ".join(b.name for b in list_boards() if b.transport == "mcu")
        raise ConfigError(f"{board.name} is not a microcontroller profile; MCU targets: {mcus}")
    return board


def _artifacts(run) -> list[Path]:
    part = "lm" if run.config.kind == "next-token" else "seq2seq"
    paths = sorted(run.artifacts_dir.glob(f"{part}-*.h"))
    if not paths:
        raise ConfigError(f"no C token artifacts ({part}-PREC.h) in {run.artifacts_dir}: a microcontroller runs C; "
                          f"export them with `edgernn export {run.path} --format c --precision float,int8`")
    return paths


def _sample(run, words: int) -> list[list[int]]:
    """Up to `words` held-out sources (ids), a seeded sample."""
    srcs = run.data()["src_test"]
    order = np.random.default_rng(0).permutation(len(srcs))[: max(1, int(words))]
    return [run.src_vocab.encode(srcs[i]) for i in order]


def _stats(instr: list, clock_mhz: float) -> dict:
    if not instr:
        return {"n": 0}
    a = np.asarray(instr, np.float64)
    p50, mx = float(np.percentile(a, 50)), float(a.max())
    return {"n": int(a.size), "p50": round(p50), "max": round(mx), "min": round(float(a.min())),
            "mean": round(float(a.mean()), 1), "est_us_p50": round(p50 * CPI / clock_mhz, 2),
            "est_us_max": round(mx * CPI / clock_mhz, 2)}


def footprint(model: dict, sizes: dict, stack: int | None) -> dict:
    """Flash and RAM on the board from the model's own object (apart from newlib) and the caller-owned structs."""
    owned = sizes.get("state_bytes", 0) + sizes.get("context_bytes", 0) + sizes.get("dstate_bytes", 0)
    ram = model["data"] + model["bss"] + owned + int(stack or 0)
    fp = {"flash_bytes": model["code"] + model["const"] + model["data"], "ram_bytes": ram,
          **{f"model_{k}": v for k, v in model.items()}, **sizes, "caller_state_bytes": owned, "stack_bytes": stack}
    if "beam_work_bytes" in sizes:
        fp["ram_beam_bytes"] = ram + sizes["beam_work_bytes"]
    return fp


def fit_problem(board, fp: dict) -> str | None:
    flash, ram = board.flash_kb * 1024, board.ram_kb * 1024
    if fp["flash_bytes"] > flash:
        return f"needs {fp['flash_bytes']:,} B of flash, {board.name} has {flash:,} B"
    if fp.get("stack_bytes") is not None and fp["ram_bytes"] > ram:
        return f"needs {fp['ram_bytes']:,} B of RAM, {board.name} has {ram:,} B"
    return None


def _engine_checks(engine, lm: bool, jobs: list, recs: list, width: int) -> dict:
    """The host C engine (edgernn.runtimes.token_c) on the same words: its ids, and its logits fed the MCU's tokens."""
    greedy_eq = beam_eq = replay_eq = 0
    diff, scale = 0.0, 1.0
    for job, r in zip(jobs, recs):
        if lm:
            prompt, seq, max_out = job
            greedy_eq += engine.greedy(prompt, max_out) == r["greedy"]
            state, tokens = engine.zero_state(), seq
        else:
            src, max_out = job
            greedy_eq += engine.greedy(src, max_out) == r["greedy"]
            if width:
                beam_eq += engine.beam(src, width, max_out) == r["beam"]
            state = engine.encode(src)
            picks = [int(np.argmax(z)) for z in r["logits"]]  # the first maximum, as P_greedy
            ended = picks[-1] == EOS or len(picks) == max_out  # <eos>, or the length limit
            replay_eq += ended and (picks[:-1] if picks[-1] == EOS else picks) == r["greedy"]
            tokens = [BOS] + picks[:-1]
        for t, z in zip(tokens, r["logits"]):
            got, state = engine.step(int(t), state)
            diff = max(diff, float(np.abs(np.asarray(got, np.float32) - z).max()))
            scale = max(scale, float(np.abs(got).max()))
    out = {"words": len(recs), "greedy_equal": int(greedy_eq), "max_abs_diff_logits": diff,
           "logits_tol": ENGINE_TOL * scale}
    if not lm:
        out["step_loop_equal_greedy"] = int(replay_eq)
        if width:
            out["beam_equal"] = int(beam_eq)
    return out


def _rules(core, vs_build: dict, vs_engine: dict, lm: bool, width: int) -> list[str]:
    n = vs_engine["words"]
    rules = []
    if not vs_build["bit_exact"]:
        rules.append(f"outputs on {core} differ from this machine's build of the same harness (ids equal: "
                     f"{vs_build['ids_equal']}, max|diff| of logits {vs_build['max_abs_diff_logits']:.3g}): "
                     f"expected {HOST_BUILD_RULE}")
    for key, what in (("greedy_equal", "greedy"), ("beam_equal", f"beam-{width}")):
        if key in vs_engine and vs_engine[key] != n:
            rules.append(f"{what} ids differ from the host C engine's (edgernn.runtimes.token_c) on "
                         f"{n - vs_engine[key]} of {n} words")
    if vs_engine["max_abs_diff_logits"] > vs_engine["logits_tol"]:
        rules.append(f"logits differ from the host C engine's by {vs_engine['max_abs_diff_logits']:.2e} > "
                     f"{vs_engine['logits_tol']:.1e}")
    if not lm and vs_engine["step_loop_equal_greedy"] != n:
        bad = n - vs_engine["step_loop_equal_greedy"]
        rules.append(f"the step-by-step loop's tokens differ from P_greedy's on {bad} of {n} words")
    return rules


def _compare_build(mcu, mask, host, recs, hrecs) -> dict:
    same = mcu.shape == host.shape and np.array_equal(tfw.tick_free(mcu, mask), host)
    ids = len(recs) == len(hrecs) and all(a["greedy"] == b["greedy"] and a.get("beam") == b.get("beam")
                                          for a, b in zip(recs, hrecs))
    diff = 0.0
    for a, b in zip(recs, hrecs):
        if a["logits"].shape != b["logits"].shape:
            diff = float("inf")
            break
        with np.errstate(invalid="ignore"):
            diff = max(diff, float(np.abs(a["logits"] - b["logits"]).max(initial=0.0)))
    return {"bit_exact": bool(same), "ids_equal": bool(ids), "max_abs_diff_logits": diff}


def _run_artifact(run, path: Path, board, core, sample: list, width: int, timeout: float) -> dict:
    from edgernn.runtimes.token_c import CLMEngine, CSeq2SeqEngine

    m = read_token_manifest(path)
    if m.get("format") != "c":
        raise ArtifactError(f"{path.name} is not a C artifact")
    if m["source"].get("model_sha256") != run.model_sha256():
        raise ArtifactError(f"{path.name} was exported from another model than {run.path}'s; re-export the run")
    lm = tfw.is_lm(m)
    vocab = int(m["model"]["tgt_vocab"])
    fw = tfw.build_token(path, m, core, cache_dir("mcu"))
    row = {"artifact": path.name, "precision": m["precision"], "sha256": m["sha256"], "flags": fw.flags}
    fp = footprint(fw.sizes["model"], {}, None)
    why = fit_problem(board, fp)
    if why:  # an artifact that cannot be flashed is not run
        return {**row, "passed": False, "refused": why, "failed_rules": [f"does not fit {board.name}: {why}"],
                "footprint": {**fp, "firmware": fw.sizes["firmware"]}}
    if lm:
        max_len = int(m["c"]["max_len"])
        max_out = min(max_len, int(m["decoding"].get("max_len", max_len)))
        texts = [s for s in sample if len(s) <= max_len]
        jobs = [(s[: max(1, len(s) // 2)], [BOS] + s, max_out) for s in texts]
        job = tfw.lm_job([j[0] for j in jobs], [j[1] for j in jobs], max_out)
        parse = tfw.parse_lm
        engine = CLMEngine(path, m)
    else:
        extra = int(m["decoding"].get("max_extra", 10))
        srcs = [s for s in sample if 1 <= len(s) <= int(m["c"]["max_src"])]
        jobs = [(s, len(s) + extra) for s in srcs]
        job = tfw.seq2seq_job([j[0] for j in jobs], [j[1] for j in jobs], width)
        parse = tfw.parse_seq2seq
        engine = CSeq2SeqEngine(path, m)
    mcu, stats, host = tfw.run_token_job(fw, job, path.name, board.name, timeout=timeout)
    try:
        sizes, recs, mask = parse(mcu, vocab)
        _, hrecs, _ = parse(host, vocab)
    except TargetError as exc:
        raise TargetError(f"{path.name} on {board.name} (emulated {core.name}): {exc}") from exc
    vs_build = _compare_build(mcu, mask, host, recs, hrecs)
    vs_engine = _engine_checks(engine, lm, jobs, recs, width)
    rules = _rules(core.name, vs_build, vs_engine, lm, width)
    fp = footprint(fw.sizes["model"], sizes, stats["stack_bytes"])
    why = fit_problem(board, fp)
    if why:
        rules.append(f"does not fit {board.name}: {why}")
    per_tick = stats["instructions_per_tick"]
    ins = lambda ticks: [t * per_tick for t in ticks]  # noqa: E731
    steps = ins([t for r in recs for t in r["step_ticks"]])
    clock = board.clock_mhz
    per = lambda k: _stats(ins([r["ticks"][k] for r in recs]), clock)  # noqa: E731
    costs = {"step": _stats(steps, clock), "word": _stats(ins([r["ticks"][0] + r["ticks"][1] for r in recs]), clock),
             "prime" if lm else "encode": per(0), "greedy": per(1)}
    if not lm and width:
        costs[f"beam{width}"] = per(2)
    tokens = [len(r["greedy"]) for r in recs]
    return {**row, "kind": "next-token" if lm else "seq2seq", "words": len(recs), "passed": not rules,
            "failed_rules": rules, "vs_host_build": vs_build, "vs_host_engine": vs_engine,
            "generated_tokens_mean": round(float(np.mean(tokens)), 2) if tokens else 0.0,
            "costs": costs, "instructions_per_tick": per_tick, "total_instructions": stats["instructions"],
            "emulation_s": stats["wall_s"], "fits": why is None, "fit_problem": why,
            "footprint": {**fp, "firmware": fw.sizes["firmware"]}}


def token_mcu_run(run_dir, core_or_board="cortex-m4", words: int = 100, beam: int | None = None,
                  progress: bool = False, write: bool = True, timeout: float = 600.0) -> dict:
    """Gate and measure every C token artifact of a run on the emulated board; writes RUN_DIR/mcu-BOARD-emulated.json.
    words: held-out words sampled (seeded); beam: the encoder-decoder's beam width (default the run's; 0 = none)."""
    from edgernn.progress import progressbar

    board = mcu_board(core_or_board)
    tools = check_tools()
    core = get_core(board.core)
    run = load_token_run(run_dir)
    if run.config.kind not in ("seq2seq", "next-token"):
        raise ConfigError(f"{run.path} is a {run.config.kind} model: encoder-decoders and next-token models run on "
                          "an emulated microcontroller so far")
    paths = _artifacts(run)
    width = int(run.train_config.get("beam", 4)) if beam is None else int(beam)
    if run.config.kind == "next-token":
        width = 0
    sample = _sample(run, words)
    rows = []
    with progressbar(paths, label=f"{run.path.name} on {board.name} (emulated)", enabled=progress,
                     show=lambda p: p.name if p else "") as bar:
        for p in bar:
            rows.append(_run_artifact(run, p, board, core, sample, width, timeout))
    kind = run.config.kind
    report = {"kind": "tokens-mcu", "task": kind, "run": run.path.name, "target": f"{board.name}-emulated",
              "board": {k: v for k, v in board.to_dict().items()
                        if k in ("name", "description", "cpu", "core", "flash_kb", "ram_kb", "clock_mhz")},
              "emulator": {"qemu_version": qemu_version(tools["qemu"]), "machine": core.machine,
                           "icount": "shift=0 (1 instruction = 1 ns of virtual time)"},
              "host": {"machine": platform.machine()}, "words": len(sample), "beam_width": width,
              "cpi_assumption": CPI, "estimate_note": ESTIMATE_NOTE, "word_note": WORD_NOTE[kind],
              "gate": {"vs_host_build": HOST_BUILD_RULE, "vs_host_engine": f"ids equal; logits max|diff| <= "
                       f"{ENGINE_TOL:g} x max(1, max|logit|) (the engine: -O3 -march=native -ffp-contract=fast)"},
              "artifacts": rows}
    report["passed"] = all(r["passed"] for r in rows)
    report["failed"] = [r["artifact"] for r in rows if not r["passed"]]
    if write:
        atomic_write_json(run.path / f"mcu-{report['target']}.json", report)
    return report


def format_token_mcu(r: dict, show: str = "both") -> str:
    """show: "gate", "cost" or "both"."""
    b, e = r["board"], r["emulator"]
    lines = [f"{r['run']} ({r['task']}) on an emulated {b['name']} ({b['core']}, qemu {e['qemu_version']} -M "
             f"{e['machine']}; {b['flash_kb']:,} KB flash, {b['ram_kb']:,} KB RAM, {b['clock_mhz']:g} MHz): "
             f"{r['words']} held-out words" + (f", greedy + beam {r['beam_width']}" if r["beam_width"] else "")]
    if show in ("gate", "both"):
        lines.append(f"{'artifact':<18} {'words':>5} {'vs host build':>13} {'greedy=C':>9} {'beam=C':>7} "
                     f"{'logits vs C':>11} {'(tol)':>9}  gate   (C: the host C engine, edgernn.runtimes.token_c)")
        for a in r["artifacts"]:
            if a.get("refused"):
                lines.append(f"{a['artifact']:<18} REFUSED: {a['refused']}")
                continue
            vb, ve, n = a["vs_host_build"], a["vs_host_engine"], a["words"]
            build = ("bit-exact" if vb["bit_exact"] else "ids differ" if not vb["ids_equal"]
                     else f"{vb['max_abs_diff_logits']:.2e}")
            beam = f"{ve['beam_equal']}/{n}" if "beam_equal" in ve else "-"
            lines.append(f"{a['artifact']:<18} {n:>5} {build:>13} {ve['greedy_equal']:>4}/{n:<4} {beam:>7} "
                         f"{ve['max_abs_diff_logits']:>11.2e} {'(' + format(ve['logits_tol'], '.0e') + ')':>9}  "
                         f"{'PASS' if a['passed'] else 'FAIL'}")
            for rule in a["failed_rules"]:
                lines.append(f"    {rule}")
    if show in ("cost", "both"):
        lines.append(f"{'artifact':<18} {'instr/step p50':>14} {'max':>8} {'est us*':>8} {'instr/word p50':>14} "
                     f"{'max':>9} {'est us*':>8} {'stack B':>7} {'flash B':>8} {'RAM B':>7} {'state B':>7}  fits")
        for a in r["artifacts"]:
            fp = a["footprint"]
            if a.get("refused"):
                lines.append(f"{a['artifact']:<18} REFUSED: {a['refused']}")
                continue
            s, w = a["costs"]["step"], a["costs"]["word"]
            lines.append(f"{a['artifact']:<18} {s['p50']:>14,} {s['max']:>8,} {s['est_us_p50']:>8,.1f} "
                         f"{w['p50']:>14,} {w['max']:>9,} {w['est_us_p50']:>8,.1f} {fp['stack_bytes'] or 0:>7,} "
                         f"{fp['flash_bytes']:>8,} {fp['ram_bytes']:>7,} {fp['caller_state_bytes']:>7,}  "
                         f"{'yes' if a['fits'] else 'NO: ' + a['fit_problem']}")
            extra = [f"{k} p50 {v['p50']:,} max {v['max']:,}" for k, v in a["costs"].items()
                     if k not in ("step", "word") and v.get("n")]
            if "ram_beam_bytes" in fp:
                extra.append(f"RAM with beam work {fp['ram_beam_bytes']:,} B")
            lines.append(f"{'':<18} " + "; ".join(extra))
        lines.append(f"{r['word_note']}; RAM = static data + caller-owned context/state (state B) + measured stack")
        lines.append(f"* {r['estimate_note']}")
    return "\n".join(lines)
