"""Evaluation sets: LibriSpeech splits by name, LibriSpeech-layout folders, deepspeech.pytorch manifest CSVs.

Every form becomes a list of `Utterance`s (id, audio path, transcript normalised as in training, duration);
audio is only opened when an utterance is evaluated.
"""

from __future__ import annotations

import csv
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

from ..errors import DatasetError

SPLITS = ("test-clean", "test-other", "dev-clean", "dev-other")
DATA_ENV = "DS2_ONNX_DATA"
DEFAULT_DATA_DIR = Path("~/.cache/ds2-onnx")
AUDIO_SUFFIXES = (".flac", ".wav")
TRANSCRIPT_SUFFIX = ".trans.txt"
_SHOWN = 5  # problems listed by name before "and N more"


class DatasetNotFoundError(DatasetError, FileNotFoundError):
    """The dataset path does not exist, or a split name was not found under the data folder."""


@dataclass(frozen=True)
class Utterance:
    id: str
    audio: Path
    transcript: str  # normalised: upper case, only characters the model can emit
    duration: float | None  # seconds from the file header; None when the header cannot be read


@dataclass(frozen=True)
class Dataset:
    name: str  # what the user passed
    path: Path  # the folder or manifest it resolved to
    kind: str  # "librispeech" or "manifest"
    utterances: tuple[Utterance, ...]

    def __len__(self) -> int:
        return len(self.utterances)

    def __iter__(self) -> Iterator[Utterance]:
        return iter(self.utterances)


def default_data_dir() -> Path:
    """$DS2_ONNX_DATA, else ~/.cache/ds2-onnx."""
    env = os.environ.get(DATA_ENV)
    return Path(env).expanduser() if env else DEFAULT_DATA_DIR.expanduser()


def split_dir(split: str, data_dir: str | Path | None = None) -> Path:
    """Where a LibriSpeech split lives once its tarball is extracted: <data dir>/LibriSpeech/<split>."""
    base = Path(data_dir).expanduser() if data_dir is not None else default_data_dir()
    return base / "LibriSpeech" / split


def normalize_transcript(text: str, labels: str, blank_index: int = 0) -> str:
    """`text.strip().upper()` with characters outside the labels dropped, as the training data loader did.

    The loader mapped characters to label indices and filtered out falsy ones, so the blank (index 0) went too.
    """
    keep = set(labels) - {labels[blank_index]}
    return "".join(c for c in text.strip().upper() if c in keep)


def resolve(spec: str | Path, data_dir: str | Path | None = None) -> Path:
    """The folder or manifest a --dataset value names: an existing path, else a LibriSpeech split name."""
    path = Path(spec).expanduser()
    if path.exists():
        return path
    if str(spec) in SPLITS:
        where = split_dir(str(spec), data_dir)
        if where.is_dir():
            return where
        origin = "--data-dir" if data_dir is not None else (f"${DATA_ENV}" if os.environ.get(DATA_ENV) else "the default data folder")
        raise DatasetNotFoundError(
            f"LibriSpeech {spec} not found: looked for {where} ({origin}); "
            f"fetch it with `ds2-onnx download {spec}`" + (f" --data-dir {where.parent.parent}" if data_dir is not None else "")
        )
    raise DatasetNotFoundError(
        f"{spec}: no such file or folder, and not a LibriSpeech split name ({', '.join(SPLITS)})"
    )


def load_dataset(
    spec: str | Path, labels: str, blank_index: int = 0, data_dir: str | Path | None = None
) -> Dataset:
    """List a dataset's utterances: folders sorted by duration ascending (as the reference manifests were),
    manifests in their own order. Unreadable audio is kept (duration None, listed last) so evaluation can
    report and skip it."""
    path = resolve(spec, data_dir)
    if path.is_dir():
        utterances = _librispeech(path, labels, blank_index)
        utterances.sort(key=lambda u: (u.duration is None, u.duration or 0.0, u.id))
        kind = "librispeech"
    else:
        utterances = _manifest(path, labels, blank_index)
        kind = "manifest"
    if not utterances:
        raise DatasetError(
            f"{path} holds no utterances; expected LibriSpeech layout "
            "(<speaker>/<chapter>/<speaker>-<chapter>-<utt>.flac with <speaker>-<chapter>.trans.txt) "
            "or a manifest CSV of wav_path,txt_path lines"
        )
    return Dataset(str(spec), path, kind, tuple(utterances))


