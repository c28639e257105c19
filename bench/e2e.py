"""End-to-end speed of the deployment variants on CPU, all in one run, interleaved: audio in, text out.

    python bench/e2e.py                                   # full-size MLPerf-layout model (random weights), all variants
    python bench/e2e.py --checkpoint model.pth            # your checkpoint instead
    python bench/e2e.py --variants torch_int8,ort_int8,ort_int4 --utterances 12    # a quicker look

Variants (each in its own worker process, so load time and peak RSS are its own):
  torch_fp32   PyTorch eager fp32 + librosa features + greedy decoder (the reference pipeline of `validate`)
  torch_int8   as torch_fp32 with torch.ao.quantization.quantize_dynamic(qint8) on GRU + Linear
  ort_gru      ds2-onnx runtime, fp32 model as exported (ONNX GRU op)
  ort_scan     ds2-onnx runtime, fp32 model after gru_to_scan (MatMul + Scan)
  ort_int8     ds2-onnx runtime, the exported int8 model
  ort_int4     ds2-onnx runtime, the exported int4 model

Measurements, every one end to end (features + model + greedy decode), with all variants interleaved so a
noisy neighbour slows them alike (compare ratios):
  * a 10 s clip at batch 1: median over --reps runs, split into features / model / decode;
  * latency p50/p90/p99 at batch 1 over a fixed set of --utterances durations shaped like LibriSpeech
    test-clean (mean 7.4 s, longest 35 s; the clips are the bundled demo speech, concatenated);
  * throughput (audio seconds per wall second) over that set at each --batch size with the runtime's batch plan
    (`transcribe_batch`: sorted by length, a batch closed early rather than padded by more than 25 %); for the
    runtime variants, at the largest batch, also sorted without the cap and in arrival order (no sort);
  * model file size, load time (checkpoint or session), peak RSS of the worker (VmHWM) after the batch-1 runs
    (the RSS ratios use this) and at the end (after the largest batches: 8 x 35 s of conv activations is ~220 MB).
The models are built once with `ds2-onnx export` code into --work and reused while the checkpoint and the export
code (ds2_onnx/export/*.py) are unchanged.
Writes --json (default WORK/e2e.json) and prints a table.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import math
import multiprocessing as mp
import os
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

VARIANTS = {
    "torch_fp32": "PyTorch eager fp32",
    "torch_int8": "PyTorch dynamic int8 (GRU+Linear)",
    "ort_gru": "ORT fp32, GRU op",
    "ort_scan": "ORT fp32, Scan rewrite",
    "ort_int8": "ORT int8 (Scan, dynamic int8)",
    "ort_int4": "ORT int4 (Scan, MatMulNBits)",
}
SAMPLE_RATE = 16000
CLIPS = ROOT / "samples" / "demo-test"


# ---------------------------------------------------------------------------------------------------------------
# inputs


def test_clean_like_durations(n: int, mean: float = 7.4, longest: float = 35.0, shortest: float = 1.3) -> list[float]:
    """`n` durations (seconds): log-normal quantile midpoints (sigma 0.75) scaled so the set's mean is `mean`, the
    last replaced by `longest` — the shape of LibriSpeech test-clean (mean 7.4 s, a tail to 35 s) — in a fixed
    shuffled order (the arrival order of the throughput runs)."""
    if n < 2:
        raise ValueError("need at least 2 utterances")
    from statistics import NormalDist

    body = np.array([math.exp(0.75 * NormalDist().inv_cdf((i + 0.5) / n)) for i in range(n - 1)])
    body *= (mean * n - longest) / body.sum()
    body = np.clip(body, shortest, longest)
    durations = [round(float(d), 2) for d in body] + [longest]
    return [durations[i] for i in np.random.default_rng(0).permutation(n)]


def speech_stream(clips: Path = CLIPS) -> np.ndarray:
    """The bundled demo clips (real synthetic speech), sorted by name and concatenated: float64 at 16 kHz."""
    import soundfile as sf

    paths = sorted(clips.rglob("*.flac"))
    if not paths:
        raise SystemExit(f"error: no .flac clips under {clips}")
    parts = []
    for path in paths:
        samples, rate = sf.read(str(path), dtype="float64")
        if rate != SAMPLE_RATE:
            raise SystemExit(f"error: {path} is {rate} Hz, expected {SAMPLE_RATE}")
        parts.append(samples)
    return np.concatenate(parts)


def utterances(durations: list[float], stream: np.ndarray) -> list[np.ndarray]:
    """Consecutive slices of the (wrapped) speech stream with the given durations."""
    out, start = [], 0
    for seconds in durations:
        n = int(round(seconds * SAMPLE_RATE))
        idx = (start + np.arange(n)) % stream.size
        out.append(stream[idx].copy())
        start = (start + n) % stream.size
    return out


# ---------------------------------------------------------------------------------------------------------------
# models


def prepare_models(checkpoint: Path | None, work: Path, hidden: int, log) -> tuple[Path, dict[str, Path]]:
    """The checkpoint (a full-size random one when None) and every ONNX file the variants need."""
    work.mkdir(parents=True, exist_ok=True)
    if checkpoint is None:
        checkpoint = work / f"random_h{hidden}.pth"
        if not checkpoint.is_file():
            from ds2_onnx.export.model import ModelConfig
            from ds2_onnx.export.synthetic import make_package, random_model, save_package

            log(f"writing a random-weight MLPerf-layout checkpoint, GRU({hidden}) x 3 → {checkpoint}")
            save_package(make_package(random_model(ModelConfig(hidden_size=hidden), seed=0)), checkpoint)
    from ds2_onnx.export import code_digest

    digest = hashlib.sha256(checkpoint.read_bytes()).hexdigest()[:16]
    models = work / f"models-{digest}-{code_digest()}"  # rebuilt when the checkpoint or the export code changes
    paths = {
        "ort_gru": models / "model.onnx",
        "ort_scan": models / "model.scan.onnx",
        "ort_int8": models / "model.int8.onnx",
        "ort_int4": models / "model.int4.onnx",
    }
    if not all(p.is_file() for p in paths.values()):
        import onnx

        from ds2_onnx.export.onnx_export import read_metadata
        from ds2_onnx.export.pipeline import export_checkpoint, save_model
        from ds2_onnx.export.rewrite import gru_to_scan

        t0 = time.perf_counter()
        for m in export_checkpoint(checkpoint, models / "model.onnx", ("fp32", "int8", "int4"), progress=log):
            log(f"  {m.precision}: {m.path.name} {m.size_bytes / 1e6:.1f} MB, max |Δ log-prob| vs PyTorch "
                f"{m.parity.max_abs_diff:.2e}, frame agreement {100 * m.parity.frame_agreement:.2f} %")
        scan = gru_to_scan(onnx.load(str(paths["ort_gru"])))
        assert read_metadata(scan).get("ds2.labels"), "gru_to_scan dropped the metadata"
        tmp = paths["ort_scan"].with_suffix(".tmp")
        save_model(scan, tmp)
        os.replace(tmp, paths["ort_scan"])
        log(f"models built in {time.perf_counter() - t0:.0f} s → {models}")
    return checkpoint, paths


# ---------------------------------------------------------------------------------------------------------------
# workers: one process per variant; the parent sends commands round-robin so the variants interleave


def peak_rss_mb() -> float:
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def batch_plan(lengths: list[int], batch_size: int, mode: str) -> list[list[int]]:
    """bucketed: the runtime's plan (sorted, padding capped); sorted: sorted, no cap; arrival: input order."""
    from ds2_onnx.runtime.transcriber import DEFAULT_MAX_PADDING, plan_batches

    if mode == "arrival":
        return [list(range(b, min(b + batch_size, len(lengths)))) for b in range(0, len(lengths), batch_size)]
    return plan_batches(lengths, batch_size, max_padding=math.inf if mode == "sorted" else DEFAULT_MAX_PADDING)


