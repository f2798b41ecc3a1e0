"""``realtime-vrn weights fetch | convert FILE | list``: the official model and the installed ones.

The main CLI (``realtime_vrn/cli.py``) calls :func:`add_parser` on its sub-parsers; each sub-command sets
``func`` to its handler ``_cmd_<command>(args) -> int`` exit code. User errors are raised as VRNError subclasses
(the main CLI prints them in one line).
"""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

from realtime_vrn.argtypes import positive_int
from realtime_vrn.errors import ConfigError
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
    sub = p.add_subparsers(dest="weights_command", required=True, metavar="{fetch,convert,list,quantize}")

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

    quantize = sub.add_parser(
        "quantize", help="make a checkpoint's int8 model (NNCF) for --backend openvino-int8",
        description="Quantise a checkpoint's OpenVINO model to int8 after training (NNCF, activation ranges "
                    "calibrated on crops of training shards), tagged with the checkpoint's SHA-256. Needs the "
                    "[train] extra. Check the result on real faces before relying on it: realtime-vrn eval --real "
                    "DIR --weights CHECKPOINT --backend openvino-int8.",
    )
    quantize.add_argument("checkpoint", type=Path, metavar="CHECKPOINT", help="a .safetensors checkpoint")
    quantize.add_argument("--data", type=Path, nargs="+", required=True, metavar="DIR",
                          help="folders of training shards (shard-*.npz) to draw calibration crops from")
    quantize.add_argument("--count", type=positive_int, default=None, metavar="N",
                          help="calibration crops, drawn evenly from the folders (default 300)")
    quantize.add_argument("--out", type=Path, default=None, metavar="FILE.xml",
                          help="where to write it (default: the user cache, found by the checkpoint's SHA-256; "
                               "CHECKPOINT's stem + .int8.xml beside it is found first)")
    quantize.set_defaults(func=_cmd_quantize)
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


def _cmd_quantize(args: argparse.Namespace) -> int:
    import time

    try:
        import nncf  # noqa: F401

        from realtime_vrn.training.dataset import calibration_inputs
    except ImportError as err:
        raise ConfigError(f"quantising needs the training tools ({err}): pip install 'realtime-vrn[train]'") from err
    from realtime_vrn.model.checkpoint import read_checkpoint_header
    from realtime_vrn.model.quantize import DEFAULT_CALIBRATION, quantize_checkpoint

    cfg = read_checkpoint_header(args.checkpoint).cfg
    try:
        inputs = calibration_inputs(args.data, args.count or DEFAULT_CALIBRATION, cfg)
    except (OSError, ValueError, KeyError) as err:  # no shards, unreadable or of another size
        raise ConfigError(f"calibration data: {err}") from err
    start = time.perf_counter()
    path = quantize_checkpoint(args.checkpoint, inputs, args.out)
    print(f"int8 model of {args.checkpoint.name}: {path} ({len(inputs)} calibration crops, "
          f"{time.perf_counter() - start:.0f} s)")
    print(f"check it on real faces: realtime-vrn eval --real DIR --weights {args.checkpoint} --backend openvino-int8")
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
