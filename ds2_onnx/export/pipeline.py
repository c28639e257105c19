"""`ds2-onnx export`: checkpoint → verified fp32 ONNX (+ quantized variants beside it), written atomically."""

from __future__ import annotations

import os
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Sequence

import onnx

from ..errors import Ds2OnnxError, ModelFileError
from ..files import atomic_path
from ..runtime.session import SessionOptions, create_session
from .checkpoint import Checkpoint, load_checkpoint
from .onnx_export import (
    DEFAULT_INPUT_SCALE,
    FP32_ATOL,
    ParityReport,
    check_against_torch,
    model_info,
    set_metadata,
    to_onnx,
    with_precision,
)

PRECISIONS = ("fp32", "int8", "int4")


@dataclass(frozen=True)
class ExportedModel:
    precision: str
    path: Path
    size_bytes: int
    parity: ParityReport  # against PyTorch fp32
    method: str


def variant_path(out: Path, precision: str) -> Path:
    """OUT.onnx for fp32, OUT.int8.onnx / OUT.int4.onnx beside it for quantized variants."""
    return out if precision == "fp32" else out.with_name(f"{out.stem}.{precision}{out.suffix}")


def save_model(proto: onnx.ModelProto, path: Path) -> None:
    onnx.save_model(proto, str(path))


def verify(path: Path, checkpoint: Checkpoint, atol: float | None, threads: int | None) -> ParityReport:
    """onnx.checker, then a fresh ORT session compared with PyTorch on padded batches."""
    try:
        onnx.checker.check_model(str(path), full_check=True)
    except onnx.checker.ValidationError as e:
        raise ModelFileError(f"exported graph fails onnx.checker: {str(e).splitlines()[0]}") from e
    session, info = create_session(path, SessionOptions(threads=threads))
    return check_against_torch(checkpoint.model, session, info, atol=atol)


def export_checkpoint(
    checkpoint_path: str | Path,
    out: str | Path | None = None,
    precisions: Sequence[str] = ("fp32", "int8"),
    input_scale: float = DEFAULT_INPUT_SCALE,
    threads: int | None = None,
    progress: Callable[[str], None] = lambda message: None,
) -> list[ExportedModel]:
    """Export a checkpoint to ONNX at each precision, verifying each before it is moved into place."""
    unknown = [p for p in precisions if p not in PRECISIONS]
    if unknown or not precisions:
        raise Ds2OnnxError(f"unknown precision {', '.join(unknown) or '(none)'}; choose from {', '.join(PRECISIONS)}")
    if not input_scale > 0:
        raise Ds2OnnxError(f"input scale must be positive, got {input_scale}")
    checkpoint_path = Path(checkpoint_path)
    out = Path(out) if out is not None else checkpoint_path.with_suffix(".onnx")
    if out.suffix != ".onnx":
        raise Ds2OnnxError(f"output path {out} should end in .onnx")

    progress(f"loading {checkpoint_path}")
    checkpoint = load_checkpoint(checkpoint_path)
    info = model_info(checkpoint.model, input_scale, checkpoint.sha256)
    progress(f"exporting {checkpoint.config.hidden_layers} x GRU({checkpoint.config.hidden_size}) to ONNX")
    proto = set_metadata(to_onnx(checkpoint.model), info)

    results = []
    # The fp32 graph is always built and verified: quantized variants are derived from it.
    fp32_final = variant_path(out, "fp32")
    out.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix=f".{out.stem}.", dir=out.parent) as scratch:
        fp32_tmp = Path(scratch) / "fp32.onnx"
        save_model(proto, fp32_tmp)
        progress("checking fp32 ONNX against PyTorch")
        parity = verify(fp32_tmp, checkpoint, FP32_ATOL, threads)
        if "fp32" in precisions:
            with atomic_path(fp32_final) as tmp:
                os.replace(fp32_tmp, tmp)
            results.append(ExportedModel("fp32", fp32_final, fp32_final.stat().st_size, parity, "none"))
            src = fp32_final
        else:
            src = fp32_tmp
        for precision in (p for p in PRECISIONS if p != "fp32" and p in precisions):
            from .quantize import quantize_model

            final = variant_path(out, precision)
            progress(f"quantizing to {precision}")
            with atomic_path(final) as tmp:
                try:
                    done = quantize_model(src, tmp, precision, metadata=lambda method, p=precision: (
                        with_precision(info, p, method, "scan").to_metadata()))
                except (RuntimeError, ValueError, OSError) as e:
                    raise Ds2OnnxError(f"quantizing to {precision} failed: {e}") from e
                method = str(done["method"])
                progress(f"checking {precision} ONNX against PyTorch")
                q_parity = verify(tmp, checkpoint, None, threads)
            results.append(ExportedModel(precision, final, final.stat().st_size, q_parity, method))
    return results
