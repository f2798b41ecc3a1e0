"""One typed configuration for a run, with every default in one place.

Precedence: command line > environment (``REALTIME_VRN_<FIELD>``, e.g. ``REALTIME_VRN_BACKEND=onnxruntime``) >
configuration file (TOML, ``--config FILE``, keys = field names) > the defaults below.
"""

from __future__ import annotations

import dataclasses
import os
import re
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping

from realtime_vrn.errors import ConfigError
from realtime_vrn.surface.fusion import DEFAULT_WEIGHT as FUSION_WEIGHT

ENV_PREFIX = "REALTIME_VRN_"
# The choices of the options, declared once: the command lines (argparse ``choices=`` / ``type=``) and
# RunConfig.validate (values from a file or the environment) both use these.
#: The views, in the order the window's "v" key cycles them.
VIEWS = ("overlay", "side_by_side", "mesh3d")
MESH_FORMATS = ("obj", "ply")
#: The renderer's rasterizers (realtime_vrn.render.renderer.Renderer): auto (compute when OpenGL 4.3 has it), the
#: compute-shader one or the classic pipeline.
RASTERIZERS = ("auto", "compute", "pipeline")
#: The CPU marching-cubes implementations, fastest first (realtime_vrn.surface.extractors.EXTRACTORS: one factory
#: per name, in this order).
SURFACE_EXTRACTORS = ("numba", "skimage")
#: --surface: auto (the GPU kernel when the network's logits are on the GPU, else the fastest CPU extractor), cpu
#: (the fastest CPU extractor), cuda, or a CPU extractor by name.
SURFACE_KINDS = ("auto", "cpu", "cuda", *SURFACE_EXTRACTORS)
SOURCE_FIELDS = ("camera", "video", "image")
FACE_CHOICES = ("all", "largest")
#: --output kinds: a video file (the containers VideoFileSink has a codec for), an image file (numbered beside
#: it) or, without a suffix, a folder of PNGs. Anything else is refused before any model loads.
OUTPUT_VIDEO_SUFFIXES = (".mp4", ".m4v", ".mov", ".avi")
OUTPUT_IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg")
#: --device: auto, cpu, cuda or cuda:N.
DEVICE_PATTERN = r"auto|cpu|cuda(:\d+)?"
#: --backend: this or a name registered in realtime_vrn.backends.registry (the registry is the list of backends).
AUTO_BACKEND = "auto"


