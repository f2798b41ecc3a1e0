"""Frame sources: the demo clip, broken files, cameras (missing, fake live, stuck), image files and folders."""

from __future__ import annotations

import logging
import os
import queue
import shutil
import sys
import threading
import time
from pathlib import Path

import cv2
import numpy as np
import pytest

from realtime_vrn.errors import ConfigError, SourceError
from realtime_vrn.sources import (CameraSource, Frame, ImageSource, SourceSpec, VideoFileSource, open_source,
                                  read_image_rgb)
from realtime_vrn.sources import camera as camera_module
from realtime_vrn.sources import video as video_module


def wait_until(condition, timeout_s: float = 3.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError("condition not reached in time")
        time.sleep(0.005)


@pytest.fixture()
def short_join(monkeypatch):
    """Sources give up on a stuck reader thread after 0.2 s instead of 2 s (keeps the tests fast)."""
    monkeypatch.setattr(camera_module, "JOIN_TIMEOUT_S", 0.2)
    monkeypatch.setattr(video_module, "JOIN_TIMEOUT_S", 0.2)


@pytest.fixture(scope="module")
def small_avi(tmp_path_factory, demo_clip) -> Path:
    """The first 24 frames of the demo clip as a Motion-JPEG AVI (frame count in its header)."""
    path = tmp_path_factory.mktemp("avi") / "clip.avi"
    cap = cv2.VideoCapture(str(demo_clip))
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), 30.0, (512, 512))
    for _ in range(24):
        ok, bgr = cap.read()
        assert ok
        writer.write(bgr)
    writer.release()
    cap.release()
    return path


# -- video files -------------------------------------------------------------------------------------------

def test_demo_clip_every_frame_in_order(demo_clip):
    reference = cv2.VideoCapture(str(demo_clip))
    ok, first_bgr = reference.read()
    reference.release()
    with open_source(video=demo_clip) as source:
        assert (source.size, source.fps, source.frame_count) == ((512, 512), 30.0, 448)
        assert not source.is_live and not source.is_still
        frames = [(f.index, f.media_time, f.timestamp) for f in _checked(source)]
        assert source.dropped == 0
    assert [i for i, _, _ in frames] == list(range(448))
    np.testing.assert_allclose([t for _, t, _ in frames], np.arange(448) / 30.0, atol=1e-6)
    assert all(b[2] >= a[2] for a, b in zip(frames, frames[1:]))
    with open_source(video=demo_clip) as source:
        np.testing.assert_array_equal(next(source).image, cv2.cvtColor(first_bgr, cv2.COLOR_BGR2RGB))


def _checked(source):
    for frame in source:
        assert isinstance(frame, Frame)
        assert frame.image.dtype == np.uint8 and frame.image.shape == (512, 512, 3)
        assert frame.image.flags.c_contiguous
        yield frame


def test_prefetch_gives_the_same_frames_and_stops_cleanly(demo_clip):
    with open_source(video=demo_clip) as source:
        expected = [next(source).image for _ in range(20)]
    with open_source(video=demo_clip, prefetch=3) as source:
        got = [next(source) for _ in range(20)]
        thread = source._thread
        assert source._queue.maxsize == 3 and thread.is_alive()
    assert not thread.is_alive()  # the decoder thread is joined on close, mid-file
    assert [f.index for f in got] == list(range(20))
    for frame, image in zip(got, expected):
        np.testing.assert_array_equal(frame.image, image)


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="a thread's own nice value is Linux's")
def test_prefetch_decodes_at_a_lower_priority(demo_clip):
    """The prefetch thread decodes at DECODE_NICE above the process (in the time the pipeline leaves idle);
    the consumer's thread keeps its priority."""
    own = os.getpriority(os.PRIO_PROCESS, threading.get_native_id())
    with open_source(video=demo_clip, prefetch=2) as source:
        next(source)
        decoder = os.getpriority(os.PRIO_PROCESS, source._thread.native_id)
    assert decoder == min(own + video_module.DECODE_NICE, 19) and (decoder > own or own == 19)
    assert os.getpriority(os.PRIO_PROCESS, threading.get_native_id()) == own


