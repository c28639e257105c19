"""Shared fixtures: tiny MLPerf-layout checkpoints, their ONNX exports, and speech made with espeak-ng."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

TINY_HIDDEN = 48
ROOT = Path(__file__).resolve().parents[1]


def make_corpus(out: Path, *, seed: int, train: int, dev: int, test: int, jobs: int = 2,
                timeout: float = 180) -> subprocess.CompletedProcess:
    """Run tools/make_corpus.py into `out`; fail (not skip) when the Debian packages it needs are missing."""
    if str(ROOT / "tools") not in sys.path:
        sys.path.insert(0, str(ROOT / "tools"))
    import sentences

    for binary in ("espeak-ng", "flite"):
        assert shutil.which(binary), (
            f"{binary} is not installed: the corpus generator needs it "
            f"(apt-get install espeak-ng flite fortunes fortunes-min wamerican)")
    assert os.path.isfile(sentences.DICT_PATH), "install the Debian package wamerican"
    assert os.path.isfile(os.path.join(sentences.FORTUNE_DIR, "fortunes")), (
        "install the Debian packages fortunes and fortunes-min")
    cmd = [sys.executable, str(ROOT / "tools" / "make_corpus.py"), "--out", str(out), "--seed", str(seed),
           "--train", str(train), "--dev", str(dev), "--test", str(test), "--jobs", str(jobs)]
    p = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, check=False)
    assert p.returncode == 0, f"make_corpus failed:\n{p.stderr}"
    return p


def make_tiny_model(seed: int = 1, hidden: int = TINY_HIDDEN):
    """A small model in the MLPerf layout whose outputs vary from frame to frame.

    PyTorch's default init gives near-uniform posteriors at this size, so the input and output projections
    are scaled up: the greedy path then changes label often, which makes transcript comparisons meaningful.
    """
    import torch

    from ds2_onnx.export.model import ModelConfig
    from ds2_onnx.export.synthetic import random_model

    model = random_model(ModelConfig(hidden_size=hidden), seed=seed)
    with torch.no_grad():
        for layer in model.rnns:
            layer.rnn.weight_ih_l0.mul_(1.5)
        model.fc[0].module[1].weight.mul_(6.0)
    return model


@pytest.fixture(scope="session")
def tiny_model():
    return make_tiny_model()


@pytest.fixture(scope="session")
def tiny_checkpoint(tmp_path_factory, tiny_model) -> Path:
    from ds2_onnx.export.synthetic import make_package, save_package

    path = tmp_path_factory.mktemp("ckpt") / "tiny.pth"
    return save_package(make_package(tiny_model), path, legacy=True)


@pytest.fixture(scope="session")
def tiny_onnx(tmp_path_factory, tiny_checkpoint) -> Path:
    from ds2_onnx.export.pipeline import export_checkpoint

    out = tmp_path_factory.mktemp("onnx") / "tiny.onnx"
    export_checkpoint(tiny_checkpoint, out, precisions=("fp32",))
    return out


def synthesize(text: str, path: Path, rate: int = 16000, voice: str = "en-us", channels: int = 1) -> Path:
    """Speak `text` with espeak-ng into any libsndfile format (by suffix) at `rate`."""
    if shutil.which("espeak-ng") is None:
        pytest.fail("espeak-ng is required for the speech tests (apt-get install espeak-ng; .ci/run installs it)")
    wav = subprocess.run(["espeak-ng", "-v", voice, "--stdout", text], check=True, capture_output=True).stdout
    tmp = path.with_suffix(".espeak.wav")
    tmp.write_bytes(wav)
    samples, sr = sf.read(tmp, dtype="float64")
    tmp.unlink()
    if sr != rate:
        import soxr

        samples = soxr.resample(samples, sr, rate)
    if channels > 1:
        samples = np.stack([samples * (0.5 + 0.5 * c / channels) for c in range(channels)], axis=1)
    sf.write(path, samples, rate)
    return path


@pytest.fixture(scope="session")
def speech_flac(tmp_path_factory) -> Path:
    return synthesize("the quick brown fox jumps over the lazy dog", tmp_path_factory.mktemp("audio") / "fox.flac")


@pytest.fixture()
def tone_audio():
    """Two seconds of a seeded noisy chirp at 16 kHz: speech-like enough to give varied frames."""
    rng = np.random.default_rng(7)
    t = np.arange(32000) / 16000
    return (0.3 * np.sin(2 * np.pi * (200 + 400 * t) * t) + 0.05 * rng.standard_normal(t.size)).astype(np.float64)