class TorchPipeline:
    """The reference pipeline (librosa features, PyTorch model, loop greedy decoder), batched like the runtime."""

    def __init__(self, checkpoint: Path, quantized: bool, threads: int, input_scale: float):
        import torch

        from ds2_onnx.validation.reference import ReferencePipeline

        self.torch = torch
        self.ref = ReferencePipeline(checkpoint, input_scale, threads)
        if quantized:
            import warnings

            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                self.ref.model = torch.ao.quantization.quantize_dynamic(
                    self.ref.model, {torch.nn.GRU, torch.nn.Linear}, dtype=torch.qint8)
        self.blank = self.ref.config.labels.index("_")

    def stages(self, audio: np.ndarray) -> tuple[float, float, float]:
        from ds2_onnx.validation.reference import greedy_decode_reference

        t0 = time.perf_counter()
        feats = self.ref.features(audio)
        t1 = time.perf_counter()
        log_probs = self.ref.run(feats)
        t2 = time.perf_counter()
        greedy_decode_reference(log_probs.argmax(-1).tolist(), self.ref.config.labels, self.blank)
        return t1 - t0, t2 - t1, time.perf_counter() - t2

    def one(self, audio: np.ndarray) -> None:
        self.stages(audio)

    def batch(self, audios: list[np.ndarray], batch_size: int, mode: str) -> None:
        from ds2_onnx.runtime.transcriber import pad_batch
        from ds2_onnx.validation.reference import greedy_decode_reference

        torch = self.torch
        feats = [self.ref.features(a) for a in audios]
        for plan in batch_plan([f.shape[1] for f in feats], batch_size, mode):
            spect, lengths = pad_batch([feats[i] for i in plan])  # the runtime's padding, as torch tensors
            with torch.inference_mode():
                log_probs, out_lengths = self.ref.model(torch.from_numpy(spect), torch.from_numpy(lengths))
            for k in range(len(plan)):
                valid = log_probs[k, : int(out_lengths[k])]
                greedy_decode_reference(valid.argmax(-1).tolist(), self.ref.config.labels, self.blank)


