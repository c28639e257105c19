"""tools/train_demo.py: batching with oversampling, its argument checks, and a short real training run.

The run trains a tiny model (GRU(16)) for a few steps on a tiny corpus made by tools/make_corpus.py, with the
options the bundled model was trained with (bfloat16 autocast, flite oversampling), resumes it, and exports the
checkpoint it wrote with the normal export code. Needs espeak-ng, flite, fortunes and wamerican, like
tests/test_corpus.py.
"""

from __future__ import annotations

import json
import random
import subprocess
import sys
from collections import Counter
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]
TRAIN = ROOT / "tools" / "train_demo.py"
sys.path.insert(0, str(ROOT / "tools"))

import train_demo
from conftest import make_corpus


def _fake_data(n: int, seed: int = 0) -> list[tuple[np.ndarray, np.ndarray, str, str]]:
    rng = np.random.default_rng(seed)
    return [(np.zeros(int(rng.integers(8000, 64000)), np.int16), np.array([1]), "A", str(i % 4)) for i in range(n)]


def test_make_batches_default_sees_every_utterance_once():
    data = _fake_data(40)
    batches = train_demo.make_batches(data, 6.0, random.Random(0))
    flat = [i for b in batches for i in b]
    assert sorted(flat) == list(range(40))
    for b in batches:
        seconds = sum(len(data[i][0]) for i in b) / 16000
        assert len(b) == 1 or seconds <= 6.0, b
        lengths = sorted(len(data[i][0]) for i in b)
        assert lengths == [len(data[i][0]) for i in sorted(b, key=lambda i: len(data[i][0]))]
    # same seed, same order; another seed, another order
    assert train_demo.make_batches(data, 6.0, random.Random(0)) == batches
    assert train_demo.make_batches(data, 6.0, random.Random(1)) != batches


def test_make_batches_repeats_without_duplicates_in_a_batch():
    data = _fake_data(40)
    repeats = [3 if i % 5 == 0 else 1 for i in range(40)]
    batches = train_demo.make_batches(data, 6.0, random.Random(0), repeats)
    counts = Counter(i for b in batches for i in b)
    assert counts == {i: repeats[i] for i in range(40)}
    for b in batches:
        assert len(set(b)) == len(b), f"an utterance twice in one batch: {b}"


def _voices(tmp_path: Path) -> Path:
    path = tmp_path / "voices.json"
    path.write_text(json.dumps({"speakers": {
        "0": {"synth": "espeak-ng"}, "1": {"synth": "flite"}, "2": {"synth": "espeak-ng"}, "3": {"synth": "flite"}}}))
    return path


def test_pick_dev_first_and_spread():
    items = list(range(10))
    assert train_demo.pick_dev(items, 4, "first") == [0, 1, 2, 3]
    assert train_demo.pick_dev(items, 4, "spread") == [0, 2, 5, 7]
    assert train_demo.pick_dev(items, 5, "spread") == [0, 2, 4, 6, 8]
    assert train_demo.pick_dev(items, 10, "spread") == items
    assert train_demo.pick_dev(items, 12, "first") == items


def test_spectral_tilt_is_a_bounded_high_shelf():
    noise = np.random.default_rng(1).standard_normal(32000)
    freqs = np.fft.rfftfreq(noise.size, 1 / 16000)
    gains = []
    for seed in range(20):
        out = train_demo.spectral_tilt(noise, np.random.default_rng(seed), 12.0)
        ratio_db = 20 * np.log10(np.abs(np.fft.rfft(out)) / np.abs(np.fft.rfft(noise)))
        np.testing.assert_allclose(ratio_db[freqs < 1000], 0.0, atol=1e-6)   # below the lowest corner: untouched
        top = ratio_db[freqs > 6000]                                          # above the highest corner + ramp
        np.testing.assert_allclose(top, top[0], atol=1e-6)
        gains.append(top[0])
    assert -12 <= min(gains) < -3 and 3 < max(gains) <= 12                   # both cuts and boosts, within ±12 dB


