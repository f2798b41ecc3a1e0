"""Training data: synthetic samples drawn on the fly or read from on-disk shards, deterministic by seed.

Seeds, not files, name samples: sample ``k`` is ``SynthGenerator.sample(k)`` for the same :class:`SynthConfig`
and face model, so a shard can always be regenerated. Training seeds start at 0; the held-out evaluation set
uses seeds from :data:`HELDOUT_SEED_BASE` (continuous random identities, expressions and poses never repeat
across seeds, so held-out faces are never seen in training).

Shard file (``shard-<first seed>.npz``, numpy, uncompressed): ``image`` (N, S, S, 3) uint8 RGB; ``front``,
``back`` (N, S, S) float16 depth indices (NaN = empty); ``landmarks`` (N, 68, 3) float32 crop frame;
``crop_points`` (N, 68, 2) float32; ``pose`` (N, 3) float32 degrees; ``seed`` (N,) int64; ``config`` JSON of the
:class:`SynthConfig`; optionally ``face_vertices`` (N, V_face, 3) float32 (evaluation sets) and ``source``
(``"photo-fit"``: real photos with the ICT face fitted to them, :mod:`realtime_vrn.training.realfit`, seeds from
``REAL_SEED_BASE``; such shards mix with renders of the same size and depth bins in one folder).
"""

from __future__ import annotations

import dataclasses
import json
import logging
import time
from pathlib import Path
from typing import Iterator

import numpy as np
import torch
from torch.utils.data import Dataset, IterableDataset, get_worker_info

from realtime_vrn.model.guidance import image_channels, mediapipe_depth_map
from realtime_vrn.training.annotate import depth_points, mediapipe_points68
from realtime_vrn.training.facemodel import FaceModel
from realtime_vrn.training.shards import load_shard, shard_files, sidecar_path
from realtime_vrn.training.synth import SynthConfig, SynthGenerator, SynthSample

log = logging.getLogger(__name__)

#: First seed of the held-out evaluation set (training runs never get near it).
HELDOUT_SEED_BASE = 1_000_000_000
#: iBUG-68 index of each point's mirror image (for horizontal flips).
FLIP_68 = np.array(
    list(range(16, -1, -1)) + list(range(26, 16, -1)) + [27, 28, 29, 30] + [35, 34, 33, 32, 31]
    + [45, 44, 43, 42, 47, 46] + [39, 38, 37, 36, 41, 40]
    + [54, 53, 52, 51, 50, 49, 48, 59, 58, 57, 56, 55] + [64, 63, 62, 61, 60, 67, 66, 65],
    dtype=np.int64,
)


def config_json(cfg: SynthConfig) -> str:
    return json.dumps(dataclasses.asdict(cfg), sort_keys=True)


def config_from_json(text: str) -> SynthConfig:
    data = json.loads(text)
    data["frame_size"] = tuple(data["frame_size"])
    data["box_px"] = tuple(data["box_px"])
    data["focal_px"] = tuple(data["focal_px"])
    data.setdefault("depth_axis", "optical_axis")  # shards written before the choice existed (sessions 1-3)
    return SynthConfig(**data)


def stack_samples(samples: list[SynthSample], *, with_vertices: bool = False) -> dict[str, np.ndarray]:
    out = {
        "image": np.stack([s.image for s in samples]),
        "front": np.stack([s.front for s in samples]).astype(np.float16),
        "back": np.stack([s.back for s in samples]).astype(np.float16),
        "landmarks": np.stack([s.landmarks for s in samples]).astype(np.float32),
        "crop_points": np.stack([s.crop_points for s in samples]).astype(np.float32),
        "pose": np.stack([s.pose for s in samples]).astype(np.float32),
        "seed": np.array([s.seed for s in samples], np.int64),
    }
    if with_vertices:
        out["face_vertices"] = np.stack([s.face_vertices for s in samples]).astype(np.float32)
    return out


def write_shards(out_dir: str | Path, cfg: SynthConfig, first_seed: int, count: int, shard_size: int = 500,
                 *, with_vertices: bool = False, progress: bool = False,
                 face_model: str | Path | None = None) -> list[Path]:
    """Render samples ``first_seed .. first_seed + count - 1`` into shards of ``shard_size`` under ``out_dir``
    (``face_model``: an ``ict_face_model.npz``, default the shared one).

    Existing complete shards are kept (re-running resumes). Files are written to a temporary name and renamed, so
    a reader never sees half a shard.
    """
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = []
    bar = None
    if progress:
        from tqdm import tqdm

        bar = tqdm(total=count, unit="sample", desc="render")
    model = FaceModel.load(face_model) if face_model is not None else None
    with SynthGenerator(cfg, model) as gen:
        for start in range(first_seed, first_seed + count, shard_size):
            n = min(shard_size, first_seed + count - start)
            path = out_dir / f"shard-{start:010d}.npz"
            paths.append(path)
            if path.exists():
                if bar:
                    bar.update(n)
                continue
            samples = []
            for seed in range(start, start + n):
                samples.append(gen.sample(seed))
                if bar:
                    bar.update(1)
            tmp = path.with_suffix(".tmp.npz")
            np.savez(tmp, config=np.array(config_json(cfg)), **stack_samples(samples, with_vertices=with_vertices))
            tmp.rename(path)
    if bar:
        bar.close()
    return paths


