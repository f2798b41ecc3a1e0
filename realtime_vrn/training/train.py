"""Training a VRN on synthetic faces: per-voxel sigmoid cross-entropy, checkpoints and resume, CPU or CUDA (AMP).

Loss: binary cross-entropy with logits, averaged over every voxel of the **full-resolution** volume (N, D, S, S).
The network's last layer is the release's fixed bilinear x4 upsample (a linear map without weights) of the
low-res logits, and the surface stage meshes exactly that upsampled field at logit 0, so the loss is put on the
field that is meshed: it penalises the surface position at crop-pixel precision, which a loss on the (S/4)^2
grid against a pooled target cannot (the upsample of the best low-res fit is not the best full-res field).
The extra cost is one upsample + BCE on D*S*S voxels, small next to the network on the CPU (measured ~10%).
``loss="lowres"`` (BCE of the low-res logits against the average-pooled occupancy) is kept for fast experiments.

Optimiser: the paper uses RMSProp at 1e-4, then 1e-5. Our small models from scratch get only thousands of steps
on a CPU, so the default is Adam at 1e-3 with a 200-step warm-up and a x0.1 drop for the last 20% of the steps
(``optimizer="rmsprop", lr=1e-4`` reproduces the paper's recipe).

The training state (model, optimiser, step, data position) is saved every ``checkpoint_every_s`` seconds to
``<out>/last.pt`` (a plain torch file, for resuming) and exported for inference with
:func:`export_model` (the package's checkpoint format).

Weight averaging: with ``ema > 0`` an exponential moving average of the weights (torch's ``AveragedModel``,
decay ``ema`` per step) is kept beside the trained weights and is what :func:`load_trained`, evaluation and export
use. Batch-8 Adam steps are noisy; the average removes most of that noise for free (the networks have no running
statistics to recompute: every normalisation is per image).
"""

from __future__ import annotations

import dataclasses
import json
import logging
import contextlib
import math
import os
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader, Sampler

from realtime_vrn.model.guidance import uses_mediapipe_depth
from realtime_vrn.model.network import VRN, VRNConfig, count_parameters, upsample_logits
from realtime_vrn.training.volumes import downsample_target, target_from_depths

log = logging.getLogger(__name__)

#: Steps of linear learning-rate warm-up from lr/100 (Adam from scratch on instance-normed nets is touchy).
WARMUP_STEPS = 200
#: Constant output of a hourglass added by :func:`init_from` (any positive value: the next normalisation removes it).
GROWN_STACK_SHIFT = 0.01
#: Fraction of occupied voxels in a typical synthetic volume; the head's bias starts at its logit.
PRIOR_OCCUPANCY = 0.1


@dataclass(frozen=True)
class TrainConfig:
    """One training run. Paths are folders; times in seconds."""

    out: str = "out/train"
    data: str | None = None              # folder of shards; None = render on the fly
    model: VRNConfig = VRNConfig(input_size=96, features=128, stacks=1, depth_bins=100)
    steps: int = 20000
    batch_size: int = 8
    optimizer: str = "adam"              # "adam" | "rmsprop"
    lr: float = 1e-3
    lr_drop_at: float = 0.8              # fraction of steps after which lr is x0.1
    loss: str = "full"                   # "full" | "lowres"
    flip_p: float = 0.2                  # paper's horizontal flip probability
    device: str = "cpu"
    amp: bool = True                     # mixed precision on CUDA (ignored on the CPU)
    threads: int = 1                     # torch CPU threads
    workers: int = 0                     # DataLoader worker processes
    seed: int = 0
    checkpoint_every_s: float = 300.0
    log_every: int = 20
    init: str | None = None              # warm start: a .safetensors model or a training state (last.pt)
    ema: float = 0.0                     # decay of the weight average (0 = off; e.g. 0.999)
    front_weight: float = 0.0            # extra loss weight of voxels near the front surface (0 = plain mean)
    points: str = "synthetic"            # guidance points: "synthetic" (ICT + noise) or "mediapipe" (sidecars)

    def __post_init__(self) -> None:
        if self.optimizer not in ("adam", "rmsprop"):
            raise ValueError(f"optimizer must be 'adam' or 'rmsprop', got {self.optimizer!r}")
        if self.loss not in ("full", "lowres"):
            raise ValueError(f"loss must be 'full' or 'lowres', got {self.loss!r}")
        if self.batch_size < 1 or self.steps < 1:
            raise ValueError("batch_size and steps must be >= 1")
        if self.front_weight < 0:
            raise ValueError(f"front_weight must be >= 0, got {self.front_weight}")
        if self.front_weight > 0 and self.loss != "full":
            raise ValueError("front_weight needs loss='full' (the low-res loss has no front surface to weigh)")
        if not 0.0 <= self.ema < 1.0:
            raise ValueError(f"ema must be in [0, 1), got {self.ema}")

    def to_dict(self) -> dict:
        d = dataclasses.asdict(self)
        d["model"] = dataclasses.asdict(self.model)
        return d

    @classmethod
    def from_dict(cls, d: dict) -> "TrainConfig":
        d = dict(d)
        d["model"] = VRNConfig.from_dict(d["model"])
        d.setdefault("ema", 0.0)  # runs from before weight averaging
        d.setdefault("front_weight", 0.0)
        return cls(**d)


