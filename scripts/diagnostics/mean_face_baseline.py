"""Baseline: the held-out samples' true pose and camera with the mean ICT identity (and a neutral expression).

Renders each held-out seed's ground-truth volume three ways — the true head, the mean identity with the true
expression, the mean face — and scores each volume's iso-surface against the true face vertices with the dense
NME of ``realtime-vrn eval``. A network that knows the pose should beat "right pose, average face".

    python scripts/diagnostics/mean_face_baseline.py --count 40 [--depth-axis optical_axis]
"""

from __future__ import annotations

import argparse

import numpy as np

from realtime_vrn.crop import CropTransform
from realtime_vrn.training import evaluate as ev
from realtime_vrn.training import synth
from realtime_vrn.training.dataset import HELDOUT_SEED_BASE
from realtime_vrn.training.volumes import volume_from_depths


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=40)
    parser.add_argument("--depth-axis", choices=synth.DEPTH_AXES, default="line_of_sight")
    args = parser.parse_args()
    gen = synth.SynthGenerator(synth.SynthConfig(size=96, depth_bins=100, depth_axis=args.depth_axis))
    gen._raster.open()
    cfg, model, assets = gen.cfg, gen.model, gen.assets
    zrange = (cfg.depth_bins * synth._ZNEAR_BINS, cfg.depth_bins * synth._ZFAR_BINS)
    scores: dict[str, list[float]] = {"true head": [], "mean identity, true expression": [], "mean face": []}
    for seed in range(HELDOUT_SEED_BASE, HELDOUT_SEED_BASE + args.count):
        rng, scene = gen.scene(seed)  # rng continues with the draws sample() makes next (the tracker noise)
        identity, expression, head, cam = scene.identity, scene.expression, scene.head, scene.camera
        frame = cam.project(head)
        crop = CropTransform.from_landmarks(synth.tracker_noise(rng, frame[model.landmarks68][:, :2], cfg),
                                            size=cfg.size)
        z_shift = cfg.front_index - 2.0 * crop.scale * frame[: synth.FACE_LAST_VERTEX + 1, 2].max()

        def to_crop(points: np.ndarray) -> np.ndarray:
            out = np.column_stack([crop.to_crop(points[:, :2]), 2.0 * crop.scale * points[:, 2]])
            out[:, 2] += z_shift
            return out.astype(np.float32)

        truth = to_crop(frame).astype(np.float64) * [1.0, 1.0, 0.5]
        heads = (head, model.vertices(np.zeros_like(identity), expression),
                 model.vertices(np.zeros_like(identity), np.zeros_like(expression)))
        for name, h in zip(scores, heads):
            solid_v, solid_f = synth.face_solid(h, assets)
            front, back = gen._raster.depth_extremes(to_crop(cam.project(solid_v)), solid_f, zrange)
            verts, faces = ev._oracle_mesh(volume_from_depths(front, back, cfg.depth_bins).astype(np.float32))
            scores[name].append(ev.dense_nmes(verts, truth[: synth.FACE_LAST_VERTEX + 1],
                                              truth[model.landmarks68], faces)[0])
    for name, values in scores.items():
        print(f"{name}: dense NME {np.mean(values):.4f} ({len(values)} samples)")


if __name__ == "__main__":
    main()
