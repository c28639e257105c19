"""Weight quantization of an exported model for ONNX Runtime on CPU (int8 or int4), convolutions kept fp32.

At batch 1 the cost of DeepSpeech2 is reading the recurrent GRU weights once per output frame, so what matters
is that those weights — inside the `Scan` body that `gru_to_scan` builds — are quantized:

- int8: `quantize_dynamic` (QInt8 weights, one scale per tensor, uint8 activations quantized on the fly) on
  every MatMul, subgraphs included; ONNX Runtime fuses each into a `DynamicQuantizeMatMul` (+ bias) at load.
  The recurrent MatMuls inside the Scan bodies keep that (one activation scale per time step); the top-level
  MatMuls (input projections, classifier) then get **one activation scale per frame** (`per_frame_activations`):
  `DynamicQuantizeLinear` would give them one scale for every frame of every utterance in the batch, padding
  included, so an utterance's int8 result depended on what it was batched with (tools/eval_demo.py, demo
  model, 600 test utterances: WER 58.08 at batch 1 but 60.27 at batch 16).
- int4: the input projections (one compute-bound GEMM per layer over all frames) and the classifier are
  quantized like int8 — ONNX Runtime's int8 GEMM is ~4x faster there than `MatMulNBits` — and the recurrent
  MatMuls inside the Scan bodies get 4-bit block-wise weights (`MatMulNBits`, symmetric, accuracy_level=4,
  i.e. int8 compute; accuracy_level=0 is many times slower).

See bench/profile_gru.py for the measurements behind these defaults.
"""

from __future__ import annotations

import logging
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import Callable, Mapping

import numpy as np
import onnx
from onnx import helper, numpy_helper

from .rewrite import count_ops, gru_to_scan

__all__ = ["quantize_model", "PRECISIONS", "DEFAULT_INT4_BLOCK_SIZE", "quantized_op_counts", "per_frame_activations"]

PRECISIONS = ("int8", "int4")
DEFAULT_INT4_BLOCK_SIZE = 128
INT8_OPS = ("MatMulInteger", "DynamicQuantizeMatMul", "MatMulIntegerToFloat")
INT4_OPS = ("MatMulNBits",)


