"""Checkpoint downloads against a local HTTP server: resume, servers that ignore Range, checksums, errors."""

from __future__ import annotations

import hashlib
import http.server
import re
import threading
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pytest

from segany import DownloadError
from segany.cli import main
from segany.download import cache_dir, checkpoint_path, download_checkpoint, download_file

FILENAME = "sam_tiny_0123ab.pth"


@dataclass
class FileServer:
    """Serves ``payload`` at ``/FILENAME``; ``mode`` switches its behaviour, ``requests`` records headers."""

    payload: bytes
    url: str = ""
    mode: str = "normal"  # normal | ignore-range | 404 | cut
    cut_after: int = 0  # in "cut" mode: bytes of the body sent before the connection is closed
    requests: list[dict[str, str]] = field(default_factory=list)


def _handler(state: FileServer) -> type[http.server.BaseHTTPRequestHandler]:
    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            state.requests.append(dict(self.headers.items()))
            self.close_connection = True
            if state.mode == "404" or self.path != f"/{FILENAME}":
                self.send_error(404)
                return
            data, size = state.payload, len(state.payload)
            match = re.fullmatch(r"bytes=(\d+)-", self.headers.get("Range", ""))
            if match and state.mode != "ignore-range":
                start = int(match.group(1))
                if start >= size:
                    self.send_response(416)
                    self.send_header("Content-Range", f"bytes */{size}")
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                self.send_response(206)
                self.send_header("Content-Range", f"bytes {start}-{size - 1}/{size}")
                data = data[start:]
            else:
                self.send_response(200)
            self.send_header("Content-Type", "application/octet-stream")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            if state.mode == "cut":
                data = data[: state.cut_after]  # announce the whole body, send part of it, hang up
            self.wfile.write(data)
            self.wfile.flush()

        def log_message(self, format: str, *args: object) -> None:
            pass

    return Handler


@pytest.fixture(autouse=True)
def no_proxy(monkeypatch):
    """Talk to the local server directly even where an HTTP proxy is configured."""
    monkeypatch.setenv("no_proxy", "*")
    monkeypatch.setenv("NO_PROXY", "*")


@pytest.fixture
def served(tmp_path: Path):
    """A ~300 KB random file served over HTTP from a thread; yields its :class:`FileServer` state."""
    source = tmp_path / "served" / FILENAME
    source.parent.mkdir()
    source.write_bytes(np.random.default_rng(0).bytes(300_000))
    state = FileServer(payload=source.read_bytes())
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _handler(state))
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    state.url = f"http://127.0.0.1:{server.server_address[1]}/{FILENAME}"
    try:
        yield state
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _part(dest: Path) -> Path:
    return dest.with_name(dest.name + ".part")


def test_full_download_checks_sha256_and_leaves_no_part_file(served, tmp_path):
    dest = tmp_path / "out" / "model.pth"  # the folder does not exist yet
    result = download_file(served.url, dest, sha256=_sha(served.payload).upper(), progress=False)
    assert result == dest
    assert dest.read_bytes() == served.payload
    assert not _part(dest).exists()
    assert len(served.requests) == 1
    assert "Range" not in served.requests[0]


def test_existing_part_file_is_resumed_with_a_range_request(served, tmp_path):
    dest = tmp_path / "model.pth"
    prefix = 123_457
    _part(dest).write_bytes(served.payload[:prefix])
    download_file(served.url, dest, sha256=_sha(served.payload), progress=False)
    assert served.requests[-1]["Range"] == f"bytes={prefix}-"
    assert dest.read_bytes() == served.payload
    assert not _part(dest).exists()


def test_server_ignoring_range_still_gives_the_right_file(served, tmp_path):
    served.mode = "ignore-range"
    dest = tmp_path / "model.pth"
    _part(dest).write_bytes(served.payload[:50_000])
    download_file(served.url, dest, sha256=_sha(served.payload), progress=False)
    assert "Range" in served.requests[-1]  # asked to resume, got the whole file: started over
    assert dest.read_bytes() == served.payload


def test_complete_part_file_is_finished_when_the_server_answers_416(served, tmp_path):
    dest = tmp_path / "model.pth"
    _part(dest).write_bytes(served.payload)  # e.g. interrupted between the last byte and the rename
    download_file(served.url, dest, sha256=_sha(served.payload), progress=False)
    assert dest.read_bytes() == served.payload
    assert not _part(dest).exists()


