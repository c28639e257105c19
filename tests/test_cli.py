"""The CLI through typer's CliRunner: results on stdout, one readable error line on stderr, exit codes."""

import json

import pytest
from typer.testing import CliRunner

from ds2_onnx.cli import app

runner = CliRunner()


def invoke(*args, env=None):
    return runner.invoke(app, [str(a) for a in args], env=env)


def assert_clean_failure(result, fragment):
    assert result.exit_code != 0
    assert "Traceback" not in result.output + result.stderr
    assert result.exception is None or isinstance(result.exception, SystemExit)
    assert fragment in result.stderr
    assert result.stderr.strip().startswith("error:") or "error:" in result.stderr


def test_export_then_transcribe_then_info(tmp_path, tiny_checkpoint, speech_flac):
    out = tmp_path / "m.onnx"
    r = invoke("export", tiny_checkpoint, "-o", out, "--precision", "fp32")
    assert r.exit_code == 0, r.stderr
    assert r.stdout.strip() == str(out) and out.exists()
    assert "max |Δ log-prob|" in r.stderr

    r = invoke("transcribe", speech_flac, "--model", out, "--threads", 1)
    assert r.exit_code == 0, r.stderr
    from ds2_onnx.runtime import Transcriber

    assert r.stdout.strip() == Transcriber(out).transcribe(speech_flac).text

    r = invoke("info", out, "--json")
    meta = json.loads(r.stdout)
    assert meta["labels"] == "_'ABCDEFGHIJKLMNOPQRSTUVWXYZ " and meta["precision"] == "fp32"


def test_transcribe_many_files_as_json(tiny_onnx, speech_flac, tmp_path):
    r = invoke("transcribe", speech_flac, speech_flac, "--model", tiny_onnx, "--json")
    assert r.exit_code == 0, r.stderr
    items = json.loads(r.stdout)
    assert [i["path"] for i in items] == [str(speech_flac)] * 2
    assert items[0]["text"] == items[1]["text"] and isinstance(items[0]["words"], list)


def test_transcribe_several_files_prefixes_paths(tiny_onnx, speech_flac):
    r = invoke("transcribe", speech_flac, speech_flac, "--model", tiny_onnx)
    lines = r.stdout.strip().splitlines()
    assert len(lines) == 2 and all(line.startswith(f"{speech_flac}\t") for line in lines)


def test_default_model_from_environment(tiny_onnx, speech_flac):
    r = invoke("transcribe", speech_flac, env={"DS2_ONNX_MODEL": str(tiny_onnx)})
    assert r.exit_code == 0, r.stderr


def test_transcribe_missing_file(tiny_onnx, tmp_path):
    assert_clean_failure(invoke("transcribe", tmp_path / "nope.flac", "--model", tiny_onnx), "no such file")


def test_transcribe_bad_file_among_good_ones_reports_and_continues(tiny_onnx, speech_flac, tmp_path):
    bad = tmp_path / "bad.wav"
    bad.write_text("not audio")
    r = invoke("transcribe", speech_flac, bad, "--model", tiny_onnx)
    assert_clean_failure(r, "1 of 2 files could not be transcribed")
    assert "cannot decode" in r.stderr and r.stdout.startswith(str(speech_flac))


def test_transcribe_with_a_non_model(tmp_path, speech_flac):
    fake = tmp_path / "fake.onnx"
    fake.write_bytes(b"\x00garbage")
    assert_clean_failure(invoke("transcribe", speech_flac, "--model", fake), "not a loadable ONNX model")


def test_export_of_a_non_checkpoint(speech_flac, tmp_path):
    r = invoke("export", speech_flac, "-o", tmp_path / "x.onnx")
    assert_clean_failure(r, "not a PyTorch checkpoint")
    assert not (tmp_path / "x.onnx").exists()


def test_export_of_a_missing_checkpoint(tmp_path):
    assert_clean_failure(invoke("export", tmp_path / "nope.pth"), "no such checkpoint")