#: Width (depth bins) of the band around the front surface that ``front_weight`` emphasises.
FRONT_SIGMA_BINS = 3.0


def front_band_weight(front: torch.Tensor, depth_bins: int, extra: float) -> torch.Tensor:
    """(N, D, S, S) voxel weights ``1 + extra * exp(-(z - front)^2 / (2 FRONT_SIGMA_BINS^2))``, 1 where the column
    is empty. front: (N, S, S) float depth indices (NaN = empty)."""
    z = torch.arange(depth_bins, device=front.device, dtype=front.dtype).view(1, -1, 1, 1)
    band = torch.exp(-0.5 * ((z - front[:, None]) / FRONT_SIGMA_BINS) ** 2)
    return 1.0 + extra * torch.nan_to_num(band, nan=0.0)


def voxel_loss(logits_lowres: torch.Tensor, front: torch.Tensor, back: torch.Tensor, mode: str = "full",
               front_weight: float = 0.0) -> torch.Tensor:
    """Mean per-voxel sigmoid cross-entropy.

    logits_lowres: (N, D, g, g) network logits (g = S / output stride); front, back: (N, S, S) float depth
    indices (NaN = empty).
    mode "full": upsample the logits like the release's head and compare with the (N, D, S, S) binary target;
    "lowres": compare the low-res logits with the average-pooled occupancy.
    front_weight > 0 (mode "full"): a weighted mean, voxels within a few bins of the front surface (what the
    dense NME measures) weighing up to ``1 + front_weight``; the walls and back plane of the solid keep weight 1.
    """
    d = logits_lowres.shape[1]
    target = target_from_depths(front, back, d)
    logits = logits_lowres.float()
    if mode == "full":
        full = upsample_logits(logits, front.shape[-1])
        if front_weight > 0:
            w = front_band_weight(front, d, front_weight)
            return (F.binary_cross_entropy_with_logits(full, target, reduction="none") * w).sum() / w.sum()
        return F.binary_cross_entropy_with_logits(full, target)
    return F.binary_cross_entropy_with_logits(logits, downsample_target(target, front.shape[-1] // logits.shape[-1]))


def network_batch(batch: dict[str, torch.Tensor], cfg: VRNConfig, device: torch.device) -> torch.Tensor:
    """(N, C, S, S) float32 input: RGB, then for guided models the 68 landmark heatmaps of ``batch["points"]``,
    then for depth-guided ones ``batch["mp_depth"]``."""
    x = batch["image"].to(device, non_blocking=True)
    if not cfg.guided:
        return x
    from realtime_vrn.model.guidance import landmark_heatmaps

    maps = torch.from_numpy(np.stack([landmark_heatmaps(p.numpy(), cfg.input_size) for p in batch["points"]]))
    parts = [x, maps.to(device)]
    if uses_mediapipe_depth(cfg):
        if "mp_depth" not in batch:
            raise ValueError("this model takes MediaPipe's depth map: train on annotated shards (`data annotate`)")
        parts.append(batch["mp_depth"].to(device))
    return torch.cat(parts, dim=1)


def learning_rate(cfg: TrainConfig, step: int) -> float:
    warm = min(1.0, (step + 1) / WARMUP_STEPS) if cfg.optimizer == "adam" else 1.0
    drop = 0.1 if step >= cfg.lr_drop_at * cfg.steps else 1.0
    return cfg.lr * max(warm, 0.01) * drop


def weight_average(net: VRN, decay: float) -> torch.optim.swa_utils.AveragedModel:
    """Exponential moving average of ``net``'s weights (``avg = decay * avg + (1 - decay) * w`` per update)."""
    from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn

    return AveragedModel(net, multi_avg_fn=get_ema_multi_avg_fn(decay), use_buffers=True)


def _optimizer(cfg: TrainConfig, params) -> torch.optim.Optimizer:
    if cfg.optimizer == "adam":
        return torch.optim.Adam(params, lr=cfg.lr)
    return torch.optim.RMSprop(params, lr=cfg.lr)


@dataclass(frozen=True)
class Ranks:
    """This process's place in a ``torchrun`` job (WORLD_SIZE, RANK, LOCAL_RANK); one rank without torchrun."""

    rank: int = 0
    world: int = 1
    local_rank: int = 0

    @property
    def main(self) -> bool:
        """Rank 0 writes the checkpoints, the logs and the progress bar."""
        return self.rank == 0

    @classmethod
    def from_environment(cls) -> "Ranks":
        try:
            world = int(os.environ.get("WORLD_SIZE", "1"))
            rank, local = int(os.environ.get("RANK", "0")), int(os.environ.get("LOCAL_RANK", "0"))
        except ValueError as err:
            raise ValueError(f"torchrun's WORLD_SIZE / RANK / LOCAL_RANK are not integers: {err}") from err
        if world < 1 or not 0 <= rank < world:
            raise ValueError(f"rank {rank} of {world} processes is not a valid torchrun placement")
        return cls(rank, world, local)


class GlobalBatchSampler(Sampler):
    """Endless batches of dataset indices, drawn with replacement from one seeded stream of *global* batches of
    ``batch_size x world`` indices; rank r takes the r-th slice. W ranks with batch B therefore train on exactly
    the samples of one rank with batch W x B (DistributedDataParallel averages their gradients: the same step).
    The stream starts from (seed, dataset size, start step), so a resumed run draws fresh batches."""

    def __init__(self, size: int, batch_size: int, ranks: Ranks, seed: int, start_step: int = 0) -> None:
        self.size, self.batch_size, self.ranks = size, batch_size, ranks
        self.key = [seed, size, start_step]

    def __iter__(self):
        rng = np.random.default_rng(self.key)
        lo = self.ranks.rank * self.batch_size
        while True:
            batch = rng.integers(0, self.size, size=self.batch_size * self.ranks.world)
            yield batch[lo:lo + self.batch_size].tolist()

    def __len__(self) -> int:
        return 10**9


def _loader(cfg: TrainConfig, ranks: Ranks = Ranks(), step: int = 0) -> tuple[DataLoader, object]:
    from realtime_vrn.training.dataset import ShardDataset, SynthStream
    from realtime_vrn.training.synth import SynthConfig

    if cfg.data:
        ds = ShardDataset(cfg.data, flip_p=cfg.flip_p, seed=cfg.seed, points=cfg.points,
                          mp_depth=uses_mediapipe_depth(cfg.model))
        if ds.cfg.size != cfg.model.input_size or ds.cfg.depth_bins != cfg.model.depth_bins:
            raise ValueError(f"shards in {cfg.data} are {ds.cfg.size}px x {ds.cfg.depth_bins} bins, the model "
                             f"expects {cfg.model.input_size}px x {cfg.model.depth_bins} bins")
        return _loader_for(ds, cfg, ranks, step)
    if cfg.points != "synthetic" or uses_mediapipe_depth(cfg.model):
        raise ValueError("--points mediapipe and --mediapipe-depth need rendered shards (--data) annotated by "
                         "`realtime-vrn data annotate`")
    synth = SynthConfig(size=cfg.model.input_size, depth_bins=cfg.model.depth_bins)
    # each rank renders its own seeds (rank r of W: first seeds r, r + W, ... per DataLoader worker)
    ds = SynthStream(synth, first_seed=cfg.seed * 10_000_000 + step * cfg.batch_size * ranks.world + ranks.rank,
                     flip_p=cfg.flip_p, stride=ranks.world)
    return DataLoader(ds, batch_size=cfg.batch_size, num_workers=cfg.workers), ds


class _LowRes(torch.nn.Module):
    """``net.forward_lowres`` as a module's ``forward``: what DistributedDataParallel wraps (it hooks forward)."""

    def __init__(self, net: VRN) -> None:
        super().__init__()
        self.net = net

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net.forward_lowres(x)


def _start_ranks(cfg: TrainConfig, ranks: Ranks) -> torch.device:
    """The device of this rank; under torchrun also joins the process group (NCCL on CUDA, gloo on the CPU)."""
    if ranks.world == 1:
        return torch.device(cfg.device)
    import torch.distributed as dist

    if cfg.device.startswith("cuda"):
        device, backend = torch.device("cuda", ranks.local_rank), "nccl"
        torch.cuda.set_device(device)
    else:
        device, backend = torch.device(cfg.device), "gloo"
    if not dist.is_initialized():
        dist.init_process_group(backend)
    log.info("rank %d of %d (%s, %s)", ranks.rank, ranks.world, backend, device)
    return device


def train(cfg: TrainConfig, resume: bool = True, progress: bool = True, max_seconds: float | None = None) -> Path:
    """Run (or resume) training; returns the path of the last training state (``<out>/last.pt``).

    Writes ``<out>/config.json``, ``<out>/log.jsonl`` (step, seconds, loss, lr) and ``<out>/last.pt`` every
    ``checkpoint_every_s`` and at the end; ``<out>/step-<k>.pt`` snapshots are not kept (disk).
    """
    ranks = Ranks.from_environment()
    out = Path(cfg.out)
    if ranks.main:
        out.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(cfg.seed)
    if cfg.device == "cpu":
        torch.set_num_threads(cfg.threads)
    device = _start_ranks(cfg, ranks)
    try:
        return _train(cfg, ranks, device, out, resume, progress, max_seconds)
    finally:
        if ranks.world > 1:
            import torch.distributed as dist

            dist.destroy_process_group()


def _train(cfg: TrainConfig, ranks: Ranks, device: torch.device, out: Path, resume: bool, progress: bool,
           max_seconds: float | None) -> Path:
    net = VRN(cfg.model).to(device)
    opt = _optimizer(cfg, net.parameters())
    use_amp = cfg.amp and device.type == "cuda"
    scaler = torch.amp.GradScaler("cuda", enabled=use_amp)
    state_path = out / "last.pt"
    step, elapsed = 0, 0.0
    with torch.no_grad():  # start from the prior occupancy instead of p = 0.5 everywhere
        net.head_out.bias.fill_(math.log(PRIOR_OCCUPANCY / (1 - PRIOR_OCCUPANCY)))
    state = None
    if resume and state_path.exists():
        state = torch.load(state_path, map_location=device, weights_only=False)
        net.load_state_dict(state["model"], strict=True)
        opt.load_state_dict(state["optimizer"])
        step, elapsed = state["step"], state["elapsed_s"]
        log.info("resumed %s at step %d (%.0f s trained)", state_path, step, elapsed)
    elif cfg.init:
        init_from(net, cfg.init)
        log.info("initialised from %s", cfg.init)
    average = weight_average(net, cfg.ema) if cfg.ema > 0 else None
    if average is not None and state is not None and state.get("ema") is not None:
        average.load_state_dict(state["ema"])
    if ranks.main:
        (out / "config.json").write_text(json.dumps(cfg.to_dict(), indent=2))
        log.info("model %s: %d parameters", cfg.model, count_parameters(net))
    model: torch.nn.Module = _LowRes(net)
    if ranks.world > 1:
        from torch.nn.parallel import DistributedDataParallel

        model = DistributedDataParallel(model, device_ids=[device.index] if device.type == "cuda" else None)

    loader, dataset = _loader(cfg, ranks, step)
    bar = None
    if progress and ranks.main:
        from tqdm import tqdm

        bar = tqdm(total=cfg.steps, initial=step, unit="step", dynamic_ncols=True)
    t_start = time.perf_counter() - elapsed
    t_ckpt = time.perf_counter()
    t_refresh = time.perf_counter()
    running = None
    net.train()
    with open(out / "log.jsonl", "a") if ranks.main else contextlib.nullcontext() as logf:
        it = iter(loader)
        while step < cfg.steps:
            batch = next(it)
            lr = learning_rate(cfg, step)
            for g in opt.param_groups:
                g["lr"] = lr
            x = network_batch(batch, cfg.model, device)
            front = batch["front"].to(device)
            back = batch["back"].to(device)
            with torch.autocast(device.type, dtype=torch.float16, enabled=use_amp):
                logits = model(x)
            loss = voxel_loss(logits, front, back, cfg.loss, cfg.front_weight)
            opt.zero_grad(set_to_none=True)
            scaler.scale(loss).backward()
            scaler.step(opt)
            scaler.update()
            if average is not None:
                average.update_parameters(net)
            step += 1
            value = float(loss.detach())
            if not math.isfinite(value):
                raise FloatingPointError(f"loss became {value} at step {step}")
            running = value if running is None else 0.98 * running + 0.02 * value
            if bar:
                bar.update(1)
                bar.set_postfix(loss=f"{running:.4f}", lr=f"{lr:.1e}")
            if logf is not None and step % cfg.log_every == 0:
                logf.write(json.dumps({"step": step, "s": round(time.perf_counter() - t_start, 1),
                                       "loss": round(value, 5), "avg": round(running, 5), "lr": lr}) + "\n")
                logf.flush()
            now = time.perf_counter()
            if ranks.main and (now - t_ckpt > cfg.checkpoint_every_s or step == cfg.steps):
                _save_state(state_path, net, opt, step, now - t_start, cfg, average)
                t_ckpt = now
            # one rank alone: pick up shards a renderer is still writing (several ranks keep one data set)
            if cfg.data and now - t_refresh > 120 and cfg.workers == 0 and ranks.world == 1:
                if dataset.refresh():
                    loader, _ = _loader_for(dataset, cfg, ranks, step)
                    it = iter(loader)
                t_refresh = now
            if max_seconds is not None and _all_agree(now - t_start >= max_seconds, ranks, device):
                if ranks.main:
                    _save_state(state_path, net, opt, step, now - t_start, cfg, average)
                break
    if bar:
        bar.close()
    return state_path


def init_from(net: VRN, source: str | Path) -> None:
    """Warm start ``net`` from a trained model of the same architecture (a ``.safetensors`` checkpoint of the
    package or a training state ``last.pt``).

    Three ways to grow a trained model are allowed, all starting as (or, for the third, nearly as) the source:

    - a source with fewer input channels initialises one with more (unguided 3 -> guided 3 + 68, guided ->
      guided with MediaPipe's depth 3 + 68 + 1): the stem's weights for the new channels start at zero, and the
      network learns what they add;
    - a source with fewer hourglasses initialises a deeper stack: the extra hourglasses keep their fresh weights
      except the last normalisation of each residual branch (``lin2``), whose scale starts at 0 and shift at a
      small positive constant. Such a stack adds the same constant to every feature, which the next
      per-image normalisation (the next stack's first block, the head) removes exactly. Its ReLU is open, so the
      scale gets a gradient at the first step and the layers inside the hourglass from the second (a zero
      shift would close the ReLU for good);
    - a stride-4 source initialises a network with the refinement head (``output_stride=2``): the head keeps its
      fresh weights, its last convolution zero, so the output is the source's logits upsampled x2 (then x2 again
      by the surface stage, instead of x4 at once: a few thousandths of a logit apart).

    Any other mismatch raises ``ValueError`` naming it.
    """
    source = Path(source)
    if source.suffix == ".safetensors":
        from realtime_vrn.model.checkpoint import load_checkpoint

        state = load_checkpoint(source).state_dict
    else:
        state = trained_weights(torch.load(source, map_location="cpu", weights_only=False))
    own = net.state_dict()
    source_stacks = len({k.split(".")[1] for k in state if k.startswith("stacks.")})
    grown_stacks = [k for k in own if k.startswith("stacks.") and int(k.split(".")[1]) >= source_stacks > 0]
    grown_head = [k for k in own if k.startswith("refine.") and not any(s.startswith("refine.") for s in state)]
    problems = [f"{k}: missing in {source.name}" for k in own
                if k not in state and k not in grown_stacks and k not in grown_head]
    problems += [f"{k}: not in this network" for k in sorted(state) if k not in own]  # sorted: the same message
    merged = {}
    for key, value in sorted(state.items()):
        if key not in own:
            continue
        target = own[key]
        if value.shape == target.shape:
            merged[key] = value
        elif key == "stem_conv.weight" and value.shape[1] < target.shape[1] and value.shape[0] == target.shape[0] \
                and value.shape[2:] == target.shape[2:]:
            grown = torch.zeros_like(target)
            grown[:, :value.shape[1]] = value
            merged[key] = grown
        else:
            problems.append(f"{key}: {tuple(value.shape)} in {source.name}, {tuple(target.shape)} here")
    if problems:
        raise ValueError(f"cannot initialise from {source}: " + "; ".join(problems[:8])
                         + (f" (+{len(problems) - 8} more)" if len(problems) > 8 else ""))
    for key in grown_stacks + grown_head:
        merged[key] = own[key]
    net.load_state_dict(merged, strict=True)
    with torch.no_grad():
        for stack in net.stacks[source_stacks:]:
            norm = stack.lin2[1]
            norm.weight.zero_()
            norm.bias.fill_(GROWN_STACK_SHIFT)


def _loader_for(ds, cfg: TrainConfig, ranks: Ranks = Ranks(), step: int = 0) -> tuple[DataLoader, object]:
    sampler = GlobalBatchSampler(len(ds), cfg.batch_size, ranks, cfg.seed, step)
    return DataLoader(ds, batch_sampler=sampler, num_workers=cfg.workers), ds


def _all_agree(flag: bool, ranks: Ranks, device: torch.device) -> bool:
    """True when rank 0 says so (all ranks stop at the same step; a collective call under torchrun)."""
    if ranks.world == 1:
        return flag
    import torch.distributed as dist

    t = torch.tensor([1.0 if flag else 0.0], device=device)
    dist.broadcast(t, src=0)
    return bool(t.item())


def _save_state(path: Path, net: VRN, opt, step: int, elapsed: float, cfg: TrainConfig, average=None) -> None:
    tmp = path.with_suffix(".tmp")
    torch.save({"model": net.state_dict(), "optimizer": opt.state_dict(), "step": step, "elapsed_s": elapsed,
                "config": cfg.to_dict(), "ema": None if average is None else average.state_dict()}, tmp)
    tmp.replace(path)
    log.info("saved %s (step %d)", path, step)


def trained_weights(state: dict, averaged: bool = True) -> dict[str, torch.Tensor]:
    """The network weights of a training state: the weight average when it has one (and ``averaged``)."""
    if averaged and state.get("ema") is not None:
        prefix = "module."
        return {k[len(prefix):]: v for k, v in state["ema"].items() if k.startswith(prefix)}
    return state["model"]


def load_trained(state_path: str | Path, device: str = "cpu", averaged: bool = True) -> tuple[VRN, dict]:
    """A network from a training state file (``last.pt``), in eval mode, and the state's metadata.

    ``averaged``: use the weight average when the run kept one (``TrainConfig.ema``), else the trained weights."""
    state = torch.load(state_path, map_location=device, weights_only=False)
    cfg = TrainConfig.from_dict(state["config"])
    net = VRN(cfg.model)
    net.load_state_dict(trained_weights(state, averaged), strict=True)
    net.eval()
    meta = {"step": state["step"], "elapsed_s": state["elapsed_s"], "train_config": state["config"],
            "averaged": averaged and state.get("ema") is not None}
    return net, meta


#: Licence of weights trained here: the code is ours and the only data is the ICT Face Model (MIT).
TRAINED_LICENCE = "MIT (trained by realtime-vrn on synthetic renders of the ICT Face Model, MIT)"
#: ... when the renders wore skin baked from real photos (``data render --skin-bank``).
TRAINED_LICENCE_REAL_SKIN = (
    "MIT (trained by realtime-vrn on synthetic renders of the ICT Face Model, MIT, wearing skin colours baked from "
    "the photos and clips of ../shared/data/faces-pool and ../shared/data/faces: example and test files of MIT / "
    "Apache-2.0 / BSD projects, listed with their sources in each folder's SOURCE.txt; no photo is shipped)")
#: ... when real photos with the ICT face fitted to them were among the samples (``data fit``).
TRAINED_LICENCE_REAL_PHOTOS = (
    "MIT (trained by realtime-vrn on synthetic renders of the ICT Face Model, MIT, and on the photos and clips of "
    "../shared/data/faces-pool and ../shared/data/faces (example and test files of MIT / Apache-2.0 / BSD "
    "projects, listed with their sources in each folder's SOURCE.txt) with the ICT face fitted to them; no photo "
    "is shipped)")


def training_licence(data: str | None) -> str:
    """The licence line for weights trained on the shard folder ``data`` (None: rendered on the fly, no bank)."""
    from realtime_vrn.training.dataset import config_from_json, shard_files

    licence = TRAINED_LICENCE
    if data and Path(data).is_dir():
        for shard in shard_files(data):
            with np.load(shard) as z:
                if "source" in z.files and str(z["source"]) == "photo-fit":
                    return TRAINED_LICENCE_REAL_PHOTOS
                if config_from_json(str(z["config"])).skin_bank:
                    licence = TRAINED_LICENCE_REAL_SKIN
    return licence


def export_model(state_path: str | Path, out: str | Path, description: str = "", card: bool = True,
                 licence: str | None = None) -> Path:
    """Write the trained network of a training state in the package's checkpoint format (``model/checkpoint.py``),
    with its provenance (step, training time, configuration) and, with ``card``, the SHA-256 sidecar.
    licence: default :func:`training_licence` of the run's data folder."""
    from realtime_vrn.model.checkpoint import CheckpointMeta, save_checkpoint, write_model_card

    net, meta = load_trained(state_path)
    tc = meta["train_config"]
    provenance = (f"realtime-vrn training run: {meta['step']} steps x batch {tc['batch_size']}, "
                  f"{meta['elapsed_s'] / 3600:.2f} h, optimizer {tc['optimizer']} lr {tc['lr']}, loss {tc['loss']}"
                  + (f", weight average (decay {tc['ema']})" if meta["averaged"] else ""))
    if licence is None:
        if tc.get("data") and not Path(tc["data"]).is_dir():
            raise FileNotFoundError(f"the training data {tc['data']} is gone: its licence cannot be checked; "
                                    "give the licence explicitly")
        licence = training_licence(tc.get("data"))
    info = CheckpointMeta(source=provenance, licence=licence,
                          description=(description + " " if description else "") + json.dumps(tc, sort_keys=True))
    save_checkpoint(out, net, info)
    if card:
        write_model_card(out)
    return Path(out)
