"""Download a file once into the user cache: progress bar, size check, atomic rename.

Generic (any URL, any destination); the landmark Tasks backend uses it for ``face_landmarker.task``.
Nothing is downloaded at import time or in tests (they serve files from a local ``http.server``).
"""

from __future__ import annotations

import logging
import os
import tempfile
import urllib.error
import urllib.request
from pathlib import Path

from realtime_vrn.errors import WeightsError

log = logging.getLogger(__name__)

#: Environment variable that moves the user cache (models, downloads) to another folder.
HOME_ENV = "REALTIME_VRN_HOME"
#: A server that sends nothing for this long is treated as unreachable (one socket read, not the whole file).
DOWNLOAD_TIMEOUT_S = 30.0
_CHUNK_BYTES = 1 << 16


def cache_dir() -> Path:
    """The user cache folder: ``$REALTIME_VRN_HOME`` if set, else platformdirs' user cache dir for the app."""
    home = os.environ.get(HOME_ENV)
    if home:
        return Path(home).expanduser()
    from platformdirs import user_cache_dir

    return Path(user_cache_dir("realtime-vrn"))


def download(url: str, dest: Path, expected_size: int | None = None, *, timeout_s: float = DOWNLOAD_TIMEOUT_S,
             progress: bool = True) -> Path:
    """Fetch ``url`` into ``dest`` unless ``dest`` already exists (with ``expected_size`` bytes, when given).

    Writes to a temporary file in ``dest``'s folder and renames it into place only when complete (the size the
    server announced and ``expected_size`` both match): an interrupted download never leaves a partial
    ``dest``. Raises WeightsError with the URL and the path to put the file by hand when it fails.
    """
    dest = Path(dest)
    if dest.is_file() and (expected_size is None or dest.stat().st_size == expected_size):
        return dest
    dest.parent.mkdir(parents=True, exist_ok=True)
    log.info("downloading %s -> %s", url, dest)
    fd, tmp_name = tempfile.mkstemp(prefix=dest.name + ".", suffix=".part", dir=dest.parent)
    tmp = Path(tmp_name)
    try:
        with os.fdopen(fd, "wb") as out:
            written, announced = _fetch(url, out, dest.name, timeout_s, progress)
        if announced is not None and written != announced:
            raise OSError(f"connection closed after {written} of {announced} bytes")
        if expected_size is not None and written != expected_size:
            raise OSError(f"got {written} bytes, expected {expected_size}")
        os.replace(tmp, dest)  # atomic on one file system: dest is complete or absent
    except (OSError, ValueError) as err:
        tmp.unlink(missing_ok=True)
        raise WeightsError(f"could not download {dest.name} from {url} ({_reason(err)}); download it "
                           f"yourself and save it as {dest}") from err
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return dest


def _fetch(url: str, out, label: str, timeout_s: float, progress: bool) -> tuple[int, int | None]:
    from tqdm import tqdm

    with urllib.request.urlopen(url, timeout=timeout_s) as response:  # noqa: S310 - URL chosen by the caller
        length = response.headers.get("Content-Length")
        announced = int(length) if length and length.isdigit() else None
        written = 0
        with tqdm(total=announced, unit="B", unit_scale=True, unit_divisor=1024, desc=label,
                  disable=not progress, leave=False) as bar:
            while chunk := response.read(_CHUNK_BYTES):
                out.write(chunk)
                written += len(chunk)
                bar.update(len(chunk))
    return written, announced


def _reason(err: BaseException) -> str:
    if isinstance(err, urllib.error.HTTPError):
        return f"HTTP {err.code} {err.reason}"
    if isinstance(err, urllib.error.URLError):
        return f"unreachable: {err.reason}"
    return str(err) or type(err).__name__
