"""The resumable downloader, against a local HTTP server in a thread (no test touches the internet)."""

from __future__ import annotations

import hashlib
import http.server
import re
import socket
import threading
from dataclasses import dataclass, field

import numpy as np
import pytest

from realtime_vrn.weights.download import DownloadError, download, part_path
from realtime_vrn.weights import official

PAYLOAD = np.random.default_rng(0).bytes(3_000_000)


@dataclass
class ServerState:
    """What the handler serves and how it misbehaves; ``ranges`` records the Range header of every request."""

    payload: bytes = PAYLOAD
    support_ranges: bool = True
    cut_after: int | None = None  # close the connection after this many body bytes (Content-Length stays full)
    ranges: list[str | None] = field(default_factory=list)


def _handler(state: ServerState):
    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self):  # noqa: N802 - http.server's naming
            state.ranges.append(self.headers.get("Range"))
            if self.path != "/file.bin":
                self.send_error(404, "Not Found")
                return
            data, start = state.payload, 0
            match = re.fullmatch(r"bytes=(\d+)-", self.headers.get("Range") or "")
            if match and state.support_ranges:
                start = int(match.group(1))
                if start >= len(data):
                    self.send_response(416)
                    self.send_header("Content-Range", f"bytes */{len(data)}")
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                self.send_response(206)
                self.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
            else:
                self.send_response(200)
            body = data[start:]
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            if state.cut_after is not None:
                self.wfile.write(body[: state.cut_after])
                self.wfile.flush()
                self.close_connection = True
                return
            self.wfile.write(body)

        def log_message(self, *args):
            pass

    return Handler


@pytest.fixture()
def server():
    state = ServerState()
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _handler(state))
    thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{httpd.server_address[1]}", state
    finally:
        httpd.shutdown()
        httpd.server_close()
        thread.join(timeout=5)


def _closed_port_url() -> str:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    return f"http://127.0.0.1:{port}/file.bin"


def test_download_writes_the_file_and_no_part(server, tmp_path):
    base, state = server
    dest = download(f"{base}/file.bin", tmp_path / "sub" / "file.bin", progress=False)
    assert dest.read_bytes() == PAYLOAD
    assert not part_path(dest).exists()
    assert state.ranges == [None]


def test_complete_file_is_not_fetched_again(server, tmp_path):
    base, state = server
    dest = download(f"{base}/file.bin", tmp_path / "file.bin", progress=False)
    download(f"{base}/file.bin", dest, expected_size=len(PAYLOAD), progress=False)
    assert len(state.ranges) == 1


def test_interrupted_download_resumes_with_range(server, tmp_path):
    base, state = server
    dest = tmp_path / "file.bin"
    state.cut_after = 1_500_000
    with pytest.raises(DownloadError, match="run the same command again to resume") as info:
        download(f"{base}/file.bin", dest, progress=False)
    assert f"{base}/file.bin" in str(info.value)
    assert not dest.exists()
    kept = part_path(dest).stat().st_size
    assert 0 < kept < len(PAYLOAD)
    state.cut_after = None
    download(f"{base}/file.bin", dest, expected_size=len(PAYLOAD), progress=False)
    assert state.ranges[-1] == f"bytes={kept}-"
    assert dest.read_bytes() == PAYLOAD
    assert not part_path(dest).exists()


def test_server_without_ranges_restarts_from_zero(server, tmp_path):
    base, state = server
    state.support_ranges = False
    dest = tmp_path / "file.bin"
    part_path(dest).write_bytes(b"stale partial bytes")
    download(f"{base}/file.bin", dest, progress=False)
    assert dest.read_bytes() == PAYLOAD


def test_complete_part_file_is_finished_without_body(server, tmp_path):
    base, state = server
    dest = tmp_path / "file.bin"
    part_path(dest).write_bytes(PAYLOAD)
    download(f"{base}/file.bin", dest, progress=False)
    assert state.ranges == [f"bytes={len(PAYLOAD)}-"]
    assert dest.read_bytes() == PAYLOAD


def test_part_longer_than_the_file_restarts(server, tmp_path):
    base, _ = server
    dest = tmp_path / "file.bin"
    part_path(dest).write_bytes(PAYLOAD + b"extra")
    download(f"{base}/file.bin", dest, progress=False)
    assert dest.read_bytes() == PAYLOAD


def test_size_mismatch_is_an_error_and_leaves_nothing(server, tmp_path):
    base, _ = server
    dest = tmp_path / "file.bin"
    with pytest.raises(DownloadError, match=f"got {len(PAYLOAD)} bytes, expected {len(PAYLOAD) + 1}"):
        download(f"{base}/file.bin", dest, expected_size=len(PAYLOAD) + 1, progress=False)
    assert not dest.exists() and not part_path(dest).exists()


def test_too_small_file_is_an_error(server, tmp_path):
    base, _ = server
    with pytest.raises(DownloadError, match="expected at least"):
        download(f"{base}/file.bin", tmp_path / "f.bin", min_size=len(PAYLOAD) * 2, progress=False)


def test_checksum_is_verified(server, tmp_path):
    base, _ = server
    good = hashlib.sha256(PAYLOAD).hexdigest()
    assert download(f"{base}/file.bin", tmp_path / "a.bin", expected_sha256=good, progress=False).is_file()
    with pytest.raises(DownloadError, match="SHA-256"):
        download(f"{base}/file.bin", tmp_path / "b.bin", expected_sha256="0" * 64, progress=False)
    assert not (tmp_path / "b.bin").exists()


def test_unreachable_server_names_the_url_and_the_manual_route(tmp_path):
    url = _closed_port_url()
    dest = tmp_path / "file.bin"
    with pytest.raises(DownloadError) as info:
        download(url, dest, progress=False, timeout_s=5)
    message = str(info.value)
    assert f"could not reach {url}" in message and f"save it as {dest}" in message


def test_http_error_names_the_status_and_url(server, tmp_path):
    base, _ = server
    with pytest.raises(DownloadError, match=rf"could not download {re.escape(base)}/missing: HTTP 404"):
        download(f"{base}/missing", tmp_path / "file.bin", progress=False)


def test_official_fetch_into_the_user_cache(server, vrn_home, monkeypatch):
    base, _ = server
    monkeypatch.setattr(official, "MIN_SIZE_BYTES", 1000)
    path = official.fetch(url=f"{base}/file.bin", progress=False)
    assert path == vrn_home / "downloads" / official.FILENAME
    assert path.read_bytes() == PAYLOAD


def test_official_fetch_refuses_an_error_page_size(server, vrn_home):
    base, _ = server  # 3 MB served: far below the ~77 MB of parameters
    with pytest.raises(DownloadError, match="expected at least"):
        official.fetch(url=f"{base}/file.bin", progress=False)


def test_official_fetch_unreachable_tells_how_to_convert_by_hand(vrn_home):
    url = _closed_port_url()
    with pytest.raises(DownloadError) as info:
        official.fetch(url=url, progress=False)
    message = str(info.value)
    assert url in message and official.URL in message and "realtime-vrn weights convert" in message
