"""Download one file over HTTP(S): resumable, with a progress bar, size and checksum checks, atomic rename.

Generic (any URL, any destination): the official VRN weights use it (``weights/official.py``), other features can.
Bytes go to ``<dest>.part`` beside the destination. An interrupted transfer keeps the ``.part`` file and the
next call resumes it with an HTTP ``Range`` request (a server that ignores ranges answers 200 and the download
starts again). Only a complete file (the size the server announced, ``expected_size`` / ``min_size`` /
``expected_sha256`` when given) is renamed to ``dest`` (atomic on one file system), so ``dest`` is either
complete or absent. Every failure raises :class:`DownloadError` naming the URL, so the user can fetch the file
by hand. Nothing here runs at import time; tests serve files from a local ``http.server``.
"""

from __future__ import annotations

import http.client
import logging
import os
import re
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from realtime_vrn.errors import WeightsError
from realtime_vrn.fileio import file_sha256

log = logging.getLogger(__name__)

#: A server that sends nothing for this long is treated as unreachable (one socket operation, not the file).
DOWNLOAD_TIMEOUT_S = 30.0
#: Read size: large enough for few system calls, small enough for a smooth progress bar.
CHUNK_BYTES = 1 << 20
PART_SUFFIX = ".part"
USER_AGENT = "realtime-vrn-downloader"
_CONTENT_RANGE = re.compile(r"bytes\s+(\d+)-(\d+)/(\d+|\*)")
_UNSATISFIABLE_RANGE = re.compile(r"bytes\s+\*/(\d+)")


class DownloadError(WeightsError):
    """A download failed; the message names the URL and how to get the file by hand."""


@dataclass
class _Response:
    """What the server answered: the stream (None when nothing is left to read), where it starts, the total."""

    stream: object | None
    start: int
    total: int | None


def part_path(dest: str | os.PathLike) -> Path:
    """The file an unfinished download of ``dest`` is written to: ``<dest>.part``."""
    dest = Path(dest)
    return dest.with_name(dest.name + PART_SUFFIX)


def download(url: str, dest: str | os.PathLike, *, expected_size: int | None = None, min_size: int | None = None,
             expected_sha256: str | None = None, progress: bool = True, timeout_s: float = DOWNLOAD_TIMEOUT_S,
             manual_hint: str | None = None) -> Path:
    """Fetch ``url`` into ``dest`` and return ``dest``; an existing complete ``dest`` is returned as is.

    expected_size:   exact size in bytes, when known (a different size is an error, the partial file is dropped).
    min_size:        smallest plausible size (catches error pages served with status 200).
    expected_sha256: hex digest the file must have, when known.
    manual_hint:     what to tell the user to do by hand on failure (default: save the URL as ``dest``).
    Raises DownloadError (server unreachable, HTTP error, interrupted transfer, wrong size or checksum).
    """
    dest = Path(dest).expanduser()
    if _complete(dest, expected_size):
        log.info("%s is already downloaded", dest)
        return dest
    hint = manual_hint or f"download it by hand and save it as {dest}"
    part = part_path(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    offset = part.stat().st_size if part.is_file() else 0
    if expected_size is not None and offset > expected_size:
        part.unlink()
        offset = 0
    try:
        response = _open(url, offset, timeout_s)
    except urllib.error.HTTPError as err:
        raise DownloadError(f"could not download {url}: HTTP {err.code} {err.reason}; {hint}") from err
    except (urllib.error.URLError, http.client.HTTPException, OSError) as err:
        reason = getattr(err, "reason", None) or err
        raise DownloadError(f"could not reach {url} ({reason}); {hint}") from err
    if response.start != offset:
        log.info("%s does not resume downloads; starting again", url)
    if response.stream is not None:
        try:
            _copy(response, part, dest.name, progress)
        except (OSError, http.client.HTTPException) as err:
            size = part.stat().st_size if part.is_file() else 0
            raise DownloadError(f"the download of {url} was interrupted after {size} bytes ({err}); run the "
                                f"same command again to resume, or {hint}") from err
    _verify(part, url, response.total, expected_size, min_size, expected_sha256, hint)
    os.replace(part, dest)
    log.info("downloaded %s -> %s (%d bytes)", url, dest, dest.stat().st_size)
    return dest


def _complete(dest: Path, expected_size: int | None) -> bool:
    if not dest.is_file():
        return False
    if expected_size is None or dest.stat().st_size == expected_size:
        return True
    log.warning("%s has %d bytes, expected %d: downloading it again", dest, dest.stat().st_size, expected_size)
    return False


def _open(url: str, offset: int, timeout_s: float) -> _Response:
    """Request ``url`` from byte ``offset``; the answer says from which byte it really starts."""
    headers = {"User-Agent": USER_AGENT}
    if offset:
        headers["Range"] = f"bytes={offset}-"
    request = urllib.request.Request(url, headers=headers)
    try:
        stream = urllib.request.urlopen(request, timeout=timeout_s)  # noqa: S310 - URL chosen by the caller
    except urllib.error.HTTPError as err:
        if err.code != 416 or not offset:
            raise
        # Nothing after `offset`: the .part file is complete if the server's total size equals it, else stale.
        match = _UNSATISFIABLE_RANGE.search(err.headers.get("Content-Range", "") or "")
        err.close()
        if match and int(match.group(1)) == offset:
            return _Response(None, offset, offset)
        return _open(url, 0, timeout_s)
    if stream.status == 206:
        match = _CONTENT_RANGE.search(stream.headers.get("Content-Range", "") or "")
        if match and int(match.group(1)) == offset:
            total = None if match.group(3) == "*" else int(match.group(3))
            return _Response(stream, offset, total)
        stream.close()
        return _open(url, 0, timeout_s)
    length = stream.headers.get("Content-Length")
    return _Response(stream, 0, int(length) if length and length.isdigit() else None)


def _copy(response: _Response, part: Path, label: str, progress: bool) -> None:
    """Append the stream to ``part`` from byte ``response.start`` (0: the file is rewritten)."""
    from tqdm import tqdm

    offset = response.start
    with response.stream as stream, part.open("ab" if offset else "wb") as out, tqdm(
        total=response.total, initial=offset, unit="B", unit_scale=True, unit_divisor=1024, desc=label,
        disable=not progress, leave=False,
    ) as bar:
        out.truncate(offset)
        while chunk := stream.read(CHUNK_BYTES):
            out.write(chunk)
            bar.update(len(chunk))


def _verify(part: Path, url: str, total: int | None, expected_size: int | None, min_size: int | None,
            expected_sha256: str | None, hint: str) -> None:
    """Check the finished ``.part`` file; drop it when it can never become the right file."""
    size = part.stat().st_size
    if total is not None and size < total:
        raise DownloadError(f"the download of {url} stopped after {size} of {total} bytes; run the same command "
                            f"again to resume, or {hint}")
    problem = None
    if total is not None and size > total:
        problem = f"got {size} bytes, the server announced {total}"
    elif expected_size is not None and size != expected_size:
        problem = f"got {size} bytes, expected {expected_size}"
    elif min_size is not None and size < min_size:
        problem = f"got only {size} bytes, expected at least {min_size} (an error page instead of the file?)"
    elif expected_sha256 is not None and file_sha256(part) != expected_sha256.lower():
        problem = f"its SHA-256 is not the expected {expected_sha256}"
    if problem:
        part.unlink()
        raise DownloadError(f"the file downloaded from {url} is wrong ({problem}); {hint}")
