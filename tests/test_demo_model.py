"""The bundled demo model: what `make demo` and `ds2-onnx transcribe` (no --model) use.

fp32 ONNX must transcribe the bundled split exactly like the PyTorch checkpoint with librosa features (WER
delta 0); the quantized variants' WER deltas are measured and bounded; a few transcripts are pinned. The bundled
word trigram LM (beam search) must keep its measured WER gain over greedy decoding.
"""

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from ds2_onnx.cli import app
from ds2_onnx.export.checkpoint import sha256_file
from ds2_onnx.runtime import LanguageModel, Transcriber
from ds2_onnx.validation.datasets import load_dataset
from ds2_onnx.validation.metrics import corpus_counts, wer_delta_se, word_edits
from ds2_onnx.validation.reference import ReferencePipeline

ROOT = Path(__file__).resolve().parent.parent
ASSETS = ROOT / "ds2_onnx" / "assets"
CHECKPOINT = ROOT / "models" / "demo.pth"
SPLIT = ROOT / "samples" / "demo-test"

# Measured on the bundled split when the model was bundled (tools/bundle_demo.py, then `make demo`; stage 19, see
# docs/demo-model.md): PyTorch WER 45.88 (486 words: one word is 0.21 points); int8 -0.62 (25 transcripts differ,
# standard error 0.54), int4 +1.44 (41 differ, standard error 1.06). On this weak model the quantized exports change
# a third or more of the 60 transcripts, in both directions, so 60 clips measure a delta only to about ±2 points
# (two standard errors): over stages 10 to 19 the int4 delta here ranged from -2.06 to +2.67 while on the
# 600-utterance test split it stayed within half a point of fp32 until stage 16 (+1.43; stage 17 +0.87, stage 18
# +0.45, stage 19 +0.95). So the
# bars hold for what the clips can show: int8 may lose at most 0.5 points (the bar) and int4 1.5, beyond
# two standard errors (delta - 2 SE must not exceed them); a gain beyond two standard errors of 1.5 (int8) or 3.0
# (int4) points would mean it is no longer the same model, so that fails too. A broken export moves the WER by tens
# of points and fails either way.
WER_DELTA_BOUNDS = {"demo.int8.onnx": (-1.5, 0.5), "demo.int4.onnx": (-3.0, 1.5)}
SE_MARGIN = 2.0

PINNED = {  # fp32 transcripts of four bundled clips (regression guard; the model is weak, see docs/demo-model.md)
    "105-3000-0003": "TO LIV IS ALWAYS DESIRABLE",
    "126-3000-0003": "STARTRECK LIVES",
    "165-3000-0002": "A SNAKE LURKS IN THE GRASS",
    "189-3000-0031": "CANL A BUSH WHERE EVER LA",
}


# Beam search with the bundled LM at the defaults (width 64, margin 12, LM look-ahead; ds2_onnx/assets/demo-lm.arpa.gz,
# built by tools/bundle_demo.py from the corpus's distinct training transcripts and tools/lm_text.py's extra text;
# alpha 0.8, beta 0, vocabulary words only, tuned on the dev split), fp32, on the bundled split: WER 45.88 -> 20.99,
# CER 15.11 -> 9.54 (stage 19, see docs/demo-model.md; 21.60 / 10.05 with the defaults before look-ahead). The test
# asks for at least 15 points of the 24.89 (73 of 121 words): less would mean the LM, the decoder or their defaults
# broke.
MIN_LM_WER_GAIN = 15.0
PINNED_LM = {  # fp32 + bundled LM, vocabulary words only: LIV -> LIVE and CANL A BUSH -> CALABASH right,
    #           STARTRECK -> STAR TRACK (said: STAR TREK), WHERE EVER LA -> WERE EVER A (said: WHEREVER YOU
    #           ARE); not every word is fixed
    "105-3000-0003": "TO LIVE IS ALWAYS DESIRABLE",
    "126-3000-0003": "STAR TRACK LIVES",
    "165-3000-0002": "A SNAKE LURKS IN THE GRASS",
    "189-3000-0031": "CALABASH WERE EVER A",
}
LM = ASSETS / "demo-lm.arpa.gz"


@pytest.fixture(scope="module")
def split():
    labels = Transcriber(ASSETS / "demo.onnx").info.labels
    return list(load_dataset(SPLIT, labels))


@pytest.fixture(scope="module")
def hypotheses(split):
    out = {}
    for name in ("demo.onnx", "demo.int8.onnx", "demo.int4.onnx"):
        t = Transcriber(ASSETS / name)
        out[name] = [t.transcribe(u.audio).text for u in split]
    return out


@pytest.fixture(scope="module")
def reference(split):
    info = Transcriber(ASSETS / "demo.onnx").info
    pipeline = ReferencePipeline(CHECKPOINT, input_scale=info.input_scale, threads=2)
    return [pipeline.transcribe(u.audio).text for u in split]


def test_bundled_files_are_small_and_belong_together():
    assert CHECKPOINT.stat().st_size <= 25e6
    sizes = sum(p.stat().st_size for p in SPLIT.rglob("*") if p.is_file())
    assert sizes <= 5e6 and len(list(SPLIT.rglob("*.flac"))) <= 60
    for name in ("demo.onnx", "demo.int8.onnx", "demo.int4.onnx"):
        info = Transcriber(ASSETS / name).info
        assert info.source_sha256 == sha256_file(CHECKPOINT), f"{name} was not exported from models/demo.pth"
    assert Transcriber(ASSETS / "demo.int8.onnx").info.precision == "int8"