def test_export_unknown_precision(tiny_checkpoint, tmp_path):
    assert_clean_failure(invoke("export", tiny_checkpoint, "-o", tmp_path / "m.onnx", "--precision", "fp8"), "unknown precision")


def test_info_of_a_missing_model(tmp_path):
    assert_clean_failure(invoke("info", tmp_path / "m.onnx"), "no such model file")


@pytest.mark.parametrize("threads", ["0", "-2"])
def test_bad_thread_count(tiny_onnx, speech_flac, threads):
    r = invoke("transcribe", speech_flac, "--model", tiny_onnx, "--threads", threads)
    assert r.exit_code == 2 and "Traceback" not in r.output


def test_version():
    from ds2_onnx import __version__

    assert invoke("--version").stdout.strip() == f"ds2-onnx {__version__}"


def test_batched_transcription_matches_one_by_one(tmp_path, tone_audio):
    import soundfile as sf
    from pathlib import Path

    clips = sorted((Path(__file__).resolve().parents[1] / "samples" / "demo-test").rglob("*.flac"))[:5]
    bad = tmp_path / "bad.flac"
    bad.write_bytes(b"fLaC but not really")
    short = tmp_path / "short.wav"  # shorter than the receptive field: empty text
    sf.write(short, tone_audio[:2000], 16000)
    files = [clips[0], bad, *clips[1:3], short, *clips[3:]]
    # fp32: batching is exact. Dynamically quantized models (int8 activations scaled per tensor over the whole
    # batch) can change a character or two with the batch's composition, as PyTorch's dynamic int8 does.
    fp32 = Path(__file__).resolve().parents[1] / "ds2_onnx" / "assets" / "demo.onnx"
    one = invoke("transcribe", *files, "-m", fp32)
    batched = invoke("transcribe", *files, "-m", fp32, "--batch-size", 3)
    for r in (one, batched):
        assert_clean_failure(r, "1 of 7 files could not be transcribed")
    assert batched.stdout == one.stdout  # same lines, same (input) order
    lines = one.stdout.splitlines()
    assert [line.split("\t")[0] for line in lines] == [str(f) for f in files if f != bad]
    assert sum(1 for line in lines if line.split("\t")[1].strip()) == 5  # the five speech clips have text
    assert invoke("transcribe", clips[0], "--batch-size", 0).exit_code != 0


def test_build_lm_then_transcribe_with_it(tmp_path, tiny_onnx, speech_flac):
    text = tmp_path / "text.txt"
    text.write_text("the cat sat on the mat\nthe dog sat\n")
    lm = tmp_path / "lm" / "small.arpa.gz"
    r = invoke("build-lm", text, "-o", lm, "--order", 2)
    assert r.exit_code == 0, r.stderr
    assert r.stdout.strip() == str(lm) and "2 sentences, 9 words" in r.stderr
    from ds2_onnx.runtime import BeamSearchOptions, LanguageModel, Transcriber

    assert LanguageModel.load(lm).vocabulary == {"THE", "CAT", "SAT", "ON", "MAT", "DOG"}
    r = invoke("transcribe", speech_flac, "--model", tiny_onnx, "--lm", lm, "--alpha", 0.5, "--beta", 2, "--beam-width", 8)
    assert r.exit_code == 0, r.stderr
    expected = Transcriber(tiny_onnx, lm=lm, beam=BeamSearchOptions(8, 0.5, 2.0)).transcribe(speech_flac).text
    assert r.stdout.strip() == expected
    r = invoke("transcribe", speech_flac, "--model", tiny_onnx, "--lm", lm, "--beam-width", 8, "--unk-offset=-inf")
    assert r.exit_code == 0, r.stderr
    strict = Transcriber(tiny_onnx, lm=lm, beam=BeamSearchOptions(8, unk_offset=float("-inf"))).transcribe(speech_flac)
    assert r.stdout.strip() == strict.text
    r = invoke("transcribe", speech_flac, "--model", tiny_onnx, "--lm", lm, "--beam-width", 8, "--beam-margin", 0.5)
    assert r.exit_code == 0, r.stderr
    narrow = Transcriber(tiny_onnx, lm=lm, beam=BeamSearchOptions(8, beam_margin=0.5)).transcribe(speech_flac)
    assert r.stdout.strip() == narrow.text
    r = invoke("transcribe", speech_flac, "--model", tiny_onnx, "--lm", lm, "--beam-width", 2, "--no-lookahead")
    assert r.exit_code == 0, r.stderr
    plain = Transcriber(tiny_onnx, lm=lm, beam=BeamSearchOptions(2, lookahead=False)).transcribe(speech_flac)
    assert r.stdout.strip() == plain.text


