"""ONNX export: exactness against PyTorch, batch vs single, metadata, verification and atomic writes."""

import json

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch

from ds2_onnx.errors import Ds2OnnxError, ParityError
from ds2_onnx.export import pipeline
from ds2_onnx.export.onnx_export import FP32_ATOL, check_against_torch, parity_inputs
from ds2_onnx.runtime.model_info import INT32_FULL_SCALE, ModelInfo
from ds2_onnx.runtime.session import SessionOptions, create_session

# fp32 ORT vs PyTorch on valid frames; measured ~1e-6 on these models
ATOL = 1e-4


def test_graph_uses_exact_gru_ops_with_dynamic_axes(tiny_onnx):
    proto = onnx.load(str(tiny_onnx))
    assert [n.op_type for n in proto.graph.node].count("GRU") == 3
    for node in proto.graph.node:
        if node.op_type == "GRU":
            attrs = {a.name: onnx.helper.get_attribute_value(a) for a in node.attribute}
            assert attrs["linear_before_reset"] == 1  # PyTorch's GRU semantics
    dims = lambda v: [d.dim_param or d.dim_value for d in v.type.tensor_type.shape.dim]  # noqa: E731
    assert dims(proto.graph.input[0]) == ["batch", 1, 161, "frames"]
    assert dims(proto.graph.input[1]) == ["batch"]
    assert dims(proto.graph.output[0]) == ["batch", "out_frames", 29]
    assert dims(proto.graph.output[1]) == ["batch"]


@pytest.mark.parametrize("lengths", [(31,), (32,), (1000,), (300, 31, 299, 150)])
def test_onnx_matches_pytorch_and_padded_batches_match_single_runs(tiny_onnx, tiny_model, lengths):
    session = ort.InferenceSession(str(tiny_onnx), providers=["CPUExecutionProvider"])
    spect, lens = next(parity_inputs(161, [lengths], seed=sum(lengths)))
    log_probs, out_lens = session.run(None, {"spectrogram": spect, "lengths": lens})
    expected_lens = [(t - 11) // 2 + 1 - 10 for t in lengths]
    assert out_lens.tolist() == expected_lens
    for b, n in enumerate(lengths):
        single, single_len = session.run(None, {"spectrogram": spect[b : b + 1, :, :, :n], "lengths": lens[b : b + 1]})
        with torch.inference_mode():
            ref, _ = tiny_model(torch.from_numpy(spect[b : b + 1, :, :, :n].copy()), torch.tensor([n]))
        valid = expected_lens[b]
        assert single.shape[1] == valid == int(single_len[0])
        np.testing.assert_allclose(log_probs[b, :valid], single[0], atol=ATOL)
        np.testing.assert_allclose(log_probs[b, :valid], ref[0].numpy(), atol=ATOL)


def test_metadata_round_trip(tiny_onnx, tiny_checkpoint):
    from ds2_onnx.export.checkpoint import sha256_file

    _, info = create_session(tiny_onnx, SessionOptions(threads=1))
    assert info.labels == "_'ABCDEFGHIJKLMNOPQRSTUVWXYZ " and info.blank_index == 0
    assert (info.sample_rate, info.n_fft, info.hop_length, info.win_length) == (16000, 320, 160, 320)
    assert (info.window, info.center, info.pad_mode) == ("hamming_symmetric", True, "reflect")
    assert info.normalization == "per_utterance_mean_unbiased_std"
    assert info.input_scale == INT32_FULL_SCALE
    assert (info.conv_time_kernels, info.conv_time_strides) == ((11, 11), (2, 1))
    assert (info.hidden_size, info.hidden_layers, info.bidirectional, info.num_classes) == (48, 3, False, 29)
    assert info.precision == "fp32" and info.source_sha256 == sha256_file(tiny_checkpoint)
    assert info.min_frames == 31 and info.output_frames(1001) == 486 and info.frame_duration == pytest.approx(0.02)
    raw = {p.key: p.value for p in onnx.load(str(tiny_onnx)).metadata_props}
    assert ModelInfo.from_metadata(raw) == info
    assert json.loads(raw["ds2.labels"]) == info.labels


def test_export_writes_beside_the_checkpoint_by_default_and_records_input_scale(tmp_path, tiny_checkpoint):
    ckpt = tmp_path / "model.pth"
    ckpt.write_bytes(tiny_checkpoint.read_bytes())
    results = pipeline.export_checkpoint(ckpt, precisions=("fp32",), input_scale=1.0)
    assert [r.path for r in results] == [tmp_path / "model.onnx"]
    assert results[0].parity.max_abs_diff <= FP32_ATOL and results[0].parity.frame_agreement == 1.0
    _, info = create_session(results[0].path)
    assert info.input_scale == 1.0
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model.onnx", "model.pth"]


def test_parity_failure_raises_with_every_mismatch_and_writes_nothing(tmp_path, tiny_checkpoint, monkeypatch):
    original = pipeline.verify

    def broken_verify(path, checkpoint, atol, threads):
        weight = checkpoint.model.fc[0].module[1].weight
        noise = 0.5 * torch.randn(weight.shape, generator=torch.Generator().manual_seed(0))
        with torch.no_grad():
            weight.add_(noise)  # PyTorch now differs from the exported graph
        try:
            return original(path, checkpoint, atol, threads)
        finally:
            with torch.no_grad():
                weight.sub_(noise)

    monkeypatch.setattr(pipeline, "verify", broken_verify)
    out = tmp_path / "out" / "m.onnx"
    with pytest.raises(ParityError) as e:
        pipeline.export_checkpoint(tiny_checkpoint, out, precisions=("fp32",))
    assert len(e.value.mismatches) >= 4 and "max |Δ log-prob|" in str(e.value)
    assert list(out.parent.iterdir()) == []


def test_check_against_torch_reports_frame_agreement(tiny_onnx, tiny_model):
    session, info = create_session(tiny_onnx)
    report = check_against_torch(tiny_model, session, info)
    assert report.frame_agreement == 1.0 and report.max_abs_diff < ATOL and report.frames > 100


@pytest.mark.parametrize("precisions, message", [(("fp16",), "unknown precision"), ((), "unknown precision")])
def test_bad_precision(tiny_checkpoint, tmp_path, precisions, message):
    with pytest.raises(Ds2OnnxError, match=message):
        pipeline.export_checkpoint(tiny_checkpoint, tmp_path / "m.onnx", precisions=precisions)


def test_bad_output_suffix(tiny_checkpoint, tmp_path):
    with pytest.raises(Ds2OnnxError, match="should end in .onnx"):
        pipeline.export_checkpoint(tiny_checkpoint, tmp_path / "m.bin", precisions=("fp32",))
