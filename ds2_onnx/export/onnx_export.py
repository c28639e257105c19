"""PyTorch → ONNX with the log-softmax head and dynamic batch/time, self-describing metadata, and parity checks."""

from __future__ import annotations

import io
import warnings
from dataclasses import dataclass, replace

import numpy as np
import onnx
import torch

from .. import __version__
from ..errors import ParityError
from ..runtime.model_info import INT32_FULL_SCALE, ModelInfo
from .model import CONV_KERNELS, CONV_STRIDES, DeepSpeech2

OPSET = 17
DEFAULT_INPUT_SCALE = INT32_FULL_SCALE  # see README "Input scale"
INPUT_NAMES = ("spectrogram", "lengths")
OUTPUT_NAMES = ("log_probs", "output_lengths")

# fp32 ONNX Runtime vs PyTorch on log-probs of valid frames. Measured differences are ~1e-6 for tiny models
# and ~1e-5 at full size; 1e-3 leaves room for BLAS differences while catching any real export error.
FP32_ATOL = 1e-3

# (batch lengths in spectrogram frames) exercised by the parity check: the shortest input that yields one
# output frame, odd and even lengths, and right-padded batches of unequal lengths.
PARITY_CASES = ((31,), (200,), (117, 31, 80), (160, 159, 150, 40))


def model_info(model: DeepSpeech2, input_scale: float, source_sha256: str) -> ModelInfo:
    c = model.config
    return ModelInfo(
        labels=c.labels,
        blank_index=c.labels.index("_"),
        sample_rate=c.sample_rate,
        window_size=c.window_size,
        window_stride=c.window_stride,
        n_fft=c.n_fft,
        hop_length=c.hop_length,
        win_length=c.n_fft,
        window="hamming_symmetric",
        center=True,
        pad_mode="reflect",
        log_compression="log1p_magnitude",
        normalization="per_utterance_mean_unbiased_std",
        input_scale=float(input_scale),
        conv_time_kernels=tuple(k[1] for k in CONV_KERNELS),
        conv_time_strides=tuple(s[1] for s in CONV_STRIDES),
        hidden_size=c.hidden_size,
        hidden_layers=c.hidden_layers,
        rnn_type=c.rnn_type,
        bidirectional=c.bidirectional,
        num_classes=c.num_classes,
        precision="fp32",
        quantization="none",
        graph="gru_op",
        source_sha256=source_sha256,
        ds2_onnx_version=__version__,
        input_names=INPUT_NAMES,
        output_names=OUTPUT_NAMES,
    )


def to_onnx(model: DeepSpeech2) -> onnx.ModelProto:
    """Export with the TorchScript exporter, which writes exact `GRU` ops with dynamic batch and time.

    torch 2.13's default dynamo exporter fails on, or silently fixes, nn.GRU's time axis; see performance.md.
    """
    n_freq = model.config.n_freq
    spect = torch.randn(2, 1, n_freq, 120)
    lengths = torch.tensor([120, 90])
    buffer = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the deprecation notice and GRU batch-size advisories
        torch.onnx.export(
            model,
            (spect, lengths),
            buffer,
            dynamo=False,
            opset_version=OPSET,
            input_names=list(INPUT_NAMES),
            output_names=list(OUTPUT_NAMES),
            dynamic_axes={
                "spectrogram": {0: "batch", 3: "frames"},
                "lengths": {0: "batch"},
                "log_probs": {0: "batch", 1: "out_frames"},
                "output_lengths": {0: "batch"},
            },
        )
    proto = onnx.load_from_string(buffer.getvalue())
    # The exporter leaves the class axis symbolic; pin it so the graph states its own vocabulary size.
    dims = proto.graph.output[0].type.tensor_type.shape.dim
    dims[2].Clear()
    dims[2].dim_value = model.config.num_classes
    proto.producer_name = "ds2-onnx"
    proto.producer_version = __version__
    proto.doc_string = "MLPerf DeepSpeech2 (deepspeech.pytorch layout) exported by ds2-onnx"
    return proto


def set_metadata(proto: onnx.ModelProto, info: ModelInfo) -> onnx.ModelProto:
    """Replace ds2-onnx's metadata_props with `info` (other keys are kept)."""
    keep = [p for p in proto.metadata_props if not p.key.startswith("ds2.")]
    del proto.metadata_props[:]
    proto.metadata_props.extend(keep)
    for key, value in info.to_metadata().items():
        proto.metadata_props.add(key=key, value=value)
    return proto


