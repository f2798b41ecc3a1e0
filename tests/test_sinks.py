"""Outputs: video file (frame count, size, rate), image folder, virtual camera through a recording backend."""

from __future__ import annotations

import sys

import cv2
import numpy as np
import pytest

from realtime_vrn.errors import OutputError
from realtime_vrn.sinks import ImageFolderSink, VideoFileSink, VirtualCameraSink, fit_image
from realtime_vrn.sinks.virtual_camera import no_device_hint

W, H, FPS = 96, 64, 15.0


def frames(n, w=W, h=H):
    """n RGB frames with a moving bright square on a red-green gradient (compresses well, easy to check)."""
    out = []
    for k in range(n):
        image = np.zeros((h, w, 3), np.uint8)
        image[..., 0] = np.linspace(0, 255, w, dtype=np.uint8)[None]
        image[..., 1] = np.linspace(0, 255, h, dtype=np.uint8)[:, None]
        image[8:24, 4 * k % (w - 16) : 4 * k % (w - 16) + 16] = 255
        out.append(image)
    return out


# -- video ------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("suffix", [".mp4", ".avi"])
def test_video_has_the_frames_size_and_rate(tmp_path, suffix):
    path = tmp_path / f"out{suffix}"
    written = frames(12)
    with VideoFileSink(path, FPS) as sink:
        for image in written:
            sink.write(image)
    reader = cv2.VideoCapture(str(path))
    assert int(reader.get(cv2.CAP_PROP_FRAME_COUNT)) == 12
    assert (reader.get(cv2.CAP_PROP_FRAME_WIDTH), reader.get(cv2.CAP_PROP_FRAME_HEIGHT)) == (W, H)
    assert reader.get(cv2.CAP_PROP_FPS) == pytest.approx(FPS)
    ok, first = reader.read()
    reader.release()
    assert ok and np.abs(first[..., ::-1].astype(int) - written[0]).mean() < 8  # RGB kept (lossy codec)


def test_video_fits_images_of_another_size(tmp_path):
    path = tmp_path / "side.mp4"
    with VideoFileSink(path, FPS, size=(W, H)) as sink:
        sink.write(frames(1)[0])
        sink.write(frames(1, 2 * W, H)[0])  # e.g. the side-by-side view
    reader = cv2.VideoCapture(str(path))
    assert int(reader.get(cv2.CAP_PROP_FRAME_COUNT)) == 2
    assert reader.get(cv2.CAP_PROP_FRAME_WIDTH) == W
    reader.release()


def test_video_frame_count_is_checked(tmp_path):
    sink = VideoFileSink(tmp_path / "short.mp4", FPS)
    for image in frames(3):
        sink.write(image)
    sink.frames_written += 1  # as if a frame had been lost on the way to the disk
    with pytest.raises(OutputError, match="3 of 4 frames readable.*kept as short.incomplete.mp4"):
        sink.close()
    sink.close()  # idempotent
    assert not (tmp_path / "short.mp4").exists()  # never a file that looks finished
    assert (tmp_path / "short.incomplete.mp4").exists()


def test_video_is_written_under_a_temporary_name_until_closed(tmp_path):
    """Issue 13 item 3: a killed run must never leave a file that looks finished."""
    path = tmp_path / "out.mp4"
    sink = VideoFileSink(path, FPS)
    for image in frames(3):
        sink.write(image)
    assert not path.exists() and (tmp_path / "out.incomplete.mp4").exists()
    sink.close()
    assert path.exists() and not (tmp_path / "out.incomplete.mp4").exists()


def test_unreadable_video_is_not_kept(tmp_path):
    sink = VideoFileSink(tmp_path / "out.mp4", FPS)
    for image in frames(3):
        sink.write(image)
    sink._writer.release()
    sink.temp_path.write_bytes(b"\0" * 100)  # what a full disk leaves: no index, nothing readable
    sink._writer = cv2.VideoWriter()  # released writer stand-in
    with pytest.raises(OutputError, match="0 of 3 frames readable.*nothing readable was kept"):
        sink.close()
    assert list(tmp_path.iterdir()) == []


