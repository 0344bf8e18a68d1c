"""
ONNX and ORT export (edgernn.export.formats names the exporters):

    convert.py          the exporters: torch -> ONNX (float; int8 through the recipe builders), ONNX -> ORT,
                        op types of .onnx/.ort graphs and the manifest's quantization block
    torch_to_onnx.py    torch -> ONNX graph (TorchScript exporter) and the onnxruntime checks every graph passes
    quantize.py         the int8 recipe builders edgernn.export.recipes names (dynamic, weights-int8, int8-head,
                        integer-matmul) and onnxruntime's dynamic quantization they use
    integer_matmul.py   a GRU/RNN rewritten as MatMul ops + a Loop, so onnxruntime's integer MatMul runs it;
                        int8 weight stores and compact tensor names

    path = export_onnx(run, out_dir, "int8", "sequence")   # from edgernn.export.onnx.convert
"""
