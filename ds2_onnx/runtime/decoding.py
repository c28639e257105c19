"""Greedy CTC decoding with character and word time offsets, vectorised with numpy (beam search: beam.py)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Char:
    """One emitted label and the time (seconds from the start of the audio) of the frame that emitted it."""

    char: str
    time: float


@dataclass(frozen=True)
class Word:
    text: str
    start: float
    end: float


@dataclass(frozen=True)
class Decoded:
    text: str
    chars: tuple[Char, ...]
    words: tuple[Word, ...]


def greedy_path(log_probs: np.ndarray, blank: int) -> tuple[np.ndarray, np.ndarray]:
    """Best-path collapse of (T, C) scores: (label ids, frame indices) after merging repeats and dropping blanks.

    Repeats are merged on the raw frame sequence, so "A A" with a blank between stays two A's.
    """
    ids = np.asarray(log_probs).argmax(axis=-1)
    if ids.size == 0:
        return ids, ids
    keep = ids != blank
    keep[1:] &= ids[1:] != ids[:-1]
    frames = np.flatnonzero(keep)
    return ids[frames], frames


def decode(log_probs: np.ndarray, labels: str, blank: int, frame_duration: float) -> Decoded:
    """Greedy transcript of one utterance's valid (T, C) log-probs, as the reference GreedyDecoder gives it."""
    ids, frames = greedy_path(log_probs, blank)
    return from_path(ids, frames, labels, frame_duration)


def from_path(ids: np.ndarray, frames: np.ndarray, labels: str, frame_duration: float) -> Decoded:
    """Text, character and word timings from collapsed label ids and the frame that emitted each one.

    Leading and trailing spaces are dropped and runs of spaces split words, as the reference decoder's text has.
    """
    chars = [labels[i] for i in ids]
    raw = "".join(chars)
    text = raw.strip()
    lead = len(raw) - len(raw.lstrip())
    kept = range(lead, lead + len(text))
    char_offsets = tuple(Char(chars[i], float(frames[i]) * frame_duration) for i in kept)
    words = []
    start = None
    for i in kept:
        if chars[i] == " ":
            if start is not None:
                words.append(_word(chars, frames, start, i, frame_duration))
                start = None
        elif start is None:
            start = i
    if start is not None:
        words.append(_word(chars, frames, start, lead + len(text), frame_duration))
    return Decoded(text, char_offsets, tuple(words))


def _word(chars: list[str], frames: np.ndarray, start: int, stop: int, frame_duration: float) -> Word:
    return Word(
        "".join(chars[start:stop]),
        float(frames[start]) * frame_duration,
        float(frames[stop - 1] + 1) * frame_duration,
    )


def decode_batch(
    log_probs: np.ndarray, lengths: np.ndarray, labels: str, blank: int, frame_duration: float
) -> list[Decoded]:
    """Decode a right-padded (B, T, C) batch, each utterance cut to its valid length first."""
    return [decode(log_probs[b, : int(n)], labels, blank, frame_duration) for b, n in enumerate(lengths)]
