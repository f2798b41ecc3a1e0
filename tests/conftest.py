"""Shared fixtures: real faces (bundled photos, the demo clip, skimage's astronaut), offline only."""

from __future__ import annotations

import http.server
import os
import re
import shutil
import socket
import subprocess
import threading
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pytest

TESTS = Path(__file__).resolve().parent
FACES = TESTS / "data" / "faces"
#: The team's shared data: REALTIME_VRN_SHARED, else ../shared beside the checkout.
SHARED = Path(os.environ.get("REALTIME_VRN_SHARED") or TESTS.parents[1] / "shared")
# The package bakes in no shared path: it reads REALTIME_VRN_SHARED (training/facemodel.py). Tests run from a
# checkout beside ../shared find it there too (subprocesses inherit it).
if SHARED.is_dir():
    os.environ.setdefault("REALTIME_VRN_SHARED", str(SHARED))


def _has_cuda() -> bool:
    try:
        import torch

        return torch.cuda.is_available()
    except Exception:  # noqa: BLE001
        return False


#: Test modules that open GLX windows (glfw under Xvfb). They run in a process of their own
#: (tests/test_window_process.py starts it) unless named on the command line: Mesa refuses glXMakeCurrent (X error
#: BadAccess, which ends the process) once EGL contexts (headless rendering, synthetic data) have lived in the
#: process, and with a newer torch a later ONNX Runtime session segfaulted after the window tests. A real run never
#: mixes the two kinds: with a window, the renderer draws in the window's own context.
WINDOW_TEST_MODULES = ("test_window.py",)
#: In CI (CI=true) the team's shared data (../shared, REALTIME_VRN_SHARED) must be there: a test that would skip
#: for its absence fails instead. Skip reasons that mean "shared data missing":
IN_CI = os.environ.get("CI", "").lower() == "true"
SHARED_DATA_REASONS = ("shared data", "ICT face model missing", "reference dump not here")


def pytest_configure(config):
    # Triton (PyPI's CUDA torch) before any OpenGL context of the session, whichever test makes the first one: a
    # later torch.export would segfault (see render.context.LLVM_PACKAGES).
    from realtime_vrn.render.context import import_llvm_packages_first

    import_llvm_packages_first()


def pytest_ignore_collect(collection_path, config):
    if collection_path.name not in WINDOW_TEST_MODULES:
        return None
    named = {Path(str(arg).split("::")[0]).resolve() for arg in config.args}
    return None if collection_path.resolve() in named else True


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    report = outcome.get_result()
    if IN_CI and report.skipped and any(reason in str(report.longrepr) for reason in SHARED_DATA_REASONS):
        report.outcome = "failed"
        report.longrepr = f"CI=true and the shared data is missing: {report.longrepr}"


def pytest_collection_modifyitems(config, items):
    if _has_cuda():
        return
    skip = pytest.mark.skip(reason="needs an NVIDIA GPU with CUDA")
    for item in items:
        if "gpu" in item.keywords:
            item.add_marker(skip)


@pytest.fixture(scope="session")
def faces_pool() -> Path:
    """``<shared>/data/faces-pool``: real photos read in place (their image rights forbid copies in the project)."""
    pool = SHARED / "data" / "faces-pool"
    if not pool.is_dir():
        pytest.skip(f"faces-pool not at {pool} (shared data)")
    return pool


@pytest.fixture(scope="module")
def one_torch_thread():
    """One intra-op thread: torch's two OpenMP threads slow down 10x when other jobs share the 2 cores."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="session")
def ict_model():
    """The ICT face model of the shared data (skips with its reason outside CI, fails in CI)."""
    from realtime_vrn.training.facemodel import FaceModel, default_npz

    if not default_npz().is_file():
        pytest.skip(f"ICT face model missing at {default_npz()} (shared data)")
    return FaceModel.load(default_npz())


@pytest.fixture(scope="session")
def face_photos() -> list[Path]:
    """The five bundled real face photos (AFLW large poses + a frontal portrait), JPEG files."""
    return sorted(FACES.glob("*.jpg"))


@pytest.fixture(scope="session")
def demo_clip() -> Path:
    """The bundled real talking-head clip (512x512, 30 fps, 448 frames)."""
    from realtime_vrn.assets import demo_clip_path

    return demo_clip_path()


@pytest.fixture(scope="session")
def astronaut() -> np.ndarray:
    """skimage's astronaut photo, (512, 512, 3) uint8 RGB, public domain."""
    from skimage import data

    return data.astronaut()


@pytest.fixture()
def vrn_home(tmp_path, monkeypatch) -> Path:
    """An empty per-test REALTIME_VRN_HOME (user cache for models and downloads)."""
    home = tmp_path / "vrn-home"
    monkeypatch.setenv("REALTIME_VRN_HOME", str(home))
    return home


