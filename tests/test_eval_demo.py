"""tools/eval_demo.py: the per-group table and its --baseline comparison (ΔWER ± paired SE), on a small corpus
made by tools/make_corpus.py and the bundled exports. Needs espeak-ng, flite, fortunes and wamerican, like
tests/test_corpus.py."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import make_corpus

ROOT = Path(__file__).resolve().parents[1]
ASSETS = ROOT / "ds2_onnx" / "assets"


@pytest.fixture(scope="module")
def split(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("eval-corpus") / "c"
    make_corpus(out, seed=5, train=1, dev=8, test=0)
    return out / "dev"


def _run(split: Path, model: str, *extra: str) -> subprocess.CompletedProcess:
    cmd = [sys.executable, str(ROOT / "tools" / "eval_demo.py"), "--model", str(ASSETS / model), "--split", str(split),
           "--voices", str(split.parent / "voices.json"), "--threads", "1", *extra]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=300, check=False,
                          env={**os.environ, "PYTHONPATH": str(ROOT / "tools")})


def _table(split: Path, model: str, *extra: str) -> dict[str, list[str]]:
    p = _run(split, model, *extra)
    assert p.returncode == 0, p.stderr
    rows = [line.strip("|").split("|") for line in p.stdout.splitlines() if line.startswith("| ") and "---" not in line]
    return {cells[0].strip(): [c.strip() for c in cells[1:]] for cells in rows[1:]}


def test_baseline_column_is_the_wer_difference_with_its_paired_se(split):
    fp32 = _table(split, "demo.onnx")
    int4 = _table(split, "demo.int4.onnx", "--baseline", str(ASSETS / "demo.onnx"))
    assert fp32.keys() == int4.keys() and "all" in fp32 and len(fp32) > 3
    for group, (words, wer, _cer, delta) in int4.items():
        assert words == fp32[group][0]
        expected = float(wer) - float(fp32[group][1])                     # the two rows' WERs, each rounded
        value, _, se = delta.partition(" ± ")
        assert abs(float(value) - expected) <= 0.011, (group, delta, expected)
        assert se == "" or float(se) >= 0.0                               # no SE for a one-utterance group
    # against itself: no difference and no spread, in every group
    same = _table(split, "demo.onnx", "--baseline", str(ASSETS / "demo.onnx"))
    for group, cells in same.items():
        assert cells[3] in ("+0.00 ± 0.00", "+0.00"), (group, cells)
        assert cells[:3] == fp32[group][:3]


def test_missing_baseline_is_one_line_error_before_any_work(split, tmp_path):
    p = _run(split, "demo.onnx", "--baseline", str(tmp_path / "nope.onnx"))
    assert p.returncode == 1 and "Traceback" not in p.stderr, p.stderr
    assert p.stderr.strip() == f"error: {tmp_path / 'nope.onnx'}: no such model file" and "|" not in p.stdout