def test_random_eq_is_a_bounded_smooth_octave_curve():
    noise = np.random.default_rng(3).standard_normal(32000)
    freqs = np.fft.rfftfreq(noise.size, 1 / 16000)
    octaves = [np.argmin(np.abs(freqs - f)) for f in train_demo.EQ_OCTAVES]
    spreads = []
    for seed in range(20):
        out = train_demo.random_eq(noise, np.random.default_rng(seed), 6.0)
        ratio_db = 20 * np.log10(np.abs(np.fft.rfft(out)) / np.abs(np.fft.rfft(noise)))
        assert np.all(np.abs(ratio_db) <= 6.0 + 1e-6)                        # never beyond ±6 dB
        np.testing.assert_allclose(ratio_db[freqs < 125], ratio_db[1], atol=1e-6)   # flat below 125 Hz
        steps = np.abs(np.diff(ratio_db[1:]))                 # smooth: at most 12 dB an octave between 0.5 Hz bins
        assert steps.max() <= 12.0 * np.log2(125.5 / 125) + 1e-6
        spreads.append(np.ptp(ratio_db[octaves]))
    assert max(spreads) > 6.0                                                 # the octaves move independently


def test_random_warp_is_a_bounded_monotonic_frequency_warp():
    bins = 161
    ramp = np.repeat(np.arange(bins, dtype=np.float32)[:, None], 3, axis=1)   # each bin holds its own index
    hz = np.linspace(0, 8000, bins)
    moves = []
    for seed in range(20):
        out = train_demo.random_warp(ramp, np.random.default_rng(seed), 0.12)
        assert out.shape == ramp.shape and out.dtype == ramp.dtype
        np.testing.assert_array_equal(out[:, 0], out[:, 2])                   # the same warp for every frame
        src = out[:, 0].astype(np.float64)                                    # = the source bin of each output bin
        assert src[0] == 0 and src[-1] == bins - 1                            # 0 Hz and 8 kHz stay
        assert np.all(np.diff(src) > 0)                                       # monotonic: nothing folds over
        ratio = src[1:] / np.arange(1, bins)
        assert ratio.min() >= 1 / 1.12 - 1e-5 and ratio.max() <= 1 / 0.88 + 1e-5   # never more than the ±12 % allowed
        f1, f2 = (np.interp(f, hz[1:], ratio) for f in (700, 1800))          # source/output near F1 and F2
        moves.append((f1 - 1) * (f2 - 1))
    assert min(moves) < 0 < max(moves)          # formant regions move independently: one up while another goes down
    np.testing.assert_allclose(train_demo.random_warp(ramp, np.random.default_rng(0), 0.0), ramp, atol=1e-4)


def test_features_tilt_off_leaves_the_random_stream_alone():
    samples = (np.random.default_rng(2).standard_normal(16000) * 3000).astype(np.int16)
    a, b = np.random.default_rng(7), np.random.default_rng(7)
    np.testing.assert_array_equal(train_demo.features(samples, a), train_demo.features(samples, b, 0.0))
    assert a.random() == b.random()
    tilted = [train_demo.features(samples, np.random.default_rng(s), 12.0) for s in range(6)]
    plain = [train_demo.features(samples, np.random.default_rng(s)) for s in range(6)]
    assert any(t.shape == p.shape and not np.allclose(t, p) for t, p in zip(tilted, plain))
    a, b = np.random.default_rng(7), np.random.default_rng(7)                # --eq 0 likewise draws nothing
    np.testing.assert_array_equal(train_demo.features(samples, a, 12.0), train_demo.features(samples, b, 12.0, 0.0))
    assert a.random() == b.random()
    equalised = [train_demo.features(samples, np.random.default_rng(s), 12.0, 6.0) for s in range(6)]
    assert any(e.shape == t.shape and not np.allclose(e, t) for e, t in zip(equalised, tilted))
    a, b = np.random.default_rng(7), np.random.default_rng(7)                # --warp 0 likewise draws nothing
    np.testing.assert_array_equal(train_demo.features(samples, a, 12.0, 6.0),
                                  train_demo.features(samples, b, 12.0, 6.0, 0.0))
    assert a.random() == b.random()
    warped = [train_demo.features(samples, np.random.default_rng(s), 12.0, 6.0, 0.12) for s in range(6)]
    assert any(w.shape == e.shape and not np.allclose(w, e) for w, e in zip(warped, equalised))


def test_synth_repeats(tmp_path):
    data = _fake_data(8)
    assert train_demo.synth_repeats(data, _voices(tmp_path), ["flite=3"]) == [1, 3, 1, 3, 1, 3, 1, 3]
    assert train_demo.synth_repeats(data, _voices(tmp_path), ["flite=2", "espeak-ng=1"]) == [1, 2] * 4


