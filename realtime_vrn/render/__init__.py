"""Rendering with moderngl: the mesh over the camera frame, beside it or alone (headless EGL or a window).

``Renderer`` draws and reads back; ``OrbitCamera`` is the 3D view's state; ``LiveWindow`` (in
``realtime_vrn.render.window``, needs the ``window`` extra) shows images and reports key and mouse events.
"""

from .camera import OrbitCamera
from .renderer import VIEWS, Renderer
from .shading import SHADING_MODES, Lighting

__all__ = ["VIEWS", "SHADING_MODES", "Lighting", "OrbitCamera", "Renderer"]