def test_checksum_mismatch_deletes_the_partial_file(served, tmp_path):
    dest = tmp_path / "model.pth"
    with pytest.raises(DownloadError, match="Checksum mismatch") as info:
        download_file(served.url, dest, sha256="0" * 64, progress=False)
    assert _sha(served.payload) in str(info.value)  # says what it got
    assert not _part(dest).exists()
    assert not dest.exists()


def test_http_404_is_a_download_error(served, tmp_path):
    served.mode = "404"
    dest = tmp_path / "model.pth"
    with pytest.raises(DownloadError, match="404"):
        download_file(served.url, dest, progress=False)
    assert not dest.exists()


def test_connection_closed_early_keeps_the_part_file_and_a_second_call_resumes(served, tmp_path):
    served.mode, served.cut_after = "cut", 100_000
    dest = tmp_path / "model.pth"
    with pytest.raises(DownloadError, match="run again to resume"):
        download_file(served.url, dest, sha256=_sha(served.payload), progress=False)
    assert not dest.exists()
    assert _part(dest).read_bytes() == served.payload[:100_000]

    served.mode = "normal"
    download_file(served.url, dest, sha256=_sha(served.payload), progress=False)
    assert served.requests[-1]["Range"] == "bytes=100000-"
    assert dest.read_bytes() == served.payload
    assert not _part(dest).exists()


def test_unreachable_server_is_a_download_error(tmp_path):
    import socket

    with socket.socket() as sock:  # a port nobody listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    with pytest.raises(DownloadError, match="check the connection"):
        download_file(f"http://127.0.0.1:{port}/x.pth", tmp_path / "x.pth", progress=False)


def test_download_checkpoint_saves_under_the_url_name(served, tmp_path):
    path = download_checkpoint(
        "vit_b", dest_dir=tmp_path, url=served.url, sha256=_sha(served.payload), progress=False
    )
    assert path == tmp_path / FILENAME
    assert path.read_bytes() == served.payload


def test_download_checkpoint_skips_a_file_already_there_with_the_right_hash(served, tmp_path):
    (tmp_path / FILENAME).write_bytes(served.payload)
    path = download_checkpoint(
        "vit_b", dest_dir=tmp_path, url=served.url, sha256=_sha(served.payload), progress=False
    )
    assert path == tmp_path / FILENAME
    assert served.requests == []


def test_download_checkpoint_replaces_a_file_with_the_wrong_hash(served, tmp_path):
    (tmp_path / FILENAME).write_bytes(b"not the checkpoint")
    path = download_checkpoint(
        "vit_b", dest_dir=tmp_path, url=served.url, sha256=_sha(served.payload), progress=False
    )
    assert len(served.requests) == 1
    assert path.read_bytes() == served.payload


def test_cache_dir_honours_environment(monkeypatch, tmp_path):
    monkeypatch.setenv("SEGANY_CACHE_DIR", str(tmp_path / "cache"))
    assert cache_dir() == tmp_path / "cache"
    assert checkpoint_path("vit_b") == tmp_path / "cache" / "checkpoints" / "sam_vit_b_01ec64.pth"
    assert checkpoint_path("default").name == "sam_vit_h_4b8939.pth"

    monkeypatch.delenv("SEGANY_CACHE_DIR")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert cache_dir() == tmp_path / "xdg" / "segany"


def test_cli_download_prints_the_path(served, tmp_path, capsys):
    argv = ["download", "vit_b", "--url", served.url, "--sha256", _sha(served.payload)]
    assert main([*argv, "--dir", str(tmp_path), "--quiet"]) == 0
    out, err = capsys.readouterr()
    assert out.strip() == str(tmp_path / FILENAME)
    assert err == ""  # --quiet: no progress bar
    assert (tmp_path / FILENAME).read_bytes() == served.payload


def test_cli_download_with_wrong_checksum_is_one_error_line(served, tmp_path, capsys):
    argv = ["download", "vit_b", "--url", served.url, "--sha256", "f" * 64]
    assert main([*argv, "--dir", str(tmp_path), "--quiet"]) == 1
    out, err = capsys.readouterr()
    assert out == ""
    lines = err.splitlines()
    assert len(lines) == 1
    assert lines[0].startswith("segany: error: Checksum mismatch")
    assert "Traceback" not in err
    assert list(tmp_path.iterdir()) == [tmp_path / "served"]  # nothing left behind


def test_cli_download_refuses_unknown_model(capsys):
    with pytest.raises(SystemExit) as info:
        main(["download", "vit_x"])
    assert info.value.code == 2
    assert "invalid choice: 'vit_x'" in capsys.readouterr().err
