"""Word n-gram LMs: the Kneser-Ney estimate against a direct recursive formula, normalisation, ARPA round trips,
backoff scoring of a hand-written ARPA file, and clear errors on bad files and text."""

import gzip
import math
from collections import Counter

import pytest

from ds2_onnx.errors import LanguageModelError
from ds2_onnx.runtime.lm import BOS, EOS, UNK, LanguageModel, estimate, read_sentences, write_arpa

SENTENCES = [s.split() for s in (
    "THE CAT SAT ON THE MAT",
    "THE DOG SAT ON THE LOG",
    "A CAT RAN",
    "THE CAT RAN AWAY",
    "A DOG SAT",
    "THE MAT WAS RED",
    "THE DOG RAN ON THE MAT",
    "A RED CAT",
    "THE CAT SAT",
)]


def reference_kn(sentences, order):
    """Interpolated Kneser-Ney written directly as its recursive definition (no backoff form)."""
    raw = [Counter() for _ in range(order)]
    for words in sentences:
        padded = (BOS, *words, EOS)
        for n in range(1, order + 1):
            for i in range(len(padded) - n + 1):
                raw[n - 1][padded[i : i + n]] += 1
    del raw[0][(BOS,)]

    def count(gram):
        n = len(gram)
        if n == order or gram[0] == BOS:
            return raw[n - 1][gram]
        return sum(1 for g in raw[n] if g[1:] == gram)

    def discount(n):
        values = Counter(count(g) for g in raw[n - 1])
        return values[1] / (values[1] + 2 * values[2])

    unigrams = list(raw[0])

    def p(context, word):
        if not context:
            total = sum(count(g) for g in unigrams)
            d = discount(1)
            c = count((word,)) if (word,) in raw[0] else 0
            return max(c - d, 0) / total + d * len(unigrams) / total / (len(unigrams) + 1)
        n = len(context) + 1
        successors = [g for g in raw[n - 1] if g[:-1] == tuple(context)]
        if not successors:
            return p(context[1:], word)
        total = sum(count(g) for g in successors)
        d = discount(n)
        gram = (*context, word)
        c = count(gram) if gram in raw[n - 1] else 0
        return max(c - d, 0) / total + d * len(successors) / total * p(context[1:], word)

    return p


def contexts(order):
    seen = [(BOS,), ("THE",), ("CAT",), ("ON", "THE"), (BOS, "THE"), ("THE", "CAT"), ("RED", "CAT")]
    unseen = [("MAT", "RAN"), ("ZEBRA",), ("A", "ZEBRA")]
    return [c[-(order - 1):] if order > 1 else () for c in seen + unseen]


@pytest.mark.parametrize("order", [1, 2, 3])
def test_estimate_matches_recursive_kneser_ney(order):
    model = estimate(SENTENCES, order)
    reference = reference_kn(SENTENCES, order)
    words = sorted(model.vocabulary) + [EOS, "ZEBRA"]
    for context in contexts(order):
        for word in words:
            ours = 10 ** model.log10_prob(context, word)
            assert ours == pytest.approx(reference(context, word), rel=1e-9), (context, word)


@pytest.mark.parametrize("prune", [(), (0, 1), (0, 0, 1), (0, 2)])
def test_every_context_sums_to_one(prune):
    model = estimate(SENTENCES, 3, prune=prune)
    outcomes = sorted(model.vocabulary) + [EOS, UNK]
    for context in contexts(3):
        assert sum(10 ** model.log10_prob(context, w) for w in outcomes) == pytest.approx(1.0, abs=1e-9), context


def test_pruning_drops_singletons_but_keeps_what_longer_ngrams_need():
    full = estimate(SENTENCES, 3)
    pruned = estimate(SENTENCES, 3, prune=(0, 1))
    assert len(pruned.tables[0]) == len(full.tables[0])  # unigrams are never pruned
    assert 0 < len(pruned.tables[1]) < len(full.tables[1]) and 0 < len(pruned.tables[2]) < len(full.tables[2])
    assert "THE CAT SAT" in pruned.tables[2] and "A RED CAT" not in pruned.tables[2]  # seen twice / once
    assert "ON THE" in pruned.tables[1] and "RED CAT" not in pruned.tables[1]  # 2 / 1 distinct left neighbours
    # one left neighbour each, but "THE CAT SAT" (kept) needs "THE CAT" as its context and "CAT SAT" as its suffix
    assert "THE CAT" in pruned.tables[1] and "CAT SAT" in pruned.tables[1]
    for n in (1, 2):  # every kept n-gram's context and suffix are there, and its numbers did not change
        for key in pruned.tables[n]:
            words = key.split()
            assert " ".join(words[:-1]) in pruned.tables[n - 1] and " ".join(words[1:]) in pruned.tables[n - 1], key
            assert pruned.tables[n][key][0] == pytest.approx(full.tables[n][key][0], abs=1e-12), key


