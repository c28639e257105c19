"""Train the demo DeepSpeech2 (MLPerf architecture, smaller GRUs) on a LibriSpeech-layout corpus, on the CPU.

    python tools/train_demo.py --corpus data/corpus --work out/train --hidden 256 --steps 4000
    python tools/train_demo.py --corpus data/corpus --work out/train --resume      # continue where it stopped

Same conv stack, features (the runtime's numpy features, identical to the librosa pipeline), 29 labels and
unidirectional GRUs as MLPerf; CTC loss; Adam with a warm-up and a cosine schedule over --steps (a step-based
schedule: a rerun with the same seed and corpus follows the same path however fast the machine is);
SpecAugment-style masks, noise, gain, speed perturbation and (with --tilt, --eq, --warp) a random high shelf, a
random octave equaliser and a random formant-scale frequency warp applied on the fly. Checkpoints are written in
the MLPerf package format, so `ds2-onnx export` runs on them unchanged: WORK/best.pth (lowest dev WER) and
WORK/last.pth. WORK/state.pt holds optimizer and RNG state for --resume.
"""

from __future__ import annotations

import argparse
import json
import math
import random
import sys
import time
from pathlib import Path

import numpy as np
import soundfile as sf
import soxr
import torch
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

from ds2_onnx.console import err as console  # stderr, soft-wrapped: log lines are never broken
from ds2_onnx.errors import Ds2OnnxError
from ds2_onnx.export.checkpoint import load_checkpoint
from ds2_onnx.export.model import DeepSpeech2, ModelConfig
from ds2_onnx.export.synthetic import make_package, save_package
from ds2_onnx.runtime.decoding import decode
from ds2_onnx.runtime.features import compute_features
from ds2_onnx.runtime.model_info import INT32_FULL_SCALE
from ds2_onnx.validation.datasets import load_dataset
from ds2_onnx.validation.metrics import ErrorCounts
from ds2_onnx.validation.tune import spread

LABELS = ModelConfig().labels


def read_split(root: Path) -> list[tuple[str, Path, str]]:
    """(utterance id, audio path, transcript) for a LibriSpeech-layout folder, in path order."""
    try:
        utterances = load_dataset(root, LABELS)
    except Ds2OnnxError as e:
        raise SystemExit(f"error: {e}") from e
    return [(u.id, u.audio, u.transcript) for u in sorted(utterances, key=lambda u: u.audio)]


def load_split(root: Path, desc: str) -> list[tuple[np.ndarray, np.ndarray, str, str]]:
    """Audio as int16 (memory), target ids, transcript and speaker id for every utterance."""
    out = []
    items = read_split(root)
    with progress_bar() as bar:
        task = bar.add_task(f"loading {desc}", total=len(items))
        for uid, path, text in items:
            samples, rate = sf.read(str(path), dtype="int16")
            assert rate == 16000, f"{path} is {rate} Hz"
            ids = np.array([LABELS.index(c) for c in text if c in LABELS], dtype=np.int64)
            out.append((samples, ids, text, uid.split("-")[0]))
            bar.advance(task)
    return out


def progress_bar() -> Progress:
    return Progress(TextColumn("{task.description}"), BarColumn(), TextColumn("{task.completed}/{task.total}"),
                    TimeElapsedColumn(), TimeRemainingColumn(), console=console)


def synth_repeats(data, voices_path: Path, weights: list[str]) -> list[int]:
    """Per-utterance repeat counts from `--synth-weight SYNTH=N` and the corpus's voices.json."""
    factors = {}
    for item in weights:
        name, _, n = item.partition("=")
        if not n.isdigit() or int(n) < 1:
            raise SystemExit(f"error: --synth-weight wants SYNTH=N with N a whole number >= 1, got {item!r}")
        factors[name] = int(n)
    try:
        speakers = json.loads(voices_path.read_text())["speakers"]
    except (OSError, ValueError, KeyError) as e:
        raise SystemExit(f"error: --synth-weight needs the corpus's voices.json ({voices_path}): {e}") from e
    synths = {v["synth"] for v in speakers.values()}
    unknown = set(factors) - synths
    if unknown:
        raise SystemExit(f"error: --synth-weight: no synthesiser {sorted(unknown)} in {voices_path} (has {sorted(synths)})")
    return [factors.get(speakers[spk]["synth"], 1) for *_, spk in data]


