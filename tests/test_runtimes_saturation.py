"""
The runtime counts saturated int8 inputs and states (edgernn.runtimes: Stream.saturation, warned once as
SaturationWarning), and its range-end check is exact for int8 and int16.
"""

from __future__ import annotations

import warnings

import numpy as np
import pytest

pytestmark = pytest.mark.export


def test_stream_counts_saturated_int8_inputs_and_warns_once(run_copy):
    """Full-int8 TFLite step artifacts: int8 input. Frames far outside the calibrated range clip; the
    stream counts them and warns once. GRU: its int8 state is h, whose [-1, 1] range is tanh's own (not
    counted: None). LSTM: the int16 cell state lives in the interpreter's variable tensors (counted)."""
    from edgernn.export.tflite.convert import export_tflite
    from edgernn.rundir import load_run
    from edgernn.runtimes import SaturationWarning, load

    for cell, state in (("gru", None), ("lstm", 0)):
        run = load_run(run_copy(cell=cell, hidden=16))
        art = export_tflite(run, run.path / "artifacts", "int8", "step")
        X = run.data()["X_test"]
        with load(art) as s, pytest.warns(SaturationWarning, match="hit the end of its int range") as rec:
            st = s.stream()
            assert st.saturation == {"frames": 0, "input": 0, "state": state}
            for f in X[0]:
                st.step(f)
            calm = st.saturation
            for f in X[1]:
                st.step(run.mean + (f - run.mean) * 50)  # 50x the calibrated amplitude
            loud = st.saturation
            st.reset()
            assert st.saturation == loud  # counts run over the stream's life
            with warnings.catch_warnings(record=True) as silent:  # warn=False: counted, never warned
                warnings.simplefilter("always")
                quiet = s.stream(warn=False)
                for f in X[1]:
                    quiet.step(run.mean + (f - run.mean) * 50)
            assert not [w for w in silent if w.category is SaturationWarning]
            assert quiet.saturation["input"] >= 30
        assert len([w for w in rec if w.category is SaturationWarning]) == 1  # warned once
        assert calm["frames"] == 40 and loud["frames"] == 80
        assert calm["input"] <= 2 and loud["input"] - calm["input"] >= 30, (calm, loud)  # most loud frames clip
        assert loud["state"] == state


def test_range_end_check_is_exact_for_int8_and_int16():
    """The fast bytes search in the saturation check never decides a hit alone: misaligned int16 byte
    patterns (0x0000, 0x0080 contains the bytes of -32768) are confirmed with min/max."""
    from edgernn.runtimes.stream import _at_end
    from edgernn.runtimes.tensor import Tensor

    for dtype in (np.int8, np.int16):
        t = Tensor({"name": "s"}, dtype, 0.01, 0)
        info = np.iinfo(dtype)
        assert not _at_end(np.array([[0, 5, -7]], dtype), t)
        assert _at_end(np.array([[0, info.max, 3]], dtype), t) and _at_end(np.array([[info.min]], dtype), t)
    t16 = Tensor({"name": "c"}, np.int16, 0.01, 0)
    assert not _at_end(np.array([0, 128], np.int16), t16)      # bytes 00 00 80 00 hold 00 80
    assert not _at_end(np.array([-1, 127], np.int16), t16)     # bytes ff ff 7f 00 hold ff 7f
