"""The live window (glfw): shows rendered images, turns keys and the mouse into view changes and events.

The pipeline owns the loop and pushes each rendered image with ``show(image) -> events``; the window keeps
the interactive ``ViewState`` (view, overlay blend, look, pause, orbit camera) that the next render reads.

Keys: v = cycle view, + / - = overlay blend, m = cycle look (colour, normals, clay), e = export the mesh
(calls ``on_export``), s = screenshot (PNG of the shown image), space = pause, r = reset the orbit, q / Esc =
quit. Mouse: left drag = orbit, wheel = zoom (3D views). Closing the window reports ``WindowEvent.QUIT``.

glfw is an optional dependency (the ``window`` extra); it is imported by ``LiveWindow.open``.
"""

from __future__ import annotations

import enum
import logging
import os
import re
import sys
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import cv2
import moderngl
import numpy as np

from ..contracts import check_image
from ..errors import DisplayError, OutputError
from .camera import OrbitCamera
from .context import GL_REQUIRE
from .renderer import VIEWS, load_shader
from .shading import SHADING_MODES

log = logging.getLogger(__name__)

HEADLESS_HINT = "run with --headless to render without a window"


class WindowEvent(enum.Enum):
    QUIT = "quit"
    EXPORT = "export"
    SCREENSHOT = "screenshot"
    PAUSE = "pause"  # pause toggled: see ViewState.paused
    VIEW = "view"
    BLEND = "blend"
    SHADING = "shading"
    CAMERA = "camera"  # orbit, zoom or reset


@dataclass
class ViewState:
    """What the user chose in the window; the pipeline passes it to ``Renderer.render``.

    While ``paused`` the pipeline stops reading frames but keeps re-rendering the last frame and mesh (so the
    orbit still turns) and calling ``show``.
    """

    view: str = "overlay"
    blend: float = 0.6
    shading: str = "color"
    paused: bool = False
    camera: OrbitCamera = field(default_factory=OrbitCamera)

    BLEND_STEP = 0.1  # ten key presses from transparent to opaque

    def cycle_view(self) -> None:
        self.view = VIEWS[(VIEWS.index(self.view) + 1) % len(VIEWS)]

    def cycle_shading(self) -> None:
        modes = list(SHADING_MODES)
        self.shading = modes[(modes.index(self.shading) + 1) % len(modes)]

    def change_blend(self, steps: int) -> None:
        self.blend = round(min(1.0, max(0.0, self.blend + steps * self.BLEND_STEP)), 6)


