"""
edgernn: compact GRU/LSTM models from training to a measured, verified edge deployment.

This module must stay light: no torch, tensorflow, onnx or onnxruntime imports here, ever
(a test proves it). Import the submodule you need instead:

    from edgernn.train import train            # needs the [train] extra (torch)
    from edgernn.runtimes import load          # needs only numpy + one runtime
"""

__version__ = "0.1.0"