def quantize_model(
    src: Path,
    dst: Path,
    precision: str,
    *,
    block_size: int = DEFAULT_INT4_BLOCK_SIZE,
    input_projection: str = "int8",
    per_channel: bool | None = None,
    weight_type: str = "int8",
    accuracy_level: int = 4,
    symmetric: bool = True,
    per_frame: bool = True,
    metadata: Callable[[str], Mapping[str, str]] | None = None,
) -> dict:
    """Quantize the fp32 model at `src` and write it to `dst` (only `dst` is written; no ORT-optimized graph).

    GRU ops are first rewritten to MatMul + Scan (`gru_to_scan`) so that their weights can be quantized.
    Convolutions stay fp32; metadata_props are copied over, then updated with `metadata(method)` if given
    (the method description is known only here; the export pipeline records it with the precision).
    `per_frame=False` keeps `quantize_dynamic`'s one activation scale per tensor for the top-level MatMuls
    (see `per_frame_activations`; for comparison only: batched results then depend on the batch).

    precision "int8": every MatMul int8 (`weight_type` "int8" = QInt8, or "uint8" = QUInt8). Weight scales are
    per tensor by default (`per_channel=None`), as in PyTorch's dynamic GRU quantization: ONNX Runtime's
    batch-1 int8 kernel is ~25 % slower with per-channel scales.
    precision "int4": the recurrent MatMuls become 4-bit `MatMulNBits` (`block_size`, `accuracy_level`,
    `symmetric`); the other MatMuls int8 per channel (`input_projection="int8"`: these are GEMMs over all
    frames, where per-channel scales cost nothing and int8 beats 4-bit) or also 4-bit (`"int4"`).

    Returns a description: precision, method, quantized_nodes (in total), quantized_nodes_in_scan_bodies,
    scan_layers and op_counts. Raises ValueError for bad arguments, FileNotFoundError for a missing `src`
    and RuntimeError when loading or quantizing fails or the Scan bodies were left fp32.
    """
    src, dst = Path(src), Path(dst)
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {', '.join(PRECISIONS)}, got {precision!r}")
    if per_channel is None:
        per_channel = precision == "int4"
    if block_size not in (16, 32, 64, 128, 256):
        raise ValueError(f"block_size must be a power of two in 16..256, got {block_size}")
    if input_projection not in ("int8", "int4"):
        raise ValueError(f"input_projection must be 'int8' or 'int4', got {input_projection!r}")
    if weight_type not in ("int8", "uint8"):
        raise ValueError(f"weight_type must be 'int8' or 'uint8', got {weight_type!r}")
    if not src.is_file():
        raise FileNotFoundError(f"{src}: no such model file")
    if src.resolve() == dst.resolve():
        raise ValueError("dst must differ from src")

    try:
        model = onnx.load(str(src))
    except Exception as e:  # onnx raises DecodeError and others for unreadable files
        raise RuntimeError(f"{src}: cannot load the ONNX model ({e})") from e
    kept_metadata = [(p.key, p.value) for p in model.metadata_props]
    if count_ops(model, "GRU"):
        model = gru_to_scan(model)
    scans = [n for n in model.graph.node if n.op_type == "Scan"]

    try:
        with _quiet_quantizers(), tempfile.TemporaryDirectory(prefix="ds2-quantize-") as tmp:
            if precision == "int8":
                quantized = _dynamic_int8(model, Path(tmp), per_channel, weight_type, subgraphs=True)
                if per_frame:
                    quantized = per_frame_activations(quantized)
                wt = "QInt8" if weight_type == "int8" else "QUInt8"
                method = (
                    f"quantize_dynamic {wt} weights {'per channel' if per_channel else 'per tensor'}, "
                    f"uint8 activations ({'one scale per frame' if per_frame else 'one scale per tensor'} for the "
                    "top-level MatMuls, per time step in the Scan bodies), all MatMuls incl. Scan bodies; convs fp32"
                )
            else:
                if input_projection == "int8":
                    # Top-level MatMuls (input projections, classifier) to int8 first; what remains fp32 is the
                    # recurrent MatMul inside each Scan body, which then gets 4-bit weights.
                    model = _dynamic_int8(model, Path(tmp), per_channel, weight_type, subgraphs=False)
                    if per_frame:
                        model = per_frame_activations(model)
                quantized = _nbits_int4(model, block_size, accuracy_level, symmetric)
                method = (
                    f"MatMulNBits 4-bit block={block_size} accuracy_level={accuracy_level} "
                    f"{'symmetric' if symmetric else 'asymmetric'} for recurrent weights (Scan bodies)"
                    + (
                        f"; input projections and classifier int8 (quantize_dynamic QInt8 "
                        f"{'per channel' if per_channel else 'per tensor'}, "
                        f"{'one activation scale per frame' if per_frame else 'one activation scale per tensor'})"
                        if input_projection == "int8"
                        else "; input projections and classifier also 4-bit"
                    )
                    + "; weights only, convs fp32"
                )
    except (ValueError, RuntimeError):
        raise
    except Exception as e:  # the ORT quantizers raise a variety of exception types
        raise RuntimeError(f"quantizing {src} to {precision} failed: {type(e).__name__}: {e}") from e

    counts = quantized_op_counts(quantized)
    in_bodies = [_count_quantized(_body(n)) for n in quantized.graph.node if n.op_type == "Scan"]
    if scans and (len(in_bodies) != len(scans) or not all(in_bodies)):
        raise RuntimeError(
            f"{precision} quantization left recurrent MatMuls fp32 in {sum(1 for c in in_bodies if not c)} "
            f"of {len(scans)} Scan bodies"
        )
    if not counts["total"]:
        raise RuntimeError(f"{precision} quantization quantized no MatMul in {src}")

    props = dict(kept_metadata)
    if metadata is not None:
        props.update(metadata(method))
    del quantized.metadata_props[:]
    for key, value in props.items():
        quantized.metadata_props.add(key=key, value=value)
    try:
        onnx.checker.check_model(quantized)
    except onnx.checker.ValidationError as e:
        raise RuntimeError(f"{precision} model fails onnx.checker: {str(e).splitlines()[0]}") from e
    onnx.save(quantized, str(dst), save_as_external_data=False)
    return {
        "precision": precision,
        "method": method,
        "quantized_nodes": counts["total"],
        "quantized_nodes_in_scan_bodies": sum(in_bodies),
        "scan_layers": len(scans),
        "op_counts": {k: v for k, v in counts.items() if k != "total" and v},
    }


