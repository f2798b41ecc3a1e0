"""What a batch reads: folders, globs and list files expanded into videos and images, each with its output folder.

Output folders mirror the inputs the way ``cp -r`` would: a folder keeps its own name and its inner paths
(``faces/`` -> ``OUT/faces/videos/clip/``), the files of a glob are placed relative to the glob's fixed leading
folder (``clips/**/*.mp4`` -> ``OUT/a/clip/``), a single file lands at ``OUT/<stem>/``, and the entries of a list
file relative to the folder they all share. Two inputs that would share an output folder (``clip.mp4`` beside
``clip.mov``) get the suffix spelled in (``clip_mp4``, ``clip_mov``).
"""

from __future__ import annotations

import glob
import logging
import os
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from realtime_vrn.errors import ConfigError
from realtime_vrn.sources.images import IMAGE_EXTENSIONS

log = logging.getLogger(__name__)

#: Video containers OpenCV's FFmpeg reads in every opencv-python wheel.
VIDEO_EXTENSIONS = (".mp4", ".m4v", ".mov", ".avi", ".mkv", ".webm", ".mpg", ".mpeg")
#: Characters that make an input a glob pattern (what ``glob.glob`` expands).
GLOB_CHARS = ("*", "?", "[")


@dataclass(frozen=True)
class BatchInput:
    """One video or image of a batch.

    path:    the file (absolute).
    kind:    "video" or "image" (by suffix).
    name:    its output folder under ``--out`` (relative, POSIX).
    problem: why it cannot be processed at all (a listed file that does not exist, an unknown file type), or
             None. Such an input is reported as failed; the others go on.
    """

    path: Path
    kind: str
    name: PurePosixPath
    problem: str | None = None


def media_kind(path: Path) -> str | None:
    suffix = path.suffix.lower()
    if suffix in VIDEO_EXTENSIONS:
        return "video"
    if suffix in IMAGE_EXTENSIONS:
        return "image"
    return None


def expand_inputs(args: list[str]) -> list[BatchInput]:
    """Every video and image named by ``args`` (folders, glob patterns, media files, list files), in order,
    each file once. ConfigError for an input that does not exist, a list file that cannot be read, or when
    nothing matched at all."""
    found: list[tuple[Path, PurePosixPath, str | None]] = []
    for arg in args:
        found.extend(_expand(arg))
    seen: set[Path] = set()
    unique = []
    for path, rel, problem in found:
        key = path.resolve()
        if key not in seen:
            seen.add(key)
            unique.append((path.absolute(), rel, problem))
    if not unique:
        raise ConfigError(f"no videos or images matched {' '.join(args)} (videos: {', '.join(VIDEO_EXTENSIONS)}; "
                          f"images: {', '.join(IMAGE_EXTENSIONS)})")
    names = _output_names([rel for _, rel, _ in unique], [p for p, _, _ in unique])
    return [BatchInput(path, media_kind(path) or "unknown", name, problem)
            for (path, _, problem), name in zip(unique, names)]


def _expand(arg: str) -> list[tuple[Path, PurePosixPath, str | None]]:
    path = Path(arg).expanduser()
    if path.is_dir():
        files = _media_files(path)
        if not files:
            log.warning("no videos or images in folder %s", path)
        return [(f, PurePosixPath(path.absolute().name) / f.relative_to(path).as_posix(), None) for f in files]
    if path.is_file():
        if media_kind(path) is not None:
            return [(path, PurePosixPath(path.name), None)]
        return _read_list(path)
    if any(c in arg for c in GLOB_CHARS):
        base = _glob_base(arg)
        matches = sorted(Path(m) for m in glob.glob(os.path.expanduser(arg), recursive=True))
        files = [f for m in matches for f in (_media_files(m) if m.is_dir() else [m]) if media_kind(f)]
        if not files:
            log.warning("no videos or images matched %s", arg)
        return [(f, PurePosixPath(os.path.relpath(f, base)), None) for f in files]
    raise ConfigError(f"input not found: {arg} (give folders, videos, images, glob patterns or a list file)")


def _media_files(folder: Path) -> list[Path]:
    """Videos and images under ``folder`` (recursively, hidden files and folders left out), sorted."""
    out = []
    for root, dirs, files in os.walk(folder):
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))
        out.extend(Path(root) / f for f in sorted(files) if not f.startswith(".") and media_kind(Path(f)))
    return out


def _glob_base(pattern: str) -> Path:
    """The leading folders of ``pattern`` before the first component with a wildcard."""
    parts = Path(os.path.expanduser(pattern)).parts
    fixed = []
    for part in parts[:-1]:
        if any(c in part for c in GLOB_CHARS):
            break
        fixed.append(part)
    return Path(*fixed) if fixed else Path(".")


def _read_list(list_file: Path) -> list[tuple[Path, PurePosixPath, str | None]]:
    """A text file naming one video or image per line (blank lines and ``#`` comments ignored); relative
    paths are relative to the list file's folder."""
    try:
        text = list_file.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as err:
        why = getattr(err, "strerror", None) or "not a text file"
        raise ConfigError(f"cannot read the list file {list_file}: {why}") from err
    if "\0" in text:
        raise ConfigError(f"{list_file} is neither a video, an image nor a text file listing them")
    entries = []
    for line in text.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            entry = Path(line).expanduser()
            entries.append(entry if entry.is_absolute() else list_file.parent / entry)
    if not entries:
        return []
    base = Path(os.path.commonpath([os.path.abspath(e.parent) for e in entries]))
    out = []
    for entry in entries:
        problem = None
        if not entry.is_file():
            problem = f"listed in {list_file} but not found"
        elif media_kind(entry) is None:
            problem = "not a video or image file (unknown suffix)"
        out.append((entry, PurePosixPath(os.path.relpath(os.path.abspath(entry), base)), problem))
    return out


def _output_names(rels: list[PurePosixPath], paths: list[Path]) -> list[PurePosixPath]:
    """Output folder per input: its relative path without the suffix, with the suffix spelled in where two
    inputs would otherwise share a folder. ConfigError when two inputs still collide (two folders of the same
    name given as inputs, holding the same file names)."""
    plain = [rel.with_suffix("") for rel in rels]
    names = [(p.with_name(f"{p.name}_{rel.suffix.lstrip('.').lower()}") if plain.count(p) > 1 else p)
             for p, rel in zip(plain, rels)]
    owner: dict[PurePosixPath, Path] = {}
    for name, path in zip(names, paths):
        if name in owner:
            raise ConfigError(f"{owner[name]} and {path} would both write to {name}/ in the output folder; "
                              f"give their folders separately in separate batches, or rename one")
        owner[name] = path
    return names
