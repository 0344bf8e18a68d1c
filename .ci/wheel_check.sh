#!/usr/bin/env bash
# Wheel check: build the wheel, install it into a clean venv with only numpy + onnxruntime (what a device
# has), and run the CLI's --help, `edgernn boards` (packaged data) and one exported artifact through
# edgernn.runtimes. Catches package data and imports that the editable install hides.
#   usage: .ci/wheel_check.sh [DEV_VENV]     (DEV_VENV: the full venv that exports the artifact; default .venv)
set -euo pipefail
cd "$(dirname "$0")/.."
DEV=${1:-.venv}
WORK=$(mktemp -d /tmp/edgernn-wheel-check.XXXXXX)
trap 'rm -rf "$WORK"' EXIT
trap 'echo "wheel check FAILED (line $LINENO): $BASH_COMMAND" >&2' ERR
start=$(date +%s)

"$DEV/bin/pip" wheel -q --no-deps -w "$WORK/dist" . >/dev/null
wheel=$(ls "$WORK"/dist/edgernn-*.whl)
echo "built $(basename "$wheel")"

# an artifact to run: a tiny model trained and exported by the development install
"$DEV/bin/edgernn" train --dataset synthetic --cell lstm --hidden 8 --epochs 3 -q --out "$WORK/run" >/dev/null
"$DEV/bin/edgernn" export "$WORK/run" --format onnx --precision float,int8 --streaming -q >/dev/null

python3 -m venv "$WORK/venv"
"$WORK/venv/bin/pip" install -q numpy onnxruntime "$wheel"
cd "$WORK"   # away from the source tree, so only the installed wheel can be imported
"$WORK/venv/bin/edgernn" --help >/dev/null
"$WORK/venv/bin/edgernn" boards > "$WORK/boards.txt"   # (not piped into grep -q: its early exit + pipefail races)
grep -q rpi4 "$WORK/boards.txt"
"$WORK/venv/bin/python" - "$WORK/run" <<'PY'
import sys
from pathlib import Path

import numpy as np

import edgernn.runtimes as rt
from edgernn.runtimes import load

assert "site-packages" in rt.__file__, rt.__file__
for heavy in ("torch", "tensorflow", "onnx", "sktime"):
    try:
        __import__(heavy)
    except ImportError:
        continue
    raise SystemExit(f"wheel check: {heavy} is importable in the clean venv; the check would prove nothing")
run = Path(sys.argv[1])
X = np.load(run / "data.npz")["X_test"][:4]
seq = load(run / "artifacts" / "sequence-int8.onnx")
y = seq.predict(X)
st = load(run / "artifacts" / "step-float.onnx").stream()
for frame in X[0]:
    y0 = st.step(frame)
assert y.shape[0] == 4 and np.isfinite(y).all() and np.isfinite(y0).all()
print(f"runtime ok: {seq!r} -> {y.shape}; streamed {len(X[0])} frames")
PY
echo "wheel check passed in $(( $(date +%s) - start )) s"
