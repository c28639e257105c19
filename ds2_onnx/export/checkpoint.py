"""Load a deepspeech.pytorch / MLPerf DeepSpeech2 checkpoint package safely into a `DeepSpeech2` module.

Accepts a torch file in the legacy (pre-1.6) or zip format, or a .zip archive (the zenodo download) holding
one. Checkpoints are untrusted: they are always read with `weights_only=True`.
"""

from __future__ import annotations

import hashlib
import io
import pickle
import re
import zipfile
from dataclasses import dataclass
from pathlib import Path

import torch

from ..errors import CheckpointError
from .model import DeepSpeech2, ModelConfig

CHECKPOINT_SUFFIXES = (".pth", ".pt", ".tar", ".ckpt", ".bin")


@dataclass(frozen=True)
class Checkpoint:
    model: DeepSpeech2  # in eval mode, on the CPU
    config: ModelConfig
    sha256: str  # of the file the user passed
    source: str  # that path, plus "!member" when read from inside a .zip archive
    extras: dict  # scalar training facts from the package (epoch, version, ...), for the record


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _is_torch_zip(names: list[str]) -> bool:
    return any(n.endswith("/data.pkl") or n == "data.pkl" for n in names)


def _open_payload(path: Path) -> tuple[io.BytesIO | Path, str]:
    """The torch-serialised bytes to load, and a description of where they came from."""
    if not zipfile.is_zipfile(path):
        return path, str(path)
    with zipfile.ZipFile(path) as archive:
        names = archive.namelist()
        if _is_torch_zip(names):
            return path, str(path)
        candidates = [n for n in names if n.lower().endswith(CHECKPOINT_SUFFIXES) and not n.endswith("/")]
        if not candidates:
            raise CheckpointError(
                f"{path} is a zip archive without a checkpoint inside (looked for {', '.join(CHECKPOINT_SUFFIXES)}); "
                f"it holds: {', '.join(names[:10]) or 'nothing'}"
            )
        if len(candidates) > 1:
            raise CheckpointError(
                f"{path} holds several checkpoints ({', '.join(candidates)}); extract the one you want and pass it"
            )
        return io.BytesIO(archive.read(candidates[0])), f"{path}!{candidates[0]}"


def _first_line(text: str) -> str:
    text = text.strip()
    return text.splitlines()[0] if text else ""


def _check_magic(payload: io.BytesIO | Path, source: str) -> None:
    """Torch files are zip archives or pickles (protocol 2+ starts with 0x80): say so before unpickling."""
    if isinstance(payload, Path):
        with open(payload, "rb") as f:
            head = f.read(4)
    else:
        head = payload.getvalue()[:4]
    if not head:
        raise CheckpointError(f"{source} is empty")
    if not (head.startswith(b"PK") or head[:1] == b"\x80"):
        raise CheckpointError(f"{source} is not a PyTorch checkpoint (it starts with {head!r})")


