"""TensorRT engines: the recipes they are built from and the cache that keeps them.

A **recipe** (``recipes/<name>.json`` beside this module, package data read with ``importlib.resources``;
documented in ``README.md`` here) says how to build an engine from our ONNX export
(:func:`realtime_vrn.model.export.cached_onnx`): batch, precision, builder workspace and optimisation level, and
which output the engine has. The input size and depth come from the checkpoint's configuration.

An **engine** is cached in ``$REALTIME_VRN_HOME/engines`` (default: the user cache folder of realtime-vrn), one
slot per (recipe, ONNX file): ``<recipe>-<onnx sha256[:16]>.engine`` with a sidecar ``.json`` that records the
key it was built for: ONNX SHA-256, TensorRT version, GPU name, precision and I/O shapes, plus the engine
file's own SHA-256. On load:

- same key and checksum -> the cached engine;
- another key (a TensorRT upgrade, another GPU) -> **stale**: a warning, then a rebuild that replaces it;
- an engine without a readable sidecar, or whose checksum differs -> **corrupt**: :class:`EngineError`, whose
  message names the file and the command that rebuilds it. Nothing is deleted behind the user's back.

Building needs TensorRT and a GPU (:mod:`realtime_vrn.backends.tensorrt.backend` passes its builder in); the
recipe and cache logic here needs neither, which is what the CPU tests exercise.

Precision across TensorRT versions: 10.x builds FP16 from the float32 ONNX with ``BuilderFlag.FP16`` (weak
typing). 11.x removed that flag: every network is strongly typed, so FP16 must be in the graph, and the FP16
ONNX export (float16 weights and compute, float32 I/O) is used instead (:func:`needs_fp16_onnx`).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import os
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any, Callable

from realtime_vrn.errors import BackendError, ConfigError
from realtime_vrn.model.checkpoint import file_sha256
from realtime_vrn.model.network import VRNConfig
from realtime_vrn.fileio import write_atomic

log = logging.getLogger(__name__)

PRECISIONS = ("fp16", "fp32")
#: Engines output the low-resolution logits (the backend contract; the surface stage evaluates the x4
#: upsample where needed). A full-volume output would copy 16x the data for nothing, so no recipe may ask it.
OUTPUTS = ("logits",)
DEFAULT_RECIPE = "fp16-b1"
ENGINE_SUFFIX = ".engine"
#: Bump when the sidecar layout changes (older sidecars then read as stale, not corrupt).
CACHE_FORMAT = 1
REBUILD_HINT = "realtime-vrn engine build --force"


class EngineError(BackendError):
    """A TensorRT engine cannot be built or loaded (failed build, corrupt cache file)."""


@dataclass(frozen=True)
class EngineRecipe:
    """How to build one engine. Loaded from JSON; every field is checked (see README.md beside this module)."""

    name: str
    precision: str = "fp16"
    batch: int = 1
    workspace_mib: int = 2048
    optimization_level: int = 3
    output: str = "logits"
    description: str = ""

    def __post_init__(self) -> None:
        if not self.name or not all(c.isalnum() or c in "-_." for c in self.name):
            raise ConfigError(f"recipe name must be letters, digits, '-', '_' or '.', got {self.name!r}")
        if self.precision not in PRECISIONS:
            raise ConfigError(f"recipe {self.name}: precision must be one of {PRECISIONS}, got {self.precision!r}")
        if self.output not in OUTPUTS:
            raise ConfigError(f"recipe {self.name}: output must be one of {OUTPUTS}, got {self.output!r}")
        for field, low, high in (("batch", 1, 64), ("workspace_mib", 64, 1 << 20), ("optimization_level", 0, 5)):
            value = getattr(self, field)
            if not isinstance(value, int) or isinstance(value, bool) or not low <= value <= high:
                raise ConfigError(f"recipe {self.name}: {field} must be an int in [{low}, {high}], got {value!r}")

    @classmethod
    def from_dict(cls, data: dict[str, Any], origin: str = "recipe") -> "EngineRecipe":
        if not isinstance(data, dict):
            raise ConfigError(f"{origin}: expected a JSON object, got {type(data).__name__}")
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ConfigError(f"{origin}: unknown recipe keys {unknown}; expected some of {sorted(known)}")
        if "name" not in data:
            raise ConfigError(f"{origin}: a recipe needs a name")
        return cls(**data)

    def input_shape(self, cfg: VRNConfig) -> tuple[int, int, int, int]:
        """(batch, C, S, S): the engine's float32 input ``crop``."""
        return (self.batch, cfg.in_channels, cfg.input_size, cfg.input_size)

    def output_shape(self, cfg: VRNConfig) -> tuple[int, int, int, int]:
        """(batch, D, g, g), g = cfg.grid_size: the engine's float32 output ``logits``."""
        return (self.batch, cfg.depth_bins, cfg.grid_size, cfg.grid_size)


