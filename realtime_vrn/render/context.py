"""OpenGL contexts for the renderer: headless (EGL on Linux) or the current one of a window."""

from __future__ import annotations

import importlib
import importlib.util
import logging
import sys

import moderngl

from ..errors import DisplayError

log = logging.getLogger(__name__)

#: GLSL 330 (OpenGL 3.3 core): the shaders' version; Mesa llvmpipe offers 4.5.
GL_REQUIRE = 330
_LINUX_PACKAGES = "libegl1 libegl-mesa0 libgl1-mesa-dri libgl1"
#: Packages that bundle their own LLVM and segfault when they are imported after Mesa's llvmpipe has loaded its
#: libLLVM (an OpenGL context on a machine without a GPU): Triton, which PyPI's CUDA torch wheels (2.14) install
#: and torch.export / the ONNX exporter import. Imported first, both live in one process (measured with torch
#: 2.14.1+cu130: EGL context then torch.export segfaults at ``import triton``; the other order works).
LLVM_PACKAGES = ("triton",)


def import_llvm_packages_first() -> None:
    """Import LLVM_PACKAGES that are installed and not imported yet; call before creating any OpenGL context."""
    for name in LLVM_PACKAGES:
        if name in sys.modules or importlib.util.find_spec(name) is None:
            continue
        try:
            importlib.import_module(name)
        except Exception as err:  # noqa: BLE001 - a broken optional package must not stop rendering
            log.debug("could not import %s before OpenGL: %s", name, err)


def create_offscreen_context() -> moderngl.Context:
    """A standalone context with no window. On Linux through EGL (no X display needed; Mesa llvmpipe on a
    machine without a GPU); elsewhere the platform's default standalone context.
    """
    kwargs = {"backend": "egl"} if sys.platform.startswith("linux") else {}
    import_llvm_packages_first()
    try:
        ctx = moderngl.create_standalone_context(require=GL_REQUIRE, **kwargs)
    except Exception as err:  # moderngl raises bare Exception when no context can be made
        hint = f" (on Debian/Ubuntu: apt-get install {_LINUX_PACKAGES})" if kwargs else ""
        raise DisplayError(f"cannot create an offscreen OpenGL {GL_REQUIRE // 100}.3 context: {err}{hint}") from err
    log.debug("offscreen OpenGL context: %s, %s", ctx.info["GL_RENDERER"], ctx.info["GL_VERSION"])
    return ctx
