"""Transcriber: audio in, text with word timings out, using one exported ONNX model and no torch."""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Sequence, Union

import numpy as np

from ..errors import AudioError
from .audio import load_audio, prepare_audio
from .beam import BeamSearchDecoder, BeamSearchOptions
from .decoding import Char, Decoded, Word, decode
from .features import compute_features, num_frames
from .lm import LanguageModel
from .session import SessionOptions, create_session, run_model

AudioInput = Union[str, Path, np.ndarray]
DEFAULT_MAX_PADDING = 0.25  # padded frames per real frame allowed in a batch (see plan_batches)


@dataclass(frozen=True)
class Transcription:
    text: str
    words: tuple[Word, ...]
    chars: tuple[Char, ...]
    duration: float  # seconds of audio
    processing_time: float  # seconds spent on this utterance (for a batch: its share of the batch)
    source: str | None = None  # the file path, when the input was a file

    @property
    def rtf(self) -> float:
        return self.processing_time / self.duration if self.duration > 0 else 0.0


@dataclass(frozen=True)
class Features:
    """One utterance ready for the model: (F, T) features and its audio duration."""

    values: np.ndarray | None  # None when the audio is shorter than the model's receptive field
    duration: float
    source: str | None


class Transcriber:
    """Transcribe with one exported model. Immutable after construction and safe to share between threads.

    Decoding is greedy (best path, as the MLPerf reference) unless `lm` or `beam` is given: then CTC prefix
    beam search, fused with the word n-gram `lm` (an ARPA file or a loaded `LanguageModel`) if there is one.
    """

    def __init__(
        self,
        model: str | Path,
        options: SessionOptions = SessionOptions(),
        resample: bool = True,
        lm: str | Path | LanguageModel | None = None,
        beam: BeamSearchOptions | None = None,
    ):
        self.model_path = Path(model)
        self.options = options
        self.resample = resample
        self._session, self.info = create_session(self.model_path, options)
        self.decoder: BeamSearchDecoder | None = None
        if lm is not None or beam is not None:
            if lm is not None and not isinstance(lm, LanguageModel):
                lm = LanguageModel.load(lm)
            self.decoder = BeamSearchDecoder(self.info.labels, self.info.blank_index, lm, beam or BeamSearchOptions())

    def __repr__(self) -> str:
        decoder = f", decoder={self.decoder!r}" if self.decoder else ""
        return f"Transcriber({str(self.model_path)!r}, precision={self.info.precision!r}{decoder})"

    # -- stages -------------------------------------------------------------------------------------
    def load(self, audio: AudioInput, sample_rate: int | None = None) -> np.ndarray:
        """Mono float64 samples in [-1, 1] at the model's rate, from a path or an array (+ its rate)."""
        info = self.info
        if isinstance(audio, (str, Path)):
            return load_audio(audio, info.sample_rate, resample=self.resample)
        if sample_rate is None:
            raise AudioError("pass sample_rate with a numpy array of samples")
        return prepare_audio(audio, sample_rate, info.sample_rate, resample=self.resample, source="audio array")

    def features(self, audio: AudioInput, sample_rate: int | None = None) -> Features:
        info = self.info
        samples = self.load(audio, sample_rate)
        source = str(audio) if isinstance(audio, (str, Path)) else None
        duration = samples.size / info.sample_rate
        if num_frames(samples.size, info.hop_length) < info.min_frames:
            return Features(None, duration, source)
        values = compute_features(
            samples * info.input_scale,
            info.n_fft,
            info.hop_length,
            info.win_length,
            center=info.center,
            pad_mode=info.pad_mode,
            normalized=info.normalized,
        )
        return Features(values, duration, source)

    def log_probs(self, spect: np.ndarray, lengths: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Run the model on a right-padded (B, F, T) or (B, 1, F, T) batch."""
        if spect.ndim == 3:
            spect = spect[:, None]
        return run_model(self._session, self.info, spect, np.asarray(lengths))

    def utterance_log_probs(self, values: np.ndarray) -> np.ndarray:
        """The valid (T', C) log-probs of one utterance's (F, T) features."""
        log_probs, lengths = self.log_probs(values[None], np.array([values.shape[1]]))
        return log_probs[0, : int(lengths[0])]

    def decode(self, log_probs: np.ndarray) -> Decoded:
        """Text and timings from one utterance's valid (T, C) log-probs, with this transcriber's decoder."""
        info = self.info
        if self.decoder is None:
            return decode(log_probs, info.labels, info.blank_index, info.frame_duration)
        return self.decoder.decode(log_probs, info.frame_duration)

    # -- whole pipeline -----------------------------------------------------------------------------
    def transcribe(self, audio: AudioInput, sample_rate: int | None = None) -> Transcription:
        start = time.perf_counter()
        feats = self.features(audio, sample_rate)
        if feats.values is None:
            decoded = Decoded("", (), ())
        else:
            decoded = self.decode(self.utterance_log_probs(feats.values))
        return _result(decoded, feats, time.perf_counter() - start)

    def transcribe_batch(
        self,
        audios: Sequence[AudioInput],
        sample_rate: int | None = None,
        batch_size: int = 8,
        max_padding: float = DEFAULT_MAX_PADDING,
    ) -> list[Transcription]:
        """Transcribe many inputs in length-sorted, padded batches (see `plan_batches`); results in input order."""
        results: list[Transcription | None] = [None] * len(audios)
        for indices, batch_results in self.iter_batches(audios, sample_rate, batch_size, max_padding):
            for i, r in zip(indices, batch_results):
                results[i] = r
        return results  # type: ignore[return-value]

    def iter_batches(
        self,
        audios: Sequence[AudioInput],
        sample_rate: int | None = None,
        batch_size: int = 8,
        max_padding: float = DEFAULT_MAX_PADDING,
    ) -> Iterable[tuple[list[int], list[Transcription]]]:
        """Yield (input indices, results) batch by batch, for progress reporting on long lists.

        Features for all inputs are computed first so batches group similar lengths (less padding).
        """
        _check_batching(batch_size, max_padding)
        start = time.perf_counter()
        feats = [self.features(a, sample_rate) for a in audios]
        feature_time = (time.perf_counter() - start) / max(1, len(audios))
        yield from self.iter_feature_batches(feats, batch_size, max_padding, feature_time)

    def iter_feature_batches(
        self,
        feats: Sequence[Features],
        batch_size: int = 8,
        max_padding: float = DEFAULT_MAX_PADDING,
        feature_time: float = 0.0,
    ) -> Iterable[tuple[list[int], list[Transcription]]]:
        """`iter_batches` for features computed beforehand with `features()` (e.g. to report unreadable files
        one by one and batch the rest); indices refer to `feats`. `feature_time` is added to each result's
        processing time."""
        _check_batching(batch_size, max_padding)
        empty = [i for i, f in enumerate(feats) if f.values is None]
        if empty:
            yield empty, [_result(Decoded("", (), ()), feats[i], feature_time) for i in empty]
        usable = [i for i, f in enumerate(feats) if f.values is not None]
        lengths = [feats[i].values.shape[1] for i in usable]
        for group in plan_batches(lengths, batch_size, max_padding):
            idx = [usable[k] for k in group]
            t0 = time.perf_counter()
            spect, frames = pad_batch([feats[i].values for i in idx])
            log_probs, out_lengths = self.log_probs(spect, frames)
            decoded = [self.decode(log_probs[b, : int(n)]) for b, n in enumerate(out_lengths)]
            share = (time.perf_counter() - t0) / len(idx)
            yield idx, [_result(d, feats[i], feature_time + share) for d, i in zip(decoded, idx)]


def _check_batching(batch_size: int, max_padding: float) -> None:
    if batch_size < 1:
        raise ValueError(f"batch_size must be at least 1, got {batch_size}")
    if not max_padding >= 0:
        raise ValueError(f"max_padding must be >= 0, got {max_padding}")


def plan_batches(lengths: Sequence[int], batch_size: int, max_padding: float = DEFAULT_MAX_PADDING) -> list[list[int]]:
    """Group utterance indices into batches: sorted by length, at most `batch_size` each, and a batch is closed
    early when adding the next (longer) utterance would make the padded frames exceed (1 + max_padding) times
    the real frames. Every padded frame costs as much as a real one (the GRUs run to the longest), so on a
    heavy-tailed set one long utterance would otherwise double the work of its batch (bench/e2e.py measures it).
    """
    order = sorted(range(len(lengths)), key=lambda i: lengths[i])
    batches: list[list[int]] = []
    current: list[int] = []
    real = 0
    for i in order:
        n = lengths[i]
        if current and (len(current) == batch_size or n * (len(current) + 1) > (1 + max_padding) * (real + n)):
            batches.append(current)
            current, real = [], 0
        current.append(i)
        real += n
    if current:
        batches.append(current)
    return batches


def pad_batch(features: Sequence[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """Right-pad (F, T_i) features with zeros into (B, 1, F, max T) and return the lengths (B,)."""
    lengths = np.array([f.shape[1] for f in features], dtype=np.int64)
    out = np.zeros((len(features), 1, features[0].shape[0], int(lengths.max())), dtype=np.float32)
    for b, f in enumerate(features):
        out[b, 0, :, : f.shape[1]] = f
    return out, lengths


def _result(decoded: Decoded, feats: Features, seconds: float) -> Transcription:
    return Transcription(decoded.text, decoded.words, decoded.chars, feats.duration, seconds, feats.source)