@dataclass
class RunConfig:
    """Everything a reconstruction run needs. Paths are ``Path``; None means "not asked for"."""

    # input: exactly one of camera / video / image; none = the bundled demo clip
    camera: int | None = None
    video: Path | None = None
    image: Path | None = None
    # outputs
    output: Path | None = None  # video file (.mp4/.avi) or image folder / image file
    export: Path | None = None  # folder for meshes
    export_every: int = 1  # export the mesh of every N-th frame with a face
    overwrite: bool = False  # allow --export into a folder that already holds files
    mesh_format: str = "obj"
    y_up: bool = False  # export with y up (MeshLab / Blender); default: frame pixels, y down
    virtual_camera: bool = False
    headless: bool = False
    render: bool = False  # render even when nothing shows or records the picture (benchmarks)
    view: str = "overlay"
    faces: str | None = None  # "all" or "largest"; None: all for photos, largest for video and cameras
    blend: float = 0.7  # overlay opacity of the mesh over the frame
    # model and inference
    model: str | None = None  # installed model name (see `realtime-vrn weights list`)
    weights: Path | None = None  # explicit checkpoint path (ours or converted)
    backend: str = "auto"
    device: str = "auto"
    surface: str = "auto"  # marching cubes: one of SURFACE_KINDS
    # MediaPipe's share of the surface's depth (realtime_vrn/surface/fusion.py; 0 = the network's surface alone);
    # 0.5, the plain average of two estimates, is what the real-face benchmark measures (docs/model-card.md)
    mediapipe_weight: float = FUSION_WEIGHT
    # behaviour
    max_frames: int | None = None
    loop: bool = False  # replay a video file or image folder until max_frames (soak tests)
    realtime: bool = False  # video files: drop frames when processing is slower than the file's fps
    smoothing: bool = True  # One Euro filter on the landmarks
    landmarks: Path | None = None  # replay landmarks recorded with record_landmarks instead of running MediaPipe
    record_landmarks: Path | None = None  # write the tracker's landmarks of every frame to this .npz
    # landmarks + crop of frame N+1 on a worker thread while frame N is reconstructed. None = auto: on when the
    # network runs on a GPU; off on the CPU, where the network already uses every core (measured 1.02x FPS on
    # 2 cores, for a longer capture-to-output latency: docs/benchmarks.md)
    pipelined: bool | None = None
    benchmark: Path | None = None  # write benchmark JSON here
    progress: bool = True

    def validate(self) -> "RunConfig":
        sources = [n for n in ("camera", "video", "image") if getattr(self, n) is not None]
        if len(sources) > 1:
            raise ConfigError(f"give one input, got {', '.join('--' + s for s in sources)}")
        if self.faces is not None and self.faces not in FACE_CHOICES:
            raise ConfigError(f"unknown --faces {self.faces!r}; choose one of: {', '.join(FACE_CHOICES)}")
        if self.faces == "all" and self.image is None:
            for flag, path in (("--record-landmarks", self.record_landmarks), ("--landmarks", self.landmarks)):
                if path is not None:  # one face per frame in the file: a replay could not be the run recorded
                    raise ConfigError(f"{flag}: a landmark recording holds one face per frame, so it cannot go "
                                      f"with --faces all on a video or camera; use --faces largest, or leave "
                                      f"{flag} out")
        if self.view not in VIEWS:
            raise ConfigError(f"unknown view {self.view!r}; choose one of: {', '.join(VIEWS)}")
        if self.surface not in SURFACE_KINDS:
            raise ConfigError(f"unknown surface stage {self.surface!r}; choose one of: {', '.join(SURFACE_KINDS)}")
        if self.mesh_format not in MESH_FORMATS:
            raise ConfigError(f"unknown mesh format {self.mesh_format!r}; choose one of: {', '.join(MESH_FORMATS)}")
        if not 0.0 <= self.mediapipe_weight <= 1.0:
            raise ConfigError(f"--mediapipe-weight must be in [0, 1], got {self.mediapipe_weight}")
        if not 0.0 <= self.blend <= 1.0:
            raise ConfigError(f"--blend must be in [0, 1], got {self.blend}")
        if self.export_every < 1:
            raise ConfigError(f"--export-every must be >= 1, got {self.export_every}")
        if self.max_frames is not None and self.max_frames < 1:
            raise ConfigError(f"--max-frames must be >= 1, got {self.max_frames}")
        if self.landmarks is not None and self.camera is not None:
            raise ConfigError("--landmarks replays a recording of a video file; a camera gives new frames. "
                              "Use it with --video (the clip it was recorded from)")
        if self.landmarks is not None and self.record_landmarks is not None:
            raise ConfigError("--landmarks and --record-landmarks together would copy the recording; give one")
        for flag, path in (("--record-landmarks", self.record_landmarks), ("--benchmark", self.benchmark)):
            if path is not None:  # written when the run ends: a folder we cannot write to must fail now
                check_writable_folder(flag, Path(path).parent)
        check_device(self.device)
        check_backend(self.backend)
        if self.output is not None:
            try:
                output_kind(Path(self.output))
            except ConfigError as err:
                raise ConfigError(f"--output {self.output}: {err}") from err
        if self.camera is not None and self.camera < 0:
            raise ConfigError(f"--camera must be a camera index >= 0, got {self.camera}")
        return self

    def all_faces(self, still: bool) -> bool:
        """Whether every face of a picture is reconstructed (``faces``; by default for still images only)."""
        return self.faces == "all" or (self.faces is None and still)

    @property
    def is_demo(self) -> bool:
        return self.camera is None and self.video is None and self.image is None


def output_kind(path: Path) -> str:
    """"video", "image" or "folder" for an ``--output`` path; ConfigError (listing the kinds) for another suffix."""
    suffix = path.suffix.lower()
    if suffix in OUTPUT_VIDEO_SUFFIXES:
        return "video"
    if suffix in OUTPUT_IMAGE_SUFFIXES:
        return "image"
    if not suffix or path.is_dir():
        return "folder"
    raise ConfigError(f"unknown output type {suffix!r}; use a video file ({', '.join(OUTPUT_VIDEO_SUFFIXES)}), an "
                      f"image file ({', '.join(OUTPUT_IMAGE_SUFFIXES)}) or a folder (no suffix)")


def check_device(device: str) -> str:
    """``device`` if it is auto, cpu, cuda or cuda:N, else ConfigError."""
    if not re.fullmatch(DEVICE_PATTERN, device):
        raise ConfigError(f"unknown device {device!r}; choose auto, cpu, cuda or cuda:N")
    return device


def check_backend(name: str) -> str:
    """``name`` if it is auto or a registered inference backend, else ConfigError listing them. The registry is
    read only for a name other than auto (it imports the backend modules, not their runtimes)."""
    if name == AUTO_BACKEND:
        return name
    from realtime_vrn.backends.registry import backend_names

    valid = backend_names()
    if name not in valid:
        raise ConfigError(f"unknown backend {name!r}; choose one of: {AUTO_BACKEND}, {', '.join(valid)}")
    return name


