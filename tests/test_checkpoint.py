"""Loading MLPerf-layout checkpoints in every form users have them, and the errors for everything else."""

import zipfile

import pytest
import torch

from ds2_onnx.errors import CheckpointError
from ds2_onnx.export.checkpoint import load_checkpoint
from ds2_onnx.export.model import ModelConfig
from ds2_onnx.export.synthetic import make_package, random_model, save_package


@pytest.fixture(scope="module")
def small():
    return random_model(ModelConfig(hidden_size=16, hidden_layers=2), seed=0)


def same_weights(a, b):
    sa, sb = a.state_dict(), b.state_dict()
    return all(torch.equal(sa[k], sb[k]) for k in sa if not k.endswith("num_batches_tracked"))


@pytest.mark.parametrize("legacy", [True, False])
@pytest.mark.parametrize("prefix", [False, True])
def test_loads_legacy_and_zip_formats_with_or_without_module_prefix(tmp_path, small, legacy, prefix):
    path = save_package(make_package(small, module_prefix=prefix), tmp_path / "m.pth", legacy=legacy)
    ckpt = load_checkpoint(path)
    assert ckpt.config == small.config
    assert same_weights(ckpt.model, small)
    assert not ckpt.model.training
    assert len(ckpt.sha256) == 64


def test_loads_from_inside_a_zip_archive_like_the_zenodo_download(tmp_path, small):
    inner = save_package(make_package(small), tmp_path / "deepspeech_10.pth", legacy=True)
    archive = tmp_path / "trained_model_deepspeech2.zip"
    with zipfile.ZipFile(archive, "w") as z:
        z.write(inner, "trained_model_deepspeech2/deepspeech_10.pth")
        z.writestr("trained_model_deepspeech2/README.txt", "model")
    ckpt = load_checkpoint(archive)
    assert ckpt.source.endswith("!trained_model_deepspeech2/deepspeech_10.pth")
    assert same_weights(ckpt.model, small)


def test_architecture_comes_from_the_package(tmp_path):
    model = random_model(ModelConfig(hidden_size=24, hidden_layers=1), seed=0)
    ckpt = load_checkpoint(save_package(make_package(model, epoch=7), tmp_path / "m.pth"))
    assert (ckpt.config.hidden_size, ckpt.config.hidden_layers) == (24, 1)
    assert ckpt.extras == {"version": "0.0.1", "epoch": 7}


def test_full_size_package_has_the_mlperf_shapes(tmp_path):
    """Full-size (hidden 2560) loading and shape path: 103,841,568 parameters, 672-wide GRU input, 29 classes."""
    model = random_model(ModelConfig(), seed=0)
    path = save_package(make_package(model), tmp_path / "full.pth", legacy=True)
    del model
    ckpt = load_checkpoint(path)
    sd = ckpt.model.state_dict()
    assert sum(p.numel() for p in ckpt.model.parameters()) == 103_841_568
    assert tuple(sd["rnns.0.rnn.weight_ih_l0"].shape) == (7680, 672)
    assert tuple(sd["rnns.2.rnn.weight_hh_l0"].shape) == (7680, 2560)
    assert tuple(sd["fc.0.module.1.weight"].shape) == (29, 2560)
    with torch.inference_mode():
        log_probs, lengths = ckpt.model(torch.randn(1, 1, 161, 41), torch.tensor([41]))
    assert tuple(log_probs.shape) == (1, 6, 29) and lengths.tolist() == [6]
    assert torch.allclose(log_probs.exp().sum(-1), torch.ones(1, 6), atol=1e-5)


def write(tmp_path, obj, name="bad.pth"):
    path = tmp_path / name
    torch.save(obj, path)
    return path


def test_missing_file(tmp_path):
    with pytest.raises(CheckpointError, match="no such checkpoint"):
        load_checkpoint(tmp_path / "nope.pth")


@pytest.mark.parametrize("content, match", [(b"", "is empty"), (b"fLaC\x00\x00\x00\x22", "not a PyTorch checkpoint"),
                                            (b"\x80\x02garbage", "not a readable PyTorch checkpoint")])
def test_not_a_checkpoint(tmp_path, content, match):
    path = tmp_path / "x.pth"
    path.write_bytes(content)
    with pytest.raises(CheckpointError, match=match):
        load_checkpoint(path)


def test_truncated_checkpoint(tmp_path, small):
    path = save_package(make_package(small), tmp_path / "m.pth")
    path.write_bytes(path.read_bytes()[:2000])
    with pytest.raises(CheckpointError, match="not a readable PyTorch checkpoint"):
        load_checkpoint(path)


class Payload:
    def __reduce__(self):
        return (print, ("this would run on load",))


def test_pickled_code_is_refused_not_run(tmp_path, capsys):
    path = write(tmp_path, {"state_dict": {}, "evil": Payload()})
    with pytest.raises(CheckpointError, match="weights_only=True"):
        load_checkpoint(path)
    assert "this would run" not in capsys.readouterr().out


def test_a_dict_without_state_dict(tmp_path):
    with pytest.raises(CheckpointError, match="no 'state_dict' key"):
        load_checkpoint(write(tmp_path, {"model": torch.zeros(1)}))


def test_not_a_dict(tmp_path):
    with pytest.raises(CheckpointError, match="not a DeepSpeech2 checkpoint package"):
        load_checkpoint(write(tmp_path, [torch.zeros(1)]))


def test_missing_and_unexpected_keys_are_listed(tmp_path, small):
    package = make_package(small)
    del package["state_dict"]["rnns.1.rnn.bias_hh_l0"]
    package["state_dict"]["rnns.5.rnn.extra"] = torch.zeros(1)
    with pytest.raises(CheckpointError) as e:
        load_checkpoint(write(tmp_path, package))
    assert "missing keys: rnns.1.rnn.bias_hh_l0" in str(e.value)
    assert "unexpected keys: rnns.5.rnn.extra" in str(e.value)


def test_shape_mismatch_names_key_and_both_shapes(tmp_path, small):
    package = make_package(small)
    package["hidden_size"] = 32  # weights are for 16
    with pytest.raises(CheckpointError) as e:
        load_checkpoint(write(tmp_path, package))
    assert "rnns.0.rnn.weight_hh_l0 has shape [48, 16], the architecture needs [96, 32]" in str(e.value)


def test_unsupported_rnn_type(tmp_path, small):
    package = make_package(small)
    package["rnn_type"] = "lstm"
    with pytest.raises(CheckpointError, match="rnn_type 'lstm'"):
        load_checkpoint(write(tmp_path, package))


def test_zip_archive_without_a_checkpoint(tmp_path):
    archive = tmp_path / "a.zip"
    with zipfile.ZipFile(archive, "w") as z:
        z.writestr("notes.txt", "hello")
    with pytest.raises(CheckpointError, match="without a checkpoint inside"):
        load_checkpoint(archive)


def test_zip_archive_with_two_checkpoints(tmp_path, small):
    inner = save_package(make_package(small), tmp_path / "m.pth")
    archive = tmp_path / "a.zip"
    with zipfile.ZipFile(archive, "w") as z:
        z.write(inner, "a.pth")
        z.write(inner, "b.pth")
    with pytest.raises(CheckpointError, match="several checkpoints"):
        load_checkpoint(archive)
