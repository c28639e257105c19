"""Runtime numpy features against librosa with the training-time arguments (tolerance 1e-4, absolute)."""

import numpy as np
import pytest
import scipy.signal

from ds2_onnx.runtime.features import compute_features, hamming_symmetric, num_frames
from ds2_onnx.validation.reference import librosa_features

import librosa  # noqa: E402  the validate extra; `make install` always installs it

ATOL = 1e-4


def test_window_is_scipy_symmetric_hamming():
    np.testing.assert_allclose(hamming_symmetric(320), scipy.signal.windows.hamming(320, sym=True), atol=1e-12)


@pytest.mark.parametrize("n", [4800, 4801, 16000 * 3 + 37, 16000 * 7])
@pytest.mark.parametrize("scale", [1.0, 2.0**31])
def test_features_match_librosa_reference(n, scale):
    rng = np.random.default_rng(n)
    audio = 0.2 * rng.standard_normal(n)
    ours = compute_features(audio * scale, 320, 160)
    ref = librosa_features(audio, 320, 160, scale)
    assert ours.shape == ref.shape == (161, num_frames(n, 160))
    np.testing.assert_allclose(ours, ref, atol=ATOL)


def test_features_match_modern_librosa_centre_padding_when_length_is_not_a_hop_multiple():
    """Direct librosa.stft(center=True, pad_mode='reflect') call, as a user of today's librosa would write it."""
    rng = np.random.default_rng(0)
    audio = 0.1 * rng.standard_normal(16000 * 2 + 93)
    stft = librosa.stft(audio, n_fft=320, hop_length=160, win_length=320,
                        window=scipy.signal.windows.hamming(320, sym=True), center=True, pad_mode="reflect")
    spect = np.log1p(np.abs(stft))
    ref = (spect - spect.mean()) / spect.std(ddof=1)
    np.testing.assert_allclose(compute_features(audio, 320, 160), ref, atol=ATOL)


def test_features_are_normalised_per_utterance():
    audio = np.random.default_rng(1).standard_normal(16000)
    f = compute_features(audio, 320, 160)
    assert abs(float(f.mean())) < 1e-5
    assert abs(float(f.std(ddof=1)) - 1.0) < 1e-4


def test_digital_silence_gives_finite_features():
    f = compute_features(np.zeros(16000), 320, 160)
    assert np.all(np.isfinite(f)) and np.all(f == 0)