def test_video_rejects_bad_paths_and_rates(tmp_path):
    with pytest.raises(OutputError, match=r"\.mp4"):
        VideoFileSink(tmp_path / "out.gif", FPS)
    with pytest.raises(OutputError, match="frame rate"):
        VideoFileSink(tmp_path / "out.mp4", 0)
    sink = VideoFileSink(tmp_path / "missing" / "out.mp4", FPS)
    with pytest.raises(OutputError, match="does not exist"):
        sink.write(frames(1)[0])
    with pytest.raises(ValueError, match="uint8"):
        VideoFileSink(tmp_path / "out.mp4", FPS).write(np.zeros((H, W, 3), np.float32))


def test_empty_video_sink_closes_cleanly(tmp_path):
    VideoFileSink(tmp_path / "never.mp4", FPS).close()
    assert not (tmp_path / "never.mp4").exists()


# -- image folder -------------------------------------------------------------------------------------------

def test_image_folder_writes_lossless_rgb(tmp_path):
    written = frames(3)
    with ImageFolderSink(tmp_path / "shots") as sink:
        paths = [sink.write(image) for image in written]
    assert [p.name for p in paths] == ["frame_000000.png", "frame_000001.png", "frame_000002.png"]
    for path, image in zip(paths, written):
        assert (cv2.imread(str(path))[..., ::-1] == image).all()


def test_image_folder_errors(tmp_path):
    with pytest.raises(OutputError, match="png"):
        ImageFolderSink(tmp_path, suffix=".tiff")
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    with pytest.raises(OutputError, match="cannot create"):
        ImageFolderSink(blocker / "sub").write(frames(1)[0])


# -- virtual camera -----------------------------------------------------------------------------------------

class RecordingCamera:
    """A pyvirtualcam backend that keeps what it is sent."""

    instances: list["RecordingCamera"] = []

    def __init__(self, *, width, height, fps, fourcc, device, **kw):
        self.width, self.height, self.fps, self.fourcc, self._device = width, height, fps, fourcc, device
        self.frames: list[np.ndarray] = []
        self.closed = False
        RecordingCamera.instances.append(self)

    def send(self, frame):
        self.frames.append(frame.copy())

    def close(self):
        self.closed = True

    def device(self):
        return self._device or "recording"

    def native_fourcc(self):
        return None


class MissingDevice(RecordingCamera):
    def __init__(self, **kw):
        raise RuntimeError("No v4l2 loopback device found at /dev/video[0-99].")


@pytest.fixture()
def pyvirtualcam_backends():
    pyvirtualcam = pytest.importorskip("pyvirtualcam")
    registry = pyvirtualcam.camera.BACKENDS
    saved = dict(registry)
    RecordingCamera.instances.clear()
    pyvirtualcam.register_backend("recording", RecordingCamera)
    pyvirtualcam.register_backend("missing", MissingDevice)
    yield pyvirtualcam
    registry.clear()
    registry.update(saved)


def test_virtual_camera_sends_rgb_frames(pyvirtualcam_backends):
    from pyvirtualcam.util import encode_fourcc

    written = frames(3) + frames(1, 2 * W, H)
    with VirtualCameraSink((W, H), 30.0, backend="recording") as sink:
        for image in written:
            sink.write(image)
    (camera,) = RecordingCamera.instances
    assert (camera.width, camera.height, camera.fps) == (W, H, 30.0)
    assert camera.fourcc == encode_fourcc(pyvirtualcam_backends.PixelFormat.RGB.value)
    assert len(camera.frames) == 4 and camera.closed
    for sent, image in zip(camera.frames, written[:3]):
        assert (sent.reshape(H, W, 3) == image).all()
    assert (camera.frames[3].reshape(H, W, 3) == fit_image(written[3], (W, H))).all()


def test_no_virtual_camera_device_says_how_to_make_one(pyvirtualcam_backends, monkeypatch):
    monkeypatch.setattr(sys, "platform", "linux")
    with pytest.raises(OutputError, match="no virtual camera device.*modprobe v4l2loopback devices=1 exclusive_caps=1"):
        VirtualCameraSink((W, H), 30.0, backend="missing").open()


