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
