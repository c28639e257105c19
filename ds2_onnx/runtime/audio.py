"""Audio loading: any format libsndfile reads, mixed to mono, resampled to the model's rate, checked for sanity."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ..errors import AudioError, AudioFileNotFoundError

# Below this rate speech is not intelligible and a caller most likely passed the wrong number.
MIN_SAMPLE_RATE = 4000


class WrongSampleRateError(AudioError):
    """The audio's sample rate is unusable, or differs from the model's and resampling was disabled."""


def _to_float(samples: np.ndarray) -> np.ndarray:
    """Integer PCM to floats in [-1, 1]; floats pass through."""
    if np.issubdtype(samples.dtype, np.integer):
        info = np.iinfo(samples.dtype)
        if info.min == 0:  # unsigned PCM (8-bit WAV) is centred on the midpoint
            return (samples.astype(np.float64) - (info.max + 1) / 2) / ((info.max + 1) / 2)
        return samples.astype(np.float64) / -float(info.min)
    if np.issubdtype(samples.dtype, np.floating):
        return samples.astype(np.float64, copy=False)
    raise AudioError(f"audio samples must be numbers, got dtype {samples.dtype}")


def prepare_audio(
    samples: np.ndarray, sample_rate: int, target_rate: int, resample: bool = True, source: str = "audio"
) -> np.ndarray:
    """Validate samples shaped (n,) or (n, channels), mix to mono, resample to `target_rate`; float64 in [-1, 1]."""
    samples = np.asarray(samples)
    if samples.ndim == 2:
        if samples.shape[1] == 0:
            raise AudioError(f"{source} has no channels")
        samples = _to_float(samples).mean(axis=1)
    elif samples.ndim == 1:
        samples = _to_float(samples)
    else:
        raise AudioError(f"{source}: expected samples shaped (n,) or (n, channels), got {samples.shape}")
    if samples.size == 0:
        raise AudioError(f"{source} contains no samples")
    if not np.all(np.isfinite(samples)):
        raise AudioError(f"{source} contains NaN or infinite samples")
    if isinstance(sample_rate, bool) or not isinstance(sample_rate, (int, np.integer)) or sample_rate < MIN_SAMPLE_RATE:
        raise WrongSampleRateError(
            f"{source}: sample rate {sample_rate!r} is not usable; pass the audio's rate in Hz (>= {MIN_SAMPLE_RATE})"
        )
    if sample_rate != target_rate:
        if not resample:
            raise WrongSampleRateError(
                f"{source} is sampled at {sample_rate} Hz but the model expects {target_rate} Hz"
            )
        import soxr

        samples = soxr.resample(samples, int(sample_rate), target_rate, quality="HQ")
    return samples


def read_audio(path: str | Path) -> tuple[np.ndarray, int]:
    """Decode a file with libsndfile: (samples shaped (n, channels) as float64, sample rate)."""
    import soundfile as sf

    path = Path(path)
    if not path.exists():
        raise AudioFileNotFoundError(f"{path}: no such file")
    if path.is_dir():
        raise AudioError(f"{path} is a directory, not an audio file")
    try:
        samples, rate = sf.read(str(path), dtype="float64", always_2d=True)
    except (sf.LibsndfileError, RuntimeError, TypeError, ValueError) as e:
        raise AudioError(f"{path}: cannot decode as audio ({e})") from e
    return samples, rate


def load_audio(path: str | Path, target_rate: int, resample: bool = True) -> np.ndarray:
    """Read a file and return mono float64 samples in [-1, 1] at `target_rate`."""
    samples, rate = read_audio(path)
    return prepare_audio(samples, rate, target_rate, resample=resample, source=str(path))
