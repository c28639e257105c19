"""Dataset forms (split name, LibriSpeech folder, manifest CSV), transcript normalisation, order and errors."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import soundfile as sf
from conftest import synthesize

from ds2_onnx.errors import DatasetError
from ds2_onnx.validation.datasets import (
    DATA_ENV,
    DatasetNotFoundError,
    load_dataset,
    normalize_transcript,
    resolve,
    split_dir,
)

LABELS = "_'ABCDEFGHIJKLMNOPQRSTUVWXYZ "
# (utterance, spoken text, transcript line as written): longest first, so sorting by duration reorders them
CLIPS = [
    ("19-198-0000", "speech recognition systems are evaluated on read books", "SPEECH RECOGNITION SYSTEMS ARE EVALUATED ON READ BOOKS"),
    ("19-198-0001", "hello", "Hello!"),
    ("19-198-0002", "it is a lovely day", "it's a lovely_day"),
]


def make_librispeech(root: Path, clips=CLIPS, suffix: str = ".flac") -> Path:
    """<root>/19/198/19-198-000N.flac with 19-198.trans.txt, the layout the LibriSpeech tarballs have."""
    chapter = root / "19" / "198"
    chapter.mkdir(parents=True, exist_ok=True)
    for uid, spoken, _ in clips:
        synthesize(spoken, chapter / f"{uid}{suffix}")
    (chapter / "19-198.trans.txt").write_text("".join(f"{uid} {line}\n" for uid, _, line in clips))
    return root


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> Path:
    return make_librispeech(tmp_path_factory.mktemp("corpus") / "test-clean")


def copy_of(corpus: Path, tmp_path: Path) -> Path:
    return Path(shutil.copytree(corpus, tmp_path / "copy"))


def test_normalisation_as_in_training():
    assert normalize_transcript("  it's a Test_1!\n", LABELS) == "IT'S A TEST"
    assert normalize_transcript("Ünïcode café", LABELS) == "NCODE CAF"
    assert normalize_transcript("ab", "_ab") == ""  # lower case is not in these labels after upper()


def test_librispeech_folder_sorted_by_duration(corpus):
    data = load_dataset(corpus, LABELS)
    assert data.kind == "librispeech" and len(data) == 3
    durations = [u.duration for u in data]
    assert durations == sorted(durations) and all(d > 0 for d in durations)
    assert [u.id for u in data] == ["19-198-0001", "19-198-0002", "19-198-0000"]
    texts = {u.id: u.transcript for u in data}
    assert texts == {"19-198-0000": CLIPS[0][2], "19-198-0001": "HELLO", "19-198-0002": "IT'S A LOVELYDAY"}
    for u in data:
        assert u.audio.is_file() and u.duration == pytest.approx(sf.info(str(u.audio)).duration)


def test_wav_files_accepted(tmp_path):
    data = load_dataset(make_librispeech(tmp_path / "wavs", CLIPS[1:], suffix=".wav"), LABELS)
    assert [u.audio.suffix for u in data] == [".wav", ".wav"]


def test_split_name_under_data_dir_and_environment(corpus, tmp_path, monkeypatch):
    base = tmp_path / "data"
    shutil.copytree(corpus, split_dir("test-clean", base))
    assert resolve("test-clean", base) == base / "LibriSpeech" / "test-clean"
    assert len(load_dataset("test-clean", LABELS, data_dir=base)) == 3

    monkeypatch.setenv(DATA_ENV, str(base))
    monkeypatch.chdir(tmp_path)
    data = load_dataset("test-clean", LABELS)
    assert data.path == base / "LibriSpeech" / "test-clean" and data.name == "test-clean"


def test_missing_split_says_where_it_looked(tmp_path):
    with pytest.raises(DatasetNotFoundError) as e:
        load_dataset("test-other", LABELS, data_dir=tmp_path)
    message = str(e.value)
    assert str(tmp_path / "LibriSpeech" / "test-other") in message
    assert "ds2-onnx download test-other" in message
    assert isinstance(e.value, FileNotFoundError) and isinstance(e.value, DatasetError)


def test_nonexistent_path(tmp_path):
    with pytest.raises(DatasetNotFoundError, match="no such file or folder"):
        load_dataset(tmp_path / "nowhere", LABELS)


def test_empty_folder(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(DatasetError, match="holds no utterances"):
        load_dataset(tmp_path / "empty", LABELS)


def test_audio_without_transcript(corpus, tmp_path):
    root = copy_of(corpus, tmp_path)
    shutil.copy(root / "19/198/19-198-0001.flac", root / "19/198/19-198-0007.flac")
    with pytest.raises(DatasetError, match="1 audio file\\(s\\) without a transcript") as e:
        load_dataset(root, LABELS)
    assert "19-198-0007.flac" in str(e.value) and "19-198.trans.txt" in str(e.value)


def test_transcript_without_audio(corpus, tmp_path):
    root = copy_of(corpus, tmp_path)
    (root / "19/198/19-198-0002.flac").unlink()
    with pytest.raises(DatasetError, match="transcript line\\(s\\) without an audio file") as e:
        load_dataset(root, LABELS)
    assert "19-198-0002" in str(e.value)


def test_unreadable_audio_is_listed_last_for_the_evaluation_to_report(corpus, tmp_path):
    root = copy_of(corpus, tmp_path)
    (root / "19/198/19-198-0001.flac").write_bytes(b"not audio at all")
    data = load_dataset(root, LABELS)
    assert data.utterances[-1].id == "19-198-0001" and data.utterances[-1].duration is None


def write_manifest(corpus: Path, folder: Path) -> Path:
    """A deepspeech.pytorch manifest with paths relative to its own folder, in a deliberate (not sorted) order."""
    (folder / "wav").mkdir(parents=True)
    (folder / "txt").mkdir()
    rows = []
    for uid, _, line in [CLIPS[0], CLIPS[2], CLIPS[1]]:
        shutil.copy(corpus / "19/198" / f"{uid}.flac", folder / "wav" / f"{uid}.flac")
        (folder / "txt" / f"{uid}.txt").write_text(f"  {line.lower()}\n")
        rows.append(f"wav/{uid}.flac,txt/{uid}.txt")
    manifest = folder / "test_manifest.csv"
    manifest.write_text("\n".join(rows) + "\n")
    return manifest


def test_manifest_relative_paths_and_order(corpus, tmp_path, monkeypatch):
    manifest = write_manifest(corpus, tmp_path / "m")
    monkeypatch.chdir(tmp_path)  # paths must resolve against the CSV's folder, not the working directory
    data = load_dataset(manifest, LABELS)
    assert data.kind == "manifest"
    assert [u.id for u in data] == ["19-198-0000", "19-198-0002", "19-198-0001"]
    assert [u.transcript for u in data] == [CLIPS[0][2], "IT'S A LOVELYDAY", "HELLO"]
    assert all(u.audio.is_file() and u.duration > 0 for u in data)


def test_manifest_missing_transcript_file(corpus, tmp_path):
    manifest = write_manifest(corpus, tmp_path / "m")
    (tmp_path / "m/txt/19-198-0002.txt").unlink()
    with pytest.raises(DatasetError, match="missing file") as e:
        load_dataset(manifest, LABELS)
    assert "transcript" in str(e.value) and "19-198-0002.txt" in str(e.value) and "line 2" in str(e.value)


def test_manifest_malformed_and_empty(tmp_path):
    bad = tmp_path / "bad.csv"
    bad.write_text("only-one-field\n")
    with pytest.raises(DatasetError, match="bad.csv:1: expected 'wav_path,txt_path'"):
        load_dataset(bad, LABELS)
    empty = tmp_path / "empty.csv"
    empty.write_text("\n")
    with pytest.raises(DatasetError, match="holds no utterances"):
        load_dataset(empty, LABELS)