def test_pruning_thresholds_by_order():
    full = estimate(SENTENCES, 3)
    top_only = estimate(SENTENCES, 3, prune=(0, 0, 1))  # singleton trigrams only: every bigram stays
    assert top_only.tables[1].keys() == full.tables[1].keys()
    assert set(top_only.tables[2]) == {  # the trigrams of SENTENCES seen more than once
        "<s> THE CAT", "THE CAT SAT", "SAT ON THE", "ON THE MAT", "THE MAT </s>", "<s> THE DOG"}
    assert estimate(SENTENCES, 3, prune=(0,)).tables == full.tables
    assert len(estimate(SENTENCES, 3, prune=(0, 2)).tables[1]) < len(estimate(SENTENCES, 3, prune=(0, 1)).tables[1])
    for bad in ((1,), (0, 2, 1), (0, -1), (0, 1, 1, 1)):
        with pytest.raises(LanguageModelError, match="pruning thresholds"):
            estimate(SENTENCES, 3, prune=bad)


@pytest.mark.parametrize("name", ["lm.arpa", "lm.arpa.gz"])
def test_arpa_round_trip_and_determinism(tmp_path, name):
    model = estimate(SENTENCES, 3, prune=(0, 1))
    path = write_arpa(model, tmp_path / name)
    loaded = LanguageModel.load(path)
    assert loaded.order == 3
    for ours, theirs in zip(model.tables, loaded.tables):
        assert ours.keys() == theirs.keys()
        for key, (logp, bow) in ours.items():
            assert theirs[key] == pytest.approx((logp, bow), abs=1e-6)
    first = path.read_bytes()
    write_arpa(model, path)
    assert path.read_bytes() == first
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")], "temporary file left behind"
    if name.endswith(".gz"):
        assert gzip.decompress(first).startswith(b"\\data\\\nngram 1=")
    assert loaded.perplexity([["THE", "CAT", "SAT"]]) == pytest.approx(model.perplexity([["THE", "CAT", "SAT"]]), rel=1e-5)


HAND_ARPA = """\
some preamble text that ARPA readers skip

\\data\\
ngram 1=5
ngram 2=3
ngram 3=1

\\1-grams:
-1.0\t<unk>
-99\t<s>\t-0.30
-0.5\tA\t-0.20
-0.7\tB\t-0.10
-0.9\t</s>

\\2-grams:
-0.3\t<s> A\t-0.05
-0.4\tA B\t-0.15
-0.2\tB </s>

\\3-grams:
-0.1\t<s> A B

\\end\\
"""


def test_backoff_scoring_of_a_hand_written_arpa(tmp_path):
    path = tmp_path / "hand.arpa"
    path.write_text(HAND_ARPA)
    lm = LanguageModel.load(path)
    assert lm.log10_prob([BOS, "A"], "B") == pytest.approx(-0.1)  # trigram present
    assert lm.log10_prob(["B", "A"], "B") == pytest.approx(-0.4)  # context B A unseen: no backoff weight, bigram A B
    assert lm.log10_prob([BOS, "A"], EOS) == pytest.approx(-0.05 + -0.20 + -0.9)  # bow(<s> A) + bow(A) + p(</s>)
    assert lm.log10_prob(["A"], "A") == pytest.approx(-0.20 + -0.5)
    assert lm.log10_prob(["A"], "ZEBRA") == pytest.approx(-0.20 + -1.0)  # unknown word: <unk>
    assert lm.sentence_log10(["A", "B"]) == pytest.approx(-0.3 + -0.1 + (-0.15 + -0.2))  # </s> after bow(A B)
    assert lm.vocabulary == {"A", "B"}


def test_missing_unk_scores_like_kenlm(tmp_path):
    path = tmp_path / "nounk.arpa"
    path.write_text(HAND_ARPA.replace("ngram 1=5", "ngram 1=4").replace("-1.0\t<unk>\n", ""))
    assert LanguageModel.load(path).log10_prob([], "ZEBRA") == -100.0


