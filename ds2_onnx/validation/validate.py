"""`ds2-onnx validate`: every ONNX precision of a model, and optionally the PyTorch reference, on one dataset.

Per utterance, interleaved: end-to-end latency of each variant (load + features + model + greedy decode),
its transcript, max |Δ log-prob| against the baseline and the numpy-vs-librosa feature difference. Only these
small per-utterance summaries are kept; log-probs are dropped as soon as they are compared. Corpus WER/CER,
latency percentiles and gates are computed from the summaries.
"""

from __future__ import annotations

import importlib.util
import json
import multiprocessing
import time
from collections import deque
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable, Iterable, Iterator, Sequence

import numpy as np

from ..errors import AudioError, CheckpointError, Ds2OnnxError, ModelFileError
from ..files import atomic_path
from ..runtime.beam import BeamSearchOptions
from ..runtime.lm import LanguageModel
from ..runtime.session import SessionOptions, default_threads
from ..runtime.transcriber import Transcriber
from .datasets import Dataset, Utterance, load_dataset
from .latency import LatencySummary, machine_info
from .metrics import ErrorCounts, wer_delta_se

PRECISIONS = ("fp32", "int8", "int4")
REFERENCE = "pytorch"
WARMUP_SECONDS = 2.0


# -- what is evaluated --------------------------------------------------------------------------------
@dataclass(frozen=True)
class Variant:
    name: str  # fp32 | int8 | int4, from the file name
    path: Path


def find_variants(model: str | Path) -> tuple[Variant, ...]:
    """The exported precisions beside `model`: X.onnx (fp32), X.int8.onnx, X.int4.onnx; any one names the set."""
    model = Path(model)
    if not model.is_file():
        raise ModelFileError(f"{model}: no such model file")
    if model.suffix != ".onnx":
        raise ModelFileError(f"{model}: expected an exported .onnx model")
    stem = model.name[: -len(".onnx")]
    for precision in PRECISIONS[1:]:
        if stem.endswith(f".{precision}"):
            stem = stem[: -len(precision) - 1]
    found = []
    for precision in PRECISIONS:
        path = model.with_name(f"{stem}.onnx" if precision == "fp32" else f"{stem}.{precision}.onnx")
        if path.is_file():
            found.append(Variant(precision, path))
    return tuple(found)


@dataclass(frozen=True)
class EvalConfig:
    """What each worker process builds once: the ONNX variants, and the reference when a checkpoint is given."""

    variants: tuple[Variant, ...]
    checkpoint: Path | None
    input_scale: float
    threads: int | None
    lm: Path | None = None  # with lm or beam: every variant (and the reference) is decoded by beam search
    beam: BeamSearchOptions | None = None

    @property
    def decoding(self) -> str:
        if self.lm is None and self.beam is None:
            return "greedy"
        o = self.beam or BeamSearchOptions()
        search = f"beam search (width {o.beam_width}, margin {o.beam_margin:g})"
        if self.lm is None:
            return f"{search}, no LM"
        return (f"{search} with LM {self.lm} (alpha {o.alpha:g}, beta {o.beta:g}, unk offset {o.unk_offset:g}"
                f"{'' if o.lookahead else ', no look-ahead'})")

    @property
    def baseline(self) -> str:
        """What deltas are measured against: the PyTorch reference, else fp32 ONNX, else the first variant."""
        if self.checkpoint is not None:
            return REFERENCE
        names = [v.name for v in self.variants]
        return "fp32" if "fp32" in names else names[0]

    @property
    def names(self) -> tuple[str, ...]:
        return ((REFERENCE,) if self.checkpoint is not None else ()) + tuple(v.name for v in self.variants)


@dataclass(frozen=True)
class UtteranceResult:
    """Everything kept about one utterance: texts, timings and the largest differences, no arrays."""

    index: int
    id: str
    audio: str
    duration: float
    transcript: str
    hypotheses: dict[str, str] = field(default_factory=dict)
    latency: dict[str, float] = field(default_factory=dict)  # seconds, end to end
    logprob_diff: dict[str, float | None] = field(default_factory=dict)  # max |Δ| vs the baseline, valid frames
    feature_diff: float | None = None  # max |numpy features − librosa features|
    error: str | None = None  # set when the audio could not be read: the utterance is skipped


