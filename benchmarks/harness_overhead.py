"""
Harness overhead: is edgernn's benchmark worker measuring the model, or itself?

Times the same artifact two ways, in fresh processes, interleaved:
  1. the edgernn worker (`python -m edgernn.runtimes.bench_worker`, the path `edgernn bench` uses), and
  2. a bare loop calling the runtime directly (onnxruntime InferenceSession.run / LiteRT invoke on a
     pre-normalized window or frame, perf_counter_ns around each call, nothing else; a step artifact's
     state outputs are fed back to its state inputs as they come out, and the state is zeroed, untimed,
     every T frames, as the worker does),
and prints p50 of each and their ratio. Goal: worker p50 within 10% of the bare loop. A third loop, the
"app loop", is the bare loop plus the (x - mean) / std a device app must do to each raw window or
frame: the worker's cost beyond it is the Session/Stream API's input checks and the harness itself.

    python benchmarks/harness_overhead.py runs/demo/lstm/artifacts/sequence-float.onnx [--runs 2000] [--rounds 3]
    python benchmarks/harness_overhead.py runs/demo/lstm/artifacts/step-float.tflite

The worker's timed call includes normalization and the input checks (NaN/inf, shape) of
Session.predict / Stream.step (what a device app using edgernn.runtimes pays); the bare loop does not, so
its ratio is an upper bound on the harness's own cost. At a few us per frame (a step artifact) those
1-2 us of numpy are most of the gap: read the app-loop ratio there.
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

BARE = r"""
import json, sys, time
import numpy as np
art, runs, warm, x_path, threads = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4], int(sys.argv[5])
app = sys.argv[6] == "1"  # the app loop: normalize each raw window/frame inside the timed call
m = json.load(open(art + ".json"))
pre = m["preprocessing"]
X = np.load(x_path).astype(np.float32)
mean, std = np.asarray(pre["mean"], np.float32), np.asarray(pre["std"], np.float32)
Xn = X if app else ((X - mean) / std).astype(np.float32)
step = m["mode"] == "step"
T = Xn.shape[1]
items = [np.ascontiguousarray(f[None]) for w in Xn for f in w] if step else [np.ascontiguousarray(w[None]) for w in Xn]
ins, outs = m["inputs"], m["outputs"]
x_i = next((k for k, t in enumerate(ins) if t.get("role", "x") == "x"), 0)
y_o = next((k for k, t in enumerate(outs) if t.get("role") == "y"), 0)
pos = {t["name"]: k for k, t in enumerate(ins)}
# state output k feeds input pos[next] on the next frame (a step artifact's recurrence)
loop = [(k, pos[t["next"]]) for k, t in enumerate(outs) if t.get("next") in pos]
stateful = m.get("stateful_interpreter", False)
if m["runtime"] == "onnxruntime":
    import onnxruntime as ort
    so = ort.SessionOptions(); so.intra_op_num_threads = threads; so.inter_op_num_threads = 1
    s = ort.InferenceSession(art, so, providers=["CPUExecutionProvider"])
    names = [i.name for i in s.get_inputs()]; dts = {i.name: i.type for i in s.get_inputs()}
    out_names = [t["name"] for t in outs]
    zero = [np.zeros([1 if not isinstance(d, int) else d for d in s.get_inputs()[names.index(t["name"])].shape],
                     np.float32) for t in ins]
    feeds = {t["name"]: z for t, z in zip(ins, zero)}
    xname = ins[x_i]["name"]
    def reset():
        for t, z in zip(ins, zero):
            feeds[t["name"]] = z
    def call(x):
        feeds[xname] = x
        o = s.run(out_names, feeds)
        for k, i in loop:
            feeds[ins[i]["name"]] = o[k]
        return o[y_o]
else:
    try:
        from ai_edge_litert.interpreter import Interpreter
    except ImportError:
        from tensorflow.lite import Interpreter
    it = Interpreter(model_path=art, num_threads=threads)
    det = {d["name"]: d for d in it.get_input_details()}
    d = det[ins[x_i]["name"]]
    if not step and list(d["shape"][1:]) != list(Xn.shape[1:]):  # dynamic time axis: size it once
        it.resize_tensor_input(d["index"], [1, *Xn.shape[1:]])
    it.allocate_tensors()
    det = {d["name"]: d for d in it.get_input_details()}
    odet = {d["name"]: d for d in it.get_output_details()}
    d = det[ins[x_i]["name"]]; xi = d["index"]
    scale, zp = d["quantization"]
    oi = [odet[t["name"]]["index"] for t in outs]
    si = [(oi[k], det[ins[i]["name"]]["index"]) for k, i in loop]
    zero = [(det[t["name"]]["index"], np.zeros(det[t["name"]]["shape"], det[t["name"]]["dtype"]))
            for k, t in enumerate(ins) if k != x_i]
    def reset():
        if stateful:
            it.reset_all_variables()
        for i, z in zero:
            it.set_tensor(i, z)
    def call(x):
        if d["dtype"] != np.float32:
            x = np.clip(np.round(x / scale + zp), -128, 127).astype(d["dtype"])
        if stateful and not step:
            it.reset_all_variables()  # the fused LSTM keeps state between invokes: a device app must reset too
        it.set_tensor(xi, x); it.invoke()
        for o, i in si:  # state outputs fed back as they are (same dtype and scale in edgernn's exports)
            it.set_tensor(i, it.get_tensor(o))
        return it.get_tensor(oi[y_o])
reset()
n = len(items)
for i in range(warm):
    if step and i % T == 0:
        reset()
    call(items[i % n])
reset()
ts = []
for i in range(runs):
    if step and i % T == 0 and i:
        reset()  # a new window: independent sequence (untimed, as in the worker)
    x = items[i % n]
    if app:
        t0 = time.perf_counter_ns(); call((x - mean) / std); ts.append(time.perf_counter_ns() - t0)
    else:
        t0 = time.perf_counter_ns(); call(x); ts.append(time.perf_counter_ns() - t0)
print(json.dumps({"p50": float(np.percentile(ts, 50)) / 1e3}))
"""


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
    for need in (art, Path(str(art) + ".json"), run_dir / "data.npz"):
        if not need.is_file():
            sys.exit(f"error: {need} does not exist (give an artifact inside RUN/artifacts/ of an exported run)")
    with np.load(run_dir / "data.npz") as z:
        X = z["X_test"][:32].astype(np.float32)
    worker, bare, app = [], [], []
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
            for flag, into in (("0", bare), ("1", app)):
                r = subprocess.run([sys.executable, "-c", BARE, str(art), str(a.runs), str(a.warmup), str(xp),
                                    str(a.threads), flag], capture_output=True, text=True)
                if r.returncode:
                    last = (r.stderr.strip().splitlines() or ["?"])[-1]
                    sys.exit(f"error: the bare loop failed on {art.name}: {last}")
                into.append(json.loads(r.stdout)["p50"])
    w, b, p = statistics.median(worker), statistics.median(bare), statistics.median(app)
    print(json.dumps({"artifact": art.name, "worker_p50_us": w, "bare_loop_p50_us": b, "ratio": w / b,
                      "app_loop_p50_us": p, "ratio_to_app_loop": w / p,
                      "worker_rounds": worker, "bare_rounds": bare, "app_rounds": p}, indent=2))
    print(f"{art.name}: harness p50 {w:.1f} us vs bare loop {b:.1f} us -> ratio {w / b:.3f} "
          f"({'within' if w / b <= 1.10 else 'OVER'} the 10% goal); vs the app loop (bare + numpy "
          f"normalization) {p:.1f} us -> {w / p:.3f}")


if __name__ == "__main__":
    main()
