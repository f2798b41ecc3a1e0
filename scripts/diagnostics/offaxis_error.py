"""Held-out dense NME against the face's off-axis angle (session 4's diagnosis of the depth-axis ambiguity).

For each sample of an ``realtime-vrn eval`` report, the angle between the camera's optical axis and the ray
through the face's landmarks is recomputed from the sample's seed (the generator is deterministic), and the
NMEs are grouped by that angle. With ground truth measured along the optical axis (sessions 1-3) the error grows
with the angle; with depth along the line of sight it should not.

    python scripts/diagnostics/offaxis_error.py out/eval/s1_los/eval.json
"""

from __future__ import annotations

import argparse
import json

import numpy as np

from realtime_vrn.training import synth


def off_axis_degrees(gen: synth.SynthGenerator, seed: int) -> float:
    """Angle (deg) between the optical axis and the ray to the landmarks' centre of ``sample(seed)``."""
    _, scene = gen.scene(seed)
    centre = scene.camera.to_camera(scene.head[gen.model.landmarks68]).mean(axis=0)
    return float(np.degrees(np.arctan(np.linalg.norm(centre[:2]) / -centre[2])))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("report", help="eval.json written by realtime-vrn eval")
    args = parser.parse_args()
    per = json.load(open(args.report))["per_sample"]
    gen = synth.SynthGenerator(synth.SynthConfig())  # the camera draws do not depend on size or depth
    angle = np.array([off_axis_degrees(gen, p["seed"]) for p in per])
    nme = np.array([p["nme"] for p in per])
    print(f"off-axis angle: median {np.median(angle):.1f} deg, 90th percentile {np.percentile(angle, 90):.1f}, "
          f"max {angle.max():.1f}; correlation with the NME {np.corrcoef(nme, angle)[0, 1]:.2f}")
    for lo, hi in ((0, 4), (4, 8), (8, 12), (12, 90)):
        sel = (angle >= lo) & (angle < hi)
        if sel.any():
            print(f"{lo:>2}-{hi:<2} deg: {sel.sum():3d} samples, NME {nme[sel].mean():.4f}")


if __name__ == "__main__":
    main()
