"""``realtime-vrn engine build|recipes``: TensorRT engines of a checkpoint (NVIDIA GPUs with TensorRT 10/11)."""

from __future__ import annotations

import argparse
from pathlib import Path


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("engine", help="TensorRT engines (build, list recipes)")
    sp = p.add_subparsers(dest="engine_command", required=True)
    build = sp.add_parser("build", help="export ONNX and build (or reuse) the cached TensorRT engine")
    build.add_argument("--model", metavar="NAME", help="installed model name")
    build.add_argument("--weights", type=Path, metavar="FILE", help="checkpoint file")
    build.add_argument("--recipe", default="fp16-b1", help="recipe name or JSON path (default fp16-b1)")
    build.add_argument("--force", action="store_true", help="rebuild even when a valid engine is cached")
    build.set_defaults(func=_cmd_build)
    recipes = sp.add_parser("recipes", help="list the shipped engine recipes")
    recipes.set_defaults(func=_cmd_recipes)


def _cmd_build(args: argparse.Namespace) -> int:
    from realtime_vrn.backends.tensorrt.backend import prepare_engine
    from realtime_vrn.errors import BackendError
    from realtime_vrn.weights.registry import resolve_weights

    weights = resolve_weights(args.model, args.weights)
    try:
        data, path, cfg, recipe = prepare_engine(weights, args.recipe, force=args.force)
    except ImportError as err:  # no TensorRT: a user error with its remedy, not a traceback
        raise BackendError(str(err)) from err
    print(f"engine {recipe.name} for {weights.name}: {path} ({len(data) / 2**20:.1f} MiB)")
    return 0


def _cmd_recipes(args: argparse.Namespace) -> int:
    from realtime_vrn.backends.tensorrt.engines import list_recipes

    for name, r in sorted(list_recipes().items()):
        print(f"{name:<10} {r.precision}  batch {r.batch}  workspace {r.workspace_mib} MiB  {r.description}")
    return 0