@pytest.mark.parametrize("spec, message", [
    ("flite", "SYNTH=N"), ("flite=0", "SYNTH=N"), ("flite=x", "SYNTH=N"), ("festival=2", "no synthesiser"),
])
def test_synth_repeats_bad_arguments(tmp_path, spec, message):
    with pytest.raises(SystemExit) as e:
        train_demo.synth_repeats(_fake_data(4), _voices(tmp_path), [spec])
    assert message in str(e.value)


def test_synth_repeats_without_voices_json(tmp_path):
    with pytest.raises(SystemExit) as e:
        train_demo.synth_repeats(_fake_data(4), tmp_path / "missing.json", ["flite=2"])
    assert "voices.json" in str(e.value)


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("train-corpus") / "c"
    make_corpus(out, seed=3, train=10, dev=3, test=2)
    return out


def _train(corpus: Path, work: Path, *extra: str) -> subprocess.CompletedProcess:
    cmd = [sys.executable, str(TRAIN), "--corpus", str(corpus), "--work", str(work), "--hidden", "16",
           "--batch-seconds", "12", "--eval-every", "2", "--dev-limit", "3", "--warmup", "2", "--seed", "0",
           "--bf16", "--synth-weight", "flite=2", "--threads", "1", *extra]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=300, check=False)


def test_training_run_resume_and_export(corpus, tmp_path):
    from ds2_onnx.export.checkpoint import load_checkpoint
    from ds2_onnx.export.pipeline import export_checkpoint

    work = tmp_path / "work"
    p = _train(corpus, work, "--steps", "4")
    assert p.returncode == 0, p.stderr
    assert "per epoch with flite=2" in p.stderr
    records = [json.loads(line) for line in (work / "log.jsonl").read_text().splitlines()]
    assert [r["step"] for r in records] == [2, 4]   # every 2 steps; the last one is not evaluated twice
    for r in records:
        assert 0 <= r["cer"] and 0 <= r["wer"]

    # another seed would give another batch list for the epoch, so resuming with it is refused
    p = _train(corpus, work, "--steps", "6", "--resume", "--seed", "1")
    assert p.returncode != 0 and "--resume needs the same" in p.stderr and "Traceback" not in p.stderr, p.stderr

    # the augmentation may change on resume
    p = _train(corpus, work, "--steps", "7", "--resume", "--tilt", "12", "--eq", "6", "--warp", "0.1")
    assert p.returncode == 0, p.stderr
    assert "resumed at step 4" in p.stderr
    records = [json.loads(line) for line in (work / "log.jsonl").read_text().splitlines()]
    assert [r["step"] for r in records] == [2, 4, 6, 7]   # and once more at an off-cycle end

    loaded = load_checkpoint(work / "last.pth")
    assert loaded.config.hidden_size == 16 and loaded.config.hidden_layers == 3
    assert all(np.isfinite(v.detach().numpy()).all() for v in loaded.model.state_dict().values()
               if v.dtype.is_floating_point)
    assert load_checkpoint(work / "best.pth").config.hidden_size == 16
    out = tmp_path / "m.onnx"
    export_checkpoint(work / "last.pth", out, precisions=("fp32",))
    assert out.stat().st_size > 0


def test_init_with_other_hidden_size_is_one_line_error(corpus, tmp_path, tiny_checkpoint):
    p = _train(corpus, tmp_path / "w", "--steps", "1", "--init", str(tiny_checkpoint))
    assert p.returncode != 0
    assert "error:" in p.stderr and "--hidden 48" in p.stderr
    assert "Traceback" not in p.stderr


