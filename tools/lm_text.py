"""Extra language-model text for a corpus made by make_corpus.py: more sentences from the same sources.

    python tools/lm_text.py --corpus data/corpus --sentences 300000 -o data/corpus/lm-text.txt
    ds2-onnx build-lm data/corpus/train data/corpus/lm-text.txt -o ds2_onnx/assets/demo-lm.arpa.gz

Speech is expensive to make and to train on; text is not. Like LibriSpeech's LM corpus (books that are not in
its audio), this writes text from the corpus's own sources that is in none of its splits: --sentences template
sentences from tools/sentences.py's grammar and word list (its own random stream, `<seed>:lm-text`), then the
fortune sentences that no split used. Every line is a transcript in the 29-label alphabet; no line equals a
train, dev or test transcript, so dev and test sentences stay unseen by the LM. Deterministic from --seed and
the installed text packages (their SHA-256 is printed, as make_corpus.py records it).
"""

from __future__ import annotations

import argparse
import random
import sys
import time
from pathlib import Path

import sentences

from ds2_onnx.files import atomic_path


def corpus_transcripts(corpus: Path) -> set[str]:
    found = set()
    for path in corpus.glob("*/*/*/*.trans.txt"):
        for line in path.read_text(encoding="utf-8").splitlines():
            _, _, text = line.partition(" ")
            if text:
                found.add(text)
    return found


def generate(src: sentences.TextSources, exclude: set[str], count: int, seed: int) -> list[str]:
    gen = sentences.TemplateGenerator(src.lexicon, random.Random(f"{seed}:lm-text"))
    seen = set(exclude)
    lines: list[str] = []
    misses = 0
    while len(lines) < count:
        t = sentences.transcript_of(gen.sentence())
        if 3 <= len(t.split()) <= 25 and sentences.valid_transcript(t) and t not in seen:
            seen.add(t)
            lines.append(t)
            misses = 0
        else:
            misses += 1
            if misses > 10_000:
                raise SystemExit(f"error: the template grammar keeps repeating itself after {len(lines)} sentences")
    return lines


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--corpus", type=Path, required=True, help="corpus folder (train/, dev/, test/)")
    parser.add_argument("--sentences", type=int, default=300_000, help="template sentences (default 300000)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("-o", "--output", type=Path, required=True)
    args = parser.parse_args(argv)

    t0 = time.time()
    exclude = corpus_transcripts(args.corpus)
    if not exclude:
        print(f"error: no transcripts (*/*/*/*.trans.txt) under {args.corpus}", file=sys.stderr)
        return 1
    try:
        src = sentences.load_sources()
    except sentences.SourceError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    natural = {t for _, t in src.natural}
    lines = generate(src, exclude | natural, args.sentences, args.seed)  # as in make_corpus: never a fortune's
    unused = sorted(natural - exclude)
    with atomic_path(args.output) as tmp:
        tmp.write_text("\n".join(lines + unused) + "\n", encoding="utf-8")
    words = sum(len(t.split()) for t in lines + unused)
    print(f"{len(lines):,} template + {len(unused):,} unused fortune sentences, {words:,} words -> {args.output} "
          f"({time.time() - t0:.1f} s; {len(exclude):,} corpus transcripts excluded; text inputs sha256 {src.digest[:16]}…)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