def test_fp32_onnx_transcribes_exactly_like_pytorch(split, hypotheses, reference):
    assert hypotheses["demo.onnx"] == reference
    refs = [u.transcript for u in split]
    assert corpus_counts(refs, hypotheses["demo.onnx"]).wer == corpus_counts(refs, reference).wer


@pytest.mark.parametrize("name", ["demo.int8.onnx", "demo.int4.onnx"])
def test_quantized_wer_delta_is_bounded(split, hypotheses, reference, name):
    refs = [u.transcript for u in split]
    delta = corpus_counts(refs, hypotheses[name]).wer - corpus_counts(refs, reference).wer
    diffs = [word_edits(r, q)[0] - word_edits(r, b)[0] for r, q, b in zip(refs, hypotheses[name], reference)]
    se = wer_delta_se(diffs, corpus_counts(refs, reference).words)
    print(f"{name}: WER delta {delta:+.2f} against PyTorch (standard error {se:.2f})")
    low, high = WER_DELTA_BOUNDS[name]
    assert delta - SE_MARGIN * se <= high, f"{name} loses more than {high} WER points beyond two standard errors"
    assert delta + SE_MARGIN * se >= low, f"{name} gains more than {-low} WER points beyond two standard errors"


def test_pinned_transcripts(split, hypotheses):
    got = {u.id: text for u, text in zip(split, hypotheses["demo.onnx"])}
    assert {k: got[k] for k in PINNED} == PINNED


def test_transcribe_without_model_uses_the_bundled_int8_model(split, monkeypatch):
    monkeypatch.delenv("DS2_ONNX_MODEL", raising=False)
    clip = split[0].audio
    result = CliRunner().invoke(app, ["transcribe", str(clip), "--json"])
    assert result.exit_code == 0, result.stderr
    expected = Transcriber(ASSETS / "demo.int8.onnx").transcribe(clip).text
    assert json.loads(result.stdout)[0]["text"] == expected


@pytest.fixture(scope="module")
def lm_hypotheses(split):
    t = Transcriber(ASSETS / "demo.onnx", lm=LM)
    return [t.transcribe(u.audio).text for u in split]


def test_bundled_lm_is_small_and_covers_the_split(split):
    assert LM.stat().st_size <= 5e6  # 4.01 MB
    lm = LanguageModel.load(LM)
    assert lm.order == 3
    words = [w for u in split for w in u.transcript.split()]
    covered = sum(w in lm for w in words) / len(words)
    print(f"bundled LM covers {100 * covered:.1f}% of the split's {len(words)} words")
    # 0.97% of the test split's words are not in the LM's text (3.9% were not in the training transcripts alone)
    assert covered >= 0.97


def test_lm_beam_search_beats_greedy_on_the_bundled_split(split, hypotheses, lm_hypotheses):
    refs = [u.transcript for u in split]
    greedy, fused = corpus_counts(refs, hypotheses["demo.onnx"]), corpus_counts(refs, lm_hypotheses)
    print(f"greedy WER {greedy.wer:.2f} CER {greedy.cer:.2f}; beam + LM WER {fused.wer:.2f} CER {fused.cer:.2f}")
    assert fused.wer <= greedy.wer - MIN_LM_WER_GAIN
    assert fused.cer < greedy.cer


def test_pinned_lm_transcripts(split, lm_hypotheses):
    got = {u.id: text for u, text in zip(split, lm_hypotheses)}
    assert {k: got[k] for k in PINNED_LM} == PINNED_LM


def test_validate_with_the_lm_decodes_every_variant_and_the_reference_alike(split, tmp_path):
    from ds2_onnx.runtime.beam import BeamSearchDecoder
    from ds2_onnx.validation.validate import run_validation

    report = run_validation(SPLIT, ASSETS / "demo.onnx", CHECKPOINT, limit=8, lm=LM)
    assert report.decoding.startswith("beam search (width 64, margin 12) with LM")
    assert report.decoding.endswith("(alpha 0.8, beta 0, unk offset -inf)")  # look-ahead on
    assert report.variant("fp32").wer_delta == 0 and not report.variant("fp32").differing
    fused = Transcriber(ASSETS / "demo.onnx", lm=LM)
    info = fused.info
    pipeline = ReferencePipeline(CHECKPOINT, input_scale=info.input_scale, threads=2)
    decoder = BeamSearchDecoder(info.labels, info.blank_index, LanguageModel.load(LM))
    for u in report.utterances:
        assert u.hypotheses["fp32"] == fused.transcribe(u.audio).text
        reference = pipeline.transcribe(u.audio)
        assert u.hypotheses["pytorch"] == decoder.decode(reference.log_probs, info.frame_duration).text
    greedy = run_validation(SPLIT, ASSETS / "demo.onnx", limit=8)
    assert greedy.decoding == "greedy"
    greedy_texts = [u.hypotheses["fp32"] for u in greedy.utterances]
    assert greedy_texts == [Transcriber(ASSETS / "demo.onnx").transcribe(u.audio).text for u in greedy.utterances]
    assert greedy_texts != [u.hypotheses["fp32"] for u in report.utterances]  # the LM changes some of these 8
