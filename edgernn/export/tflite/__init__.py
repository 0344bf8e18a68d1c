"""
TFLite export (edgernn.export.formats names the exporter). The converter runs in a subprocess so that a
segfault becomes an ExportError:

    convert.py       the parent side: specs, calibration data, the worker process, the manifest
    worker.py        the subprocess (python -m edgernn.export.tflite.worker SPEC.json)
    keras_build.py   the PyTorch model rebuilt in legacy Keras with its weights
    while_loop.py    the hand-written WHILE loop for int8 GRU/RNN sequences
"""