def test_language_model_errors_are_one_line(tmp_path, tiny_onnx, speech_flac):
    bad = tmp_path / "bad.arpa"
    bad.write_text("not an arpa file\n")
    assert_clean_failure(invoke("transcribe", speech_flac, "-m", tiny_onnx, "--lm", bad), "not an ARPA language model")
    assert_clean_failure(invoke("transcribe", speech_flac, "-m", tiny_onnx, "--lm", tmp_path / "absent.arpa"),
                         "no such language model file")
    assert_clean_failure(invoke("transcribe", speech_flac, "-m", tiny_onnx, "--alpha", 1), "pass --lm too")
    assert_clean_failure(invoke("transcribe", speech_flac, "-m", tiny_onnx, "--unk-offset", -5), "pass --lm too")
    assert_clean_failure(invoke("transcribe", speech_flac, "-m", tiny_onnx, "--no-lookahead"), "pass --lm too")
    for margin in (0, -3, "nan"):
        assert_clean_failure(invoke("transcribe", speech_flac, "-m", tiny_onnx, "--beam-margin", margin), "beam margin must be")
    split = speech_flac.parent
    assert_clean_failure(invoke("validate", "-d", split, "-m", tiny_onnx, "--beta", 1), "pass --lm too")
    assert_clean_failure(invoke("validate", "-d", split, "-m", tiny_onnx, "--lm", bad), "not an ARPA language model")
    empty = tmp_path / "empty.txt"
    empty.write_text("\n\n")
    out = tmp_path / "lm.arpa"
    assert_clean_failure(invoke("build-lm", empty, "-o", out), "no sentences")
    assert_clean_failure(invoke("build-lm", tmp_path / "absent", "-o", out), "no such text file or folder")
    assert not out.exists() and not list(tmp_path.glob(".lm.arpa*"))
    text = tmp_path / "text.txt"
    text.write_text("a b c\n")
    blocker = tmp_path / "file"
    blocker.write_text("")
    assert_clean_failure(invoke("build-lm", text, "-o", blocker / "lm.arpa"), "cannot write")
    assert_clean_failure(invoke("build-lm", text, "-o", out, "--prune", "0,x"), "comma-separated counts")
    assert_clean_failure(invoke("build-lm", text, "-o", out, "--prune", "0,2,1"), "never decrease")
    assert_clean_failure(invoke("build-lm", text, "-o", out, "--order", 2, "--prune", "0,0,1"), "3 pruning thresholds")
    assert not out.exists()


def test_transcribe_with_the_bundled_lm(tmp_path):
    from pathlib import Path

    from ds2_onnx.cli import ASSETS, DEMO_LM
    from ds2_onnx.runtime import Transcriber

    clip = sorted((Path(__file__).resolve().parents[1] / "samples" / "demo-test").rglob("*.flac"))[0]
    model = ASSETS / "demo.onnx"
    r = invoke("transcribe", clip, "-m", model, "--lm", "bundled", "--json")
    assert r.exit_code == 0, r.stderr
    assert json.loads(r.stdout)[0]["text"] == Transcriber(model, lm=ASSETS / DEMO_LM).transcribe(clip).text