@dataclass
class HttpFiles:
    """A local HTTP server's files and behaviour (:func:`http_files`).

    url: ``http://127.0.0.1:PORT``; root: the folder it serves (``root / "a.bin"`` is ``{url}/a.bin``);
    support_ranges: answer ``Range: bytes=N-`` with 206 (else 200 and the whole file); cut_after: close the
    connection after this many body bytes (Content-Length stays full); hits / ranges: the path and the Range
    header (or None) of every request, in order.
    """

    url: str
    root: Path
    support_ranges: bool = True
    cut_after: int | None = None
    hits: list[str] = field(default_factory=list)
    ranges: list[str | None] = field(default_factory=list)


def _files_handler(state: HttpFiles) -> type[http.server.BaseHTTPRequestHandler]:
    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self):  # noqa: N802 - http.server's naming
            state.hits.append(self.path)
            state.ranges.append(self.headers.get("Range"))
            path = state.root / self.path.lstrip("/")
            if not path.is_file():
                self.send_error(404, "Not Found")
                return
            data, start = path.read_bytes(), 0
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
def http_files(tmp_path) -> HttpFiles:
    """A local HTTP server on 127.0.0.1 in a thread, serving the files put into ``.root`` (no test touches the
    internet): resumable (Range) downloads, a connection cut short, the requests it saw."""
    root = tmp_path / "www"
    root.mkdir()
    state = HttpFiles(url="", root=root)
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _files_handler(state))
    state.url = f"http://127.0.0.1:{httpd.server_address[1]}"
    thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        yield state
    finally:
        httpd.shutdown()
        httpd.server_close()
        thread.join(timeout=5)


def closed_port_url(path: str) -> str:
    """``http://127.0.0.1:PORT/path`` on a port where nothing listens (bound, then closed again)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    return f"http://127.0.0.1:{port}/{path}"


#: A tiny network whose output is known exactly: zero last-layer weights and a bias that is positive for the
#: depth bins below PLANE_DEPTH_BINS // 2 and negative above, so the iso-surface is the plane z = (bins/2 - 0.5)
#: * 0.5 over the whole crop. Not a face model: it makes the pipeline's geometry checkable end to end.
PLANE_DEPTH_BINS = 32
PLANE_INPUT = 64


@pytest.fixture(scope="session")
def plane_checkpoint(tmp_path_factory) -> Path:
    import torch

    from realtime_vrn.model.checkpoint import CheckpointMeta, save_checkpoint
    from realtime_vrn.model.network import VRN, VRNConfig

    cfg = VRNConfig(input_size=PLANE_INPUT, features=16, stacks=1, levels=1, branch_blocks=1,
                    inner_branch_blocks=1, depth_bins=PLANE_DEPTH_BINS)
    torch.manual_seed(0)
    net = VRN(cfg)
    with torch.no_grad():
        net.head_out.weight.zero_()
        bias = torch.full((PLANE_DEPTH_BINS,), -4.0)
        bias[: PLANE_DEPTH_BINS // 2] = 4.0
        net.head_out.bias.copy_(bias)
    path = tmp_path_factory.mktemp("weights") / "plane.safetensors"
    save_checkpoint(path, net, CheckpointMeta(source="tests/conftest.py (analytic plane)", licence="MIT",
                                              description="test fixture, not a face model"))
    return path


XVFB_START_TIMEOUT_S = 10


@pytest.fixture(scope="session")
def xvfb_display():
    """A private X display (Xvfb picks a free number and writes it to the -displayfd pipe)."""
    pytest.importorskip("glfw")
    if shutil.which("Xvfb") is None:
        pytest.skip("Xvfb is not installed (apt-get install xvfb)")
    read_fd, write_fd = os.pipe()
    proc = subprocess.Popen(
        ["Xvfb", "-displayfd", str(write_fd), "-screen", "0", "640x480x24", "-nolisten", "tcp", "-noreset"],
        pass_fds=(write_fd,),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    os.close(write_fd)
    try:
        number = _read_display_number(read_fd, proc)
        yield f":{number}"
    finally:
        os.close(read_fd)
        proc.terminate()
        proc.wait(timeout=XVFB_START_TIMEOUT_S)


def _read_display_number(fd: int, proc: subprocess.Popen) -> str:
    import select

    data = b""
    while not data.endswith(b"\n"):
        ready, _, _ = select.select([fd], [], [], XVFB_START_TIMEOUT_S)
        chunk = os.read(fd, 16) if ready else b""
        if not chunk:
            pytest.skip(f"Xvfb did not start (exit code {proc.poll()})")
        data += chunk
    return data.decode().strip()


@pytest.fixture()
def display(xvfb_display, monkeypatch):
    monkeypatch.setenv("DISPLAY", xvfb_display)
    monkeypatch.delenv("WAYLAND_DISPLAY", raising=False)
    return xvfb_display
