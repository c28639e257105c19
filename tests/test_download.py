"""`ds2-onnx download` against a local HTTP server: extraction, Range resume, checksums, hostile tarballs."""

from __future__ import annotations

import hashlib
import io
import tarfile
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import typer
from typer.testing import CliRunner

from ds2_onnx.validation.commands import download
from ds2_onnx.validation.datasets import load_dataset
from ds2_onnx.validation.download import (
    MD5,
    ArchiveContentError,
    ChecksumError,
    DownloadError,
    InterruptedDownloadError,
    UnsafeArchiveError,
    download_split,
    safe_extract,
)

LABELS = "_'ABCDEFGHIJKLMNOPQRSTUVWXYZ "


class Files:
    """What the server serves, how it misbehaves, and what it was asked."""

    def __init__(self):
        self.bodies: dict[str, bytes] = {}
        self.truncate_next: set[str] = set()  # send half the body, then close the connection
        self.ignore_range = False
        self.requests: list[tuple[str, str | None]] = []


@pytest.fixture()
def server():
    files = Files()

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args):
            pass

        def do_GET(self):
            files.requests.append((self.path, self.headers.get("Range")))
            body = files.bodies.get(self.path)
            if body is None:
                self.send_error(404)
                return
            start, wanted = 0, self.headers.get("Range")
            if wanted and not files.ignore_range:
                start = int(wanted.removeprefix("bytes=").split("-")[0])
                if start >= len(body):
                    self.send_response(416)
                    self.send_header("Content-Range", f"bytes */{len(body)}")
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                self.send_response(206)
                self.send_header("Content-Range", f"bytes {start}-{len(body) - 1}/{len(body)}")
            else:
                self.send_response(200)
            chunk = body[start:]
            self.send_header("Content-Length", str(len(chunk)))
            self.end_headers()
            if self.path in files.truncate_next:
                files.truncate_next.discard(self.path)
                chunk = chunk[: len(chunk) // 2]
            self.wfile.write(chunk)

    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True)
    thread.start()
    files.url = f"http://127.0.0.1:{httpd.server_address[1]}"
    yield files
    httpd.shutdown()
    httpd.server_close()
    thread.join()


def _add(tar: tarfile.TarFile, name: str, data: bytes = b"", **attrs) -> None:
    info = tarfile.TarInfo(name)
    info.size = len(data)
    for key, value in attrs.items():
        setattr(info, key, value)
    tar.addfile(info, io.BytesIO(data) if data else None)


