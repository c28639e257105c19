"""Greedy CTC decoding on hand-made log-probs."""

import numpy as np
import pytest

from ds2_onnx.runtime.decoding import decode, decode_batch, greedy_path
from ds2_onnx.validation.reference import greedy_decode_reference

LABELS = "_'ABCDEFGHIJKLMNOPQRSTUVWXYZ "
FRAME = 0.02


def onehot(text: str) -> np.ndarray:
    """Frames whose argmax spells `text` (one frame per character, '_' for blank)."""
    ids = [LABELS.index(c) for c in text]
    lp = np.full((len(ids), len(LABELS)), -10.0, dtype=np.float32)
    lp[np.arange(len(ids)), ids] = 0.0
    return lp


@pytest.mark.parametrize(
    "frames, expected",
    [
        ("A_A", "AA"),
        ("AA", "A"),
        ("AAA__BB_B", "ABB"),
        ("__HH_E_LL_LLO__", "HELLO"),
        ("  HI  THERE ", "HI THERE"),
        ("DON''T", "DON'T"),
        ("____", ""),
        ("", ""),
    ],
)
def test_greedy_decoding(frames, expected):
    decoded = decode(onehot(frames), LABELS, 0, FRAME)
    assert decoded.text == expected
    assert greedy_decode_reference([LABELS.index(c) for c in frames], LABELS) == expected


def test_offsets_of_characters_and_words():
    d = decode(onehot("_HH_I__ _YO_U"), LABELS, 0, FRAME)
    assert d.text == "HI YOU"
    assert [c.char for c in d.chars] == list("HI YOU")
    assert [round(c.time / FRAME) for c in d.chars] == [1, 4, 7, 9, 10, 12]
    assert [(w.text, round(w.start / FRAME), round(w.end / FRAME)) for w in d.words] == [("HI", 1, 5), ("YOU", 9, 13)]


def test_vectorised_path_equals_loop_decoder_on_random_scores():
    rng = np.random.default_rng(0)
    for _ in range(50):
        lp = rng.standard_normal((rng.integers(1, 60), len(LABELS))).astype(np.float32)
        lp[:, 0] += 1.0  # blanks common, as in real CTC output
        assert decode(lp, LABELS, 0, FRAME).text == greedy_decode_reference(lp.argmax(-1).tolist(), LABELS)


def test_batch_decoding_cuts_each_utterance_to_its_length():
    a, b = onehot("HELLO_"), onehot("HI____")
    batch = np.stack([a, b])
    batch[1, 2:, :] = onehot("ZZZZ")  # padding frames beyond length 2 must be ignored
    texts = [d.text for d in decode_batch(batch, np.array([6, 2]), LABELS, 0, FRAME)]
    assert texts == ["HELO", "HI"]


def test_greedy_path_returns_frame_indices():
    ids, frames = greedy_path(onehot("_AA_B"), 0)
    assert ids.tolist() == [2, 3] and frames.tolist() == [1, 4]
