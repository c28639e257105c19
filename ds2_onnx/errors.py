"""The typed errors of ds2-onnx. Each also subclasses the matching built-in so callers can catch either."""

from __future__ import annotations


class Ds2OnnxError(Exception):
    """Base class of every error ds2-onnx raises on purpose."""


class AudioError(Ds2OnnxError, ValueError):
    """Audio could not be read, or its samples are unusable (empty, NaN/inf, wrong shape)."""


class AudioFileNotFoundError(AudioError, FileNotFoundError):
    """The audio path does not exist."""


class ModelFileError(Ds2OnnxError, ValueError):
    """An ONNX model file is missing, unreadable, tampered with, or lacks ds2-onnx metadata."""


class CheckpointError(Ds2OnnxError, ValueError):
    """A PyTorch checkpoint is not a DeepSpeech2 package, or its state_dict does not fit the architecture."""


class ParityError(Ds2OnnxError, AssertionError):
    """Two implementations that must agree (ONNX vs PyTorch, quantized vs fp32) disagree beyond tolerance."""

    def __init__(self, message: str, mismatches: list[str] | None = None):
        self.mismatches = list(mismatches or [])
        detail = "".join(f"\n  - {m}" for m in self.mismatches)
        super().__init__(message + detail)


class DatasetError(Ds2OnnxError, ValueError):
    """A dataset path, manifest or transcript is missing or malformed."""


class LanguageModelError(Ds2OnnxError, ValueError):
    """A language model file is missing, unreadable or not valid ARPA, or the text to build one is unusable."""
