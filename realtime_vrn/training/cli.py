"""``realtime-vrn data | train | eval``: synthetic data, training and evaluation (wired in by ``realtime_vrn.cli``).

Training is a product of its own inside the package: what only it needs is the ``[train]`` extra of
``pyproject.toml`` (:data:`TRAIN_EXTRA`), imported by the training modules and checked here before a command starts,
so that the core install runs the live pipeline without it and a command that needs it says what to install.
"""

from __future__ import annotations

import importlib.util
import json
import logging
from pathlib import Path

from realtime_vrn.argtypes import backend_name, positive_float, positive_int, unit_float
from realtime_vrn.config import FUSION_WEIGHT
from realtime_vrn.errors import ConfigError, VRNError

log = logging.getLogger(__name__)

#: The packages of the ``[train]`` extra (import names) and the commands that need them: the evaluations' meshes
#: (trimesh) and plots (matplotlib). ``data`` and ``train`` need only the core dependencies.
TRAIN_EXTRA = ("trimesh", "matplotlib")
TRAIN_EXTRA_HINT = "pip install 'realtime-vrn[train]'"


def require_train_extra(command: str, modules: tuple[str, ...] = TRAIN_EXTRA) -> None:
    """ConfigError (one line: what is missing, what to install) unless ``modules`` can be imported."""
    missing = [name for name in modules if importlib.util.find_spec(name) is None]
    if missing:
        raise ConfigError(f"realtime-vrn {command} needs {', '.join(missing)} (the training extra): "
                          f"{TRAIN_EXTRA_HINT}")