def measure_samples_per_second(cfg: SynthConfig, n: int = 20) -> float:
    """Render ``n`` samples in this process (after one warm-up) and return samples/s."""
    with SynthGenerator(cfg) as gen:
        gen.sample(0)
        t = time.perf_counter()
        for seed in range(1, n + 1):
            gen.sample(seed)
        return n / (time.perf_counter() - t)


# ------------------------------------------------------------------------------------------- torch datasets


def to_training_item(image: np.ndarray, front: np.ndarray, back: np.ndarray, crop_points: np.ndarray,
                     rng: np.random.Generator | None = None, flip_p: float = 0.0,
                     mp_depth: np.ndarray | None = None) -> dict[str, torch.Tensor]:
    """One training item: ``image`` (3, S, S) float32 RGB [0, 1]; ``front``/``back`` (S, S) float32 depth indices
    (NaN = empty); ``points`` (68, 2) float32 crop px (the tracker-like points, for guided heatmaps); with
    ``mp_depth`` ((S, S) float32, :func:`realtime_vrn.model.guidance.mediapipe_depth_map`) also ``mp_depth``
    (1, S, S).

    With probability ``flip_p`` the item is mirrored left-right (image, depth maps, points, MediaPipe's depth map;
    the crop rule is symmetric, so a mirrored crop is the crop of the mirrored frame).
    """
    s = image.shape[0]
    points = crop_points.astype(np.float32)
    if rng is not None and flip_p > 0 and rng.random() < flip_p:
        image, front, back = image[:, ::-1], front[:, ::-1], back[:, ::-1]
        mp_depth = None if mp_depth is None else mp_depth[:, ::-1]
        points = points[FLIP_68].copy()
        points[:, 0] = (s - 1) - points[:, 0]
    item = {
        "image": torch.from_numpy(np.ascontiguousarray(image_channels(image))),
        "front": torch.from_numpy(np.ascontiguousarray(front, dtype=np.float32)),
        "back": torch.from_numpy(np.ascontiguousarray(back, dtype=np.float32)),
        "points": torch.from_numpy(points),
    }
    if mp_depth is not None:
        item["mp_depth"] = torch.from_numpy(np.ascontiguousarray(mp_depth, dtype=np.float32)[None])
    return item


class ShardDataset(Dataset):
    """Samples of every ``shard-*.npz`` under a folder, all held in memory (uint8 images, float16 depths)."""

    def __init__(self, folder: str | Path, flip_p: float = 0.2, seed: int = 0, points: str = "synthetic",
                 mp_depth: bool = False) -> None:
        """points: which 68 points the guided heatmaps use: "synthetic" (the shards' ``crop_points``, projected
        ICT landmarks + noise) or "mediapipe" (MediaPipe's on the crop, from the ``shard-K.mp.npz`` sidecars of
        ``realtime-vrn data annotate``; the synthetic points where MediaPipe found no face).
        mp_depth: also give each item MediaPipe's depth map (zeros where it found no face); needs the sidecars."""
        if points not in ("synthetic", "mediapipe"):
            raise ValueError(f"points must be 'synthetic' or 'mediapipe', got {points!r}")
        self.mp_depth = mp_depth
        self.folder = Path(folder)
        self.flip_p = flip_p
        self.seed = seed
        self.points = points
        self.arrays: dict[str, np.ndarray] = {}
        self.cfg: SynthConfig | None = None
        self.files: list[Path] = []
        self.refresh()

    def refresh(self) -> int:
        """Load shards that appeared since the last call (a renderer may still be writing). Returns new count."""
        new = [p for p in shard_files(self.folder) if p not in self.files]
        if self.points == "mediapipe" or self.mp_depth:  # shards still waiting for `data annotate` come later
            ready = [p for p in new if sidecar_path(p).is_file()]
            if new and not ready and not self.files:
                _mediapipe_points(new[0], 0)  # raises: says how to annotate
            new = ready
        for path in new:
            d = load_shard(path)
            cfg = config_from_json(str(d.pop("config")))
            if self.cfg is None:
                self.cfg = cfg
            elif (cfg.size, cfg.depth_bins) != (self.cfg.size, self.cfg.depth_bins):
                raise ValueError(f"shard {path} holds {cfg.size} px x {cfg.depth_bins} bins samples, the others "
                                 f"{self.cfg.size} px x {self.cfg.depth_bins}")
            d.pop("face_vertices", None)
            d.pop("source", None)
            if self.points == "mediapipe" or self.mp_depth:
                d["mp_points"] = _mediapipe_points(path, len(d["seed"]))
            for k, v in d.items():
                self.arrays[k] = v if k not in self.arrays else np.concatenate([self.arrays[k], v])
            self.files.append(path)
        if not self.files:
            raise FileNotFoundError(f"no shard-*.npz files in {self.folder}")
        if new and "mp_points" in self.arrays:
            found = np.isfinite(self.arrays["mp_points"][:, 0, 0])
            log.info("guidance points: MediaPipe's on %d of %d crops, the synthetic ones elsewhere",
                     int(found.sum()), len(found))
        return len(new)

    def __len__(self) -> int:
        return len(self.arrays["seed"])

    def __getitem__(self, i: int) -> dict[str, torch.Tensor]:
        rng = np.random.default_rng([self.seed, int(self.arrays["seed"][i])])
        a = self.arrays
        points, depth = a["crop_points"][i], None
        found = "mp_points" in a and np.isfinite(a["mp_points"][i, 0, 0])
        if self.points == "mediapipe" and found:
            points = mediapipe_points68(a["mp_points"][i:i + 1])[0]
        if self.mp_depth:
            size = a["image"].shape[1]
            depth = mediapipe_depth_map(depth_points(a["mp_points"][i]), size) if found \
                else np.zeros((size, size), np.float32)
        return to_training_item(a["image"][i], a["front"][i].astype(np.float32), a["back"][i].astype(np.float32),
                                points, rng, self.flip_p, depth)


