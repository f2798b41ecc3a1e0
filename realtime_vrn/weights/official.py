"""The official VRN release (Jackson et al., ICCV 2017): where it lives, what it is, and fetching it.

Facts from ``shared/docs/vrn-reference.md`` §3: the only released model is ``vrn-unguided.t7``, a Torch7 binary
file of about 1.4 GB (it stores gradients and activation buffers beside the ~77 MB of parameters). The authors
published no size or checksum for it, so a download is checked against the size the server announces and
against :data:`MIN_SIZE_BYTES`; the converter then verifies the content itself (every module and weight shape,
then a self-check on a real face). The code of the release is MIT; the licence of the weights is not stated.
"""

from __future__ import annotations

import logging
from pathlib import Path

from realtime_vrn.weights.download import download

log = logging.getLogger(__name__)

#: Name of the installed model (``--model vrn-unguided``) and of the file the authors publish.
MODEL_NAME = "vrn-unguided"
FILENAME = "vrn-unguided.t7"
#: Current download location (AaronJackson/vrn ``download.sh``).
URL = "https://asjackson.s3.fr-par.scw.cloud/vrn/vrn-unguided.t7"
#: Exact size and SHA-256 of the release: not published by the authors, unknown to us (never downloaded here).
#: Fill them in once verified; until then the server's Content-Length and MIN_SIZE_BYTES are checked.
EXPECTED_SIZE_BYTES: int | None = None
EXPECTED_SHA256: str | None = None
#: Learnable parameters of the released network (shared/docs/vrn-reference.md §2).
PARAMETER_COUNT = 19_184_968
#: The file holds at least the float32 parameters: anything smaller is an error page or a truncated file.
MIN_SIZE_BYTES = PARAMETER_COUNT * 4

LICENCE_NOTE = "code MIT; weight licence not stated by the authors"
PAPER = (
    "A. S. Jackson, A. Bulat, V. Argyriou, G. Tzimiropoulos: Large Pose 3D Face Reconstruction from a Single "
    "Image via Direct Volumetric CNN Regression, ICCV 2017 (arXiv:1703.07834); code: github.com/AaronJackson/vrn"
)
MANUAL_HINT = (
    f"download {FILENAME} yourself (browser or `curl -C - -O {URL}`), then run "
    f"`realtime-vrn weights convert PATH/TO/{FILENAME}`"
)


def downloads_dir() -> Path:
    """Where fetched source files are kept: ``home_dir()/downloads`` (user cache; never the package)."""
    from realtime_vrn.weights.registry import home_dir  # here: the registry imports torch, the parser must not

    return home_dir() / "downloads"


def fetch(dest_dir: str | Path | None = None, url: str = URL, *, progress: bool = True) -> Path:
    """Download the official Torch7 file into ``dest_dir`` (default :func:`downloads_dir`); return its path.

    Resumes an interrupted download, shows a progress bar, checks the size, and renames into place only when
    complete (see :func:`realtime_vrn.weights.download.download`). An existing complete file is not fetched again.
    Raises :class:`realtime_vrn.weights.download.DownloadError` (a WeightsError) naming the URL when it fails.
    """
    dest = Path(dest_dir).expanduser() if dest_dir is not None else downloads_dir()
    return download(
        url, dest / FILENAME, expected_size=EXPECTED_SIZE_BYTES, min_size=MIN_SIZE_BYTES,
        expected_sha256=EXPECTED_SHA256, progress=progress, manual_hint=MANUAL_HINT,
    )
