"""Fetch a LibriSpeech evaluation split from OpenSLR: resumable download, MD5 check, safe extraction.

urllib only. The archive is downloaded to `<data dir>/<split>.tar.gz.part` (resumed with an HTTP Range
request when interrupted), verified, extracted into a temporary folder and only then moved into place as
`<data dir>/LibriSpeech/<split>`, the layout the tarballs have.
"""

from __future__ import annotations

import hashlib
import http.client
import os
import shutil
import stat
import tarfile
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path, PurePosixPath
from typing import Callable

from ..errors import Ds2OnnxError
from .datasets import SPLITS, default_data_dir, split_dir

MIRROR = "https://www.openslr.org/resources/12"
# MD5 sums OpenSLR publishes for resource 12 (also in lhotse's and torchaudio's LibriSpeech recipes).
MD5 = {
    "dev-clean": "42e2234ba48799c1f50f24a7926300a1",
    "dev-other": "c8d0bcc9cca99d4f8b62fcc847357931",
    "test-clean": "32fa31d27d2e1cad72775fee3f4849a9",
    "test-other": "fb5a50374b501bb3bac4815ee91d3135",
}
CHUNK = 1 << 20

Progress = Callable[[int, "int | None"], None]  # (bytes on disk, total bytes or None)


class DownloadError(Ds2OnnxError, OSError):
    """The archive could not be fetched (network, HTTP status, connection dropped)."""


class InterruptedDownloadError(DownloadError):
    """The connection failed or closed early; what arrived is kept in the .part file for resuming."""


class ChecksumError(DownloadError):
    """The downloaded archive's MD5 differs from the published one."""


class ArchiveContentError(Ds2OnnxError, ValueError):
    """The verified archive is not usable: it lacks the split, or holds something unsafe."""


class UnsafeArchiveError(ArchiveContentError):
    """The archive holds a member that would land outside the extraction folder, or a device file."""


def split_url(split: str) -> str:
    return f"{MIRROR}/{split}.tar.gz"


def md5sum(path: Path) -> str:
    digest = hashlib.md5()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(CHUNK), b""):
            digest.update(block)
    return digest.hexdigest()


def download_split(
    split: str,
    data_dir: str | Path | None = None,
    url: str | None = None,
    md5: str | None = None,
    progress: Progress | None = None,
    log: Callable[[str], None] = lambda message: None,
    retries: int = 3,
    timeout: float = 60.0,
    backoff: float = 1.0,
) -> Path:
    """Fetch, verify and extract `split`; returns <data dir>/LibriSpeech/<split>. A present split is kept as is."""
    if split not in SPLITS:
        raise Ds2OnnxError(f"unknown split {split!r}; choose from {', '.join(SPLITS)}")
    base = Path(data_dir).expanduser() if data_dir is not None else default_data_dir()
    target = split_dir(split, base)
    if target.is_dir() and any(target.iterdir()):
        log(f"{target} already exists; nothing to do")
        return target
    expected = (md5 or MD5[split]).lower()
    base.mkdir(parents=True, exist_ok=True)
    part = base / f"{split}.tar.gz.part"
    fetch(url or split_url(split), part, progress, log, retries, timeout, backoff)
    log(f"verifying MD5 of {part.name}")
    found = md5sum(part)
    if found != expected:
        part.unlink()
        raise ChecksumError(
            f"{part.name}: MD5 {found} does not match the expected {expected}; the corrupt download was deleted, "
            "run the command again"
        )
    log(f"extracting to {base / 'LibriSpeech'}")
    try:
        install(part, base, f"LibriSpeech/{split}")
    except ArchiveContentError:
        part.unlink()  # downloading it again would not help
        raise
    part.unlink()
    return target


def fetch(
    url: str,
    part: Path,
    progress: Progress | None = None,
    log: Callable[[str], None] = lambda message: None,
    retries: int = 3,
    timeout: float = 60.0,
    backoff: float = 1.0,
) -> None:
    """Download `url` into `part`, resuming from its current size; retries dropped connections."""
    for attempt in range(retries + 1):
        try:
            _fetch_once(url, part, progress, log, timeout)
            return
        except InterruptedDownloadError as e:
            if attempt == retries:
                raise InterruptedDownloadError(f"{e}; run the command again to resume") from e
            log(f"{e}; resuming (attempt {attempt + 2} of {retries + 1})")
            time.sleep(backoff * 2.0**attempt)