@pytest.mark.parametrize("content, fragment", [
    (b"", "no \\data\\ header"),
    (b"hello world\n", "no \\data\\ header"),
    (HAND_ARPA.encode().replace(b"ngram 2=3", b"ngram 2=4"), "expected log10 p, 2 word(s)"),
    (HAND_ARPA.encode().replace(b"ngram 2=3", b"ngram 2=2"), "expected '\\\\3-grams:'"),
    (HAND_ARPA.encode().split(b"\\3-grams:")[0], "file ends inside"),
    (HAND_ARPA.encode().replace(b"\\end\\", b""), "no \\end\\"),
    (HAND_ARPA.encode().replace(b"-0.4\tA B", b"x\tA B"), "not a number"),
    (HAND_ARPA.encode().replace(b"-0.4\tA B", b"0.4\tA B"), "must be <= 0"),
    (HAND_ARPA.encode().replace(b"-0.4\tA B\t-0.15", b"-0.4"), "expected log10 p, 2 word(s)"),
    (b"\\data\\\nngram 2=1\n\n", "orders [2] are not 1..N"),
    (b"\x89PNG\r\n\x1a\n\x00\xff\xfe", "cannot read"),
])
def test_bad_arpa_files_raise_a_typed_error(tmp_path, content, fragment):
    path = tmp_path / "bad.arpa"
    path.write_bytes(content)
    with pytest.raises(LanguageModelError, match="bad.arpa") as info:
        LanguageModel.load(path)
    assert fragment in str(info.value)


def test_corrupt_gzip_and_missing_file(tmp_path):
    path = tmp_path / "lm.arpa.gz"
    path.write_bytes(gzip.compress(HAND_ARPA.encode())[:40])
    with pytest.raises(LanguageModelError, match="cannot read"):
        LanguageModel.load(path)
    with pytest.raises(LanguageModelError, match="no such language model file"):
        LanguageModel.load(tmp_path / "absent.arpa")
    with pytest.raises(LanguageModelError, match="a folder, not a language model file"):
        LanguageModel.load(tmp_path)


def test_read_sentences_from_text_and_librispeech_folders(tmp_path):
    (tmp_path / "text.txt").write_text("The cat's hat, it sat!\n\n  a DOG  \n")
    chapter = tmp_path / "split" / "1" / "2"
    chapter.mkdir(parents=True)
    (chapter / "1-2.trans.txt").write_text("1-2-0000 HELLO THERE\n1-2-0001 GOOD BYE\n")
    assert read_sentences([tmp_path / "text.txt"]) == [["THE", "CAT'S", "HAT", "IT", "SAT"], ["A", "DOG"]]
    assert read_sentences([tmp_path / "split"]) == [["HELLO", "THERE"], ["GOOD", "BYE"]]
    with pytest.raises(LanguageModelError, match="no such text file"):
        read_sentences([tmp_path / "absent.txt"])
    (tmp_path / "empty").mkdir()
    with pytest.raises(LanguageModelError, match="without LibriSpeech transcripts"):
        read_sentences([tmp_path / "empty"])


def test_estimate_rejects_unusable_text():
    with pytest.raises(LanguageModelError, match="no sentences"):
        estimate([[], [""]])
    with pytest.raises(LanguageModelError, match="reserved token"):
        estimate([["A", "<s>"]])
    with pytest.raises(LanguageModelError, match="order must be at least 1"):
        estimate(SENTENCES, 0)


def test_perplexity_of_a_unigram_model_is_its_inverse_probability():
    model = estimate([["A"], ["A"], ["B"]], 1)
    per_word = [10 ** model.log10_prob([], w) for w in ("A", EOS)]
    assert model.perplexity([["A"]]) == pytest.approx(1 / math.sqrt(per_word[0] * per_word[1]))


def test_bundle_lm_text_counts_each_training_transcript_once(tmp_path):
    # tools/bundle_demo.py: speakers added by `make_corpus.py --extend` reread train sentences; the LM must not change
    import sys
    from pathlib import Path

    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tools"))
    import bundle_demo

    train = tmp_path / "train"
    for spk, lines in (("101", ["A CAT SAT", "THE DOG RAN"]), ("197", ["THE DOG RAN", "A CAT SAT", "A CAT SAT"])):
        d = train / spk / "1000"
        d.mkdir(parents=True)
        (d / f"{spk}-1000.trans.txt").write_text(
            "".join(f"{spk}-1000-{i:04d} {t}\n" for i, t in enumerate(lines)), encoding="ascii")
    extra = tmp_path / "extra.txt"
    extra.write_text("A CAT RAN\nA CAT RAN\n", encoding="ascii")
    got = bundle_demo.lm_sentences(train, extra)
    # train: each transcript once, in first-seen order; the extra text as it is (its repeats are real text)
    assert got == [["A", "CAT", "SAT"], ["THE", "DOG", "RAN"], ["A", "CAT", "RAN"], ["A", "CAT", "RAN"]]
