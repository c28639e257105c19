"""WER/CER of an exported model on a corpus made by make_corpus.py, per synthesiser and voice group.

    python tools/eval_demo.py --model ds2_onnx/assets/demo.onnx --split data/corpus/test --voices data/corpus/voices.json

Groups: every utterance, by synthesiser × (voice seen in training | held out), by espeak-ng accent / flite
voice, and by sentence source (a fortune-file sentence or a template sentence; see tools/sentences.py).
Prints a Markdown table (for the model card) and writes --json if given. Greedy decoding unless --lm (beam
search with a word n-gram LM, e.g. ds2_onnx/assets/demo-lm.arpa.gz) or --beam-width is given.

With --baseline OTHER.onnx (decoded the same way) a column gives each group's WER difference against it, with its
paired standard error over the group's utterances (`ds2_onnx.validation.metrics.wer_delta_se`): whether a new
model's gain is more than the choice of utterances moves.
"""

from __future__ import annotations

import argparse
import json
from collections import defaultdict
from pathlib import Path

import sentences
from rich.progress import Progress

from ds2_onnx.errors import Ds2OnnxError
from ds2_onnx.runtime import BeamSearchOptions, SessionOptions, Transcriber
from ds2_onnx.validation.datasets import load_dataset
from ds2_onnx.validation.metrics import ErrorCounts, wer_delta_se


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", type=Path, required=True)
    parser.add_argument("--split", type=Path, required=True, help="LibriSpeech-layout folder")
    parser.add_argument("--voices", type=Path, required=True, help="voices.json written by make_corpus.py")
    parser.add_argument("--json", type=Path)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--threads", type=int)
    parser.add_argument("--lm", type=Path, help="ARPA language model for beam search")
    parser.add_argument("--beam-width", type=int)
    parser.add_argument("--beam-margin", type=float, default=BeamSearchOptions.beam_margin)
    parser.add_argument("--no-lookahead", dest="lookahead", action="store_false")
    parser.add_argument("--alpha", type=float, default=BeamSearchOptions.alpha)
    parser.add_argument("--beta", type=float, default=BeamSearchOptions.beta)
    parser.add_argument("--unk-offset", type=float, default=BeamSearchOptions.unk_offset)
    parser.add_argument("--baseline", type=Path,
                        help="another model to compare with, decoded the same way: adds ΔWER ± paired SE per group")
    args = parser.parse_args()

    speakers = json.loads(args.voices.read_text())["speakers"]
    natural = {t for _, t in sentences.load_sources().natural}
    beam = None
    if args.lm or args.beam_width:
        beam = BeamSearchOptions(args.beam_width or BeamSearchOptions.beam_width, args.alpha, args.beta,
                                 unk_offset=args.unk_offset, beam_margin=args.beam_margin,
                                 lookahead=args.lookahead)
    transcriber = Transcriber(args.model, SessionOptions(threads=args.threads), lm=args.lm, beam=beam)
    print(f"decoder: {transcriber.decoder or 'greedy'}")
    dataset = load_dataset(args.split, transcriber.info.labels, transcriber.info.blank_index)
    utterances = list(dataset)
    other = None
    if args.baseline:  # opened before any work, so a bad path fails at once
        lm = transcriber.decoder.lm if transcriber.decoder else None  # loaded once, shared
        other = Transcriber(args.baseline, SessionOptions(threads=args.threads), lm=lm, beam=beam)
    counts = score(transcriber, utterances, args.batch_size, args.model.name)
    base = score(other, utterances, args.batch_size, args.baseline.name) if other else None

    members: dict[str, list[int]] = defaultdict(list)
    for i, u in enumerate(utterances):
        voice = speakers[u.id.split("-")[0]]
        seen = "held-out voice" if voice["held_out"] else "seen voice"
        source = "fortune sentence" if u.transcript in natural else "template sentence"
        for key in ("all", f"{voice['synth']}, {seen}", f"{voice['synth']} {voice['voice']}", seen, source):
            members[key].append(i)
    groups = {k: sum((counts[i] for i in idx), ErrorCounts()) for k, idx in members.items()}
    order = sorted(groups, key=lambda k: (k != "all", not k.endswith("voice"), not k.endswith("sentence"), k))
    compare = f" ΔWER vs {args.baseline.name} ± SE |" if base else ""
    print(f"| group ({args.split.name}, {len(utterances)} utterances) | words | WER % | CER % |{compare}")
    print("| --- | ---: | ---: | ---: |" + (" ---: |" if base else ""))
    for key in order:
        c = groups[key]
        row = f"| {key} | {c.words} | {c.wer:.2f} | {c.cer:.2f} |"
        if base:
            b = sum((base[i] for i in members[key]), ErrorCounts())
            se = wer_delta_se([counts[i].word_edits - base[i].word_edits for i in members[key]], c.words)
            row += f" {c.wer - b.wer:+.2f} ± {se:.2f} |" if se is not None else f" {c.wer - b.wer:+.2f} |"
        print(row)
    if args.json:
        args.json.write_text(json.dumps({k: {"words": v.words, "wer": v.wer, "cer": v.cer} for k, v in groups.items()}, indent=2))


def score(transcriber: Transcriber, utterances: list, batch_size: int, name: str) -> list[ErrorCounts]:
    """Per-utterance error counts, in `utterances` order."""
    out: list[ErrorCounts] = [ErrorCounts()] * len(utterances)
    with Progress(transient=True) as progress:
        task = progress.add_task(f"transcribing with {name}", total=len(utterances))
        for indices, results in transcriber.iter_batches([u.audio for u in utterances], batch_size=batch_size):
            for i, r in zip(indices, results):
                out[i] = ErrorCounts.of(utterances[i].transcript, r.text)
                progress.advance(task)
    return out


if __name__ == "__main__":
    try:
        main()
    except Ds2OnnxError as e:  # a missing or broken model, dataset or LM: one line, no traceback
        raise SystemExit(f"error: {e}") from None
