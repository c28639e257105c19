"""Torch-free inference: audio loading, numpy features, ONNX Runtime on CPU, CTC decoding (greedy, or beam
search with an n-gram language model)."""

from .audio import WrongSampleRateError, load_audio
from .beam import BeamSearchOptions
from .decoding import Char, Word
from .lm import LanguageModel
from .model_info import ModelInfo
from .session import SessionOptions
from .transcriber import Transcriber, Transcription

__all__ = ["BeamSearchOptions", "Char", "LanguageModel", "ModelInfo", "SessionOptions", "Transcriber", "Transcription", "Word", "WrongSampleRateError", "load_audio"]
