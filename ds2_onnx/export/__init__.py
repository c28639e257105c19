"""Export: the only part of ds2-onnx that imports torch. Checkpoint loading, ONNX export, rewrite, quantization."""
