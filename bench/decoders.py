"""What decoding costs next to the model: greedy, beam search, beam search with the LM, in one interleaved run.

    python bench/decoders.py                                      # bundled demo model, LM and 60 clips
    python bench/decoders.py --dataset data/corpus/dev --limit 200 --reps 3

The model (default: the bundled int8 demo model, one thread) runs once per utterance; its time is measured
then. Every decoder then decodes the same kept log-probs, the decoders interleaved per utterance and repeated
--reps times, so a noisy neighbour slows them alike. Reported per decoder: median milliseconds per utterance
(median over the utterances of each one's fastest repetition), milliseconds per second of audio, the ratio to
the model's median time and to greedy's, and WER / CER (the same for every repetition). Machine and versions
are printed and written to --json.
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
import sys
import time
from pathlib import Path

from ds2_onnx.runtime import BeamSearchOptions, LanguageModel, SessionOptions, Transcriber
from ds2_onnx.runtime.beam import BeamSearchDecoder
from ds2_onnx.runtime.decoding import decode as greedy_decode
from ds2_onnx.validation.datasets import load_dataset
from ds2_onnx.validation.latency import machine_info
from ds2_onnx.validation.metrics import ErrorCounts
from ds2_onnx.validation.tune import spread

ROOT = Path(__file__).resolve().parent.parent
ASSETS = ROOT / "ds2_onnx" / "assets"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", type=Path, default=ASSETS / "demo.int8.onnx")
    parser.add_argument("--lm", type=Path, default=ASSETS / "demo-lm.arpa.gz")
    parser.add_argument("--dataset", type=Path, default=ROOT / "samples" / "demo-test")
    parser.add_argument("--limit", type=int, help="utterances, spread evenly over the dataset")
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args(argv)

    transcriber = Transcriber(args.model, SessionOptions(threads=1))
    info = transcriber.info
    t0 = time.perf_counter()
    lm = LanguageModel.load(args.lm)
    lm_load = time.perf_counter() - t0
    defaults = BeamSearchOptions()
    decoders = {
        "greedy": lambda lp: greedy_decode(lp, info.labels, info.blank_index, info.frame_duration),
    }
    w, lm_decoder = defaults.beam_width, lambda **o: BeamSearchDecoder(info.labels, info.blank_index, lm,
                                                                     BeamSearchOptions(**o))
    for name, decoder in (
        (f"beam {w}, no LM", BeamSearchDecoder(info.labels, info.blank_index)),
        # the defaults until 2026-12-01: no look-ahead, no margin, LM weight 0.5
        ("beam 32 + LM, alpha 0.5, no look-ahead, no margin", lm_decoder(beam_width=32, alpha=0.5, lookahead=False,
                                                                         beam_margin=math.inf)),
        ("beam 32 + LM, no margin", lm_decoder(beam_width=32, beam_margin=math.inf)),
        (f"beam {w} + LM, no margin", lm_decoder(beam_margin=math.inf)),
        (f"beam {w} + LM, no look-ahead", lm_decoder(lookahead=False)),
        (f"beam {w} + LM (default)", lm_decoder()),
        (f"beam {2 * w} + LM", lm_decoder(beam_width=2 * w)),
    ):
        decoders[name] = lambda lp, d=decoder: d.decode(lp, info.frame_duration)

    utterances = list(load_dataset(args.dataset, info.labels, info.blank_index))
    utterances = [utterances[i] for i in spread(len(utterances), args.limit)]
    kept, model_ms, audio_s = [], [], []
    for u in utterances:
        feats = transcriber.features(u.audio)
        start = time.perf_counter()
        log_probs = transcriber.utterance_log_probs(feats.values)
        model_ms.append(1000 * (time.perf_counter() - start))
        kept.append((u.transcript, log_probs))
        audio_s.append(feats.duration)
    print(f"{len(kept)} utterances from {args.dataset} ({sum(audio_s):.1f} s of audio); model {args.model.name}, "
          f"1 thread; LM {args.lm.name} loaded in {lm_load:.2f} s", file=sys.stderr)

    best = {name: [float("inf")] * len(kept) for name in decoders}
    counts = {name: ErrorCounts() for name in decoders}
    for rep in range(args.reps):
        for i, (ref, log_probs) in enumerate(kept):
            for name, run in decoders.items():
                start = time.perf_counter()
                text = run(log_probs).text
                best[name][i] = min(best[name][i], 1000 * (time.perf_counter() - start))
                if rep == 0:
                    counts[name] = counts[name] + ErrorCounts.of(ref, text)
        print(f"repetition {rep + 1}/{args.reps} done", file=sys.stderr)

    model_median = statistics.median(model_ms)
    greedy_median = statistics.median(best["greedy"])
    total_audio = sum(audio_s)
    rows = [{"decoder": "(model forward pass)", "median_ms": model_median,
             "ms_per_audio_s": sum(model_ms) / total_audio}]
    for name, times in best.items():
        rows.append({"decoder": name, "median_ms": statistics.median(times),
                     "ms_per_audio_s": sum(times) / total_audio, "vs_model": statistics.median(times) / model_median,
                     "vs_greedy": statistics.median(times) / greedy_median, "wer": counts[name].wer,
                     "cer": counts[name].cer})
    print("| decoder | median ms / utterance | ms per audio s | × model | × greedy | WER % | CER % |")
    print("| --- | ---: | ---: | ---: | ---: | ---: | ---: |")
    for r in rows:
        extra = (f" {r['vs_model']:.2f} | {r['vs_greedy']:.0f} | {r['wer']:.2f} | {r['cer']:.2f} |"
                 if "wer" in r else " 1.00 | — | — | — |")
        print(f"| {r['decoder']} | {r['median_ms']:.2f} | {r['ms_per_audio_s']:.2f} |{extra}")
    machine = machine_info(threads=1, workers=1)
    print(f"machine: {machine['cpu']}, {machine['usable_cores']} usable cores; python {machine['python']}, "
          f"onnxruntime {machine['onnxruntime']}, numpy {machine['numpy']}; {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}")
    if args.json:
        args.json.write_text(json.dumps({"dataset": str(args.dataset), "utterances": len(kept), "reps": args.reps,
                                         "model": str(args.model), "lm": str(args.lm), "lm_load_s": lm_load,
                                         "rows": rows, "machine": machine}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