def _mediapipe_points(shard: Path, count: int) -> np.ndarray:
    """(count, 478, 3) float32 MediaPipe crop points of a shard from its sidecar (NaN: no face)."""
    side = sidecar_path(shard)
    if not side.is_file():
        raise FileNotFoundError(f"{shard.name} has no MediaPipe sidecar {side.name}: run "
                                f"`realtime-vrn data annotate {shard.parent}` first")
    with np.load(side) as d:
        points = d["mp_points"]
    if points.shape != (count, 478, 3):
        raise ValueError(f"{side} holds {points.shape[0]} samples' points, its shard {count}: annotate it again")
    return points


class SynthStream(IterableDataset):
    """Endless on-the-fly samples (each DataLoader worker owns a renderer and a disjoint seed sequence).

    stride: seeds taken by other processes in between (``torchrun`` ranks: rank r of W starts at first seed + r
    and strides W, so the ranks never render the same face)."""

    def __init__(self, cfg: SynthConfig, first_seed: int = 0, flip_p: float = 0.0, stride: int = 1) -> None:
        self.cfg, self.first_seed, self.flip_p, self.stride = cfg, first_seed, flip_p, stride

    def __iter__(self) -> Iterator[dict[str, torch.Tensor]]:
        info = get_worker_info()
        wid, nw = (info.id, info.num_workers) if info else (0, 1)
        seed = self.first_seed + wid * self.stride
        with SynthGenerator(self.cfg) as gen:
            while True:
                s = gen.sample(seed)
                rng = np.random.default_rng([seed, 1])
                yield to_training_item(s.image, s.front, s.back, s.crop_points, rng, self.flip_p)
                seed += nw * self.stride


def network_input_batch(images: np.ndarray, points: np.ndarray, cfg, mp_points: np.ndarray | None = None
                        ) -> torch.Tensor:
    """(N, C, S, S) float32 network input from crops (N, S, S, 3) uint8 RGB and tracker points (N, 68, 2) crop px,
    by the same rule as inference (:func:`realtime_vrn.model.guidance.network_input`). mp_points: (N, 478, 3)
    MediaPipe crop points from the sidecars (z smaller nearer, NaN rows: no face), for depth-guided models."""
    from realtime_vrn.model.guidance import network_input

    mps = [None] * len(images) if mp_points is None else [depth_points(row) for row in mp_points]
    return torch.from_numpy(np.concatenate([network_input(img, cfg, pts, mp)
                                            for img, pts, mp in zip(images, points, mps)]))


def calibration_inputs(folders: list[Path], count: int, cfg) -> np.ndarray:
    """(count', C, S, S) float32 network inputs of crops drawn evenly from the shards of ``folders`` (each folder
    gives about count / len(folders), spread over its shards; count' <= count when the shards hold fewer), built by
    :func:`network_input_batch` from each crop and its shard's guidance points. For int8 calibration
    (``realtime-vrn weights quantize``). Raises FileNotFoundError for a folder without shards, ValueError when
    the shards' crop size differs from the model's."""
    per_folder = max(1, count // len(folders))
    batches = []
    for folder in folders:
        shards = shard_files(folder)
        if not shards:
            raise FileNotFoundError(f"no shard-*.npz files in {folder}")
        per_shard = max(1, -(-per_folder // len(shards)))
        taken = 0
        for path in shards:
            if taken >= per_folder:
                break
            with np.load(path, allow_pickle=False) as d:  # only the two arrays calibration needs, not the volumes
                images, points = d["image"], d["crop_points"]
            if images.shape[1] != cfg.input_size:
                raise ValueError(f"{path} holds {images.shape[1]} px crops, the model takes {cfg.input_size}")
            n = min(per_shard, per_folder - taken, len(images))
            rows = np.linspace(0, len(images) - 1, n).astype(int)
            batches.append(network_input_batch(images[rows], points[rows], cfg).numpy())
            taken += n
    return np.concatenate(batches)
