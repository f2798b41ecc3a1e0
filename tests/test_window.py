"""The live window under Xvfb (started here with -displayfd), and the missing-display message."""

from __future__ import annotations

import sys

import numpy as np
import pytest

from realtime_vrn.errors import DisplayError
from realtime_vrn.render import Renderer
from realtime_vrn.bench.render import ellipsoid_mesh
from realtime_vrn.render.window import LiveWindow, ViewState, WindowEvent

def test_window_shows_the_image(display, astronaut):
    image = np.ascontiguousarray(astronaut[100:220:, 150:310])  # 160 x 120
    with LiveWindow(size=(160, 120)) as window:
        assert window.show(image) == []
        shown = np.frombuffer(window.ctx.screen.read(components=3), np.uint8).reshape(120, 160, 3)
        assert (shown[::-1] == image).all()  # the screen reads bottom-up


def test_window_context_renders_and_shows(display):
    frame = np.zeros((90, 120, 3), np.uint8)
    mesh = ellipsoid_mesh((60.0, 45.0, 0.0), (20.0, 20.0, 20.0), 2000)
    with LiveWindow(size=(120, 90)) as window, Renderer(ctx=window.ctx) as renderer:
        image = renderer.render(frame, mesh, blend=1.0)
        assert image[45, 60].any() and not image[5, 5].any()
        window.show(image)
        shown = np.frombuffer(window.ctx.screen.read(components=3), np.uint8).reshape(90, 120, 3)
        assert (shown[::-1] == image).all()


def test_letterbox_keeps_the_aspect(display):
    image = np.full((50, 200, 3), 255, np.uint8)  # 4:1 in a 4:3 window: black bars above and below
    with LiveWindow(size=(160, 120)) as window:
        window.show(image)
        shown = np.frombuffer(window.ctx.screen.read(components=3), np.uint8).reshape(120, 160, 3)
    assert (shown[60] == 255).all() and not shown[5].any() and not shown[-5].any()


def test_first_image_sets_the_size(display):
    with LiveWindow() as window:
        window.show(np.zeros((100, 140, 3), np.uint8))
        window.show(np.zeros((100, 140, 3), np.uint8))
        assert window._glfw.get_framebuffer_size(window._window) == (140, 100)


def test_keys_and_mouse(display, tmp_path):
    exported = []
    state = ViewState()
    with LiveWindow(size=(64, 48), state=state, on_export=lambda: exported.append(1),
                    screenshot_dir=tmp_path) as window:
        image = np.full((48, 64, 3), 7, np.uint8)
        window.show(image)
        for key in "v+-- mes":
            window.press(key)
        assert window.show(image) == [
            WindowEvent.VIEW, WindowEvent.BLEND, WindowEvent.BLEND, WindowEvent.BLEND, WindowEvent.PAUSE,
            WindowEvent.SHADING, WindowEvent.EXPORT, WindowEvent.SCREENSHOT,
        ]
        assert state.view == "side_by_side" and state.blend == pytest.approx(0.5)
        assert state.paused and state.shading == "normals" and exported == [1]
        (shot,) = tmp_path.glob("screenshot-*.png")
        import cv2

        assert (cv2.imread(str(shot)) == 7).all()

        window._on_mouse_button(None, window._glfw.MOUSE_BUTTON_LEFT, window._glfw.PRESS, 0)
        window.move_cursor(10, 10)
        window.move_cursor(60, 30)
        window._on_mouse_button(None, window._glfw.MOUSE_BUTTON_LEFT, window._glfw.RELEASE, 0)
        window.move_cursor(100, 100)
        window.scroll(2)
        assert state.camera.yaw == pytest.approx(50 * state.camera.DEGREES_PER_PIXEL)
        assert state.camera.pitch == pytest.approx(20 * state.camera.DEGREES_PER_PIXEL)
        assert state.camera.zoom == pytest.approx(state.camera.ZOOM_PER_STEP**2)
        window.press("q")
        assert WindowEvent.QUIT in window.show(image)


def test_view_state_cycles_and_clamps():
    state = ViewState(blend=0.95)
    state.change_blend(+1)
    assert state.blend == 1.0
    views = [state.view]
    for _ in range(3):
        state.cycle_view()
        views.append(state.view)
    assert views == ["overlay", "side_by_side", "mesh3d", "overlay"]


def test_closing_the_window_ends_the_run(display):
    window = LiveWindow(size=(64, 48)).open()
    image = np.zeros((48, 64, 3), np.uint8)
    window.show(image)
    window._glfw.set_window_should_close(window._window, True)  # what the close button does
    assert window.show(image) == [WindowEvent.QUIT]
    assert window.should_close
    window.close()
    window.close()  # idempotent
    assert window.should_close


def test_show_rejects_bad_images(display):
    with LiveWindow(size=(64, 48)) as window, pytest.raises(ValueError, match="uint8"):
        window.show(np.zeros((48, 64, 3), np.float32))


def test_no_display_suggests_headless(monkeypatch):
    monkeypatch.delenv("DISPLAY", raising=False)
    monkeypatch.delenv("WAYLAND_DISPLAY", raising=False)
    if not sys.platform.startswith("linux"):
        pytest.skip("DISPLAY only decides on Linux")
    with pytest.raises(DisplayError, match="--headless"):
        LiveWindow().open()


def test_unreachable_display_suggests_headless(monkeypatch):
    pytest.importorskip("glfw")
    monkeypatch.setenv("DISPLAY", ":4242")  # no X server there
    monkeypatch.delenv("WAYLAND_DISPLAY", raising=False)
    with pytest.raises(DisplayError, match="Failed to open display :4242.*--headless"):
        LiveWindow().open()


def test_missing_glfw_says_how_to_install_it(monkeypatch):
    """glfw is a core dependency (pyproject.toml): the message named a `[window]` extra that does not exist."""
    monkeypatch.setenv("DISPLAY", ":0")
    monkeypatch.setitem(sys.modules, "glfw", None)  # import glfw -> ImportError
    with pytest.raises(DisplayError, match=r"needs glfw.*pip install glfw.*--headless") as info:
        LiveWindow().open()
    assert "[window]" not in str(info.value)


def test_window_run_under_xvfb(display, plane_checkpoint, demo_clip, capsys):
    """With a display and no output asked for, a video run opens the live window and closes it at the end."""
    from realtime_vrn.cli import main

    assert main(["--video", str(demo_clip), "--weights", str(plane_checkpoint), "--max-frames", "3",
                 "--no-progress"]) == 0
    assert "3 frames" in capsys.readouterr().out