def check_backend_list(text: str) -> str:
    """``bench --backends``: empty, "all" or a comma separated list of registered backends, else ConfigError."""
    if text in ("", "all"):
        return text
    from realtime_vrn.backends.registry import backend_names

    valid = backend_names()
    unknown = [b.strip() for b in text.split(",") if b.strip() and b.strip() not in valid]
    if unknown:
        raise ConfigError(f"unknown backend {', '.join(map(repr, unknown))} in --backends; give all or some of: "
                          f"{', '.join(valid)}")
    return text


def check_writable_folder(flag: str, folder: Path) -> None:
    """ConfigError unless a file can be created in ``folder``, or, for a folder still to be made (the writer
    creates it), in its nearest existing parent (tried for real: permissions, read-only mounts and special file
    systems all answer the same way)."""
    import tempfile

    folder = Path(folder).absolute()
    while not folder.exists() and folder != folder.parent:
        folder = folder.parent
    if not folder.is_dir():
        raise ConfigError(f"{flag}: {folder} is not a folder")
    try:
        with tempfile.NamedTemporaryFile(dir=folder, prefix=".realtime-vrn-write-test-"):
            pass
    except OSError as err:
        raise ConfigError(f"{flag}: cannot write into folder {folder} ({err.strerror or err})") from err


#: The TOML value types each kind of field accepts (bool is not an int here, and 2.7 is not an int).
_TOML_TYPES = {"bool": (bool,), "int": (int,), "float": (int, float), "Path": (str,), "str": (str,)}


def _field_kind(name: str) -> str:
    kind = str({f.name: f for f in dataclasses.fields(RunConfig)}[name].type)
    return next(k for k in ("bool", "Path", "int", "float", "str") if k in kind)


def _check_file_value(name: str, raw: Any, source: Path) -> Any:
    """A value from a TOML file must already have its field's type: no silent conversion (2.7 -> 2)."""
    kind = _field_kind(name)
    if isinstance(raw, _TOML_TYPES[kind]) and not (kind != "bool" and isinstance(raw, bool)):
        return _coerce(name, raw)
    expected = {"bool": "true or false", "int": "a whole number", "float": "a number", "Path": "a path string",
                "str": "a string"}[kind]
    raise ConfigError(f"{source}: {name} must be {expected}, got {raw!r}")


def _coerce(name: str, raw: Any) -> Any:
    """Convert a value from the environment or a file to the field's type."""
    kind = _field_kind(name)
    try:
        if raw is None:
            return None
        if "bool" in kind:
            if isinstance(raw, bool):
                return raw
            if str(raw).lower() in ("1", "true", "yes", "on"):
                return True
            if str(raw).lower() in ("0", "false", "no", "off"):
                return False
            raise ValueError(raw)
        if "Path" in kind:
            return Path(raw).expanduser()
        if "int" in kind:
            return int(raw)
        if "float" in kind:
            return float(raw)
        return str(raw)
    except (TypeError, ValueError) as err:
        raise ConfigError(f"bad value for {name}: {raw!r} ({kind} expected)") from err


def load_config(cli: Mapping[str, Any], config_file: Path | None = None,
                environ: Mapping[str, str] | None = None) -> RunConfig:
    """Merge defaults < file < environment < command line into a validated RunConfig.

    ``cli`` holds only the options the user actually gave (None values are ignored).
    """
    names = {f.name for f in dataclasses.fields(RunConfig)} - {"extra"}
    values: dict[str, Any] = {}
    if config_file is not None:
        try:
            data = tomllib.loads(Path(config_file).read_text())
        except FileNotFoundError as err:
            raise ConfigError(f"configuration file not found: {config_file}") from err
        except OSError as err:  # a folder, no permission, an I/O error
            raise ConfigError(f"cannot read configuration file {config_file}: {err.strerror or err}") from err
        except (tomllib.TOMLDecodeError, UnicodeDecodeError) as err:
            raise ConfigError(f"configuration file {config_file} is not valid TOML: {err}") from err
        unknown = sorted(set(data) - names)
        if unknown:
            raise ConfigError(f"unknown keys in {config_file}: {', '.join(unknown)}; valid: {', '.join(sorted(names))}")
        values.update({k: _check_file_value(k, v, Path(config_file)) for k, v in data.items()})
    env = os.environ if environ is None else environ
    for name in names:
        raw = env.get(ENV_PREFIX + name.upper())
        if raw is not None and raw != "":
            values[name] = _coerce(name, raw)
    given = {k: v for k, v in cli.items() if v is not None and k in names}
    if any(k in given for k in SOURCE_FIELDS):  # an input on the command line replaces any other input
        for k in SOURCE_FIELDS:
            values.pop(k, None)
    values.update(given)
    return RunConfig(**values).validate()