class RuntimePipeline:
    """The ds2-onnx runtime: Transcriber (numpy features, ONNX Runtime, greedy CTC decoder)."""

    def __init__(self, model: Path, threads: int):
        from ds2_onnx.runtime import SessionOptions, Transcriber

        self.t = Transcriber(model, SessionOptions(threads=threads))

    def stages(self, audio: np.ndarray) -> tuple[float, float, float]:
        from ds2_onnx.runtime.decoding import decode

        info = self.t.info
        t0 = time.perf_counter()
        feats = self.t.features(audio, SAMPLE_RATE).values
        t1 = time.perf_counter()
        log_probs, lengths = self.t.log_probs(feats[None], np.array([feats.shape[1]]))
        t2 = time.perf_counter()
        decode(log_probs[0, : int(lengths[0])], info.labels, info.blank_index, info.frame_duration)
        return t1 - t0, t2 - t1, time.perf_counter() - t2

    def one(self, audio: np.ndarray) -> None:
        self.t.transcribe(audio, SAMPLE_RATE)

    def batch(self, audios: list[np.ndarray], batch_size: int, mode: str) -> None:
        if mode == "bucketed":  # what users get
            self.t.transcribe_batch(audios, SAMPLE_RATE, batch_size=batch_size)
            return
        from ds2_onnx.runtime.decoding import decode_batch
        from ds2_onnx.runtime.transcriber import pad_batch

        info = self.t.info
        feats = [self.t.features(a, SAMPLE_RATE).values for a in audios]
        for plan in batch_plan([f.shape[1] for f in feats], batch_size, mode):
            spect, lengths = pad_batch([feats[i] for i in plan])
            log_probs, out_lengths = self.t.log_probs(spect, lengths)
            decode_batch(log_probs, out_lengths, info.labels, info.blank_index, info.frame_duration)


def worker(conn, variant: str, source: str, threads: int, input_scale: float, durations: list[float],
           clip_seconds: float) -> None:
    """Load one variant, then answer the parent's commands until told to stop."""
    try:
        stream = speech_stream()
        clip = utterances([clip_seconds], stream)[0]
        audios = utterances(durations, stream)
        t0 = time.perf_counter()
        if variant.startswith("torch"):
            pipe = TorchPipeline(Path(source), variant == "torch_int8", threads, input_scale)
        else:
            pipe = RuntimePipeline(Path(source), threads)
        load = time.perf_counter() - t0
        pipe.one(clip)  # warm-up: first-call allocations and kernel selection
        conn.send({"load_s": load, "rss_after_load_mb": peak_rss_mb()})
        while True:
            cmd, arg = conn.recv()
            t0 = time.perf_counter()
            if cmd == "clip":
                conn.send({"stages": pipe.stages(clip)})
                continue
            if cmd == "utt":
                pipe.one(audios[arg])
            elif cmd == "batch":
                size, mode = arg
                pipe.batch(audios, size, mode)
            elif cmd == "rss":
                conn.send({"peak_rss_mb": peak_rss_mb()})
                continue
            elif cmd == "stop":
                conn.send({"peak_rss_mb": peak_rss_mb()})
                return
            conn.send({"seconds": time.perf_counter() - t0})
    except Exception as e:  # reported to the parent, which stops the run with the message
        import traceback

        conn.send({"error": f"{variant}: {type(e).__name__}: {e}\n{traceback.format_exc()}"})