def read_package(path: str | Path) -> tuple[dict, str, str]:
    """torch.load the package with weights_only=True: (package dict, source description, sha256)."""
    path = Path(path)
    if not path.exists():
        raise CheckpointError(f"{path}: no such checkpoint file")
    if path.is_dir():
        raise CheckpointError(f"{path} is a directory, not a checkpoint file")
    sha = sha256_file(path)
    try:
        payload, source = _open_payload(path)
    except zipfile.BadZipFile as e:
        raise CheckpointError(f"{path}: damaged zip archive ({e})") from e
    _check_magic(payload, source)
    try:
        package = torch.load(payload, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as e:
        text = str(e)
        unsafe = re.search(r"Unsupported global: GLOBAL ([\w.]+)", text)
        if unsafe:
            raise CheckpointError(
                f"{source} contains a Python object ({unsafe.group(1)}) that is not allowed in a safely loaded "
                "checkpoint; ds2-onnx loads checkpoints with weights_only=True and will not run pickled code"
            ) from e
        raise CheckpointError(f"{source} is not a readable PyTorch checkpoint ({_first_line(text)})") from e
    except (RuntimeError, EOFError, OSError, ValueError, AttributeError, KeyError, IndexError, TypeError) as e:
        raise CheckpointError(f"{source} is not a readable PyTorch checkpoint ({_first_line(str(e)) or type(e).__name__})") from e
    if not isinstance(package, dict):
        raise CheckpointError(f"{source} holds a {type(package).__name__}, not a DeepSpeech2 checkpoint package (a dict)")
    return package, source, sha


def config_from_package(package: dict, source: str) -> ModelConfig:
    """Architecture and audio settings recorded in the package (MLPerf defaults where a key is absent)."""
    defaults = ModelConfig()
    audio = package.get("audio_conf") or {}
    if not isinstance(audio, dict):
        raise CheckpointError(f"{source}: audio_conf is a {type(audio).__name__}, expected a dict")
    rnn_type = str(package.get("rnn_type", "gru")).lower()
    if rnn_type != "gru":
        raise CheckpointError(f"{source}: rnn_type {rnn_type!r} is not supported; ds2-onnx deploys GRU models")
    window = str(audio.get("window", "hamming")).lower()
    if window != "hamming":
        raise CheckpointError(f"{source}: window {window!r} is not supported (the MLPerf model uses 'hamming')")
    labels = package.get("labels", defaults.labels)
    if not isinstance(labels, str) or len(labels) < 2:
        raise CheckpointError(f"{source}: labels must be a string of at least 2 characters, got {labels!r}")
    if "_" not in labels:
        raise CheckpointError(f"{source}: labels {labels!r} have no blank '_'")
    try:
        config = ModelConfig(
            hidden_size=int(package.get("hidden_size", defaults.hidden_size)),
            hidden_layers=int(package.get("hidden_layers", defaults.hidden_layers)),
            labels=labels,
            sample_rate=int(audio.get("sample_rate", defaults.sample_rate)),
            window_size=float(audio.get("window_size", defaults.window_size)),
            window_stride=float(audio.get("window_stride", defaults.window_stride)),
            window=window,
            rnn_type=rnn_type,
            bidirectional=bool(package.get("bidirectional", False)),
        )
    except (TypeError, ValueError) as e:
        raise CheckpointError(f"{source}: malformed architecture settings ({e})") from e
    if config.hidden_size < 1 or config.hidden_layers < 1:
        raise CheckpointError(f"{source}: hidden_size and hidden_layers must be positive")
    if config.rnn_input_size <= 0:
        raise CheckpointError(f"{source}: window of {config.n_fft} samples is too small for the conv stack")
    return config


def _strip_prefix(state_dict: dict) -> dict:
    if state_dict and all(k.startswith("module.") for k in state_dict):
        return {k[len("module.") :]: v for k, v in state_dict.items()}
    return dict(state_dict)


def check_state_dict(model: torch.nn.Module, state_dict: dict, source: str) -> dict:
    """Keys and shapes against the architecture: returns the state_dict to load, or raises listing every problem."""
    expected = {k: v.shape for k, v in model.state_dict().items() if not k.endswith("num_batches_tracked")}
    given = {k: v for k, v in state_dict.items() if not k.endswith("num_batches_tracked")}
    problems = []
    missing = sorted(set(expected) - set(given))
    unexpected = sorted(set(given) - set(expected))
    if missing:
        problems.append("missing keys: " + ", ".join(missing))
    if unexpected:
        problems.append("unexpected keys: " + ", ".join(unexpected))
    for key in sorted(set(expected) & set(given)):
        value = given[key]
        if not isinstance(value, torch.Tensor):
            problems.append(f"{key} is a {type(value).__name__}, not a tensor")
        elif tuple(value.shape) != tuple(expected[key]):
            problems.append(f"{key} has shape {list(value.shape)}, the architecture needs {list(expected[key])}")
        elif not value.is_floating_point():
            problems.append(f"{key} has dtype {value.dtype}, expected floating point")
    if problems:
        raise CheckpointError(
            f"{source}: state_dict does not fit the DeepSpeech2 architecture:\n  - " + "\n  - ".join(problems)
        )
    return {k: v.float() for k, v in given.items()}


def load_checkpoint(path: str | Path) -> Checkpoint:
    """Read, validate and build the model from a checkpoint file or a .zip archive holding one."""
    package, source, sha = read_package(path)
    if "state_dict" not in package:
        keys = ", ".join(sorted(map(str, package))[:12])
        raise CheckpointError(
            f"{source} is not a deepspeech.pytorch model package: no 'state_dict' key (it has: {keys})"
        )
    state_dict = package["state_dict"]
    if not isinstance(state_dict, dict):
        raise CheckpointError(f"{source}: state_dict is a {type(state_dict).__name__}, expected a dict of tensors")
    config = config_from_package(package, source)
    model = DeepSpeech2(config)
    state_dict = check_state_dict(model, _strip_prefix(state_dict), source)
    model.load_state_dict(state_dict, strict=False)
    model.eval()
    extras = {
        k: package[k] for k in ("version", "epoch", "iteration", "avg_loss") if isinstance(package.get(k), (int, float, str))
    }
    return Checkpoint(model, config, sha, source, extras)