# -- one worker ---------------------------------------------------------------------------------------
def _max_abs_diff(a: np.ndarray | None, b: np.ndarray | None) -> float | None:
    if a is None or b is None:
        return None
    if a.ndim == 2 and b.ndim == 2 and a.shape[0] != b.shape[0] and a.shape[-1] == b.shape[-1]:
        n = min(a.shape[0], b.shape[0])  # log-probs: compare the frames both have
        a, b = a[:n], b[:n]
    elif a.shape != b.shape:
        n = min(a.shape[-1], b.shape[-1])  # features: (F, T)
        a, b = a[..., :n], b[..., :n]
    if a.size == 0:
        return None
    return float(np.max(np.abs(a.astype(np.float64) - b.astype(np.float64))))


def _librosa_available() -> bool:
    return importlib.util.find_spec("librosa") is not None and importlib.util.find_spec("scipy") is not None


class Evaluator:
    """The variants (and reference) of one process, warmed up; `evaluate` runs them all on one utterance."""

    def __init__(self, config: EvalConfig, transcribers: dict[str, Transcriber] | None = None):
        self.config = config
        if transcribers is None:
            lm = LanguageModel.load(config.lm) if config.lm is not None else None
            options = SessionOptions(threads=config.threads)
            transcribers = {v.name: Transcriber(v.path, options, lm=lm, beam=config.beam) for v in config.variants}
        self.transcribers = transcribers
        self.reference = None
        if config.checkpoint is not None:
            from .reference import ReferencePipeline

            self.reference = ReferencePipeline(config.checkpoint, config.input_scale, config.threads)
        self.baseline = config.baseline
        self.info = next(iter(self.transcribers.values())).info
        self.librosa = _librosa_available()
        self._warm_up()

    def _warm_up(self) -> None:
        rate = self.info.sample_rate
        noise = 0.1 * np.random.default_rng(0).standard_normal(int(WARMUP_SECONDS * rate))
        for transcriber in self.transcribers.values():
            transcriber.transcribe(noise, sample_rate=rate)
        if self.reference is not None:
            self.reference.run(self.reference.features(noise))

    def _run_variant(self, transcriber: Transcriber, path: Path):
        start = time.perf_counter()
        feats = transcriber.features(path)
        log_probs = None
        if feats.values is None:  # shorter than the receptive field: no output frames
            text = ""
        else:
            log_probs = transcriber.utterance_log_probs(feats.values)
            text = transcriber.decode(log_probs).text
        return text, time.perf_counter() - start, log_probs, feats

    def evaluate(self, index: int, utterance: Utterance) -> UtteranceResult:
        hypotheses, latency, log_probs = {}, {}, {}
        features = None
        duration = utterance.duration or 0.0
        try:
            for name, transcriber in self.transcribers.items():
                text, seconds, lp, feats = self._run_variant(transcriber, utterance.audio)
                hypotheses[name], latency[name], log_probs[name] = text, seconds, lp
                features = feats.values if features is None else features
                duration = feats.duration
        except AudioError as e:
            return UtteranceResult(index, utterance.id, str(utterance.audio), duration, utterance.transcript, error=str(e))

        feature_diff = None
        if self.reference is not None:
            start = time.perf_counter()
            try:
                if features is None:
                    text, lp = "", None
                else:
                    result = self.reference.transcribe(utterance.audio)
                    text, lp = result.text, result.log_probs
                    if self.config.decoding != "greedy":  # the reference's own decoder is greedy
                        text = next(iter(self.transcribers.values())).decode(lp).text
                    feature_diff = _max_abs_diff(features, result.features)
            except (RuntimeError, ValueError, OSError) as e:
                return UtteranceResult(index, utterance.id, str(utterance.audio), duration, utterance.transcript,
                                       error=f"{utterance.audio}: the reference pipeline cannot read it ({e})")
            hypotheses[REFERENCE], latency[REFERENCE], log_probs[REFERENCE] = text, time.perf_counter() - start, lp
            hypotheses = {REFERENCE: hypotheses.pop(REFERENCE), **hypotheses}
            latency = {REFERENCE: latency.pop(REFERENCE), **latency}
        elif self.librosa and features is not None:
            from .reference import librosa_features

            first = next(iter(self.transcribers.values()))
            samples = first.load(utterance.audio)
            info = first.info
            feature_diff = _max_abs_diff(features, librosa_features(samples, info.n_fft, info.hop_length, info.input_scale))

        base = log_probs[self.baseline]
        diffs = {name: _max_abs_diff(lp, base) for name, lp in log_probs.items() if name != self.baseline}
        return UtteranceResult(index, utterance.id, str(utterance.audio), duration, utterance.transcript,
                               hypotheses, latency, diffs, feature_diff)