class Worker:
    def __init__(self, ctx, variant: str, source: Path, args, durations: list[float]):
        self.variant = variant
        self.conn, child = ctx.Pipe()
        self.proc = ctx.Process(target=worker, args=(child, variant, str(source), args.threads, args.input_scale,
                                                     durations, args.seconds), daemon=True)
        self.proc.start()

    def ask(self, cmd: str, arg=None) -> dict:
        if cmd != "ready":
            self.conn.send((cmd, arg))
        try:
            reply = self.conn.recv()
        except EOFError:
            self.proc.join(timeout=5)
            raise SystemExit(f"error: worker {self.variant} exited (code {self.proc.exitcode}); see its messages above")
        if "error" in reply:
            raise SystemExit(f"error in worker {reply['error']}")
        return reply


# ---------------------------------------------------------------------------------------------------------------
# the run


def machine(threads: int) -> dict:
    from ds2_onnx.validation.latency import machine_info

    info = machine_info(threads, 1)
    info.pop("workers", None)
    try:
        from importlib import metadata

        info["onnx"] = metadata.version("onnx")
    except Exception:
        pass
    return info


def run(args) -> dict:
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    console = Console(stderr=True)
    log = console.print
    variants = args.variants
    durations = test_clean_like_durations(args.utterances)
    checkpoint, onnx_paths = prepare_models(args.checkpoint, args.work, args.hidden, log)
    sources = {v: (checkpoint if v.startswith("torch") else onnx_paths[v]) for v in variants}
    log(f"utterance set: {len(durations)} durations, mean {np.mean(durations):.2f} s, "
        f"median {np.median(durations):.2f} s, max {max(durations):.1f} s, total {sum(durations):.1f} s")

    ctx = mp.get_context("spawn")
    workers, result = {}, {v: {"description": VARIANTS[v]} for v in variants}
    for v in variants:  # loaded one at a time so load times do not overlap
        log(f"loading {v} ({VARIANTS[v]})")
        w = Worker(ctx, v, sources[v], args, durations)
        workers[v] = w
        ready = w.ask("ready")
        result[v].update(ready)
        result[v]["file"] = str(sources[v])
        result[v]["file_mb"] = sources[v].stat().st_size / 1e6

    batch_sizes = [b for b in args.batch if b > 1]
    steps = (args.reps + len(durations)) * len(variants) + len(batch_sizes) * len(variants)
    steps += 2 * sum(not v.startswith("torch") for v in variants) if batch_sizes else 0
    with Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                  console=console) as bar:
        task = bar.add_task("", total=steps)
        started = time.perf_counter()

        def phase(description: str) -> None:
            bar.update(task, description=description)
            if not console.is_terminal:  # the bar only draws on a terminal: say where the run is
                log(f"{description} ({time.perf_counter() - started:.0f} s into the measurements)")

        phase(f"{args.seconds:g} s clip x {args.reps}")

        def rotate(k: int) -> list[str]:  # a different variant goes first in each round
            return variants[k % len(variants):] + variants[: k % len(variants)]

        stages = {v: [] for v in variants}
        for r in range(args.reps):
            for v in rotate(r):
                stages[v].append(workers[v].ask("clip")["stages"])
                bar.advance(task)
        latencies = {v: [0.0] * len(durations) for v in variants}
        phase("latency set, batch 1")
        for i in range(len(durations)):
            for v in rotate(i):
                latencies[v][i] = workers[v].ask("utt", i)["seconds"]
                bar.advance(task)
        for v in variants:
            result[v]["peak_rss_batch1_mb"] = workers[v].ask("rss")["peak_rss_mb"]
        throughput = {v: {"1": sum(durations) / sum(latencies[v])} for v in variants}
        other_plans = {v: {} for v in variants}
        for b in batch_sizes:
            phase(f"throughput, batch {b}")
            for v in rotate(b):
                throughput[v][str(b)] = sum(durations) / workers[v].ask("batch", (b, "bucketed"))["seconds"]
                bar.advance(task)
                if b == batch_sizes[-1] and not v.startswith("torch"):
                    for mode in ("sorted", "arrival"):
                        other_plans[v][mode] = sum(durations) / workers[v].ask("batch", (b, mode))["seconds"]
                        bar.advance(task)
    for v in variants:
        result[v].update(workers[v].ask("stop"))
        workers[v].proc.join(timeout=30)

    for v in variants:
        s = np.array(stages[v])
        total = s.sum(axis=1)
        lat = np.array(latencies[v])
        result[v].update({
            "clip_e2e_s": float(np.median(total)),
            "clip_runs_s": [float(t) for t in total],
            "clip_features_s": float(np.median(s[:, 0])),
            "clip_model_s": float(np.median(s[:, 1])),
            "clip_decode_s": float(np.median(s[:, 2])),
            "rtf": float(np.median(total)) / args.seconds,
            "latency_p50_s": float(np.percentile(lat, 50)),
            "latency_p90_s": float(np.percentile(lat, 90)),
            "latency_p99_s": float(np.percentile(lat, 99)),
            "latencies_s": [float(t) for t in lat],
            "throughput": throughput[v],
            "throughput_other_plans": other_plans[v],  # at the largest batch size
        })
    for base in ("torch_fp32", "torch_int8"):
        if base in result:
            for v in variants:
                result[v][f"speedup_vs_{base}"] = result[base]["clip_e2e_s"] / result[v]["clip_e2e_s"]
                result[v][f"rss_vs_{base}"] = result[v]["peak_rss_batch1_mb"] / result[base]["peak_rss_batch1_mb"]
    return {
        "command": " ".join([Path(sys.argv[0]).name, *sys.argv[1:]]),
        "date": time.strftime("%Y-%m-%d %H:%M:%S %Z"),
        "machine": machine(args.threads),
        "checkpoint": str(checkpoint),
        "clip_seconds": args.seconds,
        "reps": args.reps,
        "durations_s": durations,
        "batch_sizes": args.batch,
        "variants": result,
    }