def read_metadata(proto: onnx.ModelProto) -> dict[str, str]:
    return {p.key: p.value for p in proto.metadata_props}


@dataclass(frozen=True)
class ParityReport:
    """Agreement of a candidate model with a reference over the parity cases."""

    max_abs_diff: float  # max |Δ log-prob| over valid frames
    frame_agreement: float  # fraction of valid frames whose argmax label agrees
    frames: int
    cases: tuple[tuple[int, ...], ...]


def parity_inputs(n_freq: int, cases=PARITY_CASES, seed: int = 0):
    """Random (B, 1, F, T) right-padded features and lengths for each case (padding is zeros, as at run time)."""
    rng = np.random.default_rng(seed)
    for lengths in cases:
        t = max(lengths)
        spect = np.zeros((len(lengths), 1, n_freq, t), dtype=np.float32)
        for b, n in enumerate(lengths):
            spect[b, 0, :, :n] = rng.standard_normal((n_freq, n), dtype=np.float32)
        yield spect, np.array(lengths, dtype=np.int64)


def torch_reference(model: DeepSpeech2, spect: np.ndarray, lengths: np.ndarray) -> list[np.ndarray]:
    """Per-utterance log-probs from PyTorch, each utterance run alone and unpadded (the ground truth)."""
    out = []
    with torch.inference_mode():
        for b, n in enumerate(lengths):
            x = torch.from_numpy(spect[b : b + 1, :, :, :n].copy())
            log_probs, out_len = model(x, torch.tensor([int(n)]))
            out.append(log_probs[0, : int(out_len[0])].numpy())
    return out


def compare(reference: list[np.ndarray], log_probs: np.ndarray, out_lengths: np.ndarray, label: str, lengths, atol: float | None):
    """Every mismatch between a padded-batch result and per-utterance references, as readable lines."""
    problems, diffs, agree, frames = [], [], 0, 0
    for b, ref in enumerate(reference):
        n = int(out_lengths[b])
        if n != ref.shape[0]:
            problems.append(f"{label}, utterance {b} ({int(lengths[b])} frames): {n} output frames, expected {ref.shape[0]}")
            continue
        got = log_probs[b, :n]
        if not np.all(np.isfinite(got)):
            problems.append(f"{label}, utterance {b}: non-finite log-probs")
            continue
        diff = float(np.abs(got - ref).max()) if n else 0.0
        diffs.append(diff)
        agree += int((got.argmax(-1) == ref.argmax(-1)).sum())
        frames += n
        if atol is not None and diff > atol:
            problems.append(f"{label}, utterance {b} ({int(lengths[b])} frames): max |Δ log-prob| {diff:.3g} > {atol:g}")
    return problems, max(diffs, default=0.0), agree, frames


def check_against_torch(model: DeepSpeech2, session, info: ModelInfo, atol: float | None = FP32_ATOL, cases=PARITY_CASES) -> ParityReport:
    """Run ONNX Runtime on padded batches and PyTorch one utterance at a time; raise ParityError on any mismatch.

    With `atol=None` nothing is raised for value differences (used to report quantized models' fidelity).
    """
    problems, worst, agree, frames = [], 0.0, 0, 0
    for spect, lengths in parity_inputs(info.n_freq, cases):
        reference = torch_reference(model, spect, lengths)
        log_probs, out_lengths = session.run(list(info.output_names), {info.input_names[0]: spect, info.input_names[1]: lengths})
        label = f"batch of lengths {lengths.tolist()}"
        p, diff, a, f = compare(reference, log_probs, out_lengths, label, lengths, atol)
        problems += p
        worst, agree, frames = max(worst, diff), agree + a, frames + f
    if problems:
        raise ParityError(f"{info.precision} ONNX model disagrees with PyTorch", problems)
    return ParityReport(worst, agree / max(frames, 1), frames, tuple(tuple(c) for c in cases))


def with_precision(info: ModelInfo, precision: str, method: str, graph: str) -> ModelInfo:
    return replace(info, precision=precision, quantization=method, graph=graph)

