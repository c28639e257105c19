"""bench/e2e.py: the end-to-end benchmark runs every variant on a tiny model and reports consistent figures.

Timings are never asserted (shared machines are noisy); the structure and the arithmetic of the report are.
"""

from __future__ import annotations

import importlib
import json
import sys
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def e2e():
    # imported by name from bench/ (not from a file spec): the spawned workers import the same module by name
    sys.path.insert(0, str(ROOT / "bench"))
    try:
        yield importlib.import_module("e2e")
    finally:
        sys.path.remove(str(ROOT / "bench"))


def test_durations_are_test_clean_shaped_and_fixed(e2e):
    d = e2e.test_clean_like_durations(24)
    assert len(d) == 24
    assert abs(np.mean(d) - 7.4) < 0.05  # test-clean: 5.4 h over 2,620 utterances
    assert max(d) == 35.0 and min(d) >= 1.3
    assert 4.0 < np.median(d) < 7.4  # right-skewed like speech corpora
    assert d == e2e.test_clean_like_durations(24)  # the same set every run
    assert d != sorted(d)  # arrival order is shuffled, so sorting batches has something to do


def test_utterances_have_the_requested_lengths(e2e):
    stream = e2e.speech_stream()
    assert stream.size > 60 * 16000  # the bundled clips: real speech, not noise
    clips = e2e.utterances([1.5, 2.25, 300.0], stream)  # 300 s wraps around the stream
    assert [c.size for c in clips] == [24000, 36000, 4_800_000]
    assert np.array_equal(clips[1][:10], stream[24000:24010])


def test_bench_reports_every_variant(e2e, tmp_path, capsys):
    report_path = tmp_path / "report.json"
    code = e2e.main(["--hidden", "32", "--work", str(tmp_path / "work"), "--utterances", "3", "--reps", "2",
                     "--batch", "1,2", "--json", str(report_path)])
    assert code == 0
    report = json.loads(report_path.read_text())
    variants = report["variants"]
    assert list(variants) == list(e2e.VARIANTS)
    assert report["machine"]["onnxruntime"] and report["machine"]["torch"]
    audio = sum(report["durations_s"])
    for name, r in variants.items():
        assert len(r["clip_runs_s"]) == 2
        assert r["clip_e2e_s"] == pytest.approx(np.median(r["clip_runs_s"]), rel=1e-3)
        parts = r["clip_features_s"] + r["clip_model_s"] + r["clip_decode_s"]
        assert 0 < r["clip_model_s"] <= r["clip_e2e_s"] and parts > 0
        assert r["rtf"] == pytest.approx(r["clip_e2e_s"] / 10.0)
        assert len(r["latencies_s"]) == 3 and all(t > 0 for t in r["latencies_s"])
        assert r["latency_p50_s"] <= r["latency_p90_s"] <= r["latency_p99_s"] <= max(r["latencies_s"]) + 1e-4
        assert r["throughput"]["1"] == pytest.approx(audio / sum(r["latencies_s"]), rel=1e-3)
        assert set(r["throughput"]) == {"1", "2"} and r["throughput"]["2"] > 0
        assert set(r["throughput_other_plans"]) == (set() if name.startswith("torch") else {"sorted", "arrival"})
        assert r["file_mb"] == pytest.approx(Path(r["file"]).stat().st_size / 1e6)
        assert 0 < r["rss_after_load_mb"] <= r["peak_rss_batch1_mb"] <= r["peak_rss_mb"]
        assert r["load_s"] > 0
        assert r["speedup_vs_torch_fp32"] == pytest.approx(variants["torch_fp32"]["clip_e2e_s"] / r["clip_e2e_s"])
    assert variants["torch_fp32"]["speedup_vs_torch_fp32"] == 1.0
    assert variants["torch_fp32"]["file"].endswith(".pth")
    assert variants["ort_int8"]["file"].endswith(".int8.onnx")
    assert variants["ort_int4"]["file"].endswith(".int4.onnx")
    out = capsys.readouterr().out
    assert "ort_int4" in out and "arrival" in out and "onnxruntime" in out
    assert e2e.main(["--from-json", str(report_path), "--markdown"]) == 0  # tables again, no measuring
    md = capsys.readouterr().out
    rows = [line for line in md.splitlines() if line.startswith("| ORT") or line.startswith("| PyTorch")]
    assert len(rows) == 6 and all(row.count("|") == md.splitlines()[md.splitlines().index(rows[0]) - 2].count("|")
                                  for row in rows)


def test_batch_plans(e2e):
    lengths = [300, 100, 3500, 120, 110, 400]
    assert e2e.batch_plan(lengths, 2, "arrival") == [[0, 1], [2, 3], [4, 5]]
    assert e2e.batch_plan(lengths, 4, "sorted") == [[1, 4, 3, 0], [5, 2]]  # no cap: 3500 pads 400
    assert e2e.batch_plan(lengths, 4, "bucketed") == [[1, 4, 3], [0, 5], [2]]  # padding within 25 %


def test_models_are_built_once_per_checkpoint(e2e, tmp_path):
    logs: list[str] = []
    first = e2e.prepare_models(None, tmp_path, 32, logs.append)
    built = len(logs)
    second = e2e.prepare_models(None, tmp_path, 32, logs.append)
    assert first == second and len(logs) == built  # cached: nothing rebuilt, nothing logged
    assert any("fp32" in line and "frame agreement" in line for line in logs)


def test_unknown_variant_is_refused(e2e, capsys):
    with pytest.raises(SystemExit) as exc:
        e2e.main(["--variants", "torch_fp32,ort_int5"])
    assert exc.value.code == 2
    assert "ort_int5" in capsys.readouterr().err


def test_bad_checkpoint_is_one_clear_error(e2e, tmp_path, capsys):
    bad = tmp_path / "bad.pth"
    bad.write_text("not a checkpoint")
    assert e2e.main(["--checkpoint", str(bad), "--work", str(tmp_path / "w")]) == 1
    err = capsys.readouterr().err
    assert "error: " in err and "is not a PyTorch checkpoint" in err and "Traceback" not in err
    with pytest.raises(SystemExit):
        e2e.main(["--checkpoint", str(tmp_path / "missing.pth")])
