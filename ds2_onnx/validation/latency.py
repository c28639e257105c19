"""Latency summaries (percentiles, real-time factor) and the machine description recorded with every timing."""

from __future__ import annotations

import os
import platform
import sys
from dataclasses import dataclass
from importlib import metadata
from typing import Sequence

import numpy as np


@dataclass(frozen=True)
class LatencySummary:
    """End-to-end per-utterance latency (load + features + model + decode) of one variant, in seconds."""

    utterances: int
    p50: float
    p90: float
    p99: float
    mean: float
    max: float
    mean_rtf: float  # mean over utterances of processing time / audio duration
    audio_seconds: float
    wall_seconds: float  # sum of the per-utterance latencies

    @classmethod
    def of(cls, latencies: Sequence[float], durations: Sequence[float]) -> "LatencySummary":
        lat = np.asarray(latencies, dtype=np.float64)
        dur = np.asarray(durations, dtype=np.float64)
        if lat.shape != dur.shape:
            raise ValueError(f"{lat.size} latencies for {dur.size} durations")
        if lat.size == 0:
            return cls(0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0)
        p50, p90, p99 = np.percentile(lat, [50, 90, 99])
        rtf = lat[dur > 0] / dur[dur > 0]
        return cls(
            utterances=int(lat.size),
            p50=float(p50),
            p90=float(p90),
            p99=float(p99),
            mean=float(lat.mean()),
            max=float(lat.max()),
            mean_rtf=float(rtf.mean()) if rtf.size else 0.0,
            audio_seconds=float(dur.sum()),
            wall_seconds=float(lat.sum()),
        )


def cpu_model() -> str:
    """The CPU's marketing name from /proc/cpuinfo, else what platform knows."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as f:
            for line in f:
                key, _, value = line.partition(":")
                if key.strip() in ("model name", "Model", "Hardware") and value.strip():
                    return value.strip()
    except OSError:
        pass
    return platform.processor() or platform.machine() or "unknown"


def _version(package: str) -> str | None:
    # importlib.metadata, not import: recording torch's version must not cost a torch import
    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return None


def machine_info(threads: int | None, workers: int) -> dict:
    try:
        usable = len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        usable = os.cpu_count() or 1
    return {
        "cpu": cpu_model(),
        "logical_cores": os.cpu_count(),
        "usable_cores": usable,
        "platform": platform.platform(),
        "python": sys.version.split()[0],
        "onnxruntime": _version("onnxruntime"),
        "numpy": _version("numpy"),
        "torch": _version("torch"),
        "librosa": _version("librosa"),
        "threads_per_worker": threads,
        "workers": workers,
    }
