"""PNG figures of a validation run: latency CDF per variant and real-time factor against duration.

matplotlib is optional (the `plots` extra) and imported only here, with the headless Agg backend.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ..errors import Ds2OnnxError
from .validate import ValidationReport


def require_matplotlib():
    try:
        import matplotlib
    except ImportError as e:
        raise Ds2OnnxError("--plots needs matplotlib: pip install 'ds2-onnx[plots]'") from e
    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    return plt


def write_plots(report: ValidationReport, folder: str | Path) -> list[Path]:
    plt = require_matplotlib()
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    durations = np.array([u.duration for u in report.utterances])
    title = f"{report.dataset} ({report.evaluated} utterances), end-to-end latency"
    written = []

    fig, ax = plt.subplots(figsize=(7, 4.5))
    for v in report.variants:
        lat = np.sort([u.latency[v.name] for u in report.utterances])
        if lat.size:
            ax.step(lat, np.arange(1, lat.size + 1) / lat.size, where="post",
                    label=f"{v.name} (p50 {v.latency.p50:.3f} s, p99 {v.latency.p99:.3f} s)")
    _label(ax, "latency per utterance (s)", "fraction of utterances", title)
    written.append(_save(fig, folder / "latency_cdf.png", plt))

    fig, ax = plt.subplots(figsize=(7, 4.5))
    for v in report.variants:
        lat = np.array([u.latency[v.name] for u in report.utterances])
        keep = durations > 0
        if keep.any():
            ax.scatter(durations[keep], lat[keep] / durations[keep], s=10, alpha=0.7,
                       label=f"{v.name} (mean RTF {v.latency.mean_rtf:.3f})")
    _label(ax, "audio duration (s)", "real-time factor (processing / audio)", title)
    written.append(_save(fig, folder / "rtf_vs_duration.png", plt))
    return written


def _save(fig, path: Path, plt) -> Path:
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def _label(ax, xlabel: str, ylabel: str, title: str) -> None:
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.set_title(title, fontsize=10)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
