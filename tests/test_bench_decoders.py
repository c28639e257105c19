"""bench/decoders.py: every decoder decodes the same log-probs, and its WER is what the Transcriber gives.

Timings are never asserted (shared machines are noisy); the structure of the report and its WER figures are.
"""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

from ds2_onnx.runtime import Transcriber
from ds2_onnx.validation.datasets import load_dataset
from ds2_onnx.validation.metrics import corpus_counts
from ds2_onnx.validation.tune import spread

ROOT = Path(__file__).resolve().parents[1]
ASSETS = ROOT / "ds2_onnx" / "assets"
SPLIT = ROOT / "samples" / "demo-test"


def test_decoder_bench_reports_every_decoder_with_the_transcribers_wer(tmp_path, capsys):
    spec = importlib.util.spec_from_file_location("bench_decoders", ROOT / "bench" / "decoders.py")
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    out = tmp_path / "decoders.json"
    assert bench.main(["--limit", "6", "--reps", "2", "--json", str(out)]) == 0
    report = json.loads(out.read_text())
    names = [r["decoder"] for r in report["rows"]]
    assert names == ["(model forward pass)", "greedy", "beam 64, no LM", "beam 32 + LM, alpha 0.5, no look-ahead, no margin",
                     "beam 32 + LM, no margin", "beam 64 + LM, no margin", "beam 64 + LM, no look-ahead",
                     "beam 64 + LM (default)", "beam 128 + LM"]
    assert report["utterances"] == 6 and report["machine"]["onnxruntime"]
    for row in report["rows"]:
        assert row["median_ms"] > 0 and row["ms_per_audio_s"] > 0
    rows = {r["decoder"]: r for r in report["rows"]}
    assert rows["greedy"]["vs_greedy"] == 1.0

    utterances = list(load_dataset(SPLIT, Transcriber(ASSETS / "demo.int8.onnx").info.labels))
    picked = [utterances[i] for i in spread(len(utterances), 6)]
    refs = [u.transcript for u in picked]
    for name, lm in (("greedy", None), ("beam 64 + LM (default)", ASSETS / "demo-lm.arpa.gz")):
        t = Transcriber(ASSETS / "demo.int8.onnx", lm=lm)
        counts = corpus_counts(refs, [t.transcribe(u.audio).text for u in picked])
        assert rows[name]["wer"] == counts.wer and rows[name]["cer"] == counts.cer, name
    table = capsys.readouterr().out
    assert "| beam 64 + LM (default) |" in table and "machine:" in table