def test_tune_lm_reports_the_grid_consistently_with_transcribe(tmp_path):
    from pathlib import Path

    from ds2_onnx.cli import ASSETS, DEMO_LM
    from ds2_onnx.runtime import BeamSearchOptions, Transcriber
    from ds2_onnx.validation.datasets import load_dataset
    from ds2_onnx.validation.metrics import corpus_counts
    from ds2_onnx.validation.tune import spread

    split = Path(__file__).resolve().parents[1] / "samples" / "demo-test"
    model = ASSETS / "demo.onnx"
    out = tmp_path / "tune.json"
    r = invoke("tune-lm", "-d", split, "--lm", "bundled", "-m", model, "--limit", 6, "--alpha", "0,0.8",
               "--beta", "1,4.5", "--unk-offset", "0,-inf", "--beam-width", 8, "--beam-margin", "inf", "--no-lookahead",
               "--jobs", 2, "--json", out)
    assert r.exit_code == 0, r.stderr
    report = json.loads(out.read_text())
    assert report["utterances"] == 6 and len(report["points"]) == 8
    assert {p["unk_offset"] for p in report["points"]} == {0.0, "-inf"}  # JSON has no infinity
    assert report["beam_margin"] == "inf" and report["lookahead"] is False
    assert "(width 8, margin inf, no look-ahead)" in r.stdout
    best = report["best"]
    assert f"best: --alpha {best['alpha']:g} --beta {best['beta']:g} --unk-offset {float(best['unk_offset']):g}" in r.stdout
    assert report["best"]["wer"] == min(p["wer"] for p in report["points"])

    utterances = list(load_dataset(split, Transcriber(model).info.labels))
    picked = [utterances[i] for i in spread(len(utterances), 6)]
    refs = [u.transcript for u in picked]
    greedy = Transcriber(model)
    assert report["greedy"]["wer"] == corpus_counts(refs, [greedy.transcribe(u.audio).text for u in picked]).wer
    for offset in (0.0, float("-inf")):
        point = next(p for p in report["points"] if (p["alpha"], p["beta"], float(p["unk_offset"])) == (0.8, 4.5, offset))
        fused = Transcriber(model, lm=ASSETS / DEMO_LM,
                            beam=BeamSearchOptions(8, 0.8, 4.5, unk_offset=offset, beam_margin=float("inf"),
                                                  lookahead=False))
        assert point["wer"] == corpus_counts(refs, [fused.transcribe(u.audio).text for u in picked]).wer


def test_tune_lm_bad_arguments(tmp_path):
    from pathlib import Path

    split = Path(__file__).resolve().parents[1] / "samples" / "demo-test"
    assert_clean_failure(invoke("tune-lm", "-d", split, "--lm", "bundled", "--alpha", "a,b"), "comma-separated numbers")
    assert_clean_failure(invoke("tune-lm", "-d", split, "--lm", tmp_path / "no.arpa"), "no such language model file")
    assert_clean_failure(invoke("tune-lm", "-d", tmp_path / "nowhere", "--lm", "bundled"), "nowhere")
    assert_clean_failure(invoke("tune-lm", "-d", split, "--lm", "bundled", "--alpha", "-1"), "alpha must be")
    assert_clean_failure(invoke("tune-lm", "-d", split, "--lm", "bundled", "--unk-offset", "0,2"), "unk_offset must be")
    assert_clean_failure(invoke("tune-lm", "-d", split, "--lm", "bundled", "--beam-margin", "0"), "beam margin must be")


def test_spread_picks_evenly():
    from ds2_onnx.validation.tune import spread

    assert spread(10, 5) == [0, 2, 4, 6, 8] and spread(3, 5) == [0, 1, 2] and spread(4, None) == [0, 1, 2, 3]
