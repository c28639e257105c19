"""The MLPerf DeepSpeech2 network in PyTorch, laid out so the reference state_dict loads unchanged.

conv (2 × Conv2d+BatchNorm2d+Hardtanh, no padding) → 3 unidirectional GRUs → BatchNorm1d+Linear → log-softmax.
Only the pieces inference needs are kept; module names match the checkpoint's keys.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

# (kernel, stride) along (frequency, time) of the two convolutions; no padding in the MLPerf model.
CONV_KERNELS = ((41, 11), (21, 11))
CONV_STRIDES = ((2, 2), (2, 1))
CONV_CHANNELS = 32


@dataclass(frozen=True)
class ModelConfig:
    """Architecture read from a checkpoint package."""

    hidden_size: int = 2560
    hidden_layers: int = 3
    labels: str = "_'ABCDEFGHIJKLMNOPQRSTUVWXYZ "
    sample_rate: int = 16000
    window_size: float = 0.02
    window_stride: float = 0.01
    window: str = "hamming"
    rnn_type: str = "gru"
    bidirectional: bool = False

    @property
    def n_fft(self) -> int:
        return int(round(self.sample_rate * self.window_size))

    @property
    def hop_length(self) -> int:
        return int(round(self.sample_rate * self.window_stride))

    @property
    def n_freq(self) -> int:
        return self.n_fft // 2 + 1

    @property
    def num_classes(self) -> int:
        return len(self.labels)

    @property
    def rnn_input_size(self) -> int:
        freq = self.n_freq
        for (kf, _), (sf, _) in zip(CONV_KERNELS, CONV_STRIDES):
            freq = (freq - kf) // sf + 1
        return freq * CONV_CHANNELS


def output_lengths(lengths: torch.Tensor) -> torch.Tensor:
    """Output frames for `lengths` spectrogram frames: floor((T - 11) / 2) + 1 - 10, never below 0."""
    out = lengths
    for (_, kt), (_, st) in zip(CONV_KERNELS, CONV_STRIDES):
        out = torch.div(out - kt, st, rounding_mode="floor") + 1
    return out.clamp(min=0)


class SequenceWise(nn.Module):
    """Applies a module frame by frame to a (T, N, H) tensor (the checkpoint nests it as `fc.0.module`)."""

    def __init__(self, module: nn.Module):
        super().__init__()
        self.module = module

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        t, n = x.shape[0], x.shape[1]
        return self.module(x.reshape(t * n, -1)).reshape(t, n, -1)


class BatchRNN(nn.Module):
    """One recurrent layer; the MLPerf model has no BatchNorm between layers."""

    def __init__(self, input_size: int, hidden_size: int, bidirectional: bool = False):
        super().__init__()
        self.bidirectional = bidirectional
        self.rnn = nn.GRU(input_size, hidden_size, bidirectional=bidirectional, bias=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x, _ = self.rnn(x)
        if self.bidirectional:
            t, n = x.shape[0], x.shape[1]
            x = x.view(t, n, 2, -1).sum(2)
        return x


class DeepSpeech2(nn.Module):
    """Inputs: spectrogram (N, 1, F, T) and lengths (N,). Outputs: log-probs (N, T', C) and lengths (N,)."""

    def __init__(self, config: ModelConfig):
        super().__init__()
        self.config = config
        (k1, k2), (s1, s2) = CONV_KERNELS, CONV_STRIDES
        self.conv = nn.Sequential(
            nn.Conv2d(1, CONV_CHANNELS, k1, stride=s1),
            nn.BatchNorm2d(CONV_CHANNELS),
            nn.Hardtanh(0, 20, inplace=True),
            nn.Conv2d(CONV_CHANNELS, CONV_CHANNELS, k2, stride=s2),
            nn.BatchNorm2d(CONV_CHANNELS),
            nn.Hardtanh(0, 20, inplace=True),
        )
        layers = []
        size = config.rnn_input_size
        for _ in range(config.hidden_layers):
            layers.append(BatchRNN(size, config.hidden_size, config.bidirectional))
            size = config.hidden_size
        self.rnns = nn.Sequential(*layers)
        self.fc = nn.Sequential(
            SequenceWise(
                nn.Sequential(
                    nn.BatchNorm1d(config.hidden_size),
                    nn.Linear(config.hidden_size, config.num_classes, bias=False),
                )
            )
        )

    def forward(self, spect: torch.Tensor, lengths: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        x = self.conv(spect)
        n, c, f, t = x.shape
        x = x.view(n, c * f, t).permute(2, 0, 1)  # (T, N, C*F), channel-major features
        x = self.rnns(x)
        x = self.fc(x)
        # The reference's InferenceBatchLogSoftmax loops over the batch; log_softmax per frame is the same.
        x = torch.log_softmax(x.transpose(0, 1), dim=-1)
        return x, output_lengths(lengths)