def print_table(report: dict) -> None:
    from rich.console import Console
    from rich.table import Table

    v = report["variants"]
    batches = [str(b) for b in report["batch_sizes"]]
    bases = [b for b in ("torch_fp32", "torch_int8") if b in v]
    m = report["machine"]
    out = Console(width=None if sys.stdout.isatty() else 150)

    speed = Table(title=f"latency, end to end, batch 1 ({report['clip_seconds']:g} s clip: median of {report['reps']}; "
                        f"p50/p90/p99 over {len(report['durations_s'])} utterances)")
    for c in ["variant", "10 s clip s", "of which model s", "RTF", *[f"× {b}" for b in bases], "p50 s", "p90 s", "p99 s"]:
        speed.add_column(c, justify="left" if c == "variant" else "right")
    for name, r in v.items():
        speed.add_row(name, f"{r['clip_e2e_s']:.3f}", f"{r['clip_model_s']:.3f}", f"{r['rtf']:.4f}",
                      *[f"{r[f'speedup_vs_{b}']:.2f}" for b in bases],
                      f"{r['latency_p50_s']:.3f}", f"{r['latency_p90_s']:.3f}", f"{r['latency_p99_s']:.3f}")
    out.print(speed)

    size = Table(title="throughput (audio s per wall s; batches sorted by length, padding capped) and resources")
    last = batches[-1]
    cols = ["variant", *[f"batch {b}" for b in batches], f"b{last} no cap", f"b{last} arrival order"]
    cols += ["file MB", "load s", "peak RSS MB b1", *[f"RSS / {b}" for b in bases], f"peak RSS MB b{last}"]
    for c in cols:
        size.add_column(c, justify="left" if c == "variant" else "right")
    for name, r in v.items():
        plans = [r["throughput_other_plans"].get(mode) for mode in ("sorted", "arrival")]
        size.add_row(name, *[f"{r['throughput'][b]:.1f}" for b in batches],
                     *["-" if t is None else f"{t:.1f}" for t in plans], f"{r['file_mb']:.1f}", f"{r['load_s']:.2f}",
                     f"{r['peak_rss_batch1_mb']:.0f}", *[f"{r[f'rss_vs_{b}']:.2f}" for b in bases],
                     f"{r['peak_rss_mb']:.0f}")
    out.print(size)
    out.print(f"{m['cpu']}, {m['usable_cores']} usable cores, {m['threads_per_worker']} threads per variant; "
              f"python {m['python']}, onnxruntime {m['onnxruntime']}, torch {m['torch']}, numpy {m['numpy']}, "
              f"librosa {m['librosa']}")


