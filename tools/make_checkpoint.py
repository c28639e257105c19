"""Write a DeepSpeech2 checkpoint in the exact MLPerf package layout with random weights.

    python tools/make_checkpoint.py ckpt.pth                  # full size: 3 x GRU(2560), 103.8 M parameters
    python tools/make_checkpoint.py small.pth --hidden 64     # tiny, for quick trials
    python tools/make_checkpoint.py ckpt.pth --legacy --zip   # pre-1.6 torch format inside a .zip, as zenodo ships it
"""

from __future__ import annotations

import argparse
import zipfile
from pathlib import Path

from ds2_onnx.export.model import ModelConfig
from ds2_onnx.export.synthetic import make_package, random_model, save_package


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("out", type=Path)
    parser.add_argument("--hidden", type=int, default=2560)
    parser.add_argument("--layers", type=int, default=3)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--legacy", action="store_true", help="pre-1.6 torch serialisation (as PyTorch 0.4 wrote)")
    parser.add_argument("--module-prefix", action="store_true", help="keys prefixed with 'module.' (DataParallel)")
    parser.add_argument("--zip", action="store_true", help="also wrap the file in OUT.zip, like the zenodo download")
    args = parser.parse_args()
    model = random_model(ModelConfig(hidden_size=args.hidden, hidden_layers=args.layers), seed=args.seed)
    path = save_package(make_package(model, module_prefix=args.module_prefix), args.out, legacy=args.legacy)
    params = sum(p.numel() for p in model.parameters())
    print(f"wrote {path} ({params:,} parameters, {path.stat().st_size / 1e6:.1f} MB)")
    if args.zip:
        archive = path.with_suffix(".zip")
        with zipfile.ZipFile(archive, "w", zipfile.ZIP_STORED) as z:
            z.write(path, f"{path.stem}/{path.name}")
        print(f"wrote {archive}")


if __name__ == "__main__":
    main()
