"""tools/average_checkpoints.py: the mean of checkpoints' weights, written in the MLPerf layout; errors for bad input."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import torch

from ds2_onnx.errors import CheckpointError
from ds2_onnx.export.checkpoint import load_checkpoint, sha256_file
from ds2_onnx.export.model import ModelConfig
from ds2_onnx.export.synthetic import make_package, random_model, save_package

ROOT = Path(__file__).resolve().parents[1]
TOOL = ROOT / "tools" / "average_checkpoints.py"
sys.path.insert(0, str(ROOT / "tools"))

import average_checkpoints


@pytest.fixture(scope="module")
def checkpoints(tmp_path_factory):
    folder = tmp_path_factory.mktemp("avg")
    paths = []
    for seed in range(3):
        model = random_model(ModelConfig(hidden_size=16, hidden_layers=2), seed=seed)
        paths.append(save_package(make_package(model, module_prefix=seed == 1), folder / f"m{seed}.pth"))
    return paths


def _run(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(TOOL), *args], capture_output=True, text=True, timeout=120, check=False)


def test_average_is_the_mean_of_every_tensor(checkpoints, tmp_path):
    out = tmp_path / "soup.pth"
    p = _run("-o", str(out), *map(str, checkpoints))
    assert p.returncode == 0, p.stderr
    assert "mean of 3 checkpoints, 2 x GRU(16)" in p.stdout
    soup = load_checkpoint(out)          # the normal loader reads it: MLPerf layout, keys and shapes right
    inputs = [load_checkpoint(c).model.state_dict() for c in checkpoints]
    state = soup.model.state_dict()
    floating = [k for k in state if state[k].is_floating_point()]
    assert any(k.endswith("running_var") for k in floating)   # BatchNorm statistics are averaged too
    for k in floating:
        mean = sum(s[k].double() for s in inputs) / 3
        torch.testing.assert_close(state[k].double(), mean, rtol=0, atol=1e-6)
        assert not torch.equal(state[k], inputs[0][k]) or torch.equal(inputs[0][k], inputs[1][k])
    package = torch.load(out, weights_only=True)
    assert package["averaged_from"] == [sha256_file(c) for c in checkpoints]
    assert not list(tmp_path.glob("*.tmp"))


def test_average_of_copies_is_the_model(checkpoints, tmp_path):
    model, hashes = average_checkpoints.average([checkpoints[0], checkpoints[0]])
    original = load_checkpoint(checkpoints[0]).model.state_dict()
    assert len(hashes) == 2 and hashes[0] == hashes[1]
    for k, v in model.state_dict().items():
        if v.is_floating_point():
            torch.testing.assert_close(v, original[k], rtol=0, atol=1e-7)


def test_mismatched_architectures_are_refused(checkpoints, tmp_path):
    other = save_package(make_package(random_model(ModelConfig(hidden_size=8, hidden_layers=2))), tmp_path / "h8.pth")
    with pytest.raises(CheckpointError, match="does not match"):
        average_checkpoints.average([checkpoints[0], other])
    out = tmp_path / "soup.pth"
    p = _run("-o", str(out), str(checkpoints[0]), str(other))
    assert p.returncode == 1 and p.stderr.startswith("error: ") and "does not match" in p.stderr
    assert "Traceback" not in p.stderr and not out.exists()


@pytest.mark.parametrize("case", ["one input", "not a checkpoint", "missing", "output is an input"])
def test_bad_input_is_one_line_error(checkpoints, tmp_path, case):
    out = tmp_path / "soup.pth"
    bogus = tmp_path / "notes.pth"
    bogus.write_text("not a checkpoint\n")
    args = {
        "one input": ["-o", str(out), str(checkpoints[0])],
        "not a checkpoint": ["-o", str(out), str(checkpoints[0]), str(bogus)],
        "missing": ["-o", str(out), str(checkpoints[0]), str(tmp_path / "gone.pth")],
        "output is an input": ["-o", str(checkpoints[1]), str(checkpoints[0]), str(checkpoints[1])],
    }[case]
    before = sha256_file(checkpoints[1])
    p = _run(*args)
    assert p.returncode != 0 and "Traceback" not in p.stderr, p.stderr
    assert len([line for line in p.stderr.splitlines() if line.startswith("error:")]) == 1, p.stderr
    assert not out.exists() and sha256_file(checkpoints[1]) == before
