"""`ds2-onnx validate` on small espeak-ng LibriSpeech folders with the tiny checkpoint and its ONNX export.

The int8 "variant" here is the fp32 export with its output projection perturbed (quantisation is another
module's job): it gives transcripts that differ from the reference, which is what the comparison must catch.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import typer
from conftest import synthesize
from typer.testing import CliRunner

from ds2_onnx.errors import ModelFileError
from ds2_onnx.runtime import Transcriber
from ds2_onnx.validation.commands import GATE_EXIT_CODE, download, validate
from ds2_onnx.validation.validate import find_variants, run_validation

runner = CliRunner()
app = typer.Typer()
app.command()(validate)
app.command()(download)

TEXTS = [
    "the quick brown fox jumps over the lazy dog",
    "hello world",
    "speech recognition on a small computer",
    "one two three",
]


def invoke(*args):
    return runner.invoke(app, ["validate", *map(str, args)])


def assert_clean_failure(result, fragment, code=1):
    assert result.exit_code == code, result.output
    assert "Traceback" not in result.output + result.stderr
    assert result.exception is None or isinstance(result.exception, SystemExit)
    assert fragment in result.stderr, result.stderr
    assert "error:" in result.stderr


def write_chapter(root: Path, transcripts: dict[str, str]) -> None:
    chapter = root / "19" / "198"
    (chapter / "19-198.trans.txt").write_text("".join(f"{uid} {text}\n" for uid, text in transcripts.items()))


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("corpus") / "test-clean"
    chapter = root / "19" / "198"
    chapter.mkdir(parents=True)
    for i, text in enumerate(TEXTS):
        synthesize(text, chapter / f"19-198-{i:04d}.flac")
    write_chapter(root, {f"19-198-{i:04d}": text.upper() for i, text in enumerate(TEXTS)})
    return root


def perturbed_copy(src: Path, dst: Path, precision: str, scale: float, seed: int = 0) -> Path:
    """`src` with noise added to its output projection, labelled `precision` in its metadata."""
    import onnx
    from onnx import numpy_helper

    proto = onnx.load(str(src))
    rng = np.random.default_rng(seed)
    for init in proto.graph.initializer:
        if len(init.dims) == 2 and init.dims[-1] == 29:  # the (hidden, classes) MatMul weight
            w = numpy_helper.to_array(init)
            noisy = w + scale * w.std() * rng.standard_normal(w.shape).astype(w.dtype)
            init.CopyFrom(numpy_helper.from_array(noisy, init.name))
    for prop in proto.metadata_props:
        if prop.key == "ds2.precision":
            prop.value = json.dumps(precision)
    onnx.save(proto, str(dst))
    return dst


@pytest.fixture(scope="module")
def models(tmp_path_factory, tiny_onnx) -> Path:
    """A folder holding m.onnx (fp32) and m.int8.onnx; returns the fp32 path."""
    folder = tmp_path_factory.mktemp("models")
    fp32 = Path(shutil.copy(tiny_onnx, folder / "m.onnx"))
    perturbed_copy(fp32, folder / "m.int8.onnx", "int8", scale=0.3)
    return fp32


@pytest.fixture(scope="module")
def labelled(tmp_path_factory, corpus, models) -> Path:
    """The corpus with the fp32 model's own output as ground truth: fp32 (and PyTorch) score WER 0."""
    root = Path(shutil.copytree(corpus, tmp_path_factory.mktemp("labelled") / "test-clean"))
    fp32 = Transcriber(models)
    write_chapter(root, {f.stem: fp32.transcribe(f).text for f in sorted((root / "19/198").glob("*.flac"))})
    return root


def edit_distance(a, b) -> int:
    """Plain dynamic programming, independent of the Levenshtein package the code uses."""
    row = list(range(len(b) + 1))
    for i, x in enumerate(a, 1):
        prev, row[0] = row[0], i
        for j, y in enumerate(b, 1):
            prev, row[j] = row[j], min(row[j] + 1, row[j - 1] + 1, prev + (x != y))
    return row[-1]


