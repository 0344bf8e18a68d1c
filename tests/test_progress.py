"""Progress that a log can see: on a stream that is not a terminal, plain lines (one per item; counted steps at
most every LINE_EVERY_S seconds, and the last); on a terminal click's bar; nothing when disabled."""

import io

from edgernn import progress


def test_a_log_gets_a_line_per_item_and_a_last_line():
    log = io.StringIO()
    with progress.progressbar(["onnx float", "tflite int8"], label="export gru h32", file=log,
                              show=lambda t: t) as bar:
        assert [item for item in bar] == ["onnx float", "tflite int8"]
    lines = log.getvalue().splitlines()
    assert [ln.split(" (")[0] for ln in lines] == ["export gru h32: [1/2] onnx float",
                                                  "export gru h32: [2/2] tflite int8", "export gru h32: done, 2/2"]


def test_counted_steps_are_throttled_and_the_end_is_shown(monkeypatch):
    log = io.StringIO()
    monkeypatch.setattr(progress, "LINE_EVERY_S", 3600.0)
    with progress.progressbar(length=300, label="train", file=log, show=lambda s: s) as bar:
        for epoch in range(300):
            bar.update(1, f"val loss {1 / (epoch + 1):.3f}")
    lines = [ln.split(" (")[0] for ln in log.getvalue().splitlines()]
    assert lines == ["train: 1/300 val loss 1.000", "train: 300/300 val loss 0.003"]
    log = io.StringIO()
    with progress.progressbar(length=300, label="train", file=log) as bar:  # early stop: says where it ended
        bar.update(87)
    assert log.getvalue().splitlines()[-1].startswith("train: 87/300")


def test_disabled_writes_nothing_and_a_terminal_gets_the_bar(monkeypatch):
    log = io.StringIO()
    with progress.progressbar([1, 2], label="x", enabled=False, file=log) as bar:
        list(bar)
    assert log.getvalue() == ""

    class Tty(io.StringIO):
        def isatty(self):
            return True

    assert not isinstance(progress.progressbar([1], label="x", file=Tty()), progress.LineProgress)
    assert isinstance(progress.progressbar([1], label="x", file=io.StringIO()), progress.LineProgress)
