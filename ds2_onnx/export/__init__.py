"""Export: the only part of ds2-onnx that imports torch. Checkpoint loading, ONNX export, rewrite, quantization."""

from __future__ import annotations

import hashlib
from pathlib import Path


def code_digest() -> str:
    """A short digest of this package's source: caches of exported models (bench/) key on it, so a change to
    the export or quantization code rebuilds them instead of measuring stale files."""
    h = hashlib.sha256()
    for path in sorted(Path(__file__).parent.glob("*.py")):
        h.update(path.name.encode() + b"\0" + path.read_bytes())
    return h.hexdigest()[:12]
