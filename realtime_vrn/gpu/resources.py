"""Where the files shipped beside the Python code live: CUDA kernels and TensorRT engine recipes.

The sources sit in top-level folders of the repository (``kernels/``, ``engines/recipes/``) and the wheel maps
them into the package (``realtime_vrn/kernels/``, ``realtime_vrn/engine_recipes/``; see pyproject.toml). This
module finds them in either layout: an installed wheel first, then a source checkout (or an editable install,
which imports the package from the checkout).
"""

from __future__ import annotations

from pathlib import Path

PACKAGE_DIR = Path(__file__).resolve().parent.parent
CHECKOUT_DIR = PACKAGE_DIR.parent

#: name -> (folder inside the installed package, folder in a source checkout)
_LAYOUTS = {
    "kernels": (PACKAGE_DIR / "kernels", CHECKOUT_DIR / "kernels"),
}


def shipped_dir(kind: str) -> Path:
    """The folder holding the shipped files of ``kind`` ("kernels" or "engine_recipes")."""
    try:
        candidates = _LAYOUTS[kind]
    except KeyError:
        raise ValueError(f"unknown kind of shipped file {kind!r}; choose one of {sorted(_LAYOUTS)}") from None
    for folder in candidates:
        if folder.is_dir():
            return folder
    raise FileNotFoundError(
        f"no {kind} folder found (looked in {', '.join(str(c) for c in candidates)}): "
        "the installation is incomplete; reinstall realtime-vrn"
    )


def shipped_file(kind: str, name: str) -> Path:
    """The path of the shipped file ``name`` of ``kind``; FileNotFoundError naming where it was looked for."""
    path = shipped_dir(kind) / name
    if not path.is_file():
        raise FileNotFoundError(f"{name} is missing from {path.parent}: reinstall realtime-vrn")
    return path