def filter_db(audio: np.ndarray, gain_db) -> np.ndarray:
    """`audio` (16 kHz) through a zero-phase filter whose gain in dB at each FFT frequency is `gain_db(freqs)`."""
    freqs = np.fft.rfftfreq(audio.size, 1 / 16000)
    return np.fft.irfft(np.fft.rfft(audio) * 10 ** (gain_db(freqs) / 20), audio.size)


def spectral_tilt(audio: np.ndarray, rng: np.random.Generator, max_db: float) -> np.ndarray:
    """A random high shelf: gain uniform in ±max_db above a corner uniform in 1–4 kHz, ramped in over 2 kHz.

    Voices differ in how much energy they put above a few kHz (the held-out flite voice rms has ~10 dB more at
    4–8 kHz than the seen flite voices); this makes the balance a nuisance variable rather than a cue."""
    gain_db, lo = rng.uniform(-max_db, max_db), rng.uniform(1000.0, 4000.0)
    return filter_db(audio, lambda freqs: np.interp(freqs, [lo, lo + 2000.0], [0.0, gain_db]))


EQ_OCTAVES = 125.0 * 2.0 ** np.arange(7)  # 125 Hz … 8 kHz


def random_eq(audio: np.ndarray, rng: np.random.Generator, max_db: float) -> np.ndarray:
    """A random smooth equaliser: an independent gain uniform in ±max_db at each octave from 125 Hz to 8 kHz,
    linear in log-frequency between them (flat below 125 Hz).

    Where the shelf of `spectral_tilt` moves only the balance above a corner, this colours the whole envelope,
    formant region included, so that no one voice's long-term spectrum is a cue."""
    gains = rng.uniform(-max_db, max_db, EQ_OCTAVES.size)
    return filter_db(audio, lambda freqs: np.interp(np.log2(np.maximum(freqs, 1.0)), np.log2(EQ_OCTAVES), gains))


WARP_ANCHORS = np.array([0.0, 300.0, 700.0, 1200.0, 1800.0, 2500.0, 3300.0, 4300.0, 5600.0, 8000.0])  # Hz
MAX_WARP = 0.2  # at most this, neighbouring anchors cannot cross


def random_warp(feats: np.ndarray, rng: np.random.Generator, max_warp: float) -> np.ndarray:
    """The spectrogram (frequency bins x frames, 0 … 8 kHz) under a random monotonic frequency warp: each interior
    anchor of WARP_ANCHORS moves by an independent factor uniform in 1 ± max_warp (0 Hz and 8 kHz stay), piecewise
    linear between anchors, the same for every frame.

    Where speed perturbation scales all frequencies by one factor, this moves the formant regions independently
    (F1 up while F2 goes down, say) — new vocal-tract shapes from the same voices, for speakers never heard."""
    moved = WARP_ANCHORS * np.concatenate([[1.0], rng.uniform(1 - max_warp, 1 + max_warp, WARP_ANCHORS.size - 2), [1.0]])
    bins = feats.shape[0]
    out_hz = np.linspace(0.0, 8000.0, bins)
    src = np.interp(out_hz, moved, WARP_ANCHORS) * (bins - 1) / 8000.0   # source bin of each output bin
    lo = np.minimum(src.astype(int), bins - 2)
    frac = (src - lo)[:, None]
    return (feats[lo] * (1 - frac) + feats[lo + 1] * frac).astype(feats.dtype)