def markdown(report: dict) -> str:
    """The report as Markdown tables (what the README shows)."""
    v = report["variants"]
    batches = [str(b) for b in report["batch_sizes"]]
    bases = [b for b in ("torch_fp32", "torch_int8") if b in v]
    last = batches[-1]
    m = report["machine"]
    lines = [
        "| variant | 10 s clip, s | RTF | " + " | ".join(f"vs {b}" for b in bases)
        + " | p50 s | p90 s | p99 s | " + " | ".join(f"audio s/s b{b}" for b in batches)
        + " | file MB | load s | peak RSS MB (b1) |",
        "| --- " + "| ---: " * (8 + len(bases) + len(batches)) + "|",
    ]
    for name, r in v.items():
        cells = [VARIANTS[name], f"{r['clip_e2e_s']:.3f}", f"{r['rtf']:.4f}",
                 *[f"{r[f'speedup_vs_{b}']:.2f}×" for b in bases],
                 f"{r['latency_p50_s']:.3f}", f"{r['latency_p90_s']:.3f}", f"{r['latency_p99_s']:.3f}",
                 *[f"{r['throughput'][b]:.1f}" for b in batches],
                 f"{r['file_mb']:.1f}", f"{r['load_s']:.2f}", f"{r['peak_rss_batch1_mb']:.0f}"]
        lines.append("| " + " | ".join(cells) + " |")
    plans = [(name, r["throughput_other_plans"]) for name, r in v.items() if r["throughput_other_plans"]]
    if plans:
        lines += ["", f"Batch plans at batch {last} (audio s/s): "
                  + "; ".join(f"{n} {v[n]['throughput'][last]:.1f} bucketed / {p['sorted']:.1f} sorted, no cap / "
                              f"{p['arrival']:.1f} arrival order" for n, p in plans) + "."]
    lines += ["", f"{m['cpu']}, {m['usable_cores']} cores, {m['threads_per_worker']} threads per variant; Python "
              f"{m['python']}, onnxruntime {m['onnxruntime']}, torch {m['torch']}, numpy {m['numpy']}, librosa "
              f"{m['librosa']}; {report['date']}."]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    from ds2_onnx.runtime.model_info import INT32_FULL_SCALE

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--checkpoint", type=Path, help="MLPerf-format checkpoint (default: random full-size)")
    parser.add_argument("--hidden", type=int, default=2560, help="GRU size of the random checkpoint")
    parser.add_argument("--work", type=Path, default=ROOT / "out" / "bench", help="model cache and output folder")
    parser.add_argument("--variants", default=",".join(VARIANTS), help=f"comma list of {', '.join(VARIANTS)}")
    parser.add_argument("--seconds", type=float, default=10.0, help="length of the RTF clip")
    parser.add_argument("--reps", type=int, default=5, help="runs of the clip per variant (median reported)")
    parser.add_argument("--utterances", type=int, default=24, help="size of the test-clean-like latency set")
    parser.add_argument("--batch", default="1,4,8", help="batch sizes for throughput")
    parser.add_argument("--threads", type=int, default=2, help="threads per variant (torch and ORT)")
    parser.add_argument("--input-scale", type=float, default=INT32_FULL_SCALE,
                        help="input scale of the torch pipelines (the exported models record theirs)")
    parser.add_argument("--json", type=Path, help="where to write the report (default WORK/e2e.json)")
    parser.add_argument("--markdown", action="store_true", help="also print the tables as Markdown")
    parser.add_argument("--from-json", type=Path, help="print the tables of an earlier report instead of measuring")
    args = parser.parse_args(argv)
    args.variants = [v.strip() for v in args.variants.split(",") if v.strip()]
    unknown = [v for v in args.variants if v not in VARIANTS]
    if unknown or not args.variants:
        parser.error(f"unknown variant(s) {', '.join(unknown) or '(none)'}; choose from {', '.join(VARIANTS)}")
    try:
        args.batch = sorted({int(b) for b in args.batch.split(",")})
    except ValueError:
        parser.error(f"--batch takes a comma list of integers, got {args.batch!r}")
    if args.batch[0] != 1 or args.reps < 1:
        parser.error("--batch must include 1 and --reps must be at least 1")
    if args.checkpoint is not None and not args.checkpoint.is_file():
        parser.error(f"{args.checkpoint}: no such checkpoint file")
    if args.from_json:
        report = json.loads(args.from_json.read_text())
    else:
        from ds2_onnx.errors import Ds2OnnxError

        try:
            report = run(args)
        except Ds2OnnxError as e:  # a checkpoint that does not load or export: one line, no traceback
            print(f"error: {e}", file=sys.stderr)
            return 1
        path = args.json or args.work / "e2e.json"
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps(report, indent=1))
        os.replace(tmp, path)
    print_table(report)
    if args.markdown:
        print(markdown(report))
    if not args.from_json:
        print(f"report: {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
