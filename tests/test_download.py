"""The resumable downloader, against the local HTTP server of conftest (no test touches the internet)."""

from __future__ import annotations

import hashlib
import re

import numpy as np
import pytest

from realtime_vrn.weights.download import DownloadError, download, part_path
from realtime_vrn.weights import official
from conftest import closed_port_url

PAYLOAD = np.random.default_rng(0).bytes(3_000_000)


@pytest.fixture()
def server(http_files):
    """The conftest server with the payload at ``/file.bin``: (base url, its state)."""
    (http_files.root / "file.bin").write_bytes(PAYLOAD)
    return http_files.url, http_files


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
    url = closed_port_url("file.bin")
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
    url = closed_port_url("file.bin")
    with pytest.raises(DownloadError) as info:
        official.fetch(url=url, progress=False)
    message = str(info.value)
    assert url in message and official.URL in message and "realtime-vrn weights convert" in message
