"""Checkpoint packages in the exact MLPerf layout with random weights: for tests, benchmarks and demos of speed.

They transcribe nothing meaningful; they exercise loading, export and run time at real (or small) size.
"""

from __future__ import annotations

from pathlib import Path

import torch

from .model import DeepSpeech2, ModelConfig

MLPERF_AUDIO_CONF = {
    "sample_rate": 16000,
    "window_size": 0.02,
    "window_stride": 0.01,
    "window": "hamming",
    "noise_dir": None,
    "noise_prob": 0.4,
    "noise_levels": (0.0, 0.5),
}


def random_model(config: ModelConfig, seed: int = 0) -> DeepSpeech2:
    """A DeepSpeech2 with PyTorch's default init and non-trivial BatchNorm statistics, in eval mode."""
    generator = torch.Generator().manual_seed(seed)
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        model = DeepSpeech2(config)
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, (torch.nn.BatchNorm1d, torch.nn.BatchNorm2d)):
                n = module.num_features
                module.weight.copy_(0.5 + torch.rand(n, generator=generator))
                module.bias.copy_(0.1 * torch.randn(n, generator=generator))
                module.running_mean.copy_(0.5 * torch.randn(n, generator=generator))
                module.running_var.copy_(0.5 + 1.5 * torch.rand(n, generator=generator))
    return model.eval()


def make_package(model: DeepSpeech2, module_prefix: bool = False, **extras) -> dict:
    """The dict deepspeech.pytorch's `serialize` wrote for the MLPerf model (no `bidirectional` key)."""
    config = model.config
    state_dict = {
        k: v.clone() for k, v in model.state_dict().items() if not k.endswith("num_batches_tracked")
    }
    if module_prefix:
        state_dict = {"module." + k: v for k, v in state_dict.items()}
    audio_conf = dict(MLPERF_AUDIO_CONF)
    audio_conf.update(
        sample_rate=config.sample_rate, window_size=config.window_size, window_stride=config.window_stride
    )
    package = {
        "version": "0.0.1",
        "hidden_size": config.hidden_size,
        "hidden_layers": config.hidden_layers,
        "rnn_type": config.rnn_type,
        "audio_conf": audio_conf,
        "labels": config.labels,
        "state_dict": state_dict,
    }
    if config.bidirectional:
        package["bidirectional"] = True
    package.update(extras)
    return package


def save_package(package: dict, path: str | Path, legacy: bool = False) -> Path:
    """torch.save the package; `legacy=True` writes the pre-1.6 format PyTorch 0.4 produced.

    Written to PATH.tmp and renamed, so PATH is never half-written (a training run saves over its checkpoints)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    try:
        torch.save(package, tmp, _use_new_zipfile_serialization=not legacy)
        tmp.replace(path)
    finally:
        tmp.unlink(missing_ok=True)
    return path
