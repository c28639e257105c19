"""Training-step time of the demo model: float32 vs bfloat16 autocast, interleaved in one run.

    python bench/train_step.py                       # GRU(384), a batch of 12 x 4 s (48 s of audio, as train_demo)
    python bench/train_step.py --hidden 256 --reps 9

One step = forward (under `torch.autocast("cpu", torch.bfloat16)` for the bf16 variant), CTC loss in float32,
backward and an Adam update, exactly as tools/train_demo.py does it, on random spectrograms and targets. The two
variants alternate step by step so machine noise hits both alike; the table reports medians and the ratio.
Timings only: whether bf16 training reaches the same accuracy is shown by the training logs, not here.
"""

from __future__ import annotations

import argparse
import platform
import statistics
import time

import torch

from ds2_onnx.export.model import DeepSpeech2, ModelConfig
from ds2_onnx.validation.latency import cpu_model


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--hidden", type=int, default=384)
    parser.add_argument("--batch", type=int, default=12)
    parser.add_argument("--seconds", type=float, default=4.0, help="audio seconds per utterance")
    parser.add_argument("--reps", type=int, default=7, help="timed steps per variant (after 2 warm-up steps)")
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()

    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    model = DeepSpeech2(ModelConfig(hidden_size=args.hidden))
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-5)
    ctc = torch.nn.CTCLoss(blank=0, zero_infinity=True)
    frames = int(args.seconds * 100)
    x = torch.randn(args.batch, 1, 161, frames)
    lengths = torch.full((args.batch,), frames)
    target_len = max(1, frames // 8)
    targets = torch.randint(1, 29, (args.batch * target_len,))
    target_lengths = torch.full((args.batch,), target_len)

    def step(bf16: bool) -> tuple[float, float]:
        t0 = time.perf_counter()
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            log_probs, out_lengths = model(x, lengths)
        loss = ctc(log_probs.float().transpose(0, 1), targets, out_lengths, target_lengths)
        t1 = time.perf_counter()
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        return t1 - t0, time.perf_counter() - t1

    times: dict[bool, list[tuple[float, float]]] = {False: [], True: []}
    for rep in range(args.reps + 2):
        for bf16 in (False, True):
            r = step(bf16)
            if rep >= 2:
                times[bf16].append(r)

    print(f"{cpu_model()}, {torch.get_num_threads()} threads; torch {torch.__version__}, "
          f"Python {platform.python_version()}; GRU({args.hidden}) x 3, batch {args.batch} x {args.seconds:g} s, "
          f"median of {args.reps} interleaved steps")
    print("| variant | forward s | backward + Adam s | step s | audio s/s |")
    print("| --- | ---: | ---: | ---: | ---: |")
    medians = {}
    for bf16 in (False, True):
        fwd = statistics.median(f for f, _ in times[bf16])
        bwd = statistics.median(b for _, b in times[bf16])
        total = statistics.median(f + b for f, b in times[bf16])
        medians[bf16] = total
        name = "bf16 autocast" if bf16 else "float32"
        print(f"| {name} | {fwd:.3f} | {bwd:.3f} | {total:.3f} | {args.batch * args.seconds / total:.1f} |")
    print(f"bf16 autocast step is {medians[False] / medians[True]:.2f}x faster than float32")


if __name__ == "__main__":
    main()
