"""Training under torchrun: two CPU ranks (gloo) take the same steps as one rank with the doubled batch."""

from __future__ import annotations

import os
import subprocess
import sys

import numpy as np
import pytest
import torch

from realtime_vrn.training.train import GlobalBatchSampler, Ranks

SIZE, BINS = 32, 16


def test_ranks_split_the_global_batches_of_one_rank():
    one = iter(GlobalBatchSampler(100, 6, Ranks(0, 1, 0), seed=3))
    parts = [iter(GlobalBatchSampler(100, 3, Ranks(r, 2, r), seed=3)) for r in (0, 1)]
    for _ in range(5):
        assert next(one) == next(parts[0]) + next(parts[1])
    resumed = next(iter(GlobalBatchSampler(100, 6, Ranks(), seed=3, start_step=7)))
    assert resumed != next(iter(GlobalBatchSampler(100, 6, Ranks(), seed=3)))  # a resumed run draws fresh batches


def test_bad_torchrun_environment_is_refused(monkeypatch):
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setenv("RANK", "2")
    with pytest.raises(ValueError, match="rank 2 of 2"):
        Ranks.from_environment()


def _real_face_shards(folder, face_photos):
    """8 samples at 32 px from the bundled real photos' crops (depths: a box per sample), one shard file."""
    import cv2

    from realtime_vrn.crop import CropTransform
    from realtime_vrn.training.dataset import config_json
    from realtime_vrn.training.synth import SynthConfig

    images = []
    for path in face_photos:
        rgb = np.ascontiguousarray(cv2.imread(str(path))[:, :, ::-1])
        h, w = rgb.shape[:2]
        box = np.array([[w * 0.3, h * 0.3], [w * 0.7, h * 0.7], [w * 0.3, h * 0.7], [w * 0.7, h * 0.3]])
        images.append(CropTransform.from_landmarks(np.tile(box, (17, 1)), size=SIZE).warp(rgb))
    images = np.stack((images * 2)[:8])
    n = len(images)
    front = np.full((n, SIZE, SIZE), np.nan, np.float16)
    back = front.copy()
    for k in range(n):
        front[k, 8 + k:24, 6:26], back[k, 8 + k:24, 6:26] = 12 - k % 3, 2
    np.savez(folder / "shard-0000000000.npz", config=np.array(config_json(SynthConfig(size=SIZE, depth_bins=BINS))),
             image=images, front=front, back=back, landmarks=np.zeros((n, 68, 3), np.float32),
             crop_points=np.full((n, 68, 2), SIZE / 2, np.float32), pose=np.zeros((n, 3), np.float32),
             seed=np.arange(n, dtype=np.int64))


def _train(out, data, batch, nproc):
    args = ["train", "--out", str(out), "--data", str(data), "--size", str(SIZE), "--depth-bins", str(BINS),
            "--features", "16", "--levels", "2", "--branch-blocks", "1", "--inner-branch-blocks", "1",
            "--steps", "3", "--batch-size", str(batch), "--lr", "1e-3", "--no-resume"]
    launcher = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", str(nproc),
                "--module", "realtime_vrn"] if nproc > 1 else [sys.executable, "-m", "realtime_vrn"]
    env = {k: v for k, v in os.environ.items() if k not in ("WORLD_SIZE", "RANK", "LOCAL_RANK")}
    env["OMP_NUM_THREADS"] = "1"
    done = subprocess.run(launcher + args, capture_output=True, text=True, timeout=300, env=env)
    assert done.returncode == 0, done.stderr[-3000:]
    return torch.load(out / "last.pt", map_location="cpu", weights_only=False)


def test_two_gloo_ranks_equal_one_rank_with_the_doubled_batch(tmp_path, face_photos):
    data = tmp_path / "data"
    data.mkdir()
    _real_face_shards(data, face_photos)
    single = _train(tmp_path / "one", data, batch=4, nproc=1)
    double = _train(tmp_path / "two", data, batch=2, nproc=2)
    assert single["step"] == double["step"] == 3
    again = _train(tmp_path / "again", data, batch=4, nproc=1)["model"]  # the same run twice: deterministic
    for key, value in single["model"].items():
        if value.is_floating_point():
            np.testing.assert_array_equal(again[key].numpy(), value.numpy())
            np.testing.assert_allclose(double["model"][key].numpy(), value.numpy(), atol=2e-5, err_msg=key)
