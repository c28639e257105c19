"""Bundle the trained demo model and a small test split into the repository.

    python tools/bundle_demo.py --checkpoint out/train384/best.pth --corpus data/corpus

Writes models/demo.pth (the MLPerf-format checkpoint), ds2_onnx/assets/demo.onnx and demo.int8.onnx (the
runtime's default model, exported and parity-checked by the normal export path), ds2_onnx/assets/demo-lm.arpa.gz
(the word trigram LM of the distinct training transcripts and <corpus>/lm-text.txt from tools/lm_text.py, as
`ds2-onnx build-lm <corpus>/train <corpus>/lm-text.txt` builds it when no sentence repeats), and samples/demo-test/
(≤ 60 clips of the corpus's test split in LibriSpeech layout, seen and held-out voices of both synthesisers,
with their voices.json entries).
"""

from __future__ import annotations

import argparse
import json
import shutil
from collections import defaultdict
from pathlib import Path

from ds2_onnx.export.model import ModelConfig
from ds2_onnx.export.pipeline import export_checkpoint
from ds2_onnx.runtime.lm import estimate, read_sentences, write_arpa
from ds2_onnx.validation.datasets import load_dataset

ROOT = Path(__file__).resolve().parent.parent


def pick_clips(split: Path, speakers: dict, count: int, max_seconds: float) -> list[tuple[str, Path, str]]:
    """Deterministic, balanced pick over (synthesiser, seen/held-out) groups, evenly spaced within each group."""
    groups = defaultdict(list)
    for u in sorted(load_dataset(split, ModelConfig().labels), key=lambda u: u.audio):
        voice = speakers[u.id.split("-")[0]]
        if u.duration is not None and u.duration <= max_seconds:
            groups[(voice["synth"], voice["held_out"])].append((u.id, u.audio, u.transcript))
    picked = []
    keys = sorted(groups)
    per_group = count // len(keys)
    for key in keys:
        items = groups[key]
        step = max(1, len(items) // per_group)
        picked += items[::step][:per_group]
    return sorted(picked)


def lm_sentences(train: Path, extra: Path) -> list[list[str]]:
    """The LM's text: each distinct transcript of the `train` folder once, in first-seen order, then `extra`.

    Speakers added with `make_corpus.py --extend` reread train sentences; counting them again would change the LM
    without adding text."""
    distinct = {tuple(words): words for words in read_sentences([train])}
    return list(distinct.values()) + read_sentences([extra])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--checkpoint", type=Path, required=True)
    parser.add_argument("--corpus", type=Path, required=True)
    parser.add_argument("--clips", type=int, default=60)
    parser.add_argument("--max-seconds", type=float, default=4.5)
    parser.add_argument("--precision", default="fp32,int8")
    args = parser.parse_args()

    models = ROOT / "models"
    models.mkdir(exist_ok=True)
    checkpoint = models / "demo.pth"
    shutil.copyfile(args.checkpoint, checkpoint)
    results = export_checkpoint(checkpoint, ROOT / "ds2_onnx" / "assets" / "demo.onnx",
                                precisions=args.precision.split(","), progress=print)
    for r in results:
        print(f"{r.precision}: {r.path} {r.size_bytes / 1e6:.2f} MB, max |Δ log-prob| {r.parity.max_abs_diff:.2e}, "
              f"frame agreement {100 * r.parity.frame_agreement:.2f}%")

    lm_text = args.corpus / "lm-text.txt"
    if not lm_text.is_file():
        raise SystemExit(f"error: {lm_text} not found; run tools/lm_text.py --corpus {args.corpus} -o {lm_text}")
    lm = estimate(lm_sentences(args.corpus / "train", lm_text), order=3, prune=(0, 1))
    lm_path = write_arpa(lm, ROOT / "ds2_onnx" / "assets" / "demo-lm.arpa.gz")
    print(f"LM: {lm_path} {lm_path.stat().st_size / 1e6:.2f} MB, " + ", ".join(f"{len(t)} {n}-grams" for n, t in enumerate(lm.tables, 1)))

    voices = json.loads((args.corpus / "voices.json").read_text())
    out = ROOT / "samples" / "demo-test"
    if out.exists():
        shutil.rmtree(out)
    lines = defaultdict(list)
    picked = pick_clips(args.corpus / "test", voices["speakers"], args.clips, args.max_seconds)
    for utt, audio, text in picked:
        speaker, chapter, _ = utt.split("-")
        folder = out / speaker / chapter
        folder.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(audio, folder / audio.name)
        lines[folder / f"{speaker}-{chapter}.trans.txt"].append(f"{utt} {text}")
    for path, entries in lines.items():
        path.write_text("\n".join(sorted(entries)) + "\n")
    used = {utt.split("-")[0] for utt, _, _ in picked}
    subset = {k: v for k, v in voices["speakers"].items() if k in used}
    (out / "voices.json").write_text(json.dumps({**voices, "speakers": subset}, indent=1) + "\n")
    size = sum(p.stat().st_size for p in out.rglob("*") if p.is_file())
    print(f"{len(picked)} clips from {len(subset)} voices in {out} ({size / 1e6:.2f} MB)")


if __name__ == "__main__":
    main()
