"""CTC prefix beam search: exact against brute force over every path, equal to greedy on peaked outputs, a
language model that turns an acoustically likelier misspelling into the word it knows, LM look-ahead that keeps a
likely word in a narrow beam, and a score margin that prunes exactly the hypotheses it should."""

import itertools
import math

import numpy as np
import pytest

from ds2_onnx.runtime.beam import BeamSearchDecoder, BeamSearchOptions
from ds2_onnx.runtime.decoding import decode
from ds2_onnx.runtime.lm import estimate

SMALL = "_AB "
LABELS = "_'ABCDEFGHIJKLMNOPQRSTUVWXYZ "
FRAME = 0.02


def log_softmax(x):
    x = x - x.max(axis=-1, keepdims=True)
    return x - np.log(np.exp(x).sum(axis=-1, keepdims=True))


def brute_force_best(log_probs, labels):
    """The most probable text, summing every frame path that collapses to it (spaces normalised as text)."""
    totals = {}
    for path in itertools.product(range(len(labels)), repeat=log_probs.shape[0]):
        collapsed = [c for i, c in enumerate(path) if c != 0 and (i == 0 or c != path[i - 1])]
        text = " ".join("".join(labels[c] for c in collapsed).split())
        p = math.exp(sum(log_probs[t, c] for t, c in enumerate(path)))
        totals[text] = totals.get(text, 0.0) + p
    return max(totals, key=totals.get)


@pytest.mark.parametrize("seed", range(12))
def test_unpruned_beam_search_finds_the_most_probable_text(seed):
    rng = np.random.default_rng(seed)
    log_probs = log_softmax(rng.normal(0, 1.5, size=(5, len(SMALL))))
    decoder = BeamSearchDecoder(SMALL, 0, options=BeamSearchOptions(beam_width=10_000, prune_log_prob=-math.inf,
                                                                     beam_margin=math.inf))
    assert decoder.decode(log_probs, FRAME).text == brute_force_best(log_probs, SMALL)


def test_most_probable_text_can_differ_from_the_best_path():
    # best path: blank, blank (0.36); but "A" has three paths: AA, A_, _A (0.16 + 0.24 + 0.24)
    log_probs = np.log(np.array([[0.6, 0.4, 1e-9, 1e-9]] * 2))
    assert decode(log_probs, SMALL, 0, FRAME).text == ""
    beam = BeamSearchDecoder(SMALL, 0, options=BeamSearchOptions(beam_width=100)).decode(log_probs, FRAME)
    assert beam.text == "A" == brute_force_best(log_probs, SMALL)


def frames_for(text, rng, confusions=None):
    """Peaked log-probs spelling `text` with a blank between characters; confusions[i] = {label: prob} replaces
    the distribution of the i-th character's frame."""
    rows = []
    for i, ch in enumerate(text):
        probs = np.full(len(LABELS), 1e-4)
        for label, p in (confusions or {}).get(i, {ch: 0.97}).items():
            probs[LABELS.index(label)] = p
        rows.append(probs)
        blank = np.full(len(LABELS), 1e-4)
        blank[0] = 0.97
        rows.append(blank)
    probs = np.array(rows) * rng.uniform(0.9, 1.1, size=(len(rows), len(LABELS)))
    return np.log(probs / probs.sum(axis=1, keepdims=True))


def test_beam_search_without_lm_equals_greedy_on_peaked_outputs():
    rng = np.random.default_rng(0)
    log_probs = frames_for("THE CAT SAT ON THE MAT", rng)
    greedy = decode(log_probs, LABELS, 0, FRAME)
    beam = BeamSearchDecoder(LABELS, 0).decode(log_probs, FRAME)
    assert beam == greedy  # text, character times and word times


LM_TEXT = [s.split() for s in ("THE CAT SAT ON THE MAT", "THE CAT RAN", "A CAT SAT", "THE DOG SAT ON THE LOG",
                               "THE CAT SAT")]