_WORKER: dict = {}


def _init_worker(config: EvalConfig) -> None:
    _WORKER["config"] = config


def _work(item: tuple[int, Utterance]) -> UtteranceResult:
    # Built on the first task rather than in the initializer, so a construction error reaches the parent
    # as itself instead of as a BrokenProcessPool.
    if "evaluator" not in _WORKER:
        _WORKER["evaluator"] = Evaluator(_WORKER["config"])
    return _WORKER["evaluator"].evaluate(*item)


def evaluate_all(
    utterances: Sequence[Utterance], config: EvalConfig, workers: int = 1, evaluator: Evaluator | None = None
) -> Iterator[UtteranceResult]:
    """Results in dataset order. With several workers each process builds its own models once; only a
    window of 2 × workers utterances is in flight, so memory does not grow with the dataset."""
    if workers < 1:
        raise ValueError(f"workers must be at least 1, got {workers}")
    if workers == 1:
        evaluator = evaluator or Evaluator(config)
        for index, utterance in enumerate(utterances):
            yield evaluator.evaluate(index, utterance)
        return
    items = iter(enumerate(utterances))
    pool = ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("spawn"),
                               initializer=_init_worker, initargs=(config,))
    try:
        pending = deque(pool.submit(_work, item) for _, item in zip(range(2 * workers), items))
        while pending:
            try:
                result = pending.popleft().result()
            except BrokenProcessPool as e:
                raise Ds2OnnxError(f"a worker process died ({e}); try fewer --workers or check memory") from e
            following = next(items, None)
            if following is not None:
                pending.append(pool.submit(_work, following))
            yield result
    finally:
        pool.shutdown(wait=True, cancel_futures=True)


# -- the report ---------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Difference:
    id: str
    baseline: str
    variant: str


@dataclass(frozen=True)
class VariantReport:
    name: str
    path: str
    precision: str  # from the model's metadata ("fp32" for the reference)
    is_baseline: bool
    errors: ErrorCounts
    wer_delta: float | None  # WER − baseline WER, None for the baseline itself
    wer_delta_se: float | None  # its standard error over the utterances (paired; metrics.wer_delta_se)
    differing: tuple[Difference, ...]  # utterances whose transcript differs from the baseline's
    max_logprob_diff: float | None  # vs the baseline, over all utterances
    latency: LatencySummary

    @property
    def wer(self) -> float:
        return self.errors.wer

    @property
    def cer(self) -> float:
        return self.errors.cer

    @property
    def is_onnx(self) -> bool:
        return self.name != REFERENCE


@dataclass(frozen=True)
class Skipped:
    id: str
    audio: str
    reason: str


@dataclass(frozen=True)
class ValidationReport:
    dataset: str
    dataset_path: str
    dataset_kind: str
    listed: int  # utterances in the dataset (after --limit)
    evaluated: int
    skipped: tuple[Skipped, ...]
    baseline: str
    input_scale: float
    decoding: str  # "greedy", or the beam search and LM settings
    variants: tuple[VariantReport, ...]
    feature_max_diff: float | None
    machine: dict
    utterances: tuple[UtteranceResult, ...]
    wall_seconds: float  # the whole run, all workers

    def variant(self, name: str) -> VariantReport:
        return next(v for v in self.variants if v.name == name)

    def to_json(self) -> dict:
        variants = []
        for v in self.variants:
            variants.append({
                "name": v.name, "path": v.path, "precision": v.precision, "is_baseline": v.is_baseline,
                "wer": v.wer, "cer": v.cer, **asdict(v.errors), "wer_delta": v.wer_delta,
                "wer_delta_se": v.wer_delta_se,
                "max_logprob_diff": v.max_logprob_diff,
                "differing": [asdict(d) for d in v.differing],
                "latency": asdict(v.latency),
            })
        return {
            "dataset": {"name": self.dataset, "path": self.dataset_path, "kind": self.dataset_kind,
                        "listed": self.listed, "evaluated": self.evaluated, "skipped": len(self.skipped)},
            "baseline": self.baseline,
            "input_scale": self.input_scale,
            "decoding": self.decoding,
            "latency_scope": f"end to end per utterance: audio load + features + model + decode ({self.decoding}), batch 1",
            "variants": variants,
            "feature_max_diff": self.feature_max_diff,
            "machine": self.machine,
            "wall_seconds": self.wall_seconds,
            "skipped": [asdict(s) for s in self.skipped],
            "utterances": [
                {k: v for k, v in asdict(u).items() if k not in ("index", "error")} for u in self.utterances
            ],
        }


