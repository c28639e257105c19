"""Word and character error rates at corpus level, as the MLPerf DeepSpeech2 reference reported them.

WER = Σ word edits / Σ reference words × 100 and CER = Σ character edits (spaces included) / Σ reference
characters × 100, summed over the corpus first: not a mean of per-utterance rates.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Iterable, Sequence


def _distance(reference, hypothesis) -> int:
    try:
        import Levenshtein
    except ImportError as e:  # pragma: no cover - depends on the environment
        raise RuntimeError("error rates need the levenshtein package: pip install 'ds2-onnx[validate]'") from e
    return Levenshtein.distance(reference, hypothesis)


def word_edits(reference: str, hypothesis: str) -> tuple[int, int]:
    """(word-level edit distance, reference word count) for one utterance."""
    ref, hyp = reference.split(), hypothesis.split()
    return _distance(ref, hyp), len(ref)


def char_edits(reference: str, hypothesis: str) -> tuple[int, int]:
    """(character-level edit distance including spaces, reference character count) for one utterance."""
    return _distance(reference, hypothesis), len(reference)


def rate(edits: int, total: int) -> float:
    """Edits per 100 reference units; an empty reference scores 0 if matched and infinity otherwise."""
    if total == 0:
        return 0.0 if edits == 0 else float("inf")
    return 100.0 * edits / total


@dataclass(frozen=True)
class ErrorCounts:
    """Summed edit counts of a corpus; add utterances with `+`."""

    word_edits: int = 0
    words: int = 0
    char_edits: int = 0
    chars: int = 0

    @classmethod
    def of(cls, reference: str, hypothesis: str) -> "ErrorCounts":
        we, w = word_edits(reference, hypothesis)
        ce, c = char_edits(reference, hypothesis)
        return cls(we, w, ce, c)

    def __add__(self, other: "ErrorCounts") -> "ErrorCounts":
        return ErrorCounts(
            self.word_edits + other.word_edits,
            self.words + other.words,
            self.char_edits + other.char_edits,
            self.chars + other.chars,
        )

    @property
    def wer(self) -> float:
        return rate(self.word_edits, self.words)

    @property
    def cer(self) -> float:
        return rate(self.char_edits, self.chars)


def corpus_counts(references: Iterable[str], hypotheses: Iterable[str]) -> ErrorCounts:
    references, hypotheses = list(references), list(hypotheses)
    if len(references) != len(hypotheses):
        raise ValueError(f"{len(references)} references but {len(hypotheses)} hypotheses")
    total = ErrorCounts()
    for ref, hyp in zip(references, hypotheses):
        total = total + ErrorCounts.of(ref, hyp)
    return total


def corpus_wer(references: Iterable[str], hypotheses: Iterable[str]) -> float:
    return corpus_counts(references, hypotheses).wer


def corpus_cer(references: Iterable[str], hypotheses: Iterable[str]) -> float:
    return corpus_counts(references, hypotheses).cer


def wer_delta_se(edit_differences: Sequence[int], words: int) -> float | None:
    """Standard error, in WER points, of the difference between two systems' corpus WERs on the same utterances.

    `edit_differences` holds, per utterance, the word edits of one system minus the other's; `words` is the
    corpus's reference word count. The utterances are the sample (paired: both systems read the same ones), so
    the SE is sqrt(n · var(d)) / words × 100 with the sample variance of d. A difference of a few SEs is one that
    another draw of utterances would likely also show; within one SE it is what the choice of utterances moves.
    None for fewer than two utterances or no reference words.
    """
    n = len(edit_differences)
    if n < 2 or words <= 0:
        return None
    mean = sum(edit_differences) / n
    variance = sum((d - mean) ** 2 for d in edit_differences) / (n - 1)
    return 100.0 * math.sqrt(n * variance) / words