def read_json(path: Path) -> dict:
    return json.loads(path.read_text())


# -- variants --------------------------------------------------------------------------------------------
def test_any_precision_names_all_siblings(models, tmp_path):
    expected = [("fp32", models), ("int8", models.with_name("m.int8.onnx"))]
    assert [(v.name, v.path) for v in find_variants(models)] == expected
    assert [(v.name, v.path) for v in find_variants(models.with_name("m.int8.onnx"))] == expected
    alone = Path(shutil.copy(models.with_name("m.int8.onnx"), tmp_path / "x.int8.onnx"))
    assert [v.name for v in find_variants(alone)] == ["int8"]
    with pytest.raises(ModelFileError, match="no such model file"):
        find_variants(tmp_path / "nope.onnx")


# -- the full comparison -----------------------------------------------------------------------------------
def test_json_figures_match_an_independent_recomputation(corpus, models, tiny_checkpoint, tmp_path):
    out = tmp_path / "report.json"
    r = invoke("--dataset", corpus, "--model", models.with_name("m.int8.onnx"), "--checkpoint", tiny_checkpoint,
               "--json", out, "--threads", 1)
    assert r.exit_code == 0, r.stderr
    for row in ("pytorch*", "fp32", "int8", "max |Δlp|", "p99"):
        assert row in r.stdout
    report = read_json(out)
    assert report["baseline"] == "pytorch" and report["dataset"]["evaluated"] == 4 and report["skipped"] == []
    utterances = report["utterances"]
    durations = [u["duration"] for u in utterances]
    assert durations == sorted(durations) and [u["transcript"] for u in utterances][0] == "HELLO WORLD"

    variants = {v["name"]: v for v in report["variants"]}
    assert list(variants) == ["pytorch", "fp32", "int8"]
    for name, v in variants.items():
        refs = [u["transcript"] for u in utterances]
        hyps = [u["hypotheses"][name] for u in utterances]
        words = sum(len(t.split()) for t in refs)
        chars = sum(len(t) for t in refs)
        assert v["wer"] == pytest.approx(100 * sum(edit_distance(a.split(), b.split()) for a, b in zip(refs, hyps)) / words)
        assert v["cer"] == pytest.approx(100 * sum(edit_distance(a, b) for a, b in zip(refs, hyps)) / chars)
        differing = [u["id"] for u in utterances if u["hypotheses"][name] != u["hypotheses"]["pytorch"]]
        assert [d["id"] for d in v["differing"]] == differing
        if name != "pytorch":
            assert v["wer_delta"] == pytest.approx(v["wer"] - variants["pytorch"]["wer"])
            diffs = [edit_distance(a.split(), b.split()) - edit_distance(a.split(), c.split())
                     for a, b, c in zip(refs, hyps, [u["hypotheses"]["pytorch"] for u in utterances])]
            mean = sum(diffs) / len(diffs)
            se = 100 * (len(diffs) * sum((d - mean) ** 2 for d in diffs) / (len(diffs) - 1)) ** 0.5 / words
            assert v["wer_delta_se"] == pytest.approx(se)
        else:
            assert v["wer_delta_se"] is None
        lat = v["latency"]
        assert lat["utterances"] == 4 and 0 < lat["p50"] <= lat["p90"] <= lat["p99"] <= lat["max"]
        assert lat["audio_seconds"] == pytest.approx(sum(durations)) and lat["mean_rtf"] > 0

    # the fp32 export matches PyTorch; the perturbed variant does not, and the report says where
    assert variants["fp32"]["differing"] == [] and variants["fp32"]["max_logprob_diff"] < 1e-3
    assert variants["int8"]["differing"] and variants["int8"]["max_logprob_diff"] > 0.1
    first = variants["int8"]["differing"][0]
    by_id = {u["id"]: u for u in utterances}
    assert (first["baseline"], first["variant"]) == (by_id[first["id"]]["hypotheses"]["pytorch"],
                                                     by_id[first["id"]]["hypotheses"]["int8"])
    assert 0 <= report["feature_max_diff"] < 1e-3
    machine = report["machine"]
    assert machine["threads_per_worker"] == 1 and machine["cpu"] and machine["onnxruntime"] and machine["torch"]
    assert report["gates"] == {"max_wer_delta": None, "max_p99": None, "failures": []}


