"""Torch-free inference: audio loading, numpy features, ONNX Runtime on CPU, greedy CTC decoding."""

from .audio import WrongSampleRateError, load_audio
from .decoding import Char, Word
from .model_info import ModelInfo
from .session import SessionOptions
from .transcriber import Transcriber, Transcription

__all__ = ["Char", "ModelInfo", "SessionOptions", "Transcriber", "Transcription", "Word", "WrongSampleRateError", "load_audio"]
