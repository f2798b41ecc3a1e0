"""``realtime-vrn weights fetch | convert FILE | list``: the official model and the installed ones.

The main CLI (``realtime_vrn/cli.py``) calls :func:`add_parser` on its sub-parsers; each sub-command sets
``func`` to its handler ``_cmd_<command>(args) -> int`` exit code. User errors are raised as VRNError subclasses
(the main CLI prints them in one line).
"""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

from realtime_vrn.weights import official

log = logging.getLogger(__name__)

EXIT_OK = 0
_MB = 1e6


def add_parser(subparsers) -> argparse.ArgumentParser:
    """Add ``weights`` with its sub-commands to ``subparsers`` (an argparse sub-parsers action)."""
    p = subparsers.add_parser(
        "weights", help="fetch, convert and list model weights",
        description="The official VRN model (download and convert the authors' Torch7 file) and installed models.",
    )
    sub = p.add_subparsers(dest="weights_command", required=True, metavar="{fetch,convert,list}")

    fetch = sub.add_parser(
        "fetch", help=f"download the official {official.FILENAME} (~1.4 GB, resumable)",
        description=f"Download {official.FILENAME} from {official.URL} into the user cache (resumes an "
                    f"interrupted download; the file is checked and renamed into place only when complete).",
    )
    fetch.add_argument("--dir", type=Path, dest="directory", metavar="DIR",
                       help="where to save it (default: the user cache's downloads folder)")
    fetch.add_argument("--url", default=official.URL, metavar="URL", help="download from another address (a mirror)")
    fetch.add_argument("--convert", action="store_true", help="convert and install it right after the download")
    fetch.add_argument("--no-progress", dest="progress", action="store_false", help="no progress bar")
    fetch.set_defaults(func=_cmd_fetch)

    convert = sub.add_parser(
        "convert", help="convert a Torch7 vrn-unguided.t7 into an installed model",
        description="Check every module of a Torch7 VRN file against the released layout, convert it, run it on "
                    "a bundled face, and install it in the user's models folder (use it with --model NAME).",
    )
    convert.add_argument("file", type=Path, metavar="FILE", help=f"the {official.FILENAME} file")
    convert.add_argument("--name", type=_model_name, default=official.MODEL_NAME,
                         help=f"installed model name (default {official.MODEL_NAME})")
    convert.add_argument("--no-selfcheck", dest="selfcheck", action="store_false",
                         help="install without running the model on the bundled face")
    convert.set_defaults(func=_cmd_convert)

    listing = sub.add_parser("list", help="installed models: size, source, licence, SHA-256",
                             description="Models installed in the user's models folder and shipped in the package.")
    listing.set_defaults(func=_cmd_list)
    return p


def _model_name(text: str) -> str:
    if not text or text != Path(text).name or text.startswith(".") or text.endswith(".safetensors"):
        raise argparse.ArgumentTypeError(f"expected a plain model name like {official.MODEL_NAME!r}, got {text!r}")
    return text


def _cmd_fetch(args: argparse.Namespace) -> int:
    path = official.fetch(args.directory, args.url, progress=args.progress)
    print(f"{official.FILENAME}: {path} ({path.stat().st_size / _MB:.0f} MB)")
    if args.convert:
        return _convert(path, official.MODEL_NAME, selfcheck=True)
    print(f"next: realtime-vrn weights convert {path}")
    return EXIT_OK


def _cmd_convert(args: argparse.Namespace) -> int:
    return _convert(args.file, args.name, args.selfcheck)


def _convert(path: Path, name: str, selfcheck: bool) -> int:
    from realtime_vrn.weights.torch7 import install_t7

    print(f"converting {path} ...")
    result = install_t7(path, name=name, selfcheck=selfcheck)
    size = result.path.stat().st_size / _MB
    print(f"installed {result.name}: {result.path} ({size:.1f} MB, SHA-256 {result.sha256}) in {result.seconds:.1f} s")
    print(f"  source file SHA-256 {result.source_sha256}")
    if result.selfcheck is not None:
        print(f"  self-check on a real face passed: {result.selfcheck.summary()}")
    else:
        print("  self-check skipped (--no-selfcheck)")
    print(f"  licence: {official.LICENCE_NOTE}")
    print(f"use it: realtime-vrn --model {result.name}   (or --weights {result.path})")
    return EXIT_OK


def _cmd_list(args: argparse.Namespace) -> int:
    from realtime_vrn.weights.registry import NO_WEIGHTS_MESSAGE, list_models, models_dir

    models = list_models()
    if not models:
        print(f"no models installed in {models_dir()}: {NO_WEIGHTS_MESSAGE}")
        return EXIT_OK
    for m in models:
        print(f"{m.name}  {m.size_bytes / _MB:.1f} MB  sha256 {m.sha256}")
        print(f"    source:  {m.source}")
        print(f"    licence: {m.licence}")
        print(f"    path:    {m.path}")
    return EXIT_OK