def add_parser(subparsers) -> None:
    """Add the ``data``, ``train`` and ``eval`` subcommands to an argparse subparsers object."""
    data = subparsers.add_parser("data", help="synthetic training data and the ICT face model")
    dsub = data.add_subparsers(dest="data_command", required=True)

    render = dsub.add_parser("render", help="render synthetic samples into on-disk shards")
    render.add_argument("out", type=Path, help="folder for shard-*.npz files")
    render.add_argument("--count", type=positive_int, default=1000)
    render.add_argument("--first-seed", type=int, default=None, help="default 0 (training) or the held-out base")
    render.add_argument("--shard-size", type=positive_int, default=500)
    render.add_argument("--size", type=positive_int, default=96, help="crop side S (the model's input size)")
    render.add_argument("--depth-bins", type=positive_int, default=100)
    render.add_argument("--heldout", action="store_true",
                        help="held-out evaluation set: seeds from 1e9 and face vertices stored")
    render.add_argument("--face-model", type=Path, default=None, help="ict_face_model.npz")
    render.add_argument("--depth-axis", choices=("line-of-sight", "optical-axis"), default="line-of-sight",
                        help="ground-truth depth along the ray through the face (default) or along the camera's "
                             "optical axis (the data of sessions 1-3)")
    render.add_argument("--skin-bank", type=Path, default=None,
                        help="real skin baked from photos (`realtime-vrn data skin`) for --real-skin/--real-background")
    render.add_argument("--real-skin", type=_probability, default=None,
                        help="fraction of samples wearing a real face's skin (default 0.7 with --skin-bank)")
    render.add_argument("--real-background", type=_probability, default=None,
                        help="fraction of samples on a real photo's face-free patch (default 0.3 with --skin-bank)")
    render.set_defaults(func=_cmd_render)

    skin = dsub.add_parser("skin", help="bake real faces' colours from photos and clips into the ICT mesh "
                                        "(a skin bank for `data render --skin-bank`)")
    skin.add_argument("out", type=Path, help="bank file to write (.npz; training data: keep it out of the repo)")
    skin.add_argument("sources", type=Path, nargs="+", help="folders or files of photos and videos")
    skin.add_argument("--frames-per-clip", type=positive_int, default=16)
    skin.add_argument("--face-model", type=Path, default=None, metavar="FILE", help="ict_face_model.npz")
    skin.set_defaults(func=_cmd_skin)

    fit = dsub.add_parser("fit", help="real photos with the ICT face fitted to MediaPipe's points on them, as "
                                      "training shards (300W-LP's recipe)")
    fit.add_argument("out", type=Path, help="folder for shard-*.npz files (training data: keep it out of the repo)")
    fit.add_argument("sources", type=Path, nargs="+", help="folders or files of photos and videos")
    fit.add_argument("--renders", type=Path, default=None, metavar="DIR",
                     help="annotated evaluation renders (`data render --heldout` + `data annotate`) to vote where "
                          "MediaPipe's points sit on the ICT face (default: the packaged correspondence)")
    fit.add_argument("--frames-per-clip", type=positive_int, default=64)
    fit.add_argument("--variants", type=positive_int, default=2,
                     help="crops per face: the pipeline's own, then ones cut from jittered points")
    fit.add_argument("--size", type=positive_int, default=96, help="crop side S (the model's input size)")
    fit.add_argument("--depth-bins", type=positive_int, default=100)
    fit.add_argument("--face-model", type=Path, default=None, metavar="FILE", help="ict_face_model.npz")
    fit.set_defaults(func=_cmd_fit)

    preview = dsub.add_parser("preview", help="a PNG grid of samples: crop, landmarks, GT depth, volume side view")
    preview.add_argument("out", type=Path)
    preview.add_argument("--count", type=positive_int, default=16)
    preview.add_argument("--first-seed", type=int, default=0)
    preview.add_argument("--size", type=positive_int, default=96)
    preview.add_argument("--depth-bins", type=positive_int, default=100)
    preview.set_defaults(func=_cmd_preview)

    speed = dsub.add_parser("speed", help="measure synthetic samples per second in one process")
    speed.add_argument("--count", type=positive_int, default=20)
    speed.add_argument("--size", type=positive_int, default=96)
    speed.add_argument("--depth-bins", type=positive_int, default=100)
    speed.set_defaults(func=_cmd_speed)

    annotate = dsub.add_parser("annotate", help="run MediaPipe on every crop of a shard folder (sidecar files for "
                                                "`train --points mediapipe`)")
    annotate.add_argument("folder", type=Path, help="folder of shard-*.npz files")
    annotate.add_argument("--overwrite", action="store_true", help="annotate shards that already have a sidecar")
    annotate.set_defaults(func=_cmd_annotate)

    conv = dsub.add_parser("convert-facekit", help="convert ICT-FaceKit's FaceXModel folder to ict_face_model.npz")
    conv.add_argument("folder", type=Path)
    conv.add_argument("out", type=Path)
    conv.add_argument("--partial", action="store_true", help="accept a folder with only some identities/expressions")
    conv.set_defaults(func=_cmd_convert)

    train = subparsers.add_parser("train", help="train a VRN on synthetic faces (resumes from OUT/last.pt)")
    train.add_argument("--out", type=Path, default=Path("out/train/run"), help="run folder")
    train.add_argument("--data", type=Path, default=None, help="shard folder (default: render on the fly)")
    train.add_argument("--size", type=positive_int, default=96, help="input size S (multiple of 8)")
    train.add_argument("--features", type=positive_int, default=128)
    train.add_argument("--stacks", type=positive_int, default=1)
    train.add_argument("--levels", type=positive_int, default=4)
    train.add_argument("--branch-blocks", type=positive_int, default=3)
    train.add_argument("--inner-branch-blocks", type=positive_int, default=3)
    train.add_argument("--depth-bins", type=positive_int, default=100)
    train.add_argument("--guided", action="store_true", help="RGB + 68 landmark heatmaps (VRN-Guided)")
    train.add_argument("--mediapipe-depth", action="store_true",
                       help="guided, plus one channel: MediaPipe's face surface as a depth map in the crop (needs "
                            "`data annotate` sidecars; implies --guided)")
    train.add_argument("--output-stride", type=int, choices=(2, 4), default=4,
                       help="4: the release's head (logits on the S/4 hourglass grid); 2: add the refinement head "
                            "(logits on an S/2 grid, finer surfaces)")
    train.add_argument("--steps", type=positive_int, default=20000)
    train.add_argument("--batch-size", type=positive_int, default=8)
    train.add_argument("--optimizer", choices=("adam", "rmsprop"), default="adam")
    train.add_argument("--lr", type=positive_float, default=1e-3)
    train.add_argument("--lr-drop-at", type=positive_float, default=0.8,
                       help="fraction of --steps after which the learning rate is x0.1")
    train.add_argument("--loss", choices=("full", "lowres"), default="full")
    train.add_argument("--device", default="cpu", help="cpu or cuda[:N]")
    train.add_argument("--no-amp", action="store_true", help="full precision on CUDA")
    train.add_argument("--threads", type=positive_int, default=1, help="torch CPU threads")
    train.add_argument("--workers", type=int, default=0, help="DataLoader worker processes")
    train.add_argument("--checkpoint-every", type=positive_float, default=300.0, help="seconds")
    train.add_argument("--no-resume", action="store_true")
    train.add_argument("--init", type=Path, default=None, metavar="MODEL",
                       help="warm start from a trained model (.safetensors or last.pt) of the same architecture; "
                            "an unguided model may start a --guided one (heatmap weights start at zero)")
    train.add_argument("--ema", type=float, default=0.0, metavar="DECAY",
                       help="keep an exponential moving average of the weights with this decay per step (e.g. "
                            "0.999) and evaluate/export it; 0 = off")
    train.add_argument("--front-weight", type=float, default=0.0, metavar="W",
                       help="weigh voxels near the front surface up to 1 + W in the loss (0 = plain mean)")
    train.add_argument("--points", choices=("synthetic", "mediapipe"), default="synthetic",
                       help="guided heatmaps from the renders' own noisy ICT landmarks or from MediaPipe run on "
                            "each crop (needs `data annotate` sidecars; what inference uses)")
    train.add_argument("--export", type=Path, default=None, metavar="CHECKPOINT",
                       help="do not train: export OUT/last.pt as a .safetensors checkpoint")
    train.add_argument("--description", default=None, metavar="TEXT",
                       help="--export: a sentence on what the model is, stored before the training configuration")
    train.set_defaults(func=_cmd_train)

    ev = subparsers.add_parser(
        "eval", help="real faces (--real: surface error beside MediaPipe's mesh) or held-out synthetic faces "
                     "(--heldout: dense NME), by yaw bucket")
    ev.add_argument("model", type=Path, nargs="?", default=None,
                    help="a .safetensors checkpoint or a training state (last.pt); default: the shipped model")
    ev.add_argument("--weights", type=Path, default=None, metavar="MODEL",
                    help="the same as the positional MODEL (as in `realtime-vrn --weights`)")
    which = ev.add_mutually_exclusive_group(required=True)
    which.add_argument("--real", type=Path, metavar="DIR",
                       help="photos with 3D landmarks in the AFLW2000-3D layout (imageNNNNN.jpg + .mat)")
    which.add_argument("--photos", type=Path, metavar="DIR",
                       help="no scores: draw our mesh beside MediaPipe's for any photos (OUT/photos.png)")
    which.add_argument("--heldout", type=Path, metavar="DIR",
                       help="held-out synthetic shard folder (`data render --heldout`)")
    ev.add_argument("--out", type=Path, default=None, help="report folder (default out/eval-real or out/eval)")
    ev.add_argument("--limit", type=positive_int, default=None, help="only the first N photos / samples")
    ev.add_argument("--oracle", action="store_true", help="--heldout: score the ground-truth volumes (the floor)")
    ev.add_argument("--backend", type=backend_name, default="auto",
                    help="--real: inference backend (default auto, as the pipeline)")
    ev.add_argument("--mediapipe-weight", type=unit_float, default=FUSION_WEIGHT, metavar="W",
                    help="--real: MediaPipe's share of our surface's depth, as the pipeline's --mediapipe-weight "
                         f"(default {FUSION_WEIGHT:g}; the network's surface alone is reported beside it as "
                         "'VRN alone')")
    ev.add_argument("--sheet", type=int, default=6, metavar="N",
                    help="--real: photos in the comparison sheet photos.png (0 = none)")
    ev.add_argument("--device", default=None, help="cpu or cuda[:N] (default: cpu for --heldout, auto for --real)")
    ev.add_argument("--face-model", type=Path, default=None, metavar="FILE",
                    help="--real: ict_face_model.npz for the mean-face and ICT-fit baselines (default: "
                         "$REALTIME_VRN_SHARED/data/ict-facekit/ict_face_model.npz)")
    ev.set_defaults(func=_cmd_eval)