def _fetch_once(url: str, part: Path, progress: Progress | None, log: Callable[[str], None], timeout: float) -> None:
    have = part.stat().st_size if part.exists() else 0
    headers = {"User-Agent": "ds2-onnx"}
    if have:
        headers["Range"] = f"bytes={have}-"
    request = urllib.request.Request(url, headers=headers)
    try:
        response = urllib.request.urlopen(request, timeout=timeout)
    except urllib.error.HTTPError as e:
        if e.code == 416 and have:  # nothing left to send: the .part is already whole (the MD5 decides)
            return
        raise DownloadError(f"{url}: HTTP {e.code} {e.reason}") from e
    except (urllib.error.URLError, OSError, http.client.HTTPException) as e:
        raise InterruptedDownloadError(f"{url}: cannot connect ({getattr(e, 'reason', e)})") from e
    with response:
        if have and response.status == 206:
            start = _range_start(response.headers.get("Content-Range"))
            if start != have:
                raise DownloadError(f"{url}: asked to resume at byte {have}, server sent from {start}")
            mode = "ab"
            log(f"resuming {part.name} at {have / 1e6:.1f} MB")
        else:
            have, mode = 0, "wb"  # no Range support: start over
        length = response.headers.get("Content-Length")
        total = have + int(length) if length is not None else None
        done = have
        if progress:
            progress(done, total)
        with part.open(mode) as f:
            while True:
                try:
                    block = response.read(CHUNK)
                except (OSError, http.client.HTTPException) as e:
                    raise _dropped(url, done, total) from e
                if not block:
                    break
                f.write(block)
                done += len(block)
                if progress:
                    progress(done, total)
        if total is not None and done < total:
            raise _dropped(url, done, total)


def _dropped(url: str, done: int, total: int | None) -> InterruptedDownloadError:
    return InterruptedDownloadError(f"{url}: connection closed after {done} of {total if total is not None else '?'} bytes")


def _range_start(content_range: str | None) -> int | None:
    # "bytes 100-199/200"
    try:
        return int(content_range.split()[1].split("-")[0])  # type: ignore[union-attr]
    except (AttributeError, IndexError, ValueError):
        return None


# -- extraction -------------------------------------------------------------------------------------
def _inside(root: Path, candidate: str) -> bool:
    real_root = os.path.realpath(root)
    real = os.path.realpath(os.path.join(real_root, candidate))
    return real == real_root or real.startswith(real_root + os.sep)


def _check_member(member: tarfile.TarInfo, root: Path) -> None:
    name = member.name
    parts = PurePosixPath(name).parts
    if name.startswith(("/", "\\")) or PurePosixPath(name).is_absolute() or (len(name) > 1 and name[1] == ":"):
        raise UnsafeArchiveError(f"archive member {name!r} has an absolute path")
    if ".." in parts:
        raise UnsafeArchiveError(f"archive member {name!r} climbs out of the extraction folder with '..'")
    if not _inside(root, name):  # also catches a path through a symlink extracted earlier
        raise UnsafeArchiveError(f"archive member {name!r} would be written outside the extraction folder")
    if member.issym():
        target = member.linkname
        if os.path.isabs(target) or not _inside(root, os.path.join(os.path.dirname(name), target)):
            raise UnsafeArchiveError(f"archive symlink {name!r} points outside the extraction folder ({target!r})")
    elif member.islnk():
        target = member.linkname
        if os.path.isabs(target) or ".." in PurePosixPath(target).parts or not _inside(root, target):
            raise UnsafeArchiveError(f"archive hard link {name!r} points outside the extraction folder ({target!r})")
    elif not (member.isfile() or member.isdir()):
        raise UnsafeArchiveError(f"archive member {name!r} is a device, FIFO or other special file")


def safe_extract(archive: Path, root: Path) -> None:
    """Extract a (gzipped) tarball member by member into `root`, refusing anything that could escape it."""
    root.mkdir(parents=True, exist_ok=True)
    try:
        with tarfile.open(archive, "r|*") as tar:
            for member in tar:
                _check_member(member, root)
                dest = root / member.name
                if member.isdir():
                    dest.mkdir(parents=True, exist_ok=True)
                    continue
                dest.parent.mkdir(parents=True, exist_ok=True)
                if dest.is_symlink() or dest.exists():
                    if dest.is_dir() and not dest.is_symlink():
                        raise UnsafeArchiveError(f"archive member {member.name!r} replaces a folder")
                    dest.unlink()
                if member.issym():
                    os.symlink(member.linkname, dest)
                elif member.islnk():
                    os.link(root / member.linkname, dest)
                else:
                    source = tar.extractfile(member)
                    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0)
                    mode = 0o755 if member.mode & stat.S_IXUSR else 0o644
                    with source, os.fdopen(os.open(dest, flags, mode), "wb") as f:
                        shutil.copyfileobj(source, f, CHUNK)
    except (tarfile.TarError, EOFError, OSError) as e:
        if isinstance(e, Ds2OnnxError):
            raise
        raise DownloadError(f"{archive}: cannot extract ({e})") from e


def install(archive: Path, base: Path, expect: str) -> None:
    """Extract into a temporary folder beside the destination, then move each top-level entry into place."""
    with tempfile.TemporaryDirectory(prefix=".extract-", dir=base) as scratch:
        scratch_root = Path(scratch)
        safe_extract(archive, scratch_root)
        if not (scratch_root / expect).is_dir():
            raise ArchiveContentError(f"{archive} does not contain {expect}/")
        _merge(scratch_root, base)


def _merge(source: Path, dest: Path) -> None:
    """Move entries of `source` into `dest`, descending into folders both have; existing files are kept."""
    dest.mkdir(parents=True, exist_ok=True)
    for entry in sorted(source.iterdir()):
        target = dest / entry.name
        if not target.exists() and not target.is_symlink():
            os.replace(entry, target)
        elif target.is_dir() and entry.is_dir() and not entry.is_symlink():
            _merge(entry, target)