def recipes_dir() -> Path:
    """The shipped recipes: package data beside this module (a folder on disk; wheels install unzipped)."""
    return Path(str(resources.files(__package__).joinpath("recipes")))


def list_recipes() -> dict[str, EngineRecipe]:
    """The shipped recipes by name."""
    recipes = {}
    for path in sorted(recipes_dir().glob("*.json")):
        recipe = read_recipe(path)
        recipes[recipe.name] = recipe
    return recipes


def read_recipe(path: str | os.PathLike) -> EngineRecipe:
    """A recipe from a JSON file; ConfigError for a missing, malformed or invalid file."""
    path = Path(path)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError(f"engine recipe {path} does not exist") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise ConfigError(f"engine recipe {path} is not valid JSON: {err}") from err
    recipe = EngineRecipe.from_dict(data, origin=str(path))
    if path.parent == recipes_dir() and recipe.name != path.stem:
        raise ConfigError(f"shipped recipe {path.name} is named {recipe.name!r}; the file must be {recipe.name}.json")
    return recipe


def load_recipe(name_or_path: str | os.PathLike = DEFAULT_RECIPE) -> EngineRecipe:
    """A shipped recipe by name, or a recipe file by path; ConfigError naming the shipped ones otherwise."""
    text = str(name_or_path)
    if text.endswith(".json") or os.sep in text:
        return read_recipe(text)
    recipes = list_recipes()
    if text not in recipes:
        raise ConfigError(f"unknown engine recipe {text!r}; choose one of: {', '.join(sorted(recipes))} "
                          "(or give the path of a recipe .json file)")
    return recipes[text]


def needs_fp16_onnx(tensorrt_module: Any, recipe: EngineRecipe) -> bool:
    """Whether the engine must be built from the FP16 ONNX export: an FP16 recipe on a TensorRT without
    ``BuilderFlag.FP16`` (11.x: strongly typed networks only)."""
    return recipe.precision == "fp16" and not hasattr(tensorrt_module.BuilderFlag, "FP16")


@dataclass(frozen=True)
class EngineKey:
    """Everything an engine depends on: a cached engine is reused only for an identical key."""

    onnx_sha256: str
    tensorrt_version: str
    gpu_name: str
    precision: str
    input_shape: tuple[int, ...]
    output_shape: tuple[int, ...]

    def as_dict(self) -> dict[str, Any]:
        data = dataclasses.asdict(self)
        data["input_shape"], data["output_shape"] = list(self.input_shape), list(self.output_shape)
        return data

    def digest(self) -> str:
        """SHA-256 (hex) of the key's canonical JSON."""
        return hashlib.sha256(json.dumps(self.as_dict(), sort_keys=True).encode()).hexdigest()


def engine_key(onnx_path: str | os.PathLike, recipe: EngineRecipe, cfg: VRNConfig, tensorrt_version: str,
               gpu_name: str) -> EngineKey:
    return EngineKey(
        onnx_sha256=_file_sha256(Path(onnx_path)),
        tensorrt_version=str(tensorrt_version),
        gpu_name=str(gpu_name),
        precision=recipe.precision,
        input_shape=recipe.input_shape(cfg),
        output_shape=recipe.output_shape(cfg),
    )