def test_workers_give_the_same_results_in_dataset_order(corpus, models, tiny_checkpoint):
    runs = [run_validation(corpus, models, tiny_checkpoint, workers=w, threads=1) for w in (1, 2)]
    one, two = ([(u.id, u.duration, u.transcript, u.hypotheses) for u in run.utterances] for run in runs)
    assert one == two
    assert runs[1].machine["workers"] == 2
    assert [v.name for v in runs[0].variants] == ["pytorch", "fp32", "int8"]
    for a, b in zip(runs[0].variants, runs[1].variants):
        assert (a.name, a.errors, a.wer_delta, a.wer_delta_se, a.differing) == (
            b.name, b.errors, b.wer_delta, b.wer_delta_se, b.differing)
        assert (a.max_logprob_diff is None) == (b.max_logprob_diff is None)
        if a.max_logprob_diff is not None:
            assert a.max_logprob_diff == pytest.approx(b.max_logprob_diff, abs=1e-6)
    assert runs[0].feature_max_diff == pytest.approx(runs[1].feature_max_diff, abs=1e-6)


# -- gates -------------------------------------------------------------------------------------------------
def test_wer_gate_against_the_reference(labelled, models, tiny_checkpoint, tmp_path):
    out = tmp_path / "gated.json"
    r = invoke("--dataset", labelled, "--model", models, "--checkpoint", tiny_checkpoint, "--json", out,
               "--max-wer-delta", 0.5)
    assert r.exit_code == GATE_EXIT_CODE == 3
    assert "int8" in r.stdout and "pytorch*" in r.stdout  # the table is still printed
    assert "gate failed" in r.stderr and "int8: WER" in r.stderr and "vs pytorch WER 0.00" in r.stderr
    assert "fp32:" not in r.stderr
    report = read_json(out)  # and the JSON still written
    assert len(report["gates"]["failures"]) == 1 and report["gates"]["max_wer_delta"] == 0.5
    wers = {v["name"]: v["wer"] for v in report["variants"]}
    assert wers["pytorch"] == 0.0 and wers["fp32"] == 0.0 and wers["int8"] > 0.5


def test_wer_gate_against_fp32_without_checkpoint(labelled, models):
    r = invoke("--dataset", labelled, "--model", models, "--max-wer-delta", 0.5)
    assert r.exit_code == 3 and "vs fp32 WER 0.00" in r.stderr and "int8: WER" in r.stderr


def test_gates_pass(labelled, models, tiny_checkpoint):
    r = invoke("--dataset", labelled, "--model", models, "--checkpoint", tiny_checkpoint,
               "--max-wer-delta", 1000, "--max-p99", 1000)
    assert r.exit_code == 0, r.stderr
    assert "gate failed" not in r.stderr


def test_p99_gate_names_the_onnx_variants(labelled, models, tiny_checkpoint):
    r = invoke("--dataset", labelled, "--model", models, "--checkpoint", tiny_checkpoint, "--max-p99", 0)
    assert r.exit_code == 3
    assert "fp32: p99 latency" in r.stderr and "int8: p99 latency" in r.stderr and "pytorch: p99" not in r.stderr


# -- data handling -------------------------------------------------------------------------------------------
def test_unreadable_audio_is_reported_skipped_and_counted(corpus, models, tmp_path):
    root = Path(shutil.copytree(corpus, tmp_path / "test-clean"))
    (root / "19/198/19-198-0009.flac").write_bytes(b"definitely not flac")
    write_chapter(root, {**{f"19-198-{i:04d}": t.upper() for i, t in enumerate(TEXTS)}, "19-198-0009": "BROKEN"})
    out = tmp_path / "r.json"
    r = invoke("--dataset", root, "--model", models, "--json", out)
    assert r.exit_code == 0, r.stderr
    assert "skipped 19-198-0009" in r.stderr and "cannot decode" in r.stderr
    assert "4 evaluated, 1 skipped" in r.stdout
    report = read_json(out)
    assert report["dataset"]["evaluated"] == 4 and report["dataset"]["skipped"] == 1
    assert [s["id"] for s in report["skipped"]] == ["19-198-0009"]
    assert "19-198-0009" not in [u["id"] for u in report["utterances"]]