def test_language_model_corrects_an_out_of_vocabulary_spelling():
    rng = np.random.default_rng(1)
    # frame of the C in CAT: K 0.55, C 0.40
    log_probs = frames_for("THE CAT SAT", rng, confusions={4: {"K": 0.55, "C": 0.40, "_": 0.05}})
    assert decode(log_probs, LABELS, 0, FRAME).text == "THE KAT SAT"
    lm = estimate(LM_TEXT, 3)
    fused = BeamSearchDecoder(LABELS, 0, lm, BeamSearchOptions(alpha=0.8, beta=1.0, unk_offset=0.0)).decode(log_probs, FRAME)
    assert fused.text == "THE CAT SAT"
    assert [w.text for w in fused.words] == ["THE", "CAT", "SAT"]
    assert [round(w.start / FRAME) for w in fused.words] == [0, 8, 16]  # two frames per character
    no_weight = BeamSearchOptions(alpha=0.0, beta=0.0, unk_offset=0.0)
    assert BeamSearchDecoder(LABELS, 0, lm, no_weight).decode(log_probs, FRAME).text == "THE KAT SAT"
    # the default allows vocabulary words only, even with the LM's probabilities switched off
    lexicon_only = BeamSearchOptions(alpha=0.0, beta=0.0)
    assert BeamSearchDecoder(LABELS, 0, lm, lexicon_only).decode(log_probs, FRAME).text == "THE CAT SAT"


def test_word_bonus_trades_against_the_lm_cost_of_a_word():
    rng = np.random.default_rng(2)
    # "THE CAT" or "THECAT": the space frame is ambiguous with a blank
    log_probs = frames_for("THE CAT", rng, confusions={3: {" ": 0.45, "_": 0.55}})
    assert decode(log_probs, LABELS, 0, FRAME).text == "THECAT"
    lm = estimate(LM_TEXT, 3)
    assert BeamSearchDecoder(LABELS, 0, lm, BeamSearchOptions(alpha=0.5, beta=2.0, unk_offset=0.0)).decode(log_probs, FRAME).text == "THE CAT"


def test_unk_offset_keeps_out_of_vocabulary_words_out():
    rng = np.random.default_rng(3)
    lm = estimate(LM_TEXT, 3)
    # the C of CAT heard as K with 0.90: alpha * ln p(<unk>) alone does not outweigh it, an unk offset does
    log_probs = frames_for("THE CAT SAT", rng, confusions={4: {"K": 0.90, "C": 0.08, "_": 0.02}})

    def text(offset):
        options = BeamSearchOptions(alpha=0.3, beta=1.0, unk_offset=offset)  # the default offset is -inf
        return BeamSearchDecoder(LABELS, 0, lm, options).decode(log_probs, FRAME).text

    assert text(0.0) == "THE KAT SAT"
    assert text(-20.0) == text(-math.inf) == "THE CAT SAT"
    # an out-of-vocabulary word is charged the offset once, whether it ends the utterance or not
    for spoken in ("THE KAT", "KAT SAT"):
        frames = frames_for(spoken, rng)
        free = BeamSearchDecoder(LABELS, 0, lm, BeamSearchOptions(alpha=0.3, beta=1.0, unk_offset=0.0)).decode(frames, FRAME).text
        strict = BeamSearchDecoder(LABELS, 0, lm, BeamSearchOptions(alpha=0.3, beta=1.0, unk_offset=-math.inf))
        assert free == spoken and all(w in lm for w in strict.decode(frames, FRAME).text.split())