class _Tally:
    """Running totals over the stream of results, in dataset order."""

    def __init__(self, names: Sequence[str], baseline: str):
        self.names, self.baseline = list(names), baseline
        self.counts = {n: ErrorCounts() for n in names}
        self.latency: dict[str, list[float]] = {n: [] for n in names}
        self.durations: list[float] = []
        self.differing: dict[str, list[Difference]] = {n: [] for n in names}
        self.edit_differences: dict[str, list[int]] = {n: [] for n in names}  # word edits − the baseline's
        self.max_lp: dict[str, float | None] = {n: None for n in names}
        self.max_feature: float | None = None
        self.kept: list[UtteranceResult] = []
        self.skipped: list[Skipped] = []

    def add(self, r: UtteranceResult) -> None:
        if r.error is not None:
            self.skipped.append(Skipped(r.id, r.audio, r.error))
            return
        self.kept.append(r)
        self.durations.append(r.duration)
        base = r.hypotheses[self.baseline]
        counts = {n: ErrorCounts.of(r.transcript, r.hypotheses[n]) for n in self.names}
        for n in self.names:
            hyp = r.hypotheses[n]
            self.counts[n] = self.counts[n] + counts[n]
            self.edit_differences[n].append(counts[n].word_edits - counts[self.baseline].word_edits)
            self.latency[n].append(r.latency[n])
            if n != self.baseline and hyp != base:
                self.differing[n].append(Difference(r.id, base, hyp))
            d = r.logprob_diff.get(n)
            if d is not None:
                self.max_lp[n] = d if self.max_lp[n] is None else max(self.max_lp[n], d)
        if r.feature_diff is not None:
            self.max_feature = r.feature_diff if self.max_feature is None else max(self.max_feature, r.feature_diff)

    def variants(self, paths: dict[str, str], precisions: dict[str, str]) -> tuple[VariantReport, ...]:
        base_wer = self.counts[self.baseline].wer
        return tuple(
            VariantReport(
                n, paths[n], precisions[n], n == self.baseline, self.counts[n],
                None if n == self.baseline else self.counts[n].wer - base_wer,
                None if n == self.baseline else wer_delta_se(self.edit_differences[n], self.counts[n].words),
                tuple(self.differing[n]), self.max_lp[n],
                LatencySummary.of(self.latency[n], self.durations),
            )
            for n in self.names
        )


def _check_reference_dependencies() -> None:
    missing = [m for m in ("torch", "librosa", "scipy") if importlib.util.find_spec(m) is None]
    if missing:
        raise Ds2OnnxError(
            f"--checkpoint needs {', '.join(missing)} for the PyTorch reference: pip install 'ds2-onnx[export,validate]'"
        )


def open_variants(
    model: str | Path, threads: int | None, lm: LanguageModel | None = None, beam: BeamSearchOptions | None = None
) -> tuple[tuple[Variant, ...], dict[str, Transcriber]]:
    variants = find_variants(model)
    transcribers = {v.name: Transcriber(v.path, SessionOptions(threads=threads), lm=lm, beam=beam) for v in variants}
    first = next(iter(transcribers.values()))
    for name, t in transcribers.items():
        if (t.info.labels, t.info.sample_rate, t.info.input_scale) != (first.info.labels, first.info.sample_rate, first.info.input_scale):
            raise ModelFileError(
                f"{t.model_path} ({name}) was exported with other labels, sample rate or input scale than "
                f"{first.model_path}; variants beside each other must come from one export"
            )
    return variants, transcribers