def _probability(text: str) -> float:
    import argparse

    try:
        value = float(text)
    except ValueError:
        value = float("nan")
    if not 0.0 <= value <= 1.0:
        raise argparse.ArgumentTypeError(f"expected a probability in [0, 1], got {text!r}")
    return value


def _synth_config(args):
    from realtime_vrn.training.synth import SynthConfig

    bank = getattr(args, "skin_bank", None)
    real_skin, real_background = getattr(args, "real_skin", None), getattr(args, "real_background", None)
    if bank is None and (real_skin or real_background):
        raise ConfigError("--real-skin / --real-background need --skin-bank FILE (`realtime-vrn data skin`)")
    if bank is not None:
        if not bank.is_file():
            raise ConfigError(f"--skin-bank {bank}: no such file (make one with `realtime-vrn data skin`)")
        from realtime_vrn.training.skinbank import SkinBank

        try:
            SkinBank.load(bank)
        except (OSError, ValueError, KeyError) as err:
            raise ConfigError(f"--skin-bank {bank}: not a readable skin bank ({err})") from err
    try:
        return SynthConfig(size=args.size, depth_bins=args.depth_bins,
                           depth_axis=getattr(args, "depth_axis", "line-of-sight").replace("-", "_"),
                           skin_bank=str(bank.resolve()) if bank else None,
                           real_skin=(0.7 if real_skin is None else real_skin) if bank else 0.0,
                           real_background=(0.3 if real_background is None else real_background) if bank else 0.0)
    except ValueError as err:
        raise ConfigError(str(err)) from err