def test_prefetch_reads_to_the_end(small_avi):
    with open_source(video=small_avi, prefetch=2) as source:
        assert [f.index for f in source] == list(range(24))


def test_drop_frames_only_when_asked(demo_clip):
    with open_source(video=demo_clip, drop_frames=True) as source:
        indices = [next(source).index]
        time.sleep(0.25)  # fall ~7 frames behind the file's 30 fps clock
        indices += [next(source).index for _ in range(3)]
        assert indices[1] >= 6  # skipped to the frame due now
        assert source.dropped == indices[-1] + 1 - len(indices)  # every skipped frame is counted
        assert np.all(np.diff(indices[1:]) >= 1)
    with open_source(video=demo_clip) as source:
        indices = [next(source).index]
        time.sleep(0.25)
        indices += [next(source).index for _ in range(3)]
        assert indices == [0, 1, 2, 3] and source.dropped == 0


def test_truncated_mp4_says_truncated(demo_clip, tmp_path):
    data = demo_clip.read_bytes()
    truncated = tmp_path / "truncated.mp4"
    truncated.write_bytes(data[: len(data) // 2])
    with pytest.raises(SourceError, match="truncated"):
        with open_source(video=truncated):
            pass


def test_file_that_stops_early_is_reported(small_avi, tmp_path):
    data = small_avi.read_bytes()
    cut = tmp_path / "cut.avi"
    cut.write_bytes(data[: len(data) // 2])
    frames = []
    with pytest.raises(SourceError, match=r"ended after \d+ of 24 frames: the file is truncated"):
        with open_source(video=cut) as source:
            for frame in source:
                frames.append(frame.index)
    assert 0 < len(frames) < 24  # the readable frames came first


@pytest.fixture(scope="module")
def edit_list_mp4(tmp_path_factory, demo_clip) -> Path:
    """20 frames of the demo clip in an MP4 whose edit list shows frames 3-19 only (17 of the 20 samples), as a
    trimmed clip or a phone recording has: the header counts 20 frames, a player shows 17."""
    import struct

    path = tmp_path_factory.mktemp("editlist") / "trimmed.mp4"
    cap = cv2.VideoCapture(str(demo_clip))
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), 30.0, (512, 512))
    for _ in range(20):
        writer.write(cap.read()[1])
    writer.release()
    cap.release()
    data = bytearray(path.read_bytes())

    def box(tag: bytes) -> int:  # offset of the first box of this type (each occurs once in this file)
        return data.find(tag) - 4

    movie_scale = struct.unpack(">I", data[box(b"mvhd") + 20: box(b"mvhd") + 24])[0]
    media_scale = struct.unpack(">I", data[box(b"mdhd") + 20: box(b"mdhd") + 24])[0]
    samples, delta = struct.unpack(">II", data[box(b"stts") + 16: box(b"stts") + 24])
    assert samples == 20
    # elst v0, one entry: segment duration (movie time scale), media time (media time scale), rate
    struct.pack_into(">II", data, box(b"elst") + 16, round(17 * delta * movie_scale / media_scale), 3 * delta)
    path.write_bytes(bytes(data))
    return path


def test_a_clip_with_an_edit_list_is_read_in_full(edit_list_mp4):
    """Issue 13 item 4: such clips were processed and then rejected as "truncated or damaged" (exit 2)."""
    from realtime_vrn.sources.video import container_complete

    assert container_complete(edit_list_mp4) is True
    with open_source(video=edit_list_mp4) as source:
        assert source.frame_count == 20  # what the header says
        frames = list(source)
    assert [f.index for f in frames] == list(range(17))


def test_container_structure_tells_a_cut_file(small_avi, demo_clip, tmp_path):
    from realtime_vrn.sources.video import container_complete

    assert container_complete(small_avi) is True and container_complete(demo_clip) is True
    for source in (small_avi, demo_clip):
        cut = tmp_path / f"cut{source.suffix}"
        cut.write_bytes(source.read_bytes()[:-1000])
        assert container_complete(cut) is False
    (tmp_path / "clip.mkv").write_bytes(b"\x1aE\xdf\xa3" + b"\0" * 100)
    assert container_complete(tmp_path / "clip.mkv") is None


def test_file_that_stops_early_is_reported_with_prefetch(small_avi, tmp_path):
    data = small_avi.read_bytes()
    cut = tmp_path / "cut.avi"
    cut.write_bytes(data[: len(data) // 2])
    with pytest.raises(SourceError, match="truncated"):
        with open_source(video=cut, prefetch=2) as source:
            for _ in source:
                pass


@pytest.mark.parametrize("content, message", [
    (b"this is a text file, not a video\n" * 20, "cannot decode it"),
    (b"", "empty"),
])
def test_not_a_video(tmp_path, content, message):
    fake = tmp_path / "notes.mp4"
    fake.write_bytes(content)
    with pytest.raises(SourceError, match=message):
        with open_source(video=fake):
            pass


def test_missing_video_and_folder_given_as_video(tmp_path):
    with pytest.raises(SourceError, match="video file not found"):
        open_source(video=tmp_path / "nope.mp4").open()
    with pytest.raises(SourceError, match="is a folder"):
        open_source(video=tmp_path).open()


def test_video_loop(small_avi):
    with open_source(video=small_avi, loop=True) as source:
        assert source.frame_count is None  # endless
        frames = [next(source) for _ in range(30)]
    assert [f.index for f in frames] == list(range(30))
    assert frames[24].media_time == 0.0 and frames[23].media_time == pytest.approx(23 / 30)


class StuckDecoder:
    """A capture whose second grab never returns (a hung file system or decoder)."""

    def __init__(self, path: str) -> None:
        self.release_event = threading.Event()
        self.grabs = 0

    def isOpened(self):  # noqa: N802
        return True

    def get(self, prop):
        return {cv2.CAP_PROP_FPS: 30.0, cv2.CAP_PROP_FRAME_COUNT: 100.0}.get(prop, 0.0)

    def grab(self):
        self.grabs += 1
        if self.grabs > 1:
            self.release_event.wait()
            return False
        return True

    def retrieve(self):
        return True, np.zeros((8, 8, 3), np.uint8)

    def set(self, prop, value):
        return True

    def release(self):
        pass


def test_stuck_decoder_does_not_hang(demo_clip, short_join, caplog):
    decoders = []
    source = VideoFileSource(demo_clip, prefetch=2, read_timeout_s=0.3,
                             capture_factory=lambda p: decoders.append(StuckDecoder(p)) or decoders[-1])
    start = time.perf_counter()
    try:
        with pytest.raises(SourceError, match="no frame within 0.3 s"):
            with source:
                assert next(source).index == 0
                next(source)
        assert time.perf_counter() - start < 2.0
        assert "abandoning" in caplog.text
    finally:
        decoders[0].release_event.set()


# -- cameras -------------------------------------------------------------------------------------------------

def test_missing_camera():
    with pytest.raises(SourceError, match=r"camera 99 could not be opened: .*check .*--video"):
        with open_source(camera=99):
            pass


class FakeCamera:
    """A live camera driven by the test: ``read`` returns the next frame pushed with ``push`` (BGR), and
    blocks until then (a stuck driver) unless ``unplug()`` was called (then every read fails at once)."""

    def __init__(self) -> None:
        self.frames: queue.Queue = queue.Queue()
        self.unplugged = threading.Event()
        self.reads = 0
        self.released = False

    def unplug(self) -> None:
        self.unplugged.set()

    def push(self, value: int | None) -> None:
        """A (4, 6) BGR frame whose blue channel is ``value`` (None: a failed read)."""
        self.frames.put(value)

    def isOpened(self):  # noqa: N802
        return True

    def get(self, prop):
        return 30.0 if prop == cv2.CAP_PROP_FPS else 0.0

    def read(self):
        while True:
            try:
                value = self.frames.get(timeout=0.01)
                break
            except queue.Empty:
                if self.unplugged.is_set():
                    return False, None
        self.reads += 1
        if value is None:
            return False, None
        bgr = np.zeros((4, 6, 3), np.uint8)
        bgr[..., 0] = value  # blue in OpenCV's BGR order
        return True, bgr

    def release(self):
        self.released = True


def test_camera_keeps_only_the_newest_frame(short_join):
    cam = FakeCamera()
    source = CameraSource(0, read_timeout_s=0.3, capture_factory=lambda i: cam)
    cam.push(10)
    with source:
        assert source.is_live and source.size == (6, 4) and source.fps == 30.0 and source.frame_count is None
        first = next(source)
        assert first.index == 0 and first.image[0, 0, 2] == 10  # RGB: blue is channel 2
        for value in (11, 12, 13, 14, 15):  # the consumer is busy: five frames arrive
            cam.push(value)
        wait_until(lambda: cam.reads == 6 and source._slot._frame is not None and source._slot._frame.index == 5)
        newest = next(source)
        assert (newest.index, newest.image[0, 0, 2]) == (5, 15)  # the newest one, not the oldest
        assert source.dropped == 4  # frames 1-4 were replaced, and counted
        assert newest.timestamp >= first.timestamp
        with pytest.raises(SourceError, match="no new frame within 0.3 s"):
            next(source)
        cam.push(16)
        assert next(source).index == 6
        cam.unplug()  # a real camera returns from read() within a frame time; this one must be told
    assert cam.released


def test_camera_first_frame_is_not_stale(short_join):
    cam = FakeCamera()
    cam.push(1)
    with CameraSource(0, capture_factory=lambda i: cam) as source:
        cam.push(2)
        wait_until(lambda: cam.reads == 2 and source._slot._frame.index == 1)
        assert next(source).index == 1 and source.dropped == 1
        cam.unplug()


def test_camera_that_stops_delivering(short_join):
    cam = FakeCamera()
    cam.push(1)
    with CameraSource(0, capture_factory=lambda i: cam) as source:
        next(source)
        for _ in range(camera_module.MAX_CONSECUTIVE_READ_FAILURES):
            cam.push(None)
        with pytest.raises(SourceError, match="stopped delivering frames"):
            next(source)
        cam.unplug()


def test_stuck_camera_does_not_hang(short_join, caplog):
    cam = FakeCamera()  # never pushes a frame: read() blocks
    start = time.perf_counter()
    with caplog.at_level(logging.WARNING):
        with pytest.raises(SourceError, match="camera 3 delivered no frame within 0.3 s"):
            with CameraSource(3, first_frame_timeout_s=0.3, capture_factory=lambda i: cam):
                pass
    assert time.perf_counter() - start < 2.0
    assert "abandoning" in caplog.text and not cam.released  # a blocked driver is not released under a read
    cam.unplug()  # let the abandoned thread end


def test_camera_close_is_idempotent_and_joins(short_join):
    cam = FakeCamera()
    cam.push(1)
    source = CameraSource(0, capture_factory=lambda i: cam)
    source.open()
    thread = source._thread
    cam.unplug()  # reads return at once, so the reader sees the stop flag
    source.close()
    source.close()
    assert not thread.is_alive() and cam.released
    with pytest.raises(StopIteration):
        next(source)


# -- images --------------------------------------------------------------------------------------------------

def test_image_folder_sorted(face_photos):
    folder = face_photos[0].parent
    with open_source(image=folder) as source:
        assert source.is_still and not source.is_live and source.fps is None
        assert source.frame_count == 5 and source.size == (450, 450)
        frames = list(source)
    assert [f.index for f in frames] == list(range(5))
    for frame, path in zip(frames, sorted(face_photos, key=lambda p: p.name.lower())):
        np.testing.assert_array_equal(frame.image, cv2.cvtColor(cv2.imread(str(path)), cv2.COLOR_BGR2RGB))
        assert frame.media_time is None


def test_single_image(face_photos):
    with open_source(image=face_photos[-1]) as source:
        frames = list(source)
    assert len(frames) == 1 and frames[0].image.shape == (844, 768, 3)


def test_image_folder_natural_order_skips_other_files(tmp_path):
    for name, value in (("img10.png", 10), ("img2.png", 2), ("img1.png", 1)):
        cv2.imwrite(str(tmp_path / name), np.full((3, 5, 3), value, np.uint8))
    (tmp_path / "notes.txt").write_text("not an image")
    with open_source(image=tmp_path) as source:
        assert [int(f.image[0, 0, 0]) for f in source] == [1, 2, 10]


def test_unreadable_images_in_a_folder_are_skipped_and_listed(face_photos, tmp_path, caplog):
    """Issue 13 item 5: one damaged file used to stop the whole folder. Damaged, empty and unreadable files are
    skipped with a warning naming each, and listed in ``skipped``; every good photo is still read."""
    for path in face_photos[:2]:
        shutil.copy(path, tmp_path / path.name)
    (tmp_path / "0_empty.jpg").write_bytes(b"")
    (tmp_path / "zz_broken.jpg").write_text("not really a jpeg")
    with caplog.at_level("WARNING"), open_source(image=tmp_path) as source:
        frames = list(source)
    assert [f.name for f in frames] == [p.stem for p in face_photos[:2]]
    assert [f.index for f in frames] == [0, 1]
    assert [Path(p).name for p, _ in source.skipped] == ["0_empty.jpg", "zz_broken.jpg"]
    assert sum("skipping" in r.message for r in caplog.records) == 2


def test_a_folder_of_unreadable_images_is_an_error(tmp_path):
    (tmp_path / "a.jpg").write_text("no")
    (tmp_path / "b.png").write_bytes(b"")
    with pytest.raises(SourceError, match="none of the 2 images"):
        open_source(image=tmp_path).open()


def test_a_single_unreadable_image_is_an_error(tmp_path):
    (tmp_path / "a.jpg").write_text("no")
    with pytest.raises(SourceError, match="a.jpg"):
        open_source(image=tmp_path / "a.jpg").open()


def test_output_names_stay_unique(tmp_path):
    from realtime_vrn.sources.images import output_names

    names = output_names([Path("IMG_1.jpg"), Path("IMG_1.png"), Path("x.jpeg")])
    assert names == ["IMG_1_jpg", "IMG_1_png", "x"]


def test_empty_or_missing_image_folder(tmp_path):
    with pytest.raises(SourceError, match="no images"):
        open_source(image=tmp_path).open()
    with pytest.raises(SourceError, match="not found"):
        open_source(image=tmp_path / "missing").open()


def test_image_loop(face_photos):
    with ImageSource(face_photos[0].parent, loop=True) as source:
        assert source.frame_count is None
        frames = [next(source) for _ in range(7)]
    assert [f.index for f in frames] == list(range(7))
    np.testing.assert_array_equal(frames[5].image, frames[0].image)


def test_read_image_rgb_missing_file(tmp_path):
    with pytest.raises(SourceError, match="cannot read image"):
        read_image_rgb(tmp_path / "nope.png")


# -- spec and interface ------------------------------------------------------------------------------------

@pytest.mark.parametrize("kwargs, message", [
    (dict(), "exactly one input"),
    (dict(camera=0, video=Path("a.mp4")), "exactly one input"),
    (dict(camera=-1), "index >= 0"),
    (dict(camera=0, drop_frames=True), "video files only"),
    (dict(image=Path("x"), prefetch=2), "video files only"),
    (dict(video=Path("a.mp4"), prefetch=-1), "prefetch"),
    (dict(camera=0, loop=True), "not to a camera"),
])
def test_spec_rejects(kwargs, message):
    with pytest.raises(ConfigError, match=message):
        SourceSpec(**kwargs)


def test_spec_and_keywords_not_both():
    with pytest.raises(ConfigError, match="not both"):
        open_source(SourceSpec(camera=0), video="a.mp4")


def test_open_source_kinds(demo_clip, face_photos):
    assert isinstance(open_source(SourceSpec(video=str(demo_clip))), VideoFileSource)
    assert isinstance(open_source(camera=0), CameraSource)  # not opened: construction touches no device
    assert isinstance(open_source(image=face_photos[0]), ImageSource)
    assert SourceSpec(video="a.mp4").video == Path("a.mp4") and SourceSpec(camera=1).kind == "camera"


def test_attributes_need_an_open_source(demo_clip):
    source = open_source(video=demo_clip)
    with pytest.raises(RuntimeError, match="once the source is open"):
        _ = source.size
    source.close()  # closing an unopened source is fine
    source.close()
    with pytest.raises(RuntimeError, match="closed"):
        source.open()


def test_iterating_opens_and_close_stops(demo_clip):
    source = open_source(video=demo_clip)
    iterator = iter(source)
    assert next(iterator).index == 0
    source.close()
    with pytest.raises(StopIteration):
        next(iterator)