def run_validation(
    dataset: str | Path,
    model: str | Path,
    checkpoint: str | Path | None = None,
    limit: int | None = None,
    workers: int = 1,
    threads: int | None = None,
    data_dir: str | Path | None = None,
    lm: str | Path | None = None,
    beam: BeamSearchOptions | None = None,
    on_start: Callable[[Dataset, EvalConfig], None] = lambda dataset, config: None,
    on_result: Callable[[UtteranceResult], None] = lambda result: None,
) -> ValidationReport:
    """Evaluate every variant beside `model` (and the checkpoint as reference) on `dataset`, decoding greedily, or
    with beam search (and the ARPA `lm`) when `lm` or `beam` is given."""
    if workers < 1:
        raise ValueError(f"workers must be at least 1, got {workers}")
    if limit is not None and limit < 1:
        raise ValueError(f"limit must be at least 1, got {limit}")
    if threads is None and workers > 1:
        threads = max(1, default_threads() // workers)  # don't oversubscribe the cores
    if checkpoint is not None:
        checkpoint = Path(checkpoint)
        if not checkpoint.is_file():
            raise CheckpointError(f"{checkpoint}: no such checkpoint file")
        _check_reference_dependencies()

    lm_model = None
    if lm is not None:
        lm = Path(lm)
        lm_model = LanguageModel.load(lm)  # fail before any model runs; worker processes load their own
    variants, transcribers = open_variants(model, threads, lm_model, beam)
    info = next(iter(transcribers.values())).info
    precisions = {n: t.info.precision for n, t in transcribers.items()}
    data = load_dataset(dataset, info.labels, info.blank_index, data_dir)
    utterances = data.utterances[:limit] if limit else data.utterances
    config = EvalConfig(variants, checkpoint, info.input_scale, threads, lm, beam)

    evaluator = None
    if workers == 1:
        evaluator = Evaluator(config, transcribers)
    del transcribers, lm_model  # with several workers, the parent keeps no model
    on_start(Dataset(data.name, data.path, data.kind, tuple(utterances)), config)

    tally = _Tally(config.names, config.baseline)
    start = time.perf_counter()
    for result in evaluate_all(utterances, config, workers, evaluator):
        tally.add(result)
        on_result(result)
    wall = time.perf_counter() - start

    paths = {v.name: str(v.path) for v in variants}
    if checkpoint is not None:
        paths[REFERENCE], precisions[REFERENCE] = str(checkpoint), "fp32"
    return ValidationReport(
        dataset=data.name, dataset_path=str(data.path), dataset_kind=data.kind, listed=len(utterances),
        evaluated=len(tally.kept), skipped=tuple(tally.skipped), baseline=config.baseline,
        input_scale=info.input_scale, decoding=config.decoding, variants=tally.variants(paths, precisions),
        feature_max_diff=tally.max_feature,
        machine=machine_info(threads or default_threads(), workers),
        utterances=tuple(tally.kept), wall_seconds=wall,
    )


# -- gates --------------------------------------------------------------------------------------------
def _se_text(se: float | None) -> str:
    return "" if se is None else f", standard error {se:.2f}"


def check_gates(report: ValidationReport, max_wer_delta: float | None = None, max_p99: float | None = None) -> list[str]:
    """One message per failed gate: WER above the baseline's by more than `max_wer_delta` points, or an
    ONNX variant's p99 latency above `max_p99` seconds."""
    failures = []
    for v in report.variants:
        if max_wer_delta is not None and v.wer_delta is not None and v.wer_delta > max_wer_delta:
            failures.append(
                f"{v.name}: WER {v.wer:.2f} vs {report.baseline} WER {report.variant(report.baseline).wer:.2f} "
                f"(Δ {v.wer_delta:+.2f} points{_se_text(v.wer_delta_se)}) exceeds --max-wer-delta {max_wer_delta:g}"
            )
        if max_p99 is not None and v.is_onnx and v.latency.utterances and v.latency.p99 > max_p99:
            failures.append(f"{v.name}: p99 latency {v.latency.p99:.3f} s exceeds --max-p99 {max_p99:g} s")
    return failures


# -- outputs ------------------------------------------------------------------------------------------
def _finite(value):
    if isinstance(value, float) and not np.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_finite(v) for v in value]
    return value


def write_json(payload: dict, path: str | Path) -> Path:
    """Write JSON atomically: a temporary file beside `path`, renamed over it once complete."""
    path = Path(path)
    with atomic_path(path) as tmp, open(tmp, "w", encoding="utf-8") as f:
        json.dump(_finite(payload), f, indent=2, allow_nan=False)
        f.write("\n")
    return path


def summary_lines(report: ValidationReport) -> Iterable[str]:
    """Plain-text facts printed under the table."""
    yield (f"dataset {report.dataset_path} ({report.dataset_kind}, {report.listed} utterances listed); "
           f"input scale {report.input_scale:g}; wall time {report.wall_seconds:.1f} s")
    yield f"decoding: {report.decoding}"
    if report.feature_max_diff is not None:
        yield f"feature parity: max |numpy − librosa| = {report.feature_max_diff:.2e}"
    m = report.machine
    yield (f"latency end to end (load + features + model + decode), batch 1, {m['threads_per_worker']} thread(s) × "
           f"{m['workers']} worker(s) on {m['cpu']}")