def features(samples: np.ndarray, rng: np.random.Generator | None, tilt_db: float = 0.0,
             eq_db: float = 0.0, warp: float = 0.0) -> np.ndarray:
    """The runtime's features; with `rng`, a randomly perturbed version (speed, a high shelf of up to ±`tilt_db`
    when that is > 0, a random octave equaliser of up to ±`eq_db` when that is > 0, noise, gain, and on the
    features a random frequency warp of up to ±`warp` when that is > 0)."""
    audio = samples.astype(np.float64) / 32768.0
    if rng is not None:
        if rng.random() < 0.5:
            factor = rng.uniform(0.88, 1.12)
            audio = soxr.resample(audio, 16000, int(16000 / factor), quality="LQ")
        if tilt_db > 0 and rng.random() < 0.5:     # no draw when off: older recipes replay unchanged
            audio = spectral_tilt(audio, rng, tilt_db)
        if eq_db > 0 and rng.random() < 0.5:       # likewise
            audio = random_eq(audio, rng, eq_db)
        if rng.random() < 0.5:
            snr_db = rng.uniform(10, 35)
            power = np.mean(audio**2) + 1e-12
            audio = audio + rng.standard_normal(audio.size) * math.sqrt(power / 10 ** (snr_db / 10))
        audio = audio * rng.uniform(0.3, 1.0)
    feats = compute_features(audio * INT32_FULL_SCALE, 320, 160)
    if rng is not None and warp > 0 and rng.random() < 0.5:   # no draw when off: older recipes replay unchanged
        feats = random_warp(feats, rng, warp)
    return feats