def test_lookahead_keeps_a_likely_word_that_a_narrow_beam_would_lose():
    rng = np.random.default_rng(4)
    # the C of CAT heard as D with 0.55: DAT... starts the vocabulary word DATA, so without look-ahead a beam of one
    # hypothesis follows D (both prefixes cost nothing until their word ends) and is left with a non-word; with it,
    # "THE C" is scored as CAT and "THE D" as DATA (Kneser-Ney unigrams: CAT follows five words, DATA one)
    lm = estimate([s.split() for s in ("THE CAT SAT", "A CAT SAT", "MY CAT SAT", "HER CAT RAN", "HIS CAT SAT",
                                       "THE DATA SAT")], 3)
    log_probs = frames_for("THE CAT SAT", rng, confusions={4: {"D": 0.55, "C": 0.40, "_": 0.05}})

    def text(width, lookahead):
        options = BeamSearchOptions(beam_width=width, alpha=0.8, beta=0.0, lookahead=lookahead)
        return BeamSearchDecoder(LABELS, 0, lm, options).decode(log_probs, FRAME).text

    assert text(1, lookahead=False) != "THE CAT SAT"
    assert text(1, lookahead=True) == "THE CAT SAT"
    assert text(8, lookahead=False) == text(8, lookahead=True) == "THE CAT SAT"  # a wider beam keeps both


@pytest.mark.parametrize("seed", range(6))
def test_lookahead_changes_what_the_beam_keeps_not_how_the_result_is_scored(seed):
    # with nothing pruned, every hypothesis reaches the end and is scored by the LM in full either way
    labels = "_ACST "
    lm = estimate([s.split() for s in ("A CAT SAT", "A CAT", "CATS SAT", "AS A CAT SAT", "A CAST")], 3)
    log_probs = log_softmax(np.random.default_rng(seed).normal(0, 1.0, size=(6, len(labels))))
    texts = []
    for lookahead in (False, True):
        options = BeamSearchOptions(beam_width=100_000, prune_log_prob=-math.inf, beam_margin=math.inf, alpha=0.8,
                                    beta=1.0, unk_offset=-5.0, lookahead=lookahead)
        texts.append(BeamSearchDecoder(labels, 0, lm, options).decode(log_probs, FRAME).text)
    assert texts[0] == texts[1]
    # (a text, not the empty transcript on which any two decoders agree)
    assert texts[0] != ""


@pytest.mark.parametrize("seed", range(6))
def test_beam_margin_prunes_hypotheses_below_the_best(seed):
    rng = np.random.default_rng(seed)
    lm = estimate(LM_TEXT, 3)
    log_probs = log_softmax(rng.normal(0, 1.5, size=(30, len(LABELS))))

    def decoded(width, margin, model):
        options = BeamSearchOptions(beam_width=width, beam_margin=margin, unk_offset=-5.0)
        return BeamSearchDecoder(LABELS, 0, model, options).decode(log_probs, FRAME)

    for model in (None, lm):
        # a margin too small for any second hypothesis leaves the best one only: a beam of width 1
        assert decoded(64, 1e-9, model) == decoded(1, math.inf, model)
        # a margin wider than any score gap leaves the beam as wide as its width
        assert decoded(16, 1e6, model) == decoded(16, math.inf, model)


def test_empty_and_silent_inputs():
    decoder = BeamSearchDecoder(LABELS, 0, estimate(LM_TEXT, 2))
    assert decoder.decode(np.zeros((0, len(LABELS))), FRAME).text == ""
    silence = np.log(np.full((20, len(LABELS)), 1e-5))
    silence[:, 0] = np.log(1 - 1e-5 * (len(LABELS) - 1))
    assert decoder.decode(silence, FRAME).text == ""


def test_options_are_checked():
    with pytest.raises(ValueError, match="beam width"):
        BeamSearchOptions(beam_width=0)
    with pytest.raises(ValueError, match="alpha"):
        BeamSearchOptions(alpha=-1)
    for margin in (0.0, -1.0, math.nan):
        with pytest.raises(ValueError, match="beam margin"):
            BeamSearchOptions(beam_margin=margin)
    for offset in (0.5, math.nan, math.inf):
        with pytest.raises(ValueError, match="unk_offset"):
            BeamSearchOptions(unk_offset=offset)
    assert BeamSearchOptions(unk_offset=-math.inf).oov_score(0) == 0.0  # no out-of-vocabulary word: no charge
    with pytest.raises(ValueError, match="no space"):
        BeamSearchDecoder("_AB", 0)