class LiveWindow:
    """A resizable window showing (H, W, 3) uint8 RGB images, letterboxed.

    title: window title. size: initial (width, height) in screen pixels, or None to take the first image's
    size. state: the ViewState the keys change (a new one by default). on_export: called when "e" is pressed.
    screenshot_dir: where "s" writes PNG files.
    Construction is cheap; ``open()`` creates the window (``DisplayError`` without a display). ``close()`` is
    idempotent. The window's OpenGL context (``ctx``, 4.x core where the driver has it) can be given to
    ``Renderer(ctx=...)`` so that rendering and display share one context.
    """

    def __init__(
        self,
        title: str = "realtime-vrn",
        size: tuple[int, int] | None = None,
        *,
        state: ViewState | None = None,
        on_export: Callable[[], None] | None = None,
        screenshot_dir: str | Path = ".",
    ) -> None:
        self.title = title
        self.state = state or ViewState()
        self.on_export = on_export
        self.screenshot_dir = Path(screenshot_dir)
        self._size = size
        self._fit_first_image = size is None
        self._glfw = None
        self._window = None
        self._ctx: moderngl.Context | None = None
        self._events: list[WindowEvent] = []
        self._dragging = False
        self._cursor: tuple[float, float] | None = None
        self._last_image: np.ndarray | None = None
        self._quit_reported = False

    # -- lifetime -------------------------------------------------------------------------------------------
    def open(self) -> "LiveWindow":
        if self._window is not None:
            return self
        has_display = os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY")
        if sys.platform.startswith("linux") and not has_display:
            raise DisplayError(
                f"no display for the live window (DISPLAY and WAYLAND_DISPLAY are unset): {HEADLESS_HINT}"
            )
        from .context import import_llvm_packages_first

        import_llvm_packages_first()  # before the driver loads Mesa's LLVM (see LLVM_PACKAGES)
        try:
            import glfw
        except ImportError as err:
            raise DisplayError(
                f"the live window needs glfw, a dependency of realtime-vrn that is missing from this environment "
                f"(pip install glfw, or reinstall realtime-vrn), or {HEADLESS_HINT}"
            ) from err
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            if not glfw.init():
                raise DisplayError(f"cannot open a window ({_glfw_messages(caught)}): {HEADLESS_HINT}")
            major, minor = divmod(GL_REQUIRE // 10, 10)
            for hint, value in (
                (glfw.CONTEXT_VERSION_MAJOR, major),
                (glfw.CONTEXT_VERSION_MINOR, minor),
                (glfw.OPENGL_PROFILE, glfw.OPENGL_CORE_PROFILE),
                (glfw.OPENGL_FORWARD_COMPAT, True),  # required on macOS for a core profile
            ):
                glfw.window_hint(hint, value)
            width, height = self._size or (960, 540)
            window = glfw.create_window(width, height, self.title, None, None)
            if not window:
                glfw.terminate()
                raise DisplayError(
                    f"cannot create an OpenGL {major}.{minor} window ({_glfw_messages(caught)}): {HEADLESS_HINT}"
                )
        self._glfw, self._window = glfw, window
        glfw.make_context_current(window)
        glfw.swap_interval(0)  # never block the pipeline on the monitor's refresh
        # Under Wayland glfw makes an EGL context; under X11, Windows and macOS moderngl's default loader fits.
        wayland = hasattr(glfw, "get_platform") and glfw.get_platform() == getattr(glfw, "PLATFORM_WAYLAND", None)
        self._ctx = moderngl.create_context(require=GL_REQUIRE, **({"backend": "egl"} if wayland else {}))
        self._program = self._ctx.program(
            vertex_shader=load_shader("display.vert"), fragment_shader=load_shader("display.frag")
        )
        self._vao = self._ctx.vertex_array(self._program, [])
        self._texture: moderngl.Texture | None = None
        glfw.set_char_callback(window, lambda _w, codepoint: self.press(chr(codepoint)))
        glfw.set_key_callback(window, self._on_key)
        glfw.set_mouse_button_callback(window, self._on_mouse_button)
        glfw.set_cursor_pos_callback(window, lambda _w, x, y: self.move_cursor(x, y))
        glfw.set_scroll_callback(window, lambda _w, _dx, dy: self.scroll(dy))
        log.debug("window: OpenGL %s on %s", self._ctx.version_code, self._ctx.info["GL_RENDERER"])
        return self

    def close(self) -> None:
        if self._window is None:
            return
        glfw, self._glfw = self._glfw, None
        if self._texture is not None:
            self._texture.release()
        for obj in (self._vao, self._program):
            obj.release()
        self._ctx.release()
        self._ctx = None
        glfw.destroy_window(self._window)
        self._window = None
        glfw.terminate()

    def __enter__(self) -> "LiveWindow":
        return self.open()

    def __exit__(self, *exc) -> None:
        self.close()

    @property
    def ctx(self) -> moderngl.Context:
        """The window's OpenGL context (the window must be open)."""
        if self._ctx is None:
            raise RuntimeError("the window is not open")
        return self._ctx

    @property
    def should_close(self) -> bool:
        return self._window is None or bool(self._glfw.window_should_close(self._window))

    # -- per frame ------------------------------------------------------------------------------------------
    def show(self, image: np.ndarray, wait_s: float = 0.0) -> list[WindowEvent]:
        """Display ``image`` ((H, W, 3) uint8 RGB, row 0 = top) and return the events since the last call.

        wait_s: how long to wait for input when there is none (0 = never block; while paused, ~1/30 s keeps
        the window responsive without spinning a core). ``WindowEvent.QUIT`` is reported once the user closes
        the window or presses q / Esc; the caller then ends its loop and calls ``close()``.
        """
        check_image(image)
        if self._window is None:
            raise RuntimeError("the window is not open")
        glfw = self._glfw
        glfw.make_context_current(self._window)
        if self._fit_first_image:
            self._fit_first_image = False
            glfw.set_window_size(self._window, image.shape[1], image.shape[0])
        self._draw(image)
        glfw.swap_buffers(self._window)
        self._last_image = image
        if wait_s > 0:
            glfw.wait_events_timeout(wait_s)
        else:
            glfw.poll_events()
        if glfw.window_should_close(self._window) and not self._quit_reported:
            self._events.append(WindowEvent.QUIT)
        if WindowEvent.QUIT in self._events:
            self._quit_reported = True
        events, self._events = self._events, []
        return events

    def _draw(self, image: np.ndarray) -> None:
        ctx = self._ctx
        h, w = image.shape[:2]
        if self._texture is None or self._texture.size != (w, h):
            if self._texture is not None:
                self._texture.release()
            self._texture = ctx.texture((w, h), 3)
            self._texture.filter = moderngl.LINEAR, moderngl.LINEAR
        self._texture.write(np.ascontiguousarray(image), alignment=1)
        fb_w, fb_h = self._glfw.get_framebuffer_size(self._window)
        ctx.screen.use()
        ctx.viewport = (0, 0, fb_w, fb_h)
        ctx.clear(0.0, 0.0, 0.0)
        viewport = _letterbox(w, h, fb_w, fb_h)
        if viewport[2] > 0 and viewport[3] > 0:
            ctx.viewport = viewport
            self._texture.use(0)
            self._program["u_image"].value = 0
            self._program["u_viewport"].value = tuple(float(v) for v in viewport)
            self._vao.render(moderngl.TRIANGLES, vertices=3)

    # -- input (called by the glfw callbacks; public so that tests and other front ends can drive them) ----
    def press(self, key: str) -> None:
        """Handle one typed character (layout-aware: "+" is whatever key types "+")."""
        s = self.state
        if key in ("q", "Q"):
            self._events.append(WindowEvent.QUIT)
        elif key == "v":
            s.cycle_view()
            self._events.append(WindowEvent.VIEW)
        elif key in ("+", "="):
            s.change_blend(+1)
            self._events.append(WindowEvent.BLEND)
        elif key in ("-", "_"):
            s.change_blend(-1)
            self._events.append(WindowEvent.BLEND)
        elif key == "m":
            s.cycle_shading()
            self._events.append(WindowEvent.SHADING)
        elif key == " ":
            s.paused = not s.paused
            self._events.append(WindowEvent.PAUSE)
        elif key == "r":
            s.camera.reset()
            self._events.append(WindowEvent.CAMERA)
        elif key == "e":
            if self.on_export is not None:
                self.on_export()
            self._events.append(WindowEvent.EXPORT)
        elif key == "s":
            self.save_screenshot()
            self._events.append(WindowEvent.SCREENSHOT)

    def move_cursor(self, x: float, y: float) -> None:
        if self._dragging and self._cursor is not None:
            self.state.camera.drag(x - self._cursor[0], y - self._cursor[1])
            self._events.append(WindowEvent.CAMERA)
        self._cursor = (x, y)

    def scroll(self, steps: float) -> None:
        self.state.camera.scroll(steps)
        self._events.append(WindowEvent.CAMERA)

    def save_screenshot(self) -> Path | None:
        """Write the image shown last as ``screenshot-<time>.png`` in ``screenshot_dir``; returns the path."""
        if self._last_image is None:
            return None
        self.screenshot_dir.mkdir(parents=True, exist_ok=True)
        path = self.screenshot_dir / time.strftime("screenshot-%Y%m%d-%H%M%S.png")
        stem, n = path.stem, 1
        while path.exists():
            path = path.with_name(f"{stem}-{n}.png")
            n += 1
        if not cv2.imwrite(str(path), cv2.cvtColor(self._last_image, cv2.COLOR_RGB2BGR)):
            raise OutputError(f"cannot write the screenshot {path}")
        log.info("screenshot: %s", path)
        return path

    def _on_key(self, _window, key: int, _scancode: int, action: int, _mods: int) -> None:
        if key == self._glfw.KEY_ESCAPE and action == self._glfw.PRESS:
            self._events.append(WindowEvent.QUIT)

    def _on_mouse_button(self, _window, button: int, action: int, _mods: int) -> None:
        if button == self._glfw.MOUSE_BUTTON_LEFT:
            self._dragging = action == self._glfw.PRESS


def _letterbox(w: int, h: int, fb_w: int, fb_h: int) -> tuple[int, int, int, int]:
    """The largest (x, y, width, height) rectangle of aspect w:h centred in an fb_w x fb_h framebuffer."""
    scale = min(fb_w / w, fb_h / h)
    vw, vh = round(w * scale), round(h * scale)
    return (fb_w - vw) // 2, (fb_h - vh) // 2, vw, vh


def _glfw_messages(caught: list[warnings.WarningMessage]) -> str:
    """glfw's error warnings ("(65544) b'X11: Failed to open display :1'") as plain text."""
    texts = [re.sub(r"^\(\d+\) b?(['\"])(.*)\1$", r"\2", str(w.message).strip()) for w in caught]
    return "; ".join(texts) or "glfw gave no reason"