def spec_augment(f: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    f = f.copy()
    for _ in range(2):
        w = rng.integers(0, 21)
        s = rng.integers(0, f.shape[0] - w)
        f[s : s + w] = 0.0
    for _ in range(2):
        w = rng.integers(0, min(40, max(1, f.shape[1] // 10)) + 1)
        s = rng.integers(0, max(1, f.shape[1] - w))
        f[:, s : s + w] = 0.0
    return f


def make_batches(data, batch_seconds: float, rng: random.Random, repeats: list[int] | None = None) -> list[list[int]]:
    """Length-bucketed batches of roughly `batch_seconds` of audio, in random order.

    `repeats[i]` (default 1) is how many times utterance i is seen per epoch: copy k of the repeated utterances
    is bucketed on its own, so no batch holds an utterance twice."""
    copies = max(repeats) if repeats else 1
    batches = []
    for k in range(copies):
        members = [i for i in range(len(data)) if not repeats or repeats[i] > k]
        current, total = [], 0.0
        for i in sorted(members, key=lambda i: len(data[i][0])):
            seconds = len(data[i][0]) / 16000
            if current and total + seconds > batch_seconds:
                batches.append(current)
                current, total = [], 0.0
            current.append(i)
            total += seconds
        if current:
            batches.append(current)
    rng.shuffle(batches)
    return batches


def collate(feats: list[np.ndarray]) -> tuple[torch.Tensor, torch.Tensor]:
    lengths = torch.tensor([f.shape[1] for f in feats])
    x = torch.zeros(len(feats), 1, feats[0].shape[0], int(lengths.max()))
    for b, f in enumerate(feats):
        x[b, 0, :, : f.shape[1]] = torch.from_numpy(f)
    return x, lengths


def evaluate(model: DeepSpeech2, data, batch_size: int = 32) -> dict:
    model.eval()
    total = ErrorCounts()
    order = sorted(range(len(data)), key=lambda i: len(data[i][0]))
    with torch.inference_mode():
        for b in range(0, len(order), batch_size):
            idx = order[b : b + batch_size]
            x, lengths = collate([features(data[i][0], None) for i in idx])
            log_probs, out_lengths = model(x, lengths)
            for k, i in enumerate(idx):
                hyp = decode(log_probs[k, : int(out_lengths[k])].numpy(), LABELS, 0, 0.02).text
                total = total + ErrorCounts.of(data[i][2], hyp)
    model.train()
    return {"wer": total.wer, "cer": total.cer}


def widen(state: dict[str, torch.Tensor], model: DeepSpeech2) -> dict[str, torch.Tensor]:
    """A state_dict for `model` (wider GRUs) that computes the same outputs as `state` (narrower GRUs).

    Function-preserving widening: each GRU keeps its units; the new units get the fresh initial weights `model`
    was built with for their own inputs, but every weight *from* a new unit (into the old units' gates, the next
    GRU and the classifier) is zero, so the old units never see them and the outputs are unchanged. Training then
    grows those weights from zero. Conv stack and BatchNorm statistics of the old units carry over."""
    out = {k: v.clone() for k, v in model.state_dict().items()}
    old_h = state["rnns.0.rnn.weight_hh_l0"].shape[1]
    new_h = out["rnns.0.rnn.weight_hh_l0"].shape[1]
    rows = torch.cat([torch.arange(g * new_h, g * new_h + old_h) for g in range(3)])  # old units in r, z, n
    for key, value in state.items():
        target = out[key]
        if key.startswith("rnns."):
            if key.endswith(("weight_ih_l0", "weight_hh_l0")):
                if not key.startswith("rnns.0.") or key.endswith("weight_hh_l0"):  # inputs are GRU units
                    target[rows, old_h:] = 0.0  # old units ignore the new ones
                target[rows, : value.shape[1]] = value
            elif key.endswith(("bias_ih_l0", "bias_hh_l0")):
                target[rows] = value
            else:
                raise ValueError(f"cannot widen {key}")
        elif key == "fc.0.module.1.weight":
            target.zero_()
            target[:, :old_h] = value
        elif key.startswith("fc.0.module.0.") and value.dim() == 1:  # BatchNorm1d over the GRU units
            target[:old_h] = value
        else:
            out[key] = value.clone()
    return out


def pick_dev(items: list, limit: int, how: str) -> list:
    """The dev utterances for periodic evaluation: the first `limit` in path order, or `limit` spread evenly over
    the whole split ("spread"). The split is in speaker order, so "first" holds only the lower speaker ids; on the
    demo corpus the first 400 of 600 dev utterances take 26% of their words from held-out voices, the whole split
    51%, and only "spread" keeps that mix."""
    if how == "first":
        return list(items[:limit])
    return [items[i] for i in spread(len(items), limit)]


def save_checkpoint(model: DeepSpeech2, path: Path, **extras) -> None:
    save_package(make_package(model, **extras), path)   # via a temporary file: never half-written


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--corpus", type=Path, required=True, help="folder with train/ and dev/ in LibriSpeech layout")
    parser.add_argument("--work", type=Path, required=True, help="folder for checkpoints and the log")
    parser.add_argument("--hidden", type=int, default=256)
    parser.add_argument("--layers", type=int, default=3)
    parser.add_argument("--steps", type=int, default=4000, help="optimizer steps; the learning-rate schedule spans them")
    parser.add_argument("--warmup", type=int, default=100, help="steps of linear learning-rate warm-up")
    parser.add_argument("--minutes", type=float, default=None,
                        help="stop after this much training time (state is saved; --resume continues the schedule)")
    parser.add_argument("--stop-step", type=int, default=None, metavar="N",
                        help="stop after step N, the schedule still spanning --steps (reruns a run that --minutes "
                             "cut short, on any machine)")
    parser.add_argument("--batch-seconds", type=float, default=48.0, help="audio seconds per batch")
    parser.add_argument("--lr", type=float, default=1.5e-3)
    parser.add_argument("--eval-every", type=int, default=400, help="steps between dev evaluations")
    parser.add_argument("--dev-limit", type=int, default=400, help="dev utterances used for periodic evaluation")
    parser.add_argument("--dev-pick", choices=("first", "spread"), default="first",
                        help="which --dev-limit utterances: the first ones (the split is in speaker order; stages 1-12 "
                             "of the demo model used this) or spread evenly over the split (keeps its mix of voices)")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--bf16", action="store_true",
                        help="bfloat16 autocast for the forward pass (weights, optimizer and CTC stay float32; "
                             "1.6x faster on CPUs with AVX-512 BF16)")
    parser.add_argument("--synth-weight", action="append", default=[], metavar="SYNTH=N",
                        help="repeat the utterances of a synthesiser N times per epoch, e.g. flite=2 (repeatable)")
    parser.add_argument("--tilt", type=float, default=0.0, metavar="DB",
                        help="on half the utterances, a random high shelf of up to ±DB above 1–4 kHz (default 0: off)")
    parser.add_argument("--eq", type=float, default=0.0, metavar="DB",
                        help="on half the utterances, a random equaliser: a gain of up to ±DB at each octave from "
                             "125 Hz to 8 kHz (default 0: off)")
    parser.add_argument("--warp", type=float, default=0.0, metavar="W",
                        help="on half the utterances, a random frequency warp of the spectrogram: formant-scale anchors "
                             f"300 Hz … 5.6 kHz each moved by a factor in 1 ± W, at most {MAX_WARP} (default 0: off)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--resume", action="store_true", help="continue from WORK/state.pt (optimizer, schedule, step)")
    parser.add_argument("--init", type=Path, help="start from the weights of an MLPerf-format checkpoint (fine-tuning); one with "
                        "narrower GRUs is widened to --hidden without changing its outputs")
    args = parser.parse_args()
    if not (args.tilt >= 0 and math.isfinite(args.tilt)):
        parser.error(f"--tilt wants a gain in dB >= 0 (0: off), got {args.tilt}")
    if not (args.eq >= 0 and math.isfinite(args.eq)):
        parser.error(f"--eq wants a gain in dB >= 0 (0: off), got {args.eq}")
    if not 0 <= args.warp <= MAX_WARP:
        parser.error(f"--warp wants a factor in 0 … {MAX_WARP} (0: off), got {args.warp}")
    if args.stop_step is not None and not 1 <= args.stop_step <= args.steps:
        parser.error(f"--stop-step wants a step in 1 … --steps ({args.steps}), got {args.stop_step}")

    torch.set_num_threads(args.threads)
    args.work.mkdir(parents=True, exist_ok=True)
    log = open(args.work / "log.jsonl", "a")
    train = load_split(args.corpus / "train", "train")
    dev = pick_dev(load_split(args.corpus / "dev", "dev"), args.dev_limit, args.dev_pick)
    hours = sum(len(item[0]) for item in train) / 16000 / 3600
    repeats = synth_repeats(train, args.corpus / "voices.json", args.synth_weight) if args.synth_weight else None
    per_epoch = f", {sum(repeats)} per epoch with {' '.join(args.synth_weight)}" if repeats else ""
    console.print(f"train: {len(train)} utterances, {hours:.2f} h{per_epoch}; dev (periodic eval): {len(dev)}")

    torch.manual_seed(args.seed)
    model = DeepSpeech2(ModelConfig(hidden_size=args.hidden, hidden_layers=args.layers))
    params = sum(p.numel() for p in model.parameters())
    optimizer = torch.optim.Adam(model.parameters(), lr=args.lr)
    ctc = torch.nn.CTCLoss(blank=0, zero_infinity=True)
    state = {"step": 0, "epoch": 0, "elapsed": 0.0, "best_wer": float("inf"), "history": []}
    state_path = args.work / "state.pt"
    batching = {"seed": args.seed, "batch_seconds": args.batch_seconds, "synth_weight": sorted(args.synth_weight)}
    if args.init is not None:
        try:
            initial = load_checkpoint(args.init)
        except Ds2OnnxError as e:
            raise SystemExit(f"error: --init: {e}") from e
        init_h = initial.config.hidden_size
        if init_h > args.hidden or initial.config.hidden_layers != args.layers:
            raise SystemExit(f"error: {args.init} is {initial.config.hidden_layers} x GRU({init_h}); pass --layers "
                             f"{initial.config.hidden_layers} and --hidden {init_h} (or larger, to widen it)")
        if init_h < args.hidden:
            model.load_state_dict(widen(initial.model.state_dict(), model))
            console.print(f"initialised from {args.init}, widened from GRU({init_h}) to GRU({args.hidden})")
        else:
            model.load_state_dict(initial.model.state_dict())
            console.print(f"initialised from {args.init}")
    if args.resume and state_path.exists():
        saved = torch.load(state_path, weights_only=False)  # our own file, written below
        model.load_state_dict(saved["model"])
        optimizer.load_state_dict(saved["optimizer"])
        state = saved["state"]
        if state.get("batching", batching) != batching:  # the epoch's batch list, and so the batches to skip
            raise SystemExit(f"error: {state_path} was trained with {state['batching']}; --resume needs the same "
                             f"--seed, --batch-seconds and --synth-weight (given {batching})")
        console.print(f"resumed at step {state['step']} ({state['elapsed'] / 60:.1f} min trained)")
    state["batching"] = batching
    stop_at = state["elapsed"] + args.minutes * 60 if args.minutes is not None else math.inf
    last_step = args.stop_step or args.steps   # --stop-step is 1 … --steps (checked above)
    console.print(f"model: {args.layers} x GRU({args.hidden}), {params:,} parameters; {args.steps} steps")

    def lr_at(step: int) -> float:
        warm = min(1.0, (step + 1) / max(1, args.warmup))
        return args.lr * warm * 0.5 * (1 + math.cos(math.pi * min(1.0, step / args.steps)))

    def done() -> bool:
        return state["step"] >= last_step or state["elapsed"] >= stop_at

    model.train()
    with progress_bar() as bar:
        task = bar.add_task("training", total=args.steps, completed=state["step"])
        while not done():
            rng_batches = random.Random(args.seed * 1000 + state["epoch"])
            batches = make_batches(train, args.batch_seconds, rng_batches, repeats)
            skip = state.get("batch_in_epoch", 0)
            for bi, idx in enumerate(batches):
                if bi < skip:
                    continue
                if done():
                    break
                t0 = time.perf_counter()
                rng = np.random.default_rng([args.seed, state["step"]])
                feats = [spec_augment(features(train[i][0], rng, args.tilt, args.eq, args.warp), rng) for i in idx]
                x, lengths = collate(feats)
                targets = [torch.from_numpy(train[i][1]) for i in idx]
                with torch.autocast("cpu", dtype=torch.bfloat16, enabled=args.bf16):
                    log_probs, out_lengths = model(x, lengths)
                loss = ctc(log_probs.float().transpose(0, 1), torch.cat(targets), out_lengths,
                           torch.tensor([len(t) for t in targets]))
                for group in optimizer.param_groups:
                    group["lr"] = lr_at(state["step"])
                optimizer.zero_grad()
                loss.backward()
                torch.nn.utils.clip_grad_norm_(model.parameters(), 5.0)
                optimizer.step()
                state["step"] += 1
                state["batch_in_epoch"] = bi + 1
                dt = time.perf_counter() - t0
                state["elapsed"] += dt
                bar.update(task, completed=state["step"],
                           description=f"training ep {state['epoch']} step {state['step']} loss {loss.item():.2f}")
                if not console.is_terminal and state["step"] % 50 == 0:  # the bar only draws on a terminal
                    console.print(f"step {state['step']} epoch {state['epoch']} loss {loss.item():.2f} "
                                  f"of {args.steps} ({state['elapsed'] / 60:.1f} min)")
                if state["step"] % args.eval_every == 0:
                    checkpoint(model, optimizer, state, dev, args, log, state_path)
            else:
                state["epoch"] += 1
                state["batch_in_epoch"] = 0
    if not state["history"] or state["history"][-1]["step"] != state["step"]:  # not evaluated at this step yet
        checkpoint(model, optimizer, state, dev, args, log, state_path)
    console.print(f"done: best dev WER {state['best_wer']:.2f} → {args.work / 'best.pth'}")


def checkpoint(model, optimizer, state, dev, args, log, state_path) -> None:
    metrics = evaluate(model, dev)
    record = {"step": state["step"], "epoch": state["epoch"], "minutes": round(state["elapsed"] / 60, 2), **metrics}
    state["history"].append(record)
    log.write(json.dumps(record) + "\n")
    log.flush()
    console.print(f"step {state['step']}: dev WER {metrics['wer']:.2f} CER {metrics['cer']:.2f} "
                  f"({state['elapsed'] / 60:.1f} min)")
    extras = {"epoch": state["epoch"], "iteration": state["step"],
              "wer_results": torch.tensor([h["wer"] for h in state["history"]]),
              "cer_results": torch.tensor([h["cer"] for h in state["history"]])}
    save_checkpoint(model, args.work / "last.pth", **extras)
    if metrics["wer"] < state["best_wer"]:
        state["best_wer"] = metrics["wer"]
        save_checkpoint(model, args.work / "best.pth", **extras)
    torch.save({"model": model.state_dict(), "optimizer": optimizer.state_dict(), "state": state}, state_path)


if __name__ == "__main__":
    sys.exit(main())
