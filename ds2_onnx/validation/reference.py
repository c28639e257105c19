"""The original pipeline as ground truth: librosa features with the training-time arguments, the PyTorch
checkpoint, and deepspeech.pytorch's loop-based greedy decoder. Independent of the runtime's numpy code."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np


def librosa_features(samples: np.ndarray, n_fft: int, hop_length: int, input_scale: float) -> np.ndarray:
    """deepspeech.pytorch's SpectrogramParser as run with librosa 0.6: (freq, frames) float32.

    librosa 0.6 reflect-padded the whole signal before framing. librosa ≥ 0.10 pads the head and tail
    separately and gets the last frame wrong when the length is a multiple of the hop, so we pad here
    and call it with center=False: the arithmetic librosa 0.6 did.
    """
    import librosa
    import scipy.signal

    y = np.asarray(samples, dtype=np.float64) * input_scale
    y = np.pad(y, n_fft // 2, mode="reflect")
    window = scipy.signal.windows.hamming(n_fft, sym=True)
    stft = librosa.stft(y, n_fft=n_fft, hop_length=hop_length, win_length=n_fft, window=window, center=False)
    spect = np.log1p(np.abs(stft))
    # torch's mean()/std() in the reference: one scalar each, std unbiased
    mean = spect.mean()
    std = spect.std(ddof=1)
    return ((spect - mean) / std).astype(np.float32)


def greedy_decode_reference(argmax: list[int], labels: str, blank: int = 0) -> str:
    """deepspeech.pytorch's GreedyDecoder.process_string, loop for loop (then strip, as its decode did)."""
    text = ""
    for i, index in enumerate(argmax):
        char = labels[index]
        if char == labels[blank]:
            continue
        if i != 0 and char == labels[argmax[i - 1]]:
            continue
        text += char
    return text.strip()


@dataclass(frozen=True)
class ReferenceResult:
    text: str
    log_probs: np.ndarray  # (T', C) valid frames
    features: np.ndarray  # (F, T)


class ReferencePipeline:
    """PyTorch checkpoint + librosa features + loop greedy decoder."""

    def __init__(self, checkpoint: str | Path, input_scale: float, threads: int | None = None):
        import torch

        from ..export.checkpoint import load_checkpoint

        if threads:
            torch.set_num_threads(threads)
        self.checkpoint = load_checkpoint(checkpoint)
        self.model = self.checkpoint.model
        self.config = self.checkpoint.config
        self.input_scale = input_scale

    def load(self, path: str | Path) -> np.ndarray:
        """Mono float samples at the model's rate (the reference read sox-converted 16 kHz files)."""
        import soundfile as sf

        samples, rate = sf.read(str(path), dtype="float64", always_2d=True)
        samples = samples.mean(axis=1)
        if rate != self.config.sample_rate:
            import librosa

            samples = librosa.resample(samples, orig_sr=rate, target_sr=self.config.sample_rate, res_type="soxr_hq")
        return samples

    def features(self, samples: np.ndarray) -> np.ndarray:
        return librosa_features(samples, self.config.n_fft, self.config.hop_length, self.input_scale)

    def run(self, features: np.ndarray) -> np.ndarray:
        import torch

        with torch.inference_mode():
            x = torch.from_numpy(features)[None, None]
            log_probs, lengths = self.model(x, torch.tensor([features.shape[1]]))
        return log_probs[0, : int(lengths[0])].numpy()

    def transcribe(self, path: str | Path) -> ReferenceResult:
        features = self.features(self.load(path))
        log_probs = self.run(features)
        text = greedy_decode_reference(log_probs.argmax(-1).tolist(), self.config.labels, self.config.labels.index("_"))
        return ReferenceResult(text, log_probs, features)
