"""
TFLite export (edgernn.export.formats names the exporter). The converter runs in a subprocess so that a
segfault becomes an ExportError:

  parent side (the exporting process)
    convert.py          export_tflite: arguments, the worker process and its fallbacks, the float gate
    spec.py             what the worker is asked: the spec, weights, calibration data and torch references
    quantize.py         each precision as built: the worker's converter setting and the manifest's
                        "quantization" (full_int8, int16x8, dynamic: the int8 recipes' tflite builders)
    manifest_fields.py  the other manifest fields from the worker's report
    pool.py             one worker process for a whole export (TensorFlow imported once)
  worker side (python -m edgernn.export.tflite.worker SPEC.json)
    worker.py           the entry point and the conversion (Keras -> TFLite)
    keras_build.py      the PyTorch model rebuilt in legacy Keras with its weights
    while_loop.py       the hand-written WHILE loop for GRU/RNN sequences (int8 always, float over 128 steps)
    flatbuffer.py       surgery on the converted flatbuffer (cell clip, one quantization per state)
    ops.py              inspection: I/O tensors and every op by how it computes (WHILE subgraphs included)
    check.py            running the converted model with LiteRT and comparing it with torch

    from edgernn.export.tflite.convert import export_tflite
    export_tflite(run, out_dir, "int8", "step", ExportOptions(recipe="int16x8"))
"""
