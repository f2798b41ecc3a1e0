"""Installed models: where they live, what is there, and which file a run uses.

A model is a checkpoint ``<name>.safetensors`` (format: :mod:`realtime_vrn.model.checkpoint`) with an optional
model card ``<name>.json`` beside it (SHA-256 + provenance; loading verifies the file against it). Two places
hold models, searched in this order:

1. the user's models folder, :func:`models_dir` = ``$REALTIME_VRN_HOME/models`` (default: the platform's user
   cache folder for ``realtime-vrn``), where ``realtime-vrn weights convert`` installs converted models;
2. the models shipped inside the package, ``realtime_vrn/weights/models/``.

A user model shadows a shipped one of the same name. The same home folder also holds derived caches (exported
ONNX files, see :func:`onnx_dir`).
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from pathlib import Path

from realtime_vrn.errors import ConfigError, WeightsError
from realtime_vrn.fileio import file_sha256
from realtime_vrn.model.checkpoint import SUFFIX, read_checkpoint_header, read_model_card
from realtime_vrn.model.network import VRNConfig

log = logging.getLogger(__name__)

HOME_ENV = "REALTIME_VRN_HOME"
APP_NAME = "realtime-vrn"
#: The model used when none is named (a small trained VRN shipped with the package).
DEFAULT_MODEL = "vrn-small"
PACKAGE_MODELS_DIR = Path(__file__).resolve().parent / "models"

NO_WEIGHTS_MESSAGE = (
    "no model weights are installed: run `realtime-vrn weights fetch` then `realtime-vrn weights convert FILE` "
    "for the official VRN, or pass a checkpoint with --weights PATH"
)


@dataclass(frozen=True)
class ModelInfo:
    """One installed model. ``sha256`` is the file's actual digest (hex)."""

    name: str
    path: Path
    size_bytes: int
    sha256: str
    source: str
    licence: str
    config: VRNConfig
    description: str = ""


def home_dir() -> Path:
    """``$REALTIME_VRN_HOME`` if set, else the user cache folder of realtime-vrn (not created here)."""
    env = os.environ.get(HOME_ENV)
    if env:
        return Path(env).expanduser()
    from platformdirs import user_cache_dir

    return Path(user_cache_dir(APP_NAME))


def models_dir() -> Path:
    """The user's installed (converted, downloaded) models: ``home_dir()/models``."""
    return home_dir() / "models"


def onnx_dir() -> Path:
    """Cache of exported ONNX files, keyed by checkpoint SHA-256: ``home_dir()/onnx``."""
    return home_dir() / "onnx"


def list_models() -> list[ModelInfo]:
    """Every installed model, user models first, then shipped ones not shadowed by a user model; by name.

    A file that is not a valid checkpoint is skipped with a warning (loading it by name reports why).
    """
    found: dict[str, ModelInfo] = {}
    for folder in _search_dirs():
        for path in sorted(folder.glob(f"*{SUFFIX}")):
            if path.stem in found:
                continue
            try:
                found[path.stem] = _model_info(path)
            except WeightsError as err:
                log.warning("skipping installed model %s: %s", path, err)
    return list(found.values())


def resolve_weights(model: str | None = None, weights: str | os.PathLike | None = None) -> Path:
    """The checkpoint file a run uses.

    weights: an explicit checkpoint path; it must exist and be a realtime-vrn checkpoint.
    model:   an installed model's name, looked up in :func:`models_dir`, then in the package.
    Neither: :data:`DEFAULT_MODEL` if installed, else the first installed model (user models first).
    Raises ConfigError when both are given or the name is malformed, WeightsError when nothing fits.
    """
    if model is not None and weights is not None:
        raise ConfigError("give a model name or a weights file, not both")
    if weights is not None:
        path = Path(weights).expanduser()
        read_checkpoint_header(path)  # raises WeightsError: missing, not a checkpoint, truncated
        return path
    if model is not None:
        return _find_named(model)
    default = _find_installed(DEFAULT_MODEL)
    if default is not None:
        return default
    for folder in _search_dirs():
        for path in sorted(folder.glob(f"*{SUFFIX}")):
            log.info("default model %s is not installed; using %s", DEFAULT_MODEL, path)
            return path
    raise WeightsError(NO_WEIGHTS_MESSAGE)


def _find_named(name: str) -> Path:
    if not name or name != Path(name).name or name.startswith("."):
        raise ConfigError(f"a model name is a plain name like {DEFAULT_MODEL!r}, got {name!r}")
    path = _find_installed(name)
    if path is not None:
        return path
    installed = sorted({p.stem for folder in _search_dirs() for p in folder.glob(f"*{SUFFIX}")})
    if not installed:
        raise WeightsError(f"model {name!r} is not installed; " + NO_WEIGHTS_MESSAGE)
    raise WeightsError(f"model {name!r} is not installed; installed models: {', '.join(installed)}")


def _find_installed(name: str) -> Path | None:
    for folder in _search_dirs():
        path = folder / f"{name}{SUFFIX}"
        if path.is_file():
            return path
    return None


def _search_dirs() -> list[Path]:
    return [d for d in (models_dir(), PACKAGE_MODELS_DIR) if d.is_dir()]


def _model_info(path: Path) -> ModelInfo:
    header = read_checkpoint_header(path)
    card = read_model_card(path)
    sha256 = file_sha256(path)
    if card is not None and card["sha256"].lower() != sha256:
        raise WeightsError(f"{path} does not match the SHA-256 of its model card; install it again")
    return ModelInfo(
        name=path.stem,
        path=path,
        size_bytes=path.stat().st_size,
        sha256=sha256,
        source=header.meta.source,
        licence=header.meta.licence,
        config=header.cfg,
        description=header.meta.description,
    )
