"""
The float model in numpy (float64), run the way a device runs the int8 C: every calibration window from a
zero state, then (unidirectional) all of them streamed back to back without a reset. It records what the
int8 quantizer (edgernn.export.c.quantize) calibrates from: the inputs each layer's two matvecs saw (for
GPTQ rounding), the largest LSTM cell state per unit (its int16 range), the features the head saw.

    rec = simulate(float_layers(model), cfg, run.normalize(calibration_windows(run)))
    rec[0]["x"], rec[0]["h"], rec[0]["c_peak"]    # layer 0 direction 0; rec[-1]["head"]: head inputs

Weights are torch's layout (W_ih [gates x hidden, in], gate order GRU r z n, LSTM i f g o).
"""

from __future__ import annotations

import numpy as np

STREAM_FRAMES = 20000  # calibration windows streamed back to back for the LSTM cell-state range


def _np_sigmoid(x):
    return 1.0 / (1.0 + np.exp(-x))


def simulate(cell_layers: list[dict], cfg, xn_windows: np.ndarray) -> list[dict]:
    """The float model in numpy (float64) over the calibration windows, each from a zero state and
    (unidirectional) all of them streamed back to back without reset, as a device streams. Per layer and
    direction: "x" / "h" = the inputs its two matvecs saw (frames [N, fan-in]), "c_peak" = largest |c| per
    unit (LSTM; the long stream is where a cell state grows past what one window shows); plus, last,
    {"head": features the head saw}."""
    H, D, cell = cfg.hidden, cfg.directions, cfg.cell
    rec = [{"x": [], "h": [], "c_peak": np.zeros(H)} for _ in cell_layers]
    head = []

    def run_layer(i, xs, reverse):
        lay, r = cell_layers[i], rec[i]
        h, c = np.zeros(H), np.zeros(H)
        outs = np.zeros((len(xs), H))
        gi_all = xs @ lay["w_ih"].T + lay["b_ih"]
        hs = np.zeros((len(xs), H))
        order = range(len(xs) - 1, -1, -1) if reverse else range(len(xs))
        for t in order:
            hs[t] = h
            gi, gh = gi_all[t], lay["w_hh"] @ h + lay["b_hh"]
            if cell == "gru":
                rg, zg = _np_sigmoid(gi[:H] + gh[:H]), _np_sigmoid(gi[H:2 * H] + gh[H:2 * H])
                n = np.tanh(gi[2 * H:] + rg * gh[2 * H:])
                h = (1 - zg) * n + zg * h
            elif cell == "lstm":
                g = gi + gh
                c = _np_sigmoid(g[H:2 * H]) * c + _np_sigmoid(g[:H]) * np.tanh(g[2 * H:3 * H])
                h = _np_sigmoid(g[3 * H:]) * np.tanh(c)
                np.maximum(r["c_peak"], np.abs(c), out=r["c_peak"])
            else:
                h = np.tanh(gi + gh)
            outs[t] = h
        r["x"].append(xs)
        r["h"].append(hs)
        return outs

    def run_model(seq):
        x = seq
        for layer in range(cfg.layers):
            x = np.concatenate([run_layer(layer * D + d, x, bool(d)) for d in range(D)], axis=1)
        head.append(x)

    for w in xn_windows:
        run_model(w.astype(np.float64))
    if D == 1 and len(xn_windows) > 1:
        n = max(1, -(-STREAM_FRAMES // xn_windows.shape[1]))
        idx = np.arange(n) % len(xn_windows)
        run_model(np.concatenate([xn_windows[i] for i in idx]).astype(np.float64))
    for r in rec:
        r["x"], r["h"] = np.concatenate(r["x"]), np.concatenate(r["h"])
    return rec + [{"head": np.concatenate(head)}]