def _cmd_skin(args) -> int:
    from realtime_vrn.training.skinbank import build_skin_bank

    try:
        from realtime_vrn.training.facemodel import FaceModel

        counts = build_skin_bank(args.sources, args.out, frames_per_clip=args.frames_per_clip,
                                 model=FaceModel.load(args.face_model))
    except (FileNotFoundError, ValueError) as err:
        raise ConfigError(str(err)) from err
    print(f"{counts['textures']} faces baked from {counts['frames']} images/frames of {counts['files']} files, "
          f"{counts['backgrounds']} backgrounds -> {args.out}")
    return 0


def _cmd_fit(args) -> int:
    from realtime_vrn.training.realfit import build_real_shards

    try:
        counts = build_real_shards(args.sources, args.out, args.renders, size=args.size, depth_bins=args.depth_bins,
                                   frames_per_clip=args.frames_per_clip, variants=args.variants,
                                   face_model=args.face_model)
    except (FileNotFoundError, ValueError) as err:
        raise ConfigError(str(err)) from err
    print(f"{counts['fitted']} of {counts['faces']} faces fitted in {counts['frames']} images/frames of "
          f"{counts['files']} files: {counts['samples']} samples in {counts['shards']} shards -> {args.out}")
    return 0


def _cmd_render(args) -> int:
    from realtime_vrn.training.dataset import HELDOUT_SEED_BASE, write_shards

    first = args.first_seed if args.first_seed is not None else (HELDOUT_SEED_BASE if args.heldout else 0)
    paths = write_shards(args.out, _synth_config(args), first, args.count, args.shard_size,
                         with_vertices=args.heldout, progress=True, face_model=args.face_model)
    print(f"{len(paths)} shards in {args.out}")
    return 0


def _cmd_preview(args) -> int:
    from realtime_vrn.training.preview import preview_grid

    path = preview_grid(args.out, _synth_config(args), range(args.first_seed, args.first_seed + args.count))
    print(path)
    return 0


def _cmd_speed(args) -> int:
    from realtime_vrn.training.dataset import measure_samples_per_second

    rate = measure_samples_per_second(_synth_config(args), args.count)
    print(json.dumps({"samples_per_s": round(rate, 2), "size": args.size, "depth_bins": args.depth_bins}))
    return 0


def _cmd_annotate(args) -> int:
    from realtime_vrn.training.annotate import annotate_shards

    try:
        written = annotate_shards(args.folder, overwrite=args.overwrite)
    except FileNotFoundError as err:
        raise ConfigError(str(err)) from err
    print(f"{len(written)} sidecars written in {args.folder}")
    return 0


def _cmd_convert(args) -> int:
    from realtime_vrn.training.facemodel import convert_facexmodel

    print(convert_facexmodel(args.folder, args.out, require_complete=not args.partial))
    return 0


def _cmd_train(args) -> int:
    from realtime_vrn.model.network import VRNConfig
    from realtime_vrn.training.train import TrainConfig, export_model, train

    if args.export is not None:
        state = args.out / "last.pt"
        if not state.is_file():
            raise ConfigError(f"no training state {state} to export")
        try:
            print(export_model(state, args.export, description=args.description or ""))
        except FileNotFoundError as err:
            raise ConfigError(str(err)) from err
        return 0
    try:
        guided = args.guided or args.mediapipe_depth
        model = VRNConfig(input_size=args.size, in_channels=3 + 68 * guided + args.mediapipe_depth,
                          features=args.features,
                          stacks=args.stacks, levels=args.levels, branch_blocks=args.branch_blocks,
                          inner_branch_blocks=args.inner_branch_blocks, depth_bins=args.depth_bins,
                          output_stride=args.output_stride)
        cfg = TrainConfig(out=str(args.out), data=str(args.data) if args.data else None, model=model,
                          steps=args.steps, batch_size=args.batch_size, optimizer=args.optimizer, lr=args.lr,
                          lr_drop_at=args.lr_drop_at,
                          loss=args.loss, device=args.device, amp=not args.no_amp, threads=args.threads,
                          workers=args.workers, checkpoint_every_s=args.checkpoint_every,
                          init=str(args.init) if args.init else None, ema=args.ema,
                          front_weight=args.front_weight, points=args.points)
    except ValueError as err:
        raise ConfigError(str(err)) from err
    if args.init is not None and not args.init.is_file():
        raise ConfigError(f"--init model {args.init} does not exist")
    if args.data is not None and not args.data.is_dir():
        raise ConfigError(f"--data {args.data} is not a folder of shards (`realtime-vrn data render {args.data}`)")
    try:
        print(train(cfg, resume=not args.no_resume))
    except (ValueError, FileNotFoundError) as err:
        raise ConfigError(str(err)) from err
    return 0


