"""Full-size (3 x GRU(2560), 415 MB) export and transcription parity. Slow: run with `make test-slow`."""

import numpy as np
import pytest

from ds2_onnx.export.model import ModelConfig
from ds2_onnx.export.pipeline import export_checkpoint
from ds2_onnx.export.synthetic import make_package, random_model, save_package
from ds2_onnx.runtime import Transcriber
from ds2_onnx.validation.reference import ReferencePipeline

pytestmark = pytest.mark.slow


def test_full_size_export_and_transcription_match_pytorch(tmp_path, speech_flac):
    checkpoint = save_package(make_package(random_model(ModelConfig(), seed=0)), tmp_path / "full.pth", legacy=True)
    [fp32] = export_checkpoint(checkpoint, tmp_path / "full.onnx", precisions=("fp32",))
    assert fp32.parity.max_abs_diff < 1e-3 and fp32.parity.frame_agreement == 1.0
    transcriber = Transcriber(fp32.path)
    reference = ReferencePipeline(checkpoint, input_scale=transcriber.info.input_scale).transcribe(speech_flac)
    feats = transcriber.features(speech_flac).values
    log_probs, lengths = transcriber.log_probs(feats[None], np.array([feats.shape[1]]))
    np.testing.assert_allclose(log_probs[0, : int(lengths[0])], reference.log_probs, atol=1e-3)
    assert transcriber.transcribe(speech_flac).text == reference.text