def audio_duration(path: Path) -> float | None:
    import soundfile as sf

    try:
        return float(sf.info(str(path)).duration)
    except Exception:  # noqa: BLE001 - libsndfile raises several types; the evaluation reports the file
        return None


def _listing(problems: list[str]) -> str:
    more = f" and {len(problems) - _SHOWN} more" if len(problems) > _SHOWN else ""
    return "; ".join(problems[:_SHOWN]) + more


def _librispeech(root: Path, labels: str, blank_index: int) -> list[Utterance]:
    transcripts: dict[str, tuple[str, Path]] = {}
    for trans in sorted(root.rglob(f"*{TRANSCRIPT_SUFFIX}")):
        try:
            lines = trans.read_text(encoding="utf-8").splitlines()
        except (OSError, UnicodeDecodeError) as e:
            raise DatasetError(f"{trans}: cannot read transcript file ({e})") from e
        for number, line in enumerate(lines, 1):
            if not line.strip():
                continue
            uid, _, text = line.strip().partition(" ")
            if uid in transcripts:
                raise DatasetError(f"{trans}:{number}: utterance {uid} already has a transcript in {transcripts[uid][1]}")
            transcripts[uid] = (text, trans)

    audio: dict[str, Path] = {}
    for path in sorted(p for p in root.rglob("*") if p.suffix.lower() in AUDIO_SUFFIXES and p.is_file()):
        uid = path.name[: -len(path.suffix)]
        if uid in audio:
            raise DatasetError(f"utterance {uid} has two audio files: {audio[uid]} and {path}")
        audio[uid] = path

    no_text = [f"{p} (expected a line '{uid} ...' in {p.parent / (uid.rsplit('-', 1)[0] + TRANSCRIPT_SUFFIX)})"
               for uid, p in audio.items() if uid not in transcripts]
    if no_text:
        raise DatasetError(f"{len(no_text)} audio file(s) without a transcript: {_listing(no_text)}")
    no_audio = [f"{uid} ({trans})" for uid, (_, trans) in transcripts.items() if uid not in audio]
    if no_audio:
        raise DatasetError(
            f"{len(no_audio)} transcript line(s) without an audio file ({'/'.join(AUDIO_SUFFIXES)}): {_listing(no_audio)}"
        )
    return [
        Utterance(uid, path, normalize_transcript(transcripts[uid][0], labels, blank_index), audio_duration(path))
        for uid, path in audio.items()
    ]


def _manifest(manifest: Path, labels: str, blank_index: int) -> list[Utterance]:
    base = manifest.parent
    try:
        with manifest.open(newline="", encoding="utf-8") as f:
            rows = list(csv.reader(f))
    except (OSError, UnicodeDecodeError, csv.Error) as e:
        raise DatasetError(f"{manifest}: cannot read as a manifest CSV ({e})") from e
    utterances = []
    missing = []
    for number, row in enumerate(rows, 1):
        if not row or not "".join(row).strip():
            continue
        if len(row) != 2:
            raise DatasetError(f"{manifest}:{number}: expected 'wav_path,txt_path', found {len(row)} field(s)")
        wav, txt = ((base / Path(p.strip()).expanduser()) for p in row)
        if not wav.is_file():
            missing.append(f"audio {wav} (line {number})")
            continue
        if not txt.is_file():
            missing.append(f"transcript {txt} for {wav.name} (line {number})")
            continue
        try:
            text = txt.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as e:
            raise DatasetError(f"{txt}: cannot read transcript ({e})") from e
        uid = wav.name[: -len(wav.suffix)] if wav.suffix else wav.name
        utterances.append(Utterance(uid, wav, normalize_transcript(text, labels, blank_index), audio_duration(wav)))
    if missing:
        raise DatasetError(f"{manifest}: {len(missing)} missing file(s): {_listing(missing)}")
    return utterances