def test_widen_keeps_the_outputs_and_lets_the_new_units_learn():
    import torch

    from conftest import make_tiny_model
    from ds2_onnx.export.model import DeepSpeech2, ModelConfig

    narrow = make_tiny_model(seed=2, hidden=16).eval()
    torch.manual_seed(0)
    wide = DeepSpeech2(ModelConfig(hidden_size=24))
    wide.load_state_dict(train_demo.widen(narrow.state_dict(), wide))
    wide.eval()
    x, lengths = torch.randn(2, 1, 161, 120), torch.tensor([120, 90])
    with torch.no_grad():
        a, la = narrow(x, lengths)
        b, lb = wide(x, lengths)
    assert torch.equal(la, lb)
    assert torch.allclose(a, b, atol=1e-5), f"max |Δ log-prob| {(a - b).abs().max():.2e} (tolerance 1e-5)"
    # the old units' own weights carried over; the weights from the new units start at zero
    assert torch.equal(wide.rnns[1].rnn.weight_hh_l0[:16, :16], narrow.rnns[1].rnn.weight_hh_l0[:16])
    assert not wide.rnns[1].rnn.weight_hh_l0[:16, 16:].any()
    assert not wide.fc[0].module[1].weight[:, 16:].any()
    # the new units are live: the loss has a gradient on the zero weights that connect them to the output
    wide.train()
    out, _ = wide(x, lengths)
    out[..., 1].sum().backward()
    assert wide.fc[0].module[1].weight.grad[:, 16:].abs().sum() > 0


def test_init_from_a_narrower_checkpoint_widens_it(corpus, tmp_path):
    from conftest import make_tiny_model
    from ds2_onnx.export.checkpoint import load_checkpoint
    from ds2_onnx.export.synthetic import make_package, save_package

    narrow = save_package(make_package(make_tiny_model(hidden=8)), tmp_path / "narrow.pth")
    p = _train(corpus, tmp_path / "w", "--steps", "1", "--init", str(narrow))
    assert p.returncode == 0, p.stderr
    assert "widened from GRU(8) to GRU(16)" in p.stderr
    assert load_checkpoint(tmp_path / "w" / "last.pth").config.hidden_size == 16


def test_init_with_a_file_that_is_not_a_checkpoint_is_one_line_error(corpus, tmp_path):
    bogus = tmp_path / "notes.pth"
    bogus.write_text("not a checkpoint\n")
    p = _train(corpus, tmp_path / "w", "--steps", "1", "--init", str(bogus))
    assert p.returncode != 0
    lines = [line for line in p.stderr.splitlines() if line.startswith("error:")]
    assert len(lines) == 1 and "--init" in lines[0] and "notes.pth" in lines[0], p.stderr
    assert "Traceback" not in p.stderr


def test_negative_tilt_is_one_line_error(corpus, tmp_path):
    p = _train(corpus, tmp_path / "w", "--steps", "1", "--tilt", "-3")
    assert p.returncode == 2 and "--tilt wants a gain in dB >= 0" in p.stderr and "Traceback" not in p.stderr, p.stderr
    p = _train(corpus, tmp_path / "w", "--steps", "1", "--eq", "nan")
    assert p.returncode == 2 and "--eq wants a gain in dB >= 0" in p.stderr and "Traceback" not in p.stderr, p.stderr
    for bad in ("0.5", "-0.1", "nan"):
        p = _train(corpus, tmp_path / "w", "--steps", "1", "--warp", bad)
        assert p.returncode == 2 and "--warp wants a factor in 0" in p.stderr and "Traceback" not in p.stderr, p.stderr


def test_stop_step_reruns_a_cut_short_run_exactly(corpus, tmp_path):
    """--stop-step N ends where a run that --minutes cut short ended: same weights, schedule still over --steps."""
    import torch

    def weights(work: Path) -> dict:
        return torch.load(work / "last.pth", weights_only=True)["state_dict"]

    runs = {}
    for name, extra in (("a", ("--steps", "6", "--stop-step", "3")), ("b", ("--steps", "6", "--stop-step", "3")),
                        ("short", ("--steps", "3"))):
        p = _train(corpus, tmp_path / name, *extra)
        assert p.returncode == 0, p.stderr
        records = [json.loads(line) for line in (tmp_path / name / "log.jsonl").read_text().splitlines()]
        assert [r["step"] for r in records] == [2, 3]
        runs[name] = weights(tmp_path / name)
    assert torch.load(tmp_path / "a" / "last.pth", weights_only=True)["iteration"] == 3
    assert all(torch.equal(runs["a"][k], runs["b"][k]) for k in runs["a"])   # a rerun follows the same path
    # with --steps 3 the cosine schedule is shorter, so the learning rate at steps 1-2 differs and so do the weights
    assert any(not torch.equal(runs["a"][k], runs["short"][k]) for k in runs["a"])

    for bad in ("0", "7"):
        p = _train(corpus, tmp_path / "w", "--steps", "6", "--stop-step", bad)
        assert p.returncode == 2 and "--stop-step wants a step in 1" in p.stderr and "Traceback" not in p.stderr, p.stderr
