"""WER/CER arithmetic on hand-made cases, corpus-level aggregation, latency summaries and machine info."""

import math

import pytest

from ds2_onnx.validation.latency import LatencySummary, cpu_model, machine_info
from ds2_onnx.validation.metrics import (
    ErrorCounts, char_edits, corpus_cer, corpus_counts, corpus_wer, rate, wer_delta_se, word_edits,
)


def test_word_edits_substitution_and_deletion():
    assert word_edits("A B C D", "A X C") == (2, 4)
    assert ErrorCounts.of("A B C D", "A X C").wer == 50.0


def test_word_edits_insertion_and_whitespace():
    assert word_edits("A B", "A  B   C") == (1, 2)
    assert word_edits("A B", "") == (2, 2)


def test_wer_delta_standard_error_by_hand():
    # differences (1, -1, 0, 2): mean 0.5, sample variance (0.25 + 2.25 + 0.25 + 2.25) / 3 = 5/3;
    # SE of the summed difference sqrt(4 * 5/3) = 2.582 edits, over 50 words = 5.164 WER points
    assert wer_delta_se([1, -1, 0, 2], 50) == pytest.approx(100 * math.sqrt(4 * 5 / 3) / 50)
    assert wer_delta_se([0, 0, 0], 10) == 0.0  # same edits everywhere: no uncertainty
    assert wer_delta_se([3, 3, 3], 10) == 0.0  # a constant shift is certain too (the mean, not the spread)
    assert wer_delta_se([1], 10) is None and wer_delta_se([], 10) is None and wer_delta_se([1, 2], 0) is None
    # more utterances with the same per-utterance spread: the SE of the *rate* shrinks as 1/sqrt(n)
    small, large = wer_delta_se([1, -1] * 10, 200), wer_delta_se([1, -1] * 1000, 20000)
    assert large == pytest.approx(small / 10, rel=0.03)  # (up to the n / (n - 1) of the sample variance)


def test_cer_counts_spaces():
    # dropping the space is one edit out of five reference characters (spaces included)
    assert char_edits("AB CD", "ABCD") == (1, 5)
    assert ErrorCounts.of("AB CD", "ABCD").cer == 20.0
    assert ErrorCounts.of("AB CD", "AB CD").cer == 0.0


def test_corpus_level_is_not_a_mean_of_utterance_rates():
    refs = ["A", "A B C D E F G H I J"]
    hyps = ["B", "A B C D E F G H I J"]
    mean_of_rates = (100.0 + 0.0) / 2
    assert corpus_wer(refs, hyps) == pytest.approx(100.0 / 11)
    assert corpus_wer(refs, hyps) != pytest.approx(mean_of_rates)
    # 1 char edit over 1 + 19 reference characters
    assert corpus_cer(refs, hyps) == pytest.approx(100.0 / 20)


def test_counts_add_up():
    total = ErrorCounts.of("A B C D", "A X C") + ErrorCounts.of("E F", "E F G")
    assert (total.word_edits, total.words) == (3, 6)
    assert total.wer == 50.0
    assert corpus_counts(["A B C D", "E F"], ["A X C", "E F G"]) == total


def test_empty_references():
    assert rate(0, 0) == 0.0
    assert math.isinf(rate(2, 0))
    assert corpus_wer([], []) == 0.0


def test_mismatched_lengths_rejected():
    with pytest.raises(ValueError, match="2 references but 1 hypotheses"):
        corpus_counts(["A", "B"], ["A"])


def test_latency_summary_percentiles_and_rtf():
    latencies = [float(i) for i in range(1, 101)]
    durations = [10.0] * 100
    s = LatencySummary.of(latencies, durations)
    assert s.utterances == 100
    assert s.p50 == pytest.approx(50.5)
    assert s.p90 == pytest.approx(90.1)
    assert s.p99 == pytest.approx(99.01)
    assert s.mean == pytest.approx(50.5) and s.max == 100.0
    assert s.mean_rtf == pytest.approx(5.05)
    assert s.audio_seconds == 1000.0 and s.wall_seconds == pytest.approx(5050.0)


def test_latency_summary_of_nothing():
    assert LatencySummary.of([], []).utterances == 0
    with pytest.raises(ValueError):
        LatencySummary.of([1.0], [])


def test_machine_info_records_versions_and_threads():
    info = machine_info(threads=3, workers=2)
    assert info["cpu"] == cpu_model() and info["cpu"]
    assert info["threads_per_worker"] == 3 and info["workers"] == 2
    assert info["logical_cores"] >= 1 and info["usable_cores"] >= 1
    import numpy
    import onnxruntime

    assert info["numpy"] == numpy.__version__
    assert info["onnxruntime"] == onnxruntime.__version__
    assert info["python"].count(".") == 2