def test_no_device_hint_per_platform():
    assert "modprobe v4l2loopback" in no_device_hint("linux")
    assert "OBS" in no_device_hint("win32") and "OBS" in no_device_hint("darwin")


def test_unknown_virtual_camera_backend(pyvirtualcam_backends):
    with pytest.raises(OutputError, match="recording"):
        VirtualCameraSink((W, H), 30.0, backend="nonesuch").open()


def test_missing_pyvirtualcam_names_the_extra(monkeypatch):
    monkeypatch.setitem(sys.modules, "pyvirtualcam", None)
    with pytest.raises(OutputError, match=r"realtime-vrn\[vcam\]"):
        VirtualCameraSink((W, H), 30.0).open()


def test_virtual_camera_rejects_bad_settings():
    with pytest.raises(OutputError, match="positive"):
        VirtualCameraSink((0, H), 30.0)


# -- fitting ------------------------------------------------------------------------------------------------

def test_fit_image_letterboxes():
    image = np.full((10, 40, 3), 200, np.uint8)
    assert fit_image(image, (40, 10)) is image
    fitted = fit_image(image, (40, 30))
    assert fitted.shape == (30, 40, 3)
    assert (fitted[10:20] == 200).all() and not fitted[:10].any() and not fitted[20:].any()


def test_optional_dependencies_load_lazily():
    import subprocess

    code = (
        "import sys, realtime_vrn.render, realtime_vrn.render.window, realtime_vrn.sinks; "
        "assert 'glfw' not in sys.modules and 'pyvirtualcam' not in sys.modules, sorted(sys.modules)"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


def test_image_sink_says_what_it_wrote(tmp_path, astronaut):
    sink = ImageFolderSink(tmp_path, prefix="o_", suffix=".png", named_prefix="o_")
    first = sink.write(astronaut, name="asj")
    assert first == tmp_path / "o_asj.png" and first.is_file() and sink.written == str(first)
    sink.write(astronaut)
    assert sink.written == f"{tmp_path} (2 images)"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["o_000001.png", "o_asj.png"]  # no temporary files left


# -- Outputs returns what it did ----------------------------------------------------------------------------------
class _StillSource:
    size, fps, frame_count, name, is_live, is_still = (W, H), None, 2, "photo", False, True


def _face(mesh):
    from types import SimpleNamespace

    from realtime_vrn.sources.base import Frame

    frame = Frame(image=np.zeros((H, W, 3), np.uint8), index=0, timestamp=0.0, name="photo")
    return SimpleNamespace(frame=frame, faces=[SimpleNamespace(mesh=mesh, track=None)], mesh=mesh, has_face=True)


def _triangle():
    from realtime_vrn.surface.mesh import Mesh

    return Mesh(vertices=np.eye(3, dtype=np.float32), faces=np.array([[0, 1, 2]], np.int32),
                normals=np.ones((3, 3), np.float32), frame="image")


def test_outputs_report_what_they_wrote_and_what_failed(tmp_path):
    from realtime_vrn.bench.timing import LatencyStats
    from realtime_vrn.config import RunConfig
    from realtime_vrn.sinks.outputs import Outputs, OutputsReport

    config = RunConfig(image=tmp_path / "photo.png", export=tmp_path / "meshes", headless=True)
    with Outputs(config, _StillSource()) as outputs:
        assert outputs.push(_face(_triangle()), LatencyStats())
    assert outputs.report == OutputsReport(completed=(), failed=(), meshes_exported=1)
    assert outputs.close() is outputs.report  # closed once; a second close reports the same

    (tmp_path / "blocked" / "photo.obj").mkdir(parents=True)  # the mesh's name is taken by a folder
    config = RunConfig(image=tmp_path / "photo.png", export=tmp_path / "blocked", headless=True, overwrite=True)
    outputs = Outputs(config, _StillSource()).__enter__()
    outputs.push(_face(_triangle()), LatencyStats())
    report = outputs.close()
    assert report.meshes_exported == 0 and len(report.failed) == 1 and str(tmp_path / "blocked") in report.failed[0]
