"""
Harness overhead: is edgernn's benchmark worker measuring the model, or itself?

Times the same artifact two ways, in fresh processes, interleaved:
  1. the edgernn worker (`python -m edgernn.runtimes.bench_worker`, the path `edgernn bench` uses), and
  2. a bare loop calling the runtime directly (onnxruntime InferenceSession.run / LiteRT invoke on a
     pre-normalized window, perf_counter_ns around each call, nothing else),
and prints p50 of each and their ratio. Goal: worker p50 within 10% of the bare loop.

    python benchmarks/harness_overhead.py runs/demo/lstm/artifacts/sequence-float.onnx [--runs 2000] [--rounds 3]

The worker's timed call includes normalization (what a device app pays); the bare loop does not, so
the ratio is an upper bound on the harness's own cost.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

BARE = r'''
import json, sys, time
import numpy as np
art, runs, warm, x_path, threads = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4], int(sys.argv[5])
m = json.load(open(art + ".json"))
pre = m["preprocessing"]
X = np.load(x_path).astype(np.float32)
Xn = ((X - np.asarray(pre["mean"], np.float32)) / np.asarray(pre["std"], np.float32)).astype(np.float32)
inp = m["inputs"][0]
if m["runtime"] == "onnxruntime":
    import onnxruntime as ort
    so = ort.SessionOptions(); so.intra_op_num_threads = threads; so.inter_op_num_threads = 1
    s = ort.InferenceSession(art, so, providers=["CPUExecutionProvider"])
    name = s.get_inputs()[0].name
    call = lambda x: s.run(None, {name: x[None]})
else:
    try:
        from ai_edge_litert.interpreter import Interpreter
    except ImportError:
        from tensorflow.lite import Interpreter
    it = Interpreter(model_path=art, num_threads=threads)
    d = it.get_input_details()[0]
    if list(d["shape"][1:]) != list(Xn.shape[1:]):  # dynamic time axis: size it to the window once
        it.resize_tensor_input(d["index"], [1, *Xn.shape[1:]])
    it.allocate_tensors()
    d = it.get_input_details()[0]; o = it.get_output_details()[0]
    stateful = m.get("stateful_interpreter", False)
    scale, zp = d["quantization"]
    def call(x):
        v = x[None]
        if d["dtype"] != np.float32:
            v = np.clip(np.round(v / scale + zp), -128, 127).astype(d["dtype"])
        if stateful:
            it.reset_all_variables()  # the fused LSTM keeps state between invokes: a device app must reset too
        it.set_tensor(d["index"], v); it.invoke(); return it.get_tensor(o["index"])
for i in range(warm):
    call(Xn[i % len(Xn)])
ts = []
for i in range(runs):
    x = Xn[i % len(Xn)]
    t0 = time.perf_counter_ns(); call(x); ts.append(time.perf_counter_ns() - t0)
print(json.dumps({"p50": float(np.percentile(ts, 50)) / 1e3}))
'''


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("artifact")
    ap.add_argument("--runs", type=int, default=2000)
    ap.add_argument("--warmup", type=int, default=100)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--threads", type=int, default=1)
    a = ap.parse_args()
    art = Path(a.artifact).resolve()
    run_dir = art.parent.parent
    with np.load(run_dir / "data.npz") as z:
        X = z["X_test"][:32].astype(np.float32)
    worker, bare = [], []
    with tempfile.TemporaryDirectory() as tmp:
        xp = Path(tmp) / "x.npy"
        np.save(xp, X)
        for _ in range(a.rounds):
            out = Path(tmp) / "w.json"
            subprocess.run([sys.executable, "-m", "edgernn.runtimes.bench_worker", "--artifact", str(art),
                            "--input", str(xp),
                            "--out", str(out), "--runs", str(a.runs), "--warmup", str(a.warmup), "--threads",
                            str(a.threads), "--stream-frames", "0"], check=True)
            worker.append(json.loads(out.read_text())["latency_us"]["p50"])
            r = subprocess.run([sys.executable, "-c", BARE, str(art), str(a.runs), str(a.warmup), str(xp),
                                str(a.threads)], check=True, capture_output=True, text=True)
            bare.append(json.loads(r.stdout)["p50"])
    w, b = statistics.median(worker), statistics.median(bare)
    print(json.dumps({"artifact": art.name, "worker_p50_us": w, "bare_loop_p50_us": b, "ratio": w / b,
                      "worker_rounds": worker, "bare_rounds": bare}, indent=2))
    print(f"{art.name}: harness p50 {w:.1f} us vs bare loop {b:.1f} us -> ratio {w / b:.3f} "
          f"({'within' if w / b <= 1.10 else 'OVER'} the 10% goal)")


if __name__ == "__main__":
    main()