def load_any(path: Path, device: str = "cpu"):
    """A network from a .safetensors checkpoint (``load_model``) or a training state (``last.pt``)."""
    if not path.is_file():
        raise ConfigError(f"model file {path} does not exist")
    if path.suffix == ".safetensors":
        from realtime_vrn.model.checkpoint import load_model

        return load_model(path, device)
    from realtime_vrn.training.train import load_trained

    return load_trained(path, device)[0]


def _cmd_eval(args) -> int:
    require_train_extra("eval")
    if args.weights is not None:
        if args.model is not None and args.model != args.weights:
            raise ConfigError("give the model once: as MODEL or as --weights, not both")
        args.model = args.weights
    if args.real is not None or args.photos is not None:
        return _cmd_eval_real(args)
    from realtime_vrn.training.evaluate import evaluate, load_heldout, write_report

    if args.model is None:
        raise ConfigError("eval --heldout needs the model to score (a .safetensors checkpoint or last.pt)")
    try:
        heldout = load_heldout(args.heldout)
    except (FileNotFoundError, ValueError) as err:
        raise ConfigError(str(err)) from err
    device = args.device or "cpu"
    net = load_any(args.model, device)
    report = evaluate(net, heldout, oracle=args.oracle, limit=args.limit, device=device)
    report["model"] = str(args.model)
    js, png = write_report(report, args.out or Path("out/eval"),
                           f"{'oracle' if args.oracle else args.model.name}: NME {report['nme']:.4f} "
                           f"(n={report['samples']})")
    summary = {k: report[k] for k in ("samples", "nme", "nme_vertex", "nme_bucket_mean", "landmark_nme", "misses")}
    summary["buckets"] = {k: {kk: (round(vv, 4) if isinstance(vv, float) else vv) for kk, vv in b.items()}
                          for k, b in report["buckets"].items()}
    print(json.dumps(summary, indent=1))
    print(f"{js}\n{png}")
    return 0


def _cmd_eval_real(args) -> int:
    from realtime_vrn.training.realface import RealFaceError, evaluate_real, format_table, write_real_report
    from realtime_vrn.weights.registry import resolve_weights

    if args.oracle:
        raise ConfigError("--oracle scores synthetic ground-truth volumes; it goes with --heldout, not --real")
    if args.model is not None and args.model.suffix != ".safetensors":
        raise ConfigError(f"eval --real runs the pipeline's backends, which load .safetensors checkpoints; export "
                          f"{args.model} first (`realtime-vrn train --out RUN --export MODEL.safetensors`)")
    weights = resolve_weights(None, args.model)
    out = args.out or Path("out/eval-real")
    if args.photos is not None:
        from realtime_vrn.training.realface import photos_sheet

        try:
            print(photos_sheet(args.photos, weights, out / "photos.png", backend=args.backend,
                               device=args.device or "auto", limit=args.limit, face_model=args.face_model,
                               mediapipe_weight=args.mediapipe_weight))
        except RealFaceError as err:
            raise ConfigError(str(err)) from err
        return 0
    try:
        report, sheet = evaluate_real(args.real, weights, backend=args.backend, device=args.device or "auto",
                                      limit=args.limit, sheet_count=max(args.sheet, 0), face_model=args.face_model,
                                      mediapipe_weight=args.mediapipe_weight)
        paths = write_real_report(report, sheet, out)
    except RealFaceError as err:
        raise ConfigError(str(err)) from err
    print(format_table(report))
    print("\n".join(str(p) for p in paths))
    return 0


__all__ = ["add_parser", "VRNError"]
