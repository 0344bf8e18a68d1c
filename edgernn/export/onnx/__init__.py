"""
ONNX and ORT export (edgernn.export.formats names the exporters):

    convert.py          torch -> ONNX (float), the int8 recipes (onnxruntime quantization), ONNX -> ORT
    integer_matmul.py   a GRU/RNN rewritten as MatMul ops + a Loop, so onnxruntime's integer MatMul runs it;
                        int8 weight stores and compact tensor names
"""
