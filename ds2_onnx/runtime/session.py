"""ONNX Runtime CPU session for an exported model, with explicit threading and the metadata read back."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..errors import ModelFileError
from .model_info import ModelInfo


@dataclass(frozen=True)
class SessionOptions:
    """How ONNX Runtime runs the model. threads=None uses every core this process may run on."""

    threads: int | None = None
    spin: bool = False  # busy-waiting workers cut latency a little but burn a core between calls
    optimization: str = "all"  # "disable" | "basic" | "extended" | "all"; applied in memory, never saved


def default_threads() -> int:
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not on Linux
        return max(1, os.cpu_count() or 1)


def _import_ort():
    try:
        import onnxruntime
    except ImportError as e:  # pragma: no cover - depends on the environment
        raise RuntimeError("the ds2-onnx runtime requires the onnxruntime package: pip install onnxruntime") from e
    return onnxruntime


def create_session(path: str | Path, options: SessionOptions = SessionOptions()):
    """Open `path` with ONNX Runtime on the CPU; returns (session, ModelInfo)."""
    ort = _import_ort()
    path = Path(path)
    if not path.is_file():
        raise ModelFileError(f"{path}: no such model file")
    so = ort.SessionOptions()
    threads = options.threads or default_threads()
    if threads < 1:
        raise ValueError(f"threads must be at least 1, got {threads}")
    so.intra_op_num_threads = threads
    so.inter_op_num_threads = 1
    so.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    levels = {
        "disable": ort.GraphOptimizationLevel.ORT_DISABLE_ALL,
        "basic": ort.GraphOptimizationLevel.ORT_ENABLE_BASIC,
        "extended": ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED,
        "all": ort.GraphOptimizationLevel.ORT_ENABLE_ALL,
    }
    if options.optimization not in levels:
        raise ValueError(f"optimization must be one of {sorted(levels)}, got {options.optimization!r}")
    so.graph_optimization_level = levels[options.optimization]
    spin = "1" if options.spin else "0"
    so.add_session_config_entry("session.intra_op.allow_spinning", spin)
    so.add_session_config_entry("session.inter_op.allow_spinning", spin)
    so.log_severity_level = 3
    try:
        session = ort.InferenceSession(str(path), sess_options=so, providers=["CPUExecutionProvider"])
    except Exception as e:  # ORT raises several exception types for unreadable or invalid models
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise ModelFileError(f"{path}: not a loadable ONNX model ({first})") from e
    info = ModelInfo.from_metadata(session.get_modelmeta().custom_metadata_map, source=str(path))
    _check_signature(session, info, path)
    return session, info


def _check_signature(session, info: ModelInfo, path: Path) -> None:
    inputs = {i.name: i for i in session.get_inputs()}
    outputs = {o.name: o for o in session.get_outputs()}
    problems = []
    for name in info.input_names:
        if name not in inputs:
            problems.append(f"missing input {name!r}")
    for name in info.output_names:
        if name not in outputs:
            problems.append(f"missing output {name!r}")
    if not problems:
        spect_shape = inputs[info.input_names[0]].shape
        if len(spect_shape) != 4 or spect_shape[2] != info.n_freq:
            problems.append(f"spectrogram input shaped {spect_shape}, expected [B, 1, {info.n_freq}, T]")
        out_shape = outputs[info.output_names[0]].shape
        if len(out_shape) != 3 or out_shape[2] != info.num_classes:
            problems.append(f"log-prob output shaped {out_shape}, expected [B, T', {info.num_classes}]")
    if problems:
        raise ModelFileError(f"{path}: graph does not match its metadata: " + "; ".join(problems))


def run_model(session, info: ModelInfo, spect: np.ndarray, lengths: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(B, 1, F, T) float32 features and (B,) int64 lengths → (B, T', C) log-probs and (B,) output lengths."""
    feeds = {info.input_names[0]: spect.astype(np.float32, copy=False), info.input_names[1]: lengths.astype(np.int64)}
    log_probs, out_lengths = session.run(list(info.output_names), feeds)
    return log_probs, out_lengths