def per_frame_activations(model: onnx.ModelProto) -> onnx.ModelProto:
    """Give every top-level dynamically quantized MatMul one activation scale per row (frame) instead of one per tensor.

    `quantize_dynamic` writes `DynamicQuantizeLinear(x) -> (xq, scale, zp)`, `MatMulInteger(xq, w, zp, w_zp)`,
    `Cast`, and `Mul(Cast, Mul(scale, w_scale))`. Here `DynamicQuantizeLinear` becomes a symmetric per-row
    quantizer, `scale = max(|x|, axis=-1) / 127` (shape [..., 1]) and `xq = QuantizeLinear(x / scale, 1, 128)`,
    so `zp` is the constant 128 (uint8 with the zero in the middle: ONNX Runtime's `MatMulInteger` takes a
    per-tensor zero point only), and the output becomes `Mul(Mul(Cast, scale), w_scale)`: a row's result no
    longer depends on the other rows of the batch. The two Muls are kept apart on purpose: ONNX Runtime 1.x fuses
    `MatMulInteger -> Cast -> Mul(Mul(a_scale, b_scale))` into `MatMulIntegerToFloat`, whose kernel reads
    `a_scale` as one number — with a per-row scale it silently uses the first row's (measured: max |Δ log-prob|
    6.5 instead of 0.37 on the demo model).

    Subgraphs (Scan bodies) are left alone: there a row is one time step of one utterance, quantized per tensor
    by `DynamicQuantizeMatMul`. Modifies and returns `model`; raises RuntimeError if the graph around a
    `DynamicQuantizeLinear` is not what `quantize_dynamic` writes.
    """
    graph = model.graph
    consumers: dict[str, list[onnx.NodeProto]] = {}
    for node in graph.node:
        for name in node.input:
            consumers.setdefault(name, []).append(node)
    replace: dict[int, list[onnx.NodeProto]] = {}
    drop: set[int] = set()
    for node in graph.node:
        if node.op_type != "DynamicQuantizeLinear":
            continue
        x = node.input[0]
        xq, scale, zp = node.output
        p = node.name or f"{x}_quantize"
        graph.initializer.extend([
            numpy_helper.from_array(np.array(1 / 127, np.float32), f"{p}_per_frame_inv127"),
            numpy_helper.from_array(np.array(np.finfo(np.float32).tiny, np.float32), f"{p}_per_frame_tiny"),
            numpy_helper.from_array(np.array(1.0, np.float32), f"{p}_per_frame_one"),
        ])
        replace[id(node)] = [
            helper.make_node("Abs", [x], [f"{p}_abs"], name=f"{p}_per_frame_Abs"),
            helper.make_node("ReduceMax", [f"{p}_abs"], [f"{p}_absmax"], name=f"{p}_per_frame_ReduceMax", axes=[-1], keepdims=1),
            helper.make_node("Mul", [f"{p}_absmax", f"{p}_per_frame_inv127"], [f"{p}_scale0"], name=f"{p}_per_frame_Mul"),
            # an all-zero frame gets the smallest normal float as its scale: x / scale = 0, no 0 / 0
            helper.make_node("Max", [f"{p}_scale0", f"{p}_per_frame_tiny"], [scale], name=f"{p}_per_frame_Max"),
            helper.make_node("Div", [x, scale], [f"{p}_scaled"], name=f"{p}_per_frame_Div"),
            helper.make_node("Constant", [], [zp], name=f"{p}_per_frame_zero_point",
                             value=numpy_helper.from_array(np.array(128, np.uint8), zp)),
            helper.make_node("QuantizeLinear", [f"{p}_scaled", f"{p}_per_frame_one", zp], [xq], name=f"{p}_per_frame_Quantize"),
        ]
        for use in consumers.get(scale, []):
            # Mul(scale, w_scale) -> scales; Mul(Cast(MatMulInteger), scales) -> y
            final = consumers.get(use.output[0], [])
            if use.op_type != "Mul" or len(final) != 1 or final[0].op_type != "Mul":
                raise RuntimeError(f"unexpected graph after {node.name}: {use.op_type} {use.name}")
            w_scale = next(i for i in use.input if i != scale)
            cast_out = next(i for i in final[0].input if i != use.output[0])
            y = final[0].output[0]
            drop.add(id(use))
            replace[id(final[0])] = [
                helper.make_node("Mul", [cast_out, scale], [f"{y}_per_frame"], name=f"{final[0].name}_per_frame"),
                helper.make_node("Mul", [f"{y}_per_frame", w_scale], [y], name=final[0].name),
            ]
    nodes = []
    for node in graph.node:
        if id(node) in drop:
            continue
        nodes.extend(replace.get(id(node), [node]))
    del graph.node[:]
    graph.node.extend(nodes)
    return model


