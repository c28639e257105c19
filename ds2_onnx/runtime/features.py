"""Numpy spectrogram features identical to the training-time librosa pipeline of deepspeech.pytorch.

librosa.stft(y, n_fft, hop, win_length, window=symmetric Hamming, center=True, pad_mode="reflect"),
then log1p(|stft|), then one scalar mean and one scalar unbiased std per utterance.
"""

from __future__ import annotations

import numpy as np

from ..errors import AudioError


def hamming_symmetric(length: int) -> np.ndarray:
    """scipy.signal.windows.hamming(length, sym=True), the window the reference passed to librosa."""
    if length == 1:
        return np.ones(1)
    n = np.arange(length)
    return 0.54 - 0.46 * np.cos(2.0 * np.pi * n / (length - 1))


def num_frames(num_samples: int, hop_length: int) -> int:
    """Spectrogram frames librosa's centred STFT yields for `num_samples` samples."""
    return 1 + num_samples // hop_length


def log_spectrogram(
    audio: np.ndarray,
    n_fft: int,
    hop_length: int,
    win_length: int | None = None,
    center: bool = True,
    pad_mode: str = "reflect",
) -> np.ndarray:
    """log1p magnitude STFT, shape (n_fft // 2 + 1, frames), float32, before normalisation."""
    win_length = win_length or n_fft
    y = np.asarray(audio, dtype=np.float64)
    if y.ndim != 1:
        raise AudioError(f"expected mono audio as a 1-D array, got shape {y.shape}")
    window = hamming_symmetric(win_length)
    if win_length < n_fft:  # librosa centres a shorter window inside the FFT frame
        left = (n_fft - win_length) // 2
        window = np.pad(window, (left, n_fft - win_length - left))
    if center:
        if pad_mode == "reflect" and y.size <= n_fft // 2:
            raise AudioError(
                f"audio of {y.size} samples is too short for a reflect-padded {n_fft}-point STFT"
            )
        y = np.pad(y, n_fft // 2, mode=pad_mode)
    if y.size < n_fft:
        raise AudioError(f"audio of {y.size} samples is shorter than one {n_fft}-point frame")
    frames = np.lib.stride_tricks.sliding_window_view(y, n_fft)[::hop_length]
    magnitude = np.abs(np.fft.rfft(frames * window, axis=-1))
    return np.log1p(magnitude).T.astype(np.float32)


def normalize(spect: np.ndarray) -> np.ndarray:
    """Subtract the scalar mean and divide by the scalar unbiased std, as the reference did per utterance.

    The reference divides by a zero std (digital silence) and yields NaN; we leave such input centred
    instead, which is what any non-silent signal tends to as its variance shrinks.
    """
    spect = spect.astype(np.float64)
    mean = spect.mean()
    std = spect.std(ddof=1) if spect.size > 1 else 0.0
    out = spect - mean
    if std > 0:
        out /= std
    return out.astype(np.float32)


def compute_features(
    audio: np.ndarray,
    n_fft: int,
    hop_length: int,
    win_length: int | None = None,
    center: bool = True,
    pad_mode: str = "reflect",
    normalized: bool = True,
) -> np.ndarray:
    """The model's input for one utterance: (freq, frames) float32."""
    spect = log_spectrogram(audio, n_fft, hop_length, win_length, center, pad_mode)
    return normalize(spect) if normalized else spect