def test_limit_takes_the_first_utterances(corpus, models, tmp_path):
    out = tmp_path / "r.json"
    r = invoke("--dataset", corpus, "--model", models, "--limit", 2, "--json", out)
    assert r.exit_code == 0, r.stderr
    report = read_json(out)
    assert [u["transcript"] for u in report["utterances"]] == ["HELLO WORLD", "ONE TWO THREE"]
    assert report["dataset"]["listed"] == 2
    assert report["feature_max_diff"] is not None  # numpy vs librosa, even without a checkpoint


def test_split_name_and_manifest(corpus, models, tmp_path):
    shutil.copytree(corpus, tmp_path / "data" / "LibriSpeech" / "test-clean")
    r = invoke("--dataset", "test-clean", "--data-dir", tmp_path / "data", "--model", models, "--limit", 1)
    assert r.exit_code == 0, r.stderr
    assert "1 evaluated" in r.stdout

    manifest = tmp_path / "manifest.csv"
    (tmp_path / "one.txt").write_text("hello world\n")
    manifest.write_text(f"{corpus / '19/198/19-198-0001.flac'},one.txt\n")
    out = tmp_path / "m.json"
    r = invoke("--dataset", manifest, "--model", models, "--json", out)
    assert r.exit_code == 0, r.stderr
    report = read_json(out)
    assert report["dataset"]["kind"] == "manifest" and report["utterances"][0]["transcript"] == "HELLO WORLD"


def test_plots_are_written(corpus, models, tmp_path):
    r = invoke("--dataset", corpus, "--model", models, "--plots", tmp_path / "plots", "--limit", 2)
    assert r.exit_code == 0, r.stderr
    pngs = sorted(p.name for p in (tmp_path / "plots").iterdir())
    assert pngs == ["latency_cdf.png", "rtf_vs_duration.png"]
    for name in pngs:
        assert (tmp_path / "plots" / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_plots_without_matplotlib(corpus, models, tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # makes `import matplotlib` raise ImportError
    r = invoke("--dataset", corpus, "--model", models, "--plots", tmp_path / "plots")
    assert_clean_failure(r, "--plots needs matplotlib")


# -- user errors ---------------------------------------------------------------------------------------------
def test_error_messages(corpus, models, tiny_checkpoint, tmp_path):
    (tmp_path / "empty").mkdir()
    orphan = Path(shutil.copytree(corpus, tmp_path / "orphan"))
    shutil.copy(orphan / "19/198/19-198-0001.flac", orphan / "19/198/19-198-0042.flac")
    cases = [
        (("--dataset", tmp_path / "nowhere", "--model", models), "no such file or folder"),
        (("--dataset", "test-other", "--data-dir", tmp_path, "--model", models), "ds2-onnx download test-other"),
        (("--dataset", tmp_path / "empty", "--model", models), "holds no utterances"),
        (("--dataset", orphan, "--model", models), "19-198-0042.flac"),
        (("--dataset", corpus, "--model", tmp_path / "none.onnx"), "no such model file"),
        (("--dataset", corpus, "--model", models, "--checkpoint", tmp_path / "none.pth"), "no such checkpoint"),
    ]
    for args, fragment in cases:
        assert_clean_failure(invoke(*args), fragment)
    r = invoke("--dataset", corpus, "--model", models, "--workers", 0)
    assert r.exit_code == 2 and "Traceback" not in r.output


def test_command_module_imports_no_heavy_dependencies():
    code = ("import sys, ds2_onnx.validation.commands; "
            "print(sorted(m for m in ('torch', 'librosa', 'matplotlib', 'onnxruntime') if m in sys.modules))")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "[]"