def quantized_op_counts(model: onnx.ModelProto) -> dict[str, int]:
    """How many quantized matrix products a model holds, subgraphs included (MatMulInteger etc., MatMulNBits)."""
    counts = {op: count_ops(model, op) for op in INT8_OPS + INT4_OPS}
    counts["total"] = sum(counts.values())
    return counts


def _count_quantized(graph: onnx.GraphProto) -> int:
    return sum(count_ops(graph, op) for op in INT8_OPS + INT4_OPS)


def _body(scan: onnx.NodeProto) -> onnx.GraphProto:
    return next(a.g for a in scan.attribute if a.name == "body")


def _dynamic_int8(model: onnx.ModelProto, tmp: Path, per_channel: bool, weight_type: str, subgraphs: bool):
    from onnxruntime.quantization import QuantType, quantize_dynamic

    out = tmp / ("int8.onnx" if subgraphs else "int8_top.onnx")
    quantize_dynamic(
        model,
        out,
        op_types_to_quantize=["MatMul"],
        per_channel=per_channel,
        weight_type=QuantType.QInt8 if weight_type == "int8" else QuantType.QUInt8,
        extra_options={"EnableSubgraph": subgraphs, "MatMulConstBOnly": True},
    )
    return onnx.load(str(out))


def _nbits_int4(model: onnx.ModelProto, block_size: int, accuracy_level: int, symmetric: bool) -> onnx.ModelProto:
    from onnxruntime.quantization.matmul_nbits_quantizer import MatMulNBitsQuantizer

    quantizer = MatMulNBitsQuantizer(
        model,
        bits=4,
        block_size=block_size,
        is_symmetric=symmetric,
        accuracy_level=accuracy_level,
        op_types_to_quantize=("MatMul",),
    )
    quantizer.process()
    return quantizer.model.model


@contextmanager
def _quiet_quantizers():
    """ORT's quantizers log a line per node at INFO/WARNING on the root logger: silence them while we run."""
    names = ["", "onnxruntime.quantization", "onnxruntime.quantization.matmul_nbits_quantizer"]
    loggers = [logging.getLogger(n) for n in names]
    levels = [lg.level for lg in loggers]
    for lg in loggers:
        lg.setLevel(logging.ERROR)
    try:
        yield
    finally:
        for lg, level in zip(loggers, levels):
            lg.setLevel(level)
