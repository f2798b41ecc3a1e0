"""``realtime-vrn batch INPUTS... --out DIR``: many videos and photos, on Ray workers or in this process."""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

from realtime_vrn.argtypes import backend_name, checked, device_name, positive_float, positive_int, unit_float
from realtime_vrn.config import FUSION_WEIGHT, MESH_FORMATS
from realtime_vrn.errors import ConfigError

log = logging.getLogger(__name__)

non_negative_float = checked(float, lambda v: v >= 0, "a number >= 0")


def add_parser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    p = subparsers.add_parser(
        "batch", help="reconstruct many videos and photos (on Ray workers when Ray is installed)",
        description="Reconstruct every video and photo named by INPUTS into DIR, mirroring their paths: per "
                    "input its meshes, a per-frame NPZ of landmarks, head pose and crop, a summary.json (and "
                    "with --video-out the annotated video). Finished inputs are skipped on a re-run with the "
                    "same model and options. Runs on Ray when installed (pip install 'realtime-vrn[cluster]'), "
                    "else one input after another in this process.")
    p.add_argument("inputs", nargs="+", metavar="INPUT",
                   help="folder, video, image, glob pattern ('clips/**/*.mp4', quoted) or text file listing "
                        "videos and images (one per line)")
    p.add_argument("--out", type=Path, required=True, metavar="DIR", help="output folder (created)")
    run = p.add_argument_group("where it runs")
    run.add_argument("--workers", type=positive_int, metavar="N",
                     help="Ray workers, each with the model loaded once (default: CPUs / --cpus-per-worker)")
    run.add_argument("--address", metavar="ADDR",
                     help="join this Ray cluster (HOST:PORT of the head node, or 'auto'); default: start a "
                          "local Ray on this machine")
    run.add_argument("--cpus-per-worker", type=positive_float, metavar="X",
                     help="CPUs reserved per worker, also its network and surface threads (default 1; without "
                          "Ray: every core of this machine)")
    run.add_argument("--gpus-per-worker", type=non_negative_float, default=0.0, metavar="X",
                     help="GPUs per worker (e.g. 0.5: two workers share a GPU; default 0)")
    run.add_argument("--no-ray", action="store_true",
                     help="run the inputs one after another in this process even when Ray is installed")
    out = p.add_argument_group("outputs")
    meshes = out.add_mutually_exclusive_group()
    meshes.add_argument("--mesh-every", type=positive_int, metavar="N",
                        help="a video's mesh of every N-th frame (default 30)")
    meshes.add_argument("--meshes", choices=("all", "none"), help="the mesh of every frame, or none")
    out.add_argument("--mesh-format", choices=MESH_FORMATS, default="obj", help="mesh file format (default obj)")
    out.add_argument("--y-up", action="store_true", help="meshes with y up (MeshLab/Blender)")
    out.add_argument("--video-out", action="store_true",
                     help="also write each video with the reconstruction drawn in (annotated.mp4; such a video "
                          "runs on one worker)")
    out.add_argument("--chunk-frames", type=positive_int, metavar="N",
                     help="split videos into parts of N frames, run in parallel and joined in order (default 300)")
    out.add_argument("--max-frames", type=positive_int, metavar="N", help="only the first N frames of each video")
    out.add_argument("--no-smoothing", dest="smoothing", action="store_false",
                     help="no temporal smoothing in videos")
    out.add_argument("--mediapipe-weight", type=unit_float, default=FUSION_WEIGHT, metavar="W",
                     help=f"MediaPipe's share of the surface's depth, 0-1 (default {FUSION_WEIGHT:g}; 0: the "
                          "network's surface alone), as realtime-vrn --mediapipe-weight")
    out.add_argument("--no-progress", dest="progress", action="store_false", help="no progress bars")
    mdl = p.add_argument_group("model")
    mdl.add_argument("--model", metavar="NAME", help="installed model name (realtime-vrn weights list)")
    mdl.add_argument("--weights", type=Path, metavar="FILE", help="checkpoint file (ours or converted)")
    mdl.add_argument("--backend", type=backend_name, default="auto", metavar="NAME",
                     help="inference backend: auto (default), torch, onnxruntime, openvino")
    mdl.add_argument("--device", type=device_name, default="auto", metavar="DEV",
                     help="auto (default), cpu, cuda or cuda:N")
    p.set_defaults(func=_cmd_batch)
    return p