def make_tarball(members=None) -> bytes:
    """A small test-clean tarball as OpenSLR lays it out; `members` replaces the audio with other entries."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as tar:
        _add(tar, "LibriSpeech/README.TXT", b"LibriSpeech test fixture\n")
        if members is None:
            rng = np.random.default_rng(0)
            for i in range(2):
                wav = io.BytesIO()
                sf.write(wav, 0.1 * rng.standard_normal(16000 + 8000 * i), 16000, format="FLAC")
                _add(tar, f"LibriSpeech/test-clean/19/198/19-198-000{i}.flac", wav.getvalue())
            _add(tar, "LibriSpeech/test-clean/19/198/19-198.trans.txt", b"19-198-0000 HELLO\n19-198-0001 WORLD AGAIN\n")
        else:
            for name, data, attrs in members:
                _add(tar, name, data, **attrs)
    return buffer.getvalue()


def serve(server: Files, body: bytes, name: str = "/test-clean.tar.gz") -> tuple[str, str]:
    server.bodies[name] = body
    return server.url + name, hashlib.md5(body).hexdigest()


def fetch(tmp_path, url, md5, **kw):
    return download_split("test-clean", tmp_path / "data", url=url, md5=md5, backoff=0.0, **kw)


def assert_clean(data_dir: Path):
    """No partial download, no leftover extraction folder, no split."""
    assert not (data_dir / "LibriSpeech" / "test-clean").exists()
    assert not list(data_dir.glob(".extract-*"))


def test_download_verify_extract(server, tmp_path):
    url, md5 = serve(server, make_tarball())
    target = fetch(tmp_path, url, md5)
    data = tmp_path / "data"
    assert target == data / "LibriSpeech" / "test-clean"
    assert (data / "LibriSpeech" / "README.TXT").is_file()
    assert not (data / "test-clean.tar.gz.part").exists() and not list(data.glob(".extract-*"))
    utterances = load_dataset("test-clean", LABELS, data_dir=data)
    assert [u.transcript for u in utterances] == ["HELLO", "WORLD AGAIN"]
    # already there: no second request
    before = len(server.requests)
    assert fetch(tmp_path, url, md5) == target and len(server.requests) == before


def test_dropped_connection_is_resumed_with_a_range_request(server, tmp_path):
    body = make_tarball()
    url, md5 = serve(server, body)
    server.truncate_next.add("/test-clean.tar.gz")
    fetch(tmp_path, url, md5, retries=2)
    assert server.requests == [("/test-clean.tar.gz", None), ("/test-clean.tar.gz", f"bytes={len(body) // 2}-")]
    assert (tmp_path / "data/LibriSpeech/test-clean/19/198/19-198-0001.flac").is_file()


def test_partial_file_kept_then_resumed_by_the_next_run(server, tmp_path):
    body = make_tarball()
    url, md5 = serve(server, body)
    server.truncate_next.add("/test-clean.tar.gz")
    with pytest.raises(InterruptedDownloadError, match="run the command again to resume"):
        fetch(tmp_path, url, md5, retries=0)
    part = tmp_path / "data" / "test-clean.tar.gz.part"
    assert part.stat().st_size == len(body) // 2
    fetch(tmp_path, url, md5, retries=0)
    assert server.requests[-1] == ("/test-clean.tar.gz", f"bytes={len(body) // 2}-")
    assert not part.exists() and (tmp_path / "data/LibriSpeech/test-clean").is_dir()


def test_preseeded_part_file_is_resumed(server, tmp_path):
    body = make_tarball()
    url, md5 = serve(server, body)
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "test-clean.tar.gz.part").write_bytes(body[:1000])
    fetch(tmp_path, url, md5)
    assert server.requests == [("/test-clean.tar.gz", "bytes=1000-")]


def test_server_without_range_support_starts_over(server, tmp_path):
    body = make_tarball()
    url, md5 = serve(server, body)
    server.ignore_range = True
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "test-clean.tar.gz.part").write_bytes(b"stale bytes that must not be kept")
    fetch(tmp_path, url, md5)
    assert (tmp_path / "data/LibriSpeech/test-clean/19/198/19-198.trans.txt").is_file()


def test_checksum_mismatch(server, tmp_path):
    url, _ = serve(server, make_tarball())
    with pytest.raises(ChecksumError, match="does not match the expected 0123456789abcdef") as e:
        fetch(tmp_path, url, "0123456789abcdef0123456789abcdef")
    assert isinstance(e.value, OSError)
    assert not (tmp_path / "data" / "test-clean.tar.gz.part").exists()
    assert_clean(tmp_path / "data")


def test_http_error(server, tmp_path):
    with pytest.raises(DownloadError, match="HTTP 404"):
        fetch(tmp_path, server.url + "/missing.tar.gz", "0" * 32)


def test_malicious_tarball_is_refused(server, tmp_path):
    evil = make_tarball([
        ("LibriSpeech/test-clean/ok.txt", b"fine", {}),
        ("../evil", b"escaped", {}),
    ])
    url, md5 = serve(server, evil)
    with pytest.raises(UnsafeArchiveError, match="'..'"):
        fetch(tmp_path, url, md5)
    assert not (tmp_path / "evil").exists() and not (tmp_path / "data" / "evil").exists()
    assert_clean(tmp_path / "data")
    assert not (tmp_path / "data" / "test-clean.tar.gz.part").exists()


def test_archive_without_the_split(server, tmp_path):
    url, md5 = serve(server, make_tarball([("LibriSpeech/dev-clean/x.txt", b"wrong split", {})]))
    with pytest.raises(ArchiveContentError, match="does not contain LibriSpeech/test-clean"):
        fetch(tmp_path, url, md5)
    assert_clean(tmp_path / "data")
    assert not (tmp_path / "data" / "LibriSpeech" / "dev-clean").exists()


@pytest.mark.parametrize(
    "members, fragment",
    [
        ([("/tmp/absolute-evil", b"x", {})], "absolute path"),
        ([("LibriSpeech/link", b"", {"type": tarfile.SYMTYPE, "linkname": "../../outside"})], "points outside"),
        ([("LibriSpeech/link", b"", {"type": tarfile.SYMTYPE, "linkname": "/etc/passwd"})], "points outside"),
        ([("LibriSpeech/hard", b"", {"type": tarfile.LNKTYPE, "linkname": "../outside"})], "hard link"),
        ([("LibriSpeech/null", b"", {"type": tarfile.CHRTYPE, "devmajor": 1, "devminor": 3})], "device"),
        ([("LibriSpeech/fifo", b"", {"type": tarfile.FIFOTYPE})], "device, FIFO"),
        (  # each link looks inside on its own; only resolving the first on disk shows the second escapes
            [("LibriSpeech/d", b"", {"type": tarfile.DIRTYPE}),
             ("LibriSpeech/d/up", b"", {"type": tarfile.SYMTYPE, "linkname": ".."}),
             ("LibriSpeech/d/up/esc", b"", {"type": tarfile.SYMTYPE, "linkname": "../.."})],
            "points outside",
        ),
    ],
)
def test_unsafe_members(tmp_path, members, fragment):
    archive = tmp_path / "a.tar.gz"
    archive.write_bytes(make_tarball(members))
    root = tmp_path / "root"
    with pytest.raises(UnsafeArchiveError, match=fragment):
        safe_extract(archive, root)
    assert not (tmp_path / "outside").exists()


def test_links_inside_the_archive_are_fine(tmp_path):
    archive = tmp_path / "a.tar.gz"
    archive.write_bytes(make_tarball([
        ("LibriSpeech/a.txt", b"hello", {}),
        ("LibriSpeech/sym", b"", {"type": tarfile.SYMTYPE, "linkname": "a.txt"}),
        ("LibriSpeech/hard", b"", {"type": tarfile.LNKTYPE, "linkname": "LibriSpeech/a.txt"}),
    ]))
    safe_extract(archive, tmp_path / "root")
    assert (tmp_path / "root/LibriSpeech/sym").read_text() == "hello"
    assert (tmp_path / "root/LibriSpeech/hard").read_text() == "hello"


def test_published_checksums_cover_the_evaluation_splits():
    assert set(MD5) == {"test-clean", "test-other", "dev-clean", "dev-other"}
    assert MD5["test-clean"] == "32fa31d27d2e1cad72775fee3f4849a9"
    assert all(len(v) == 32 and int(v, 16) >= 0 for v in MD5.values())


# -- the command ---------------------------------------------------------------------------------------
runner = CliRunner()
app = typer.Typer()
app.command()(download)
app.command("noop")(lambda: None)  # a second command keeps typer from collapsing the app into `download`


def test_cli_download(server, tmp_path):
    url, md5 = serve(server, make_tarball())
    r = runner.invoke(app, ["download", "test-clean", "--data-dir", str(tmp_path), "--url", url, "--md5", md5])
    assert r.exit_code == 0, r.stderr
    assert r.stdout.strip() == str(tmp_path / "LibriSpeech" / "test-clean")


def test_cli_download_checksum_error(server, tmp_path):
    url, _ = serve(server, make_tarball())
    r = runner.invoke(app, ["download", "test-clean", "--data-dir", str(tmp_path), "--url", url, "--md5", "f" * 32])
    assert r.exit_code == 1 and "Traceback" not in r.output
    lines = r.stderr.strip().splitlines()
    assert lines[-1].startswith("error:") and "does not match the expected" in lines[-1]


def test_cli_download_unknown_split(tmp_path):
    r = runner.invoke(app, ["download", "train-clean-100", "--data-dir", str(tmp_path)])
    assert r.exit_code == 1
    assert "unknown split 'train-clean-100'" in r.stderr and "test-clean" in r.stderr
