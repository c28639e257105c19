"""The model's settings as written into ONNX `metadata_props` at export and read back by the runtime.

This is the single source of truth for labels, audio and feature settings: the runtime has no other copy.
"""

from __future__ import annotations

import json
from dataclasses import MISSING, asdict, dataclass, fields

from ..errors import ModelFileError

METADATA_PREFIX = "ds2."
FORMAT_VERSION = 1

# torchaudio before 0.2 returned sox's int32 samples (16-bit audio shifted left by 16), and the MLPerf
# reference fed those to librosa unscaled (deepspeech.pytorch added normalisation only in mid 2018, PR #208).
INT32_FULL_SCALE = 2.0**31


@dataclass(frozen=True)
class ModelInfo:
    """Everything the runtime needs to turn audio into text with one exported model."""

    labels: str
    blank_index: int
    sample_rate: int
    window_size: float
    window_stride: float
    n_fft: int
    hop_length: int
    win_length: int
    window: str  # "hamming_symmetric": scipy.signal.windows.hamming(win_length, sym=True)
    center: bool
    pad_mode: str
    log_compression: str  # "log1p_magnitude"
    normalization: str  # "per_utterance_mean_unbiased_std" or "none"
    input_scale: float  # float samples in [-1, 1] are multiplied by this before the STFT
    conv_time_kernels: tuple[int, ...]
    conv_time_strides: tuple[int, ...]
    hidden_size: int
    hidden_layers: int
    rnn_type: str
    bidirectional: bool
    num_classes: int
    precision: str  # fp32 | int8 | int4
    quantization: str  # "none" or a description of the method
    graph: str  # "gru_op" or "scan"
    source_sha256: str
    ds2_onnx_version: str
    input_names: tuple[str, ...] = ("spectrogram", "lengths")
    output_names: tuple[str, ...] = ("log_probs", "output_lengths")
    format_version: int = FORMAT_VERSION

    @property
    def normalized(self) -> bool:
        return self.normalization != "none"

    @property
    def n_freq(self) -> int:
        return self.n_fft // 2 + 1

    def output_frames(self, frames):
        """Output frames for a number (or numpy array) of spectrogram frames; floor((T-11)/2)+1-10 for MLPerf."""
        out = frames
        for kernel, stride in zip(self.conv_time_kernels, self.conv_time_strides):
            out = (out - kernel) // stride + 1
        return out

    @property
    def min_frames(self) -> int:
        """Fewest spectrogram frames that yield one output frame (the receptive field, 31 for MLPerf)."""
        frames = 1
        for kernel, stride in reversed(list(zip(self.conv_time_kernels, self.conv_time_strides))):
            frames = (frames - 1) * stride + kernel
        return frames

    @property
    def frame_duration(self) -> float:
        """Seconds of audio per output frame (0.02 s for MLPerf)."""
        stride = 1
        for s in self.conv_time_strides:
            stride *= s
        return self.window_stride * stride

    def to_metadata(self) -> dict[str, str]:
        out = {}
        for key, value in asdict(self).items():
            out[METADATA_PREFIX + key] = json.dumps(list(value) if isinstance(value, tuple) else value)
        return out

    @classmethod
    def from_metadata(cls, metadata: dict[str, str], source: str = "model") -> "ModelInfo":
        values = {}
        missing = []
        for f in fields(cls):
            raw = metadata.get(METADATA_PREFIX + f.name)
            if raw is None:
                if f.default is not MISSING:
                    continue
                missing.append(f.name)
                continue
            try:
                value = json.loads(raw)
            except json.JSONDecodeError as e:
                raise ModelFileError(f"{source}: metadata {METADATA_PREFIX}{f.name} is not valid JSON ({e})") from e
            values[f.name] = tuple(value) if isinstance(value, list) else value
        if missing:
            raise ModelFileError(
                f"{source} has no ds2-onnx metadata for {', '.join(missing)}; "
                "export it with `ds2-onnx export` (a plain ONNX file does not say how to compute its features)"
            )
        info = cls(**values)
        info.validate(source)
        return info

    def validate(self, source: str = "model") -> None:
        problems = []
        if len(self.labels) != self.num_classes:
            problems.append(f"{len(self.labels)} labels for {self.num_classes} classes")
        if not 0 <= self.blank_index < len(self.labels):
            problems.append(f"blank index {self.blank_index} outside the labels")
        if self.sample_rate <= 0 or self.hop_length <= 0 or self.n_fft <= 0:
            problems.append("non-positive sample rate, hop or FFT size")
        if self.window != "hamming_symmetric":
            problems.append(f"unsupported window {self.window!r}")
        if self.log_compression != "log1p_magnitude":
            problems.append(f"unsupported log compression {self.log_compression!r}")
        if self.normalization not in ("per_utterance_mean_unbiased_std", "none"):
            problems.append(f"unsupported normalisation {self.normalization!r}")
        if not self.input_scale > 0:
            problems.append(f"input scale {self.input_scale} is not positive")
        if self.format_version > FORMAT_VERSION:
            problems.append(f"metadata format {self.format_version} is newer than this ds2-onnx understands")
        if problems:
            raise ModelFileError(f"{source} has inconsistent ds2-onnx metadata: " + "; ".join(problems))