def _cmd_batch(args: argparse.Namespace) -> int:
    from realtime_vrn.batch.executors import RAY_HINT, ray_available
    from realtime_vrn.batch.options import DEFAULT_CHUNK_FRAMES, DEFAULT_MESH_EVERY, ClusterSettings, ModelChoice, \
        OutputSettings
    from realtime_vrn.batch.runner import run_batch

    mesh_every = {"all": 1, "none": None, None: args.mesh_every or DEFAULT_MESH_EVERY}[args.meshes]
    settings = OutputSettings(mesh_every=mesh_every, mesh_format=args.mesh_format, y_up=args.y_up,
                              video_out=args.video_out, chunk_frames=args.chunk_frames or DEFAULT_CHUNK_FRAMES,
                              max_frames=args.max_frames, smoothing=args.smoothing,
                              mediapipe_weight=args.mediapipe_weight, backend=args.backend,
                              device=args.device)
    use_ray = not args.no_ray and ray_available()
    if not use_ray and args.address is not None:
        raise ConfigError(f"--address needs Ray: {RAY_HINT}" if not args.no_ray else
                          "--address and --no-ray contradict each other; give one")
    if not use_ray and not args.no_ray:
        log.warning("Ray is not installed: running the inputs one after another in this process; for parallel "
                    "workers and clusters: %s", RAY_HINT)
    cluster = ClusterSettings(use_ray=use_ray, workers=args.workers, address=args.address,
                              cpus_per_worker=args.cpus_per_worker, gpus_per_worker=args.gpus_per_worker)
    quiet = () if args.verbose else ("realtime_vrn.sources", "realtime_vrn.landmarks", "realtime_vrn.backends")
    before = {name: logging.getLogger(name).level for name in quiet}
    try:  # one line per input part from the sources and trackers is noise in a batch; restored afterwards
        for name in quiet:
            logging.getLogger(name).setLevel(logging.WARNING)
        report = run_batch(args.inputs, args.out, settings, ModelChoice(args.model, args.weights), cluster,
                           progress=args.progress, verbose=args.verbose > 0)
    finally:
        for name, level in before.items():
            logging.getLogger(name).setLevel(level)
    print_report(report)
    return report.exit_code


def print_report(report) -> None:
    from realtime_vrn.batch.runner import REPORT_NAME

    n = len(report.inputs)
    where = {"ray": f"{report.workers} Ray worker{'s' * (report.workers != 1)}", "in-process": "this process",
             "": "no worker (nothing to do)"}[report.executor]
    fps = report.frames / report.wall_s if report.wall_s > 0 else 0.0
    print(f"{n} input{'s' * (n != 1)}: {report.count('done')} done, {report.count('skipped')} skipped, "
          f"{report.count('failed')} failed" + (f", {report.count('interrupted')} interrupted" if report.signal else "")
          + f"; {report.frames} frames in {report.wall_s:.1f} s ({fps:.1f} frames/s) on {where}")
    if report.worker_stats:
        print(f"  {'worker':<28} {'parts':>5} {'frames':>7} {'busy s':>8} {'FPS':>6}")
        for w in report.worker_stats.values():
            print(f"  {w.name:<28} {w.chunks:>5} {w.frames:>7} {w.busy_s:>8.1f} {w.fps:>6.1f}")
    failed = [r for r in report.inputs if r.status == "failed"]
    for r in failed:
        print(f"  FAILED {r.input}: {r.reason}")
    print(f"  report: {Path(report.out) / REPORT_NAME}")
    if report.signal is not None:
        print(f"realtime-vrn: interrupted ({report.signal}): {report.count('interrupted')} unfinished input(s) "
              f"left no files; run the same command again to finish them", file=sys.stderr)
    elif failed:
        names = ", ".join(r.output for r in failed[:5]) + (", ..." if len(failed) > 5 else "")
        print(f"realtime-vrn: error: {len(failed)} of {n} inputs failed ({names}); reasons above and in "
              f"{Path(report.out) / REPORT_NAME}", file=sys.stderr)
