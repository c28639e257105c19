"""Average the weights of DeepSpeech2 checkpoints of one architecture into one checkpoint (a uniform "model soup").

    python tools/average_checkpoints.py -o out/soup.pth models/demo.pth out/ft28/best.pth out/ft29/best.pth

Every parameter and every BatchNorm running statistic is the plain mean of the inputs', computed in float64 and
stored as float32. Averaging only helps checkpoints that lie in one basin of the loss: fine-tunes of one model and
that model's recent ancestors (the bundled demo model is one, see docs/demo-model.md); averaging models trained from
different random initialisations gives a useless model. Check the result on dev before using it.

Each input is read with the normal, safe loader (`weights_only=True`, keys and shapes checked); inputs must agree on
the architecture, labels and audio settings. The output is the MLPerf package layout, so `ds2-onnx export` reads it
unchanged; it records the inputs' sha256 under "averaged_from". It is written to a temporary file and renamed
(`save_package`).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch

from ds2_onnx.errors import CheckpointError
from ds2_onnx.export.checkpoint import load_checkpoint, sha256_file
from ds2_onnx.export.model import DeepSpeech2
from ds2_onnx.export.synthetic import make_package, save_package


def average(paths: list[Path]) -> tuple[DeepSpeech2, list[str]]:
    """The averaged model (eval mode) and the inputs' sha256, in order. Raises CheckpointError on a bad input."""
    if len(paths) < 2:
        raise CheckpointError(f"averaging needs at least two checkpoints, got {len(paths)}")
    first = load_checkpoint(paths[0])
    sums = {k: v.double().clone() for k, v in first.model.state_dict().items() if v.is_floating_point()}
    hashes = [first.sha256]
    for path in paths[1:]:
        other = load_checkpoint(path)
        if other.config != first.config:
            raise CheckpointError(
                f"{other.source} does not match {first.source}: {other.config} against {first.config}"
            )
        for k, v in other.model.state_dict().items():
            if k in sums:
                sums[k] += v.double()
        hashes.append(other.sha256)
    model = DeepSpeech2(first.config)
    model.load_state_dict({k: (v / len(paths)).float() for k, v in sums.items()}, strict=False)
    model.eval()
    return model, hashes


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("checkpoints", type=Path, nargs="+", help="two or more checkpoints of one architecture")
    parser.add_argument("-o", "--output", type=Path, required=True, help="the averaged checkpoint to write")
    args = parser.parse_args(argv)
    if args.output.resolve() in {p.resolve() for p in args.checkpoints}:
        print(f"error: the output {args.output} is one of the inputs", file=sys.stderr)
        return 2
    try:
        model, hashes = average(args.checkpoints)
    except CheckpointError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    for path, sha in zip(args.checkpoints, hashes):
        print(f"in:  {path} sha256 {sha[:16]}…")
    save_package(make_package(model, averaged_from=hashes), args.output)   # via a temporary file
    config = model.config
    print(f"out: {args.output} sha256 {sha256_file(args.output)[:16]}… (the mean of {len(hashes)} checkpoints, "
          f"{config.hidden_layers} x GRU({config.hidden_size}))")
    return 0


if __name__ == "__main__":
    sys.exit(main())