def engines_dir() -> Path:
    """``$REALTIME_VRN_HOME/engines`` (default: the user cache folder of realtime-vrn); not created here."""
    from realtime_vrn.weights.registry import home_dir

    return home_dir() / "engines"


def engine_path(recipe: EngineRecipe, key: EngineKey) -> Path:
    """The cache slot of (recipe, ONNX file); the sidecar is the same path with ``.json``."""
    return engines_dir() / f"{recipe.name}-{key.onnx_sha256[:16]}{ENGINE_SUFFIX}"


#: build(onnx_path, recipe) -> serialized engine bytes
Builder = Callable[[Path, EngineRecipe], bytes]


def load_or_build(onnx_path: str | os.PathLike, recipe: EngineRecipe, cfg: VRNConfig, *, tensorrt_version: str,
                  gpu_name: str, build: Builder, force: bool = False) -> tuple[bytes, Path]:
    """The serialized engine for this ONNX file, recipe and machine, from the cache or built (and cached).

    Returns (engine bytes, cache path). Raises EngineError for a corrupt cache entry (unless ``force``, which
    rebuilds whatever is there) or a failed build.
    """
    onnx_path = Path(onnx_path)
    key = engine_key(onnx_path, recipe, cfg, tensorrt_version, gpu_name)
    path = engine_path(recipe, key)
    if path.is_file() and not force:
        cached = _read_cached(path, key)
        if cached is not None:
            log.info("TensorRT engine from cache: %s", path)
            return cached, path
    log.info("building TensorRT engine %s from %s (once per model, TensorRT version and GPU; takes minutes)",
             path.name, onnx_path.name)
    data = bytes(build(onnx_path, recipe))
    if not data:
        raise EngineError(f"TensorRT returned an empty engine for {onnx_path} with recipe {recipe.name}")
    _write_cached(path, data, key, recipe)
    return data, path


def _read_cached(path: Path, key: EngineKey) -> bytes | None:
    """The cached engine if its key matches; None (after a warning) if stale; EngineError if corrupt."""
    sidecar = path.with_suffix(".json")
    corrupt = f"the cached TensorRT engine {path} is corrupt"
    remedy = f"delete it (and {sidecar.name}) or run `{REBUILD_HINT}`"
    try:
        meta = json.loads(sidecar.read_text(encoding="utf-8"))
        stored_key, stored_sha = meta["key"], meta["engine_sha256"]
        stored_format = meta["format"]
    except FileNotFoundError:
        raise EngineError(f"{corrupt}: its record {sidecar.name} is missing; {remedy}") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError, KeyError, TypeError) as err:
        raise EngineError(f"{corrupt}: its record {sidecar.name} is unreadable ({err}); {remedy}") from err
    if stored_format != CACHE_FORMAT or stored_key != key.as_dict():
        changed = sorted(k for k, v in key.as_dict().items() if not isinstance(stored_key, dict)
                         or stored_key.get(k) != v) or ["cache format"]
        log.warning("cached TensorRT engine %s is stale (%s changed); rebuilding it", path.name, ", ".join(changed))
        return None
    data = path.read_bytes()
    if hashlib.sha256(data).hexdigest() != stored_sha:
        raise EngineError(f"{corrupt}: its checksum does not match the one recorded when it was built; {remedy}")
    return data


def _write_cached(path: Path, data: bytes, key: EngineKey, recipe: EngineRecipe) -> None:
    """Engine first, then its sidecar, each renamed into place (a reader never sees half a file)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    meta = {
        "format": CACHE_FORMAT,
        "key": key.as_dict(),
        "key_digest": key.digest(),
        "engine_sha256": hashlib.sha256(data).hexdigest(),
        "recipe": dataclasses.asdict(recipe),
    }
    write_atomic(path, data)
    write_atomic(path.with_suffix(".json"), (json.dumps(meta, indent=2, sort_keys=True) + "\n").encode())


def _file_sha256(path: Path) -> str:
    if not path.is_file():
        raise EngineError(f"ONNX file {path} does not exist")
    return file_sha256(path)
