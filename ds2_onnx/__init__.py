"""ds2-onnx: deploy the MLPerf DeepSpeech2 PyTorch model as ONNX on CPUs, free of torch at run time."""

__version__ = "0.1.0"
