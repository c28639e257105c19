"""Grid search of the beam search's LM weight (alpha), word bonus (beta) and out-of-vocabulary offset
(unk_offset) on a dataset: `ds2-onnx tune-lm`.

The model runs once per utterance; every grid point then only re-decodes the kept log-probs, in
parallel processes. Tune on a development split, then report WER on a test split with the chosen values:
tuning and reporting on the same data overstates the gain.
"""

from __future__ import annotations

import multiprocessing
import os
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Callable, Sequence

import numpy as np

from ..errors import DatasetError, Ds2OnnxError
from ..runtime.beam import BeamSearchDecoder, BeamSearchOptions
from ..runtime.lm import LanguageModel
from ..runtime.session import SessionOptions
from ..runtime.transcriber import Transcriber
from .datasets import load_dataset
from .metrics import ErrorCounts


@dataclass(frozen=True)
class GridPoint:
    alpha: float
    beta: float
    unk_offset: float
    counts: ErrorCounts
    seconds_per_utterance: float  # beam search time only (the model ran once, before the grid)

    @property
    def wer(self) -> float:
        return self.counts.wer

    @property
    def cer(self) -> float:
        return self.counts.cer


@dataclass(frozen=True)
class TuneReport:
    dataset: str
    utterances: int
    skipped: int  # unreadable audio, listed by the progress callback
    beam_width: int
    greedy: ErrorCounts
    no_lm: ErrorCounts  # beam search of the same width without the LM
    points: tuple[GridPoint, ...]

    @property
    def best(self) -> GridPoint:
        return min(self.points, key=lambda p: (p.counts.word_edits, p.counts.char_edits))


def spread(n: int, limit: int | None) -> list[int]:
    """`limit` indices evenly over range(n) (all of them without a limit): folders list shortest first, so the
    first N would tune on the shortest utterances only."""
    if limit is None or limit >= n:
        return list(range(n))
    return [i * n // limit for i in range(limit)]


# state each worker process receives once, from the initializer
_DATA: list[tuple[str, np.ndarray]] = []
_DECODE: dict = {}


def _init(data, labels, blank, lm, options, frame_duration):
    """`options`: the search settings every grid point shares (width, margin, look-ahead)."""
    _DATA[:] = data
    _DECODE.update(labels=labels, blank=blank, lm=lm, options=options, frame_duration=frame_duration)


def _decode_all(point: tuple[float, float, float] | None) -> tuple[ErrorCounts, float]:
    d = _DECODE
    lm = d["lm"] if point is not None else None
    alpha, beta, unk_offset = point if point is not None else (0.0, 0.0, 0.0)
    options = replace(d["options"], alpha=alpha, beta=beta, unk_offset=unk_offset)
    decoder = BeamSearchDecoder(d["labels"], d["blank"], lm, options)
    total = ErrorCounts()
    start = time.perf_counter()
    for reference, log_probs in _DATA:
        total = total + ErrorCounts.of(reference, decoder.decode(log_probs, d["frame_duration"]).text)
    return total, (time.perf_counter() - start) / max(1, len(_DATA))


def tune_lm(
    dataset: str | Path,
    model: str | Path,
    lm: str | Path | LanguageModel,
    alphas: Sequence[float],
    betas: Sequence[float],
    beam_width: int = BeamSearchOptions.beam_width,
    unk_offsets: Sequence[float] = (BeamSearchOptions.unk_offset,),
    limit: int | None = None,
    jobs: int | None = None,
    threads: int | None = None,
    data_dir: str | Path | None = None,
    on_stage: Callable[[str, int], None] = lambda stage, total: None,
    on_step: Callable[[], None] = lambda: None,
    on_skip: Callable[[str, str], None] = lambda utterance, error: None,
    beam_margin: float = BeamSearchOptions.beam_margin,
    lookahead: bool = BeamSearchOptions.lookahead,
) -> TuneReport:
    if not alphas or not betas or not unk_offsets:
        raise ValueError("give at least one alpha, one beta and one unk offset")
    grid = [(float(a), float(b), float(u)) for a in alphas for b in betas for u in unk_offsets]
    shared = BeamSearchOptions(beam_width, beam_margin=beam_margin, lookahead=lookahead)
    for a, b, u in grid:
        replace(shared, alpha=a, beta=b, unk_offset=u)  # raises on a bad value before the model runs
    lm_model = lm if isinstance(lm, LanguageModel) else LanguageModel.load(lm)
    transcriber = Transcriber(model, SessionOptions(threads=threads))
    info = transcriber.info
    data_set = load_dataset(dataset, info.labels, info.blank_index, data_dir)
    utterances = [data_set.utterances[i] for i in spread(len(data_set), limit)]
    if not utterances:
        raise DatasetError(f"{dataset}: no utterances to tune on")

    on_stage("running the model", len(utterances))
    data, skipped = [], 0
    for u in utterances:
        try:
            feats = transcriber.features(u.audio)
        except Ds2OnnxError as e:
            skipped += 1
            on_skip(u.id, str(e))
        else:
            if feats.values is None:
                log_probs = np.zeros((0, len(info.labels)), dtype=np.float32)
            else:
                log_probs = transcriber.utterance_log_probs(feats.values)
            data.append((u.transcript, log_probs))
        on_step()
    if not data:
        raise DatasetError(f"{dataset}: none of the {len(utterances)} utterances could be read")
    greedy = ErrorCounts()
    for reference, log_probs in data:
        greedy = greedy + ErrorCounts.of(reference, transcriber.decode(log_probs).text)

    grid = [None] + grid
    on_stage("decoding the grid", len(grid))
    jobs = max(1, min(jobs or os.cpu_count() or 1, len(grid)))
    init = (data, info.labels, info.blank_index, lm_model, shared, info.frame_duration)
    results: list[tuple[ErrorCounts, float]] = []
    if jobs == 1:
        _init(*init)
        for point in grid:
            results.append(_decode_all(point))
            on_step()
    else:
        # spawn, not fork: a process forked from one running ONNX Runtime's (or torch's) thread pools can
        # deadlock on a lock some pool thread held at the fork
        context = multiprocessing.get_context("spawn")
        with ProcessPoolExecutor(jobs, mp_context=context, initializer=_init, initargs=init) as pool:
            for result in pool.map(_decode_all, grid):
                results.append(result)
                on_step()
    points = tuple(GridPoint(a, b, u, counts, seconds) for (a, b, u), (counts, seconds) in zip(grid[1:], results[1:]))
    return TuneReport(str(dataset), len(data), skipped, beam_width, greedy, results[0][0], points)
