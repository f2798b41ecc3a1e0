"""The VRN stacked hourglass, faithful to the released vrn-unguided.t7 and configurable.

Layer by layer as `../shared/docs/vrn-reference.md` §2 and the t7 layer dump describe. The default
:class:`VRNConfig` is the released network (19,184,968 parameters); smaller variants of the family
(fewer features, stacks or blocks, another input size or number of depth bins, extra guidance input
channels) are the same code with another configuration.

Module registration order equals the depth-first order of the Torch7 file, so
``[m for m in net.modules() if isinstance(m, (nn.Conv2d, ImageNorm))]`` lines up one to one with the
file's ``SpatialConvolution`` / ``SpatialBatchNormalization`` modules (the converter relies on it).
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

#: BatchNorm epsilon of the Torch7 ``nn`` package the release pins.
BN_EPS = 1e-5
#: The release's head: a bilinear upsample of the hourglass grid by this factor (48 -> 192).
HEAD_UPSAMPLE = 4
#: Output strides a configuration may ask for: the release's 4, or 2 with the refinement head (:class:`Refine`).
OUTPUT_STRIDES = (2, 4)
#: Channels of the refinement head's convolutions.
REFINE_WIDTH = 64


@dataclass(frozen=True)
class VRNConfig:
    """Architecture of one member of the VRN family. Defaults are the released vrn-unguided model.

    input_size:  side of the square RGB input crop, pixels; must be a multiple of 8.
    in_channels: 3 for the unguided model (RGB), 3 + 68 for the guided one (RGB + landmark heatmaps).
    features:    channels of the hourglass (256 in the release); the stem uses features/4 and /2.
    stacks:      number of hourglasses, each added residually to its input.
    levels:      recursion depth of each hourglass (the recursion stays at 1/4 resolution).
    branch_blocks / inner_branch_blocks: residual blocks of the pooled branch of an outer / the innermost level.
    depth_bins:  output channels = voxels along z (200 in the release).
    output_stride: input pixels per node of the output logit grid: 4 in the release (the hourglass grid);
                 2 adds the refinement head (:class:`Refine`), a logit grid twice as fine in x and y.
    """

    input_size: int = 192
    in_channels: int = 3
    features: int = 256
    stacks: int = 2
    levels: int = 4
    branch_blocks: int = 6
    inner_branch_blocks: int = 9
    depth_bins: int = 200
    output_stride: int = HEAD_UPSAMPLE

    def __post_init__(self) -> None:
        if self.input_size % 8 or self.input_size <= 0:
            raise ValueError(f"input_size must be a positive multiple of 8, got {self.input_size}")
        if self.features % 4 or self.features <= 0:
            raise ValueError(f"features must be a positive multiple of 4, got {self.features}")
        for name in ("in_channels", "stacks", "levels", "branch_blocks", "inner_branch_blocks", "depth_bins"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.output_stride not in OUTPUT_STRIDES:
            raise ValueError(f"output_stride must be one of {OUTPUT_STRIDES}, got {self.output_stride}")

    @property
    def grid_size(self) -> int:
        """Side of the low-resolution logit grid the network outputs (input_size / output_stride)."""
        return self.input_size // self.output_stride

    @property
    def guided(self) -> bool:
        return self.in_channels > 3

    def to_json(self) -> str:
        return json.dumps(dataclasses.asdict(self), sort_keys=True)

    @classmethod
    def from_dict(cls, data: dict) -> "VRNConfig":
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ValueError(f"unknown VRN configuration keys: {unknown}")
        return cls(**data)


class ImageNorm(nn.Module):
    """Torch7 ``SpatialBatchNormalization`` as the release runs it: statistics of each image alone.

    Every BN of the released file has ``train=True`` and is never switched to evaluation, so a batch of one is
    normalised with its own per-channel mean and biased variance. That is instance normalisation with an affine
    gamma/beta, which also keeps the frames of a batch independent.
    """

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.ones(channels))
        self.bias = nn.Parameter(torch.zeros(channels))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.instance_norm(x, weight=self.weight, bias=self.bias, eps=BN_EPS)


class Residual(nn.Module):
    """Pre-activation bottleneck: BN-ReLU-conv1x1(cout/2)-BN-ReLU-conv3x3-BN-ReLU-conv1x1(cout) + skip.

    The skip is the identity when cin == cout, else a single conv1x1 (no BN).
    """

    def __init__(self, cin: int, cout: int) -> None:
        super().__init__()
        mid = cout // 2
        self.bn1 = ImageNorm(cin)
        self.conv1 = nn.Conv2d(cin, mid, 1)
        self.bn2 = ImageNorm(mid)
        self.conv2 = nn.Conv2d(mid, mid, 3, padding=1)
        self.bn3 = ImageNorm(mid)
        self.conv3 = nn.Conv2d(mid, cout, 1)
        self.skip = nn.Conv2d(cin, cout, 1) if cin != cout else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.conv1(F.relu(self.bn1(x)))
        y = self.conv2(F.relu(self.bn2(y)))
        y = self.conv3(F.relu(self.bn3(y)))
        return y + (x if self.skip is None else self.skip(x))


class Level(nn.Module):
    """One level of the VRN hourglass: ``Res(A(x) + B(x))``.

    A = three residual blocks at the current resolution, then the nested level (the recursion stays in the
    un-pooled branch); B = maxpool 2, ``n`` residual blocks at half resolution, nearest upsample x2.
    """

    def __init__(self, depth: int, features: int, branch_blocks: int, inner_branch_blocks: int) -> None:
        super().__init__()
        self.upper = nn.Sequential(*(Residual(features, features) for _ in range(3)))
        self.inner = (
            Level(depth - 1, features, branch_blocks, inner_branch_blocks) if depth > 1 else None
        )
        n_lower = branch_blocks if depth > 1 else inner_branch_blocks
        self.lower = nn.Sequential(*(Residual(features, features) for _ in range(n_lower)))
        self.post = Residual(features, features)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        a = self.upper(x)
        if self.inner is not None:
            a = self.inner(a)
        b = self.lower(F.max_pool2d(x, 2))
        b = F.interpolate(b, scale_factor=2, mode="nearest")
        return self.post(a + b)


class ConvNormReLU(nn.Sequential):
    def __init__(self, cin: int, cout: int) -> None:
        super().__init__(nn.Conv2d(cin, cout, 1), ImageNorm(cout), nn.ReLU())


class Stack(nn.Module):
    """One hourglass, added residually: ``x + F(x)``, F = Level -> (conv1x1, BN, ReLU) x 2."""

    def __init__(self, cfg: VRNConfig) -> None:
        super().__init__()
        self.level = Level(cfg.levels, cfg.features, cfg.branch_blocks, cfg.inner_branch_blocks)
        self.lin1 = ConvNormReLU(cfg.features, cfg.features)
        self.lin2 = ConvNormReLU(cfg.features, cfg.features)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.lin2(self.lin1(self.level(x)))


class Refine(nn.Module):
    """The refinement head (``output_stride=2``, ours, not in the paper): logits on a grid twice as fine.

    The release's output is the hourglass grid (S/4) upsampled bilinearly, so the surface it can represent is
    about a bilinear interpolation of an (S/4)^2 depth map: on our 96-px crops the ground-truth volumes sampled
    that way already score 0.031 dense NME, twice the 0.016 of full resolution. This head adds, on the S/2 grid,
    a residual to the release head's logits (upsampled x2, align_corners=True), computed from the head's
    features (upsampled x2) and the stem's S/2 features: 1x1 conv -> norm -> ReLU -> 3x3 conv -> norm -> ReLU ->
    1x1 conv to D. The last conv starts at zero, so a network warm-started from a stride-4 one begins as that
    network (up to the difference between one bilinear x4 upsample and two x2 ones).

    Input: head features (N, F, g, g), stem features (N, C, 2g, 2g); output (N, D, 2g, 2g) logits.
    """

    def __init__(self, features: int, skip_channels: int, depth_bins: int, width: int = REFINE_WIDTH) -> None:
        super().__init__()
        self.mix = nn.Conv2d(features + skip_channels, width, 1)
        self.mix_bn = ImageNorm(width)
        self.conv = nn.Conv2d(width, width, 3, padding=1)
        self.conv_bn = ImageNorm(width)
        self.out = nn.Conv2d(width, depth_bins, 1)
        nn.init.zeros_(self.out.weight)
        nn.init.zeros_(self.out.bias)

    def forward(self, coarse_logits: torch.Tensor, features: torch.Tensor, skip: torch.Tensor) -> torch.Tensor:
        size = skip.shape[-2:]
        up = F.interpolate(features, size=size, mode="bilinear", align_corners=False)
        y = F.relu(self.mix_bn(self.mix(torch.cat([up, skip], 1))))
        y = F.relu(self.conv_bn(self.conv(y)))
        return upsample_logits(coarse_logits, size[-1]) + self.out(y)


class VRN(nn.Module):
    """Volumetric Regression Network.

    Input:  (N, in_channels, S, S) float32, RGB in [0, 1] (then heatmaps in [0, 1] for guided models), S =
            ``cfg.input_size``, crop pixels (row y down, column x right). No mean/std normalisation.
    Output of :meth:`forward_lowres`: (N, D, g, g) float32 **logits**, g = ``cfg.grid_size`` (S/4, the hourglass
            grid, in the release; S/2 with the refinement head), D = depth bins, ordered (N, z, y, x); higher z =
            nearer the camera. The released model's last layers (bilinear upsample to S x S with
            align_corners=True, then sigmoid) are left to the surface stage, which evaluates them only where
            needed.
    Output of :meth:`forward`: (N, D, S, S) float32 logits, the full-resolution volume (upsampled, no sigmoid).
    """

    def __init__(self, cfg: VRNConfig | None = None) -> None:
        super().__init__()
        self.cfg = cfg = cfg or VRNConfig()
        f = cfg.features
        self.stem_conv = nn.Conv2d(cfg.in_channels, f // 4, 7, stride=2, padding=3)
        self.stem_bn = ImageNorm(f // 4)
        self.stem_res1 = Residual(f // 4, f // 2)
        self.stem_res2 = Residual(f // 2, f // 2)
        self.stem_res3 = Residual(f // 2, f)
        self.stacks = nn.ModuleList(Stack(cfg) for _ in range(cfg.stacks))
        self.head = ConvNormReLU(f, f)
        self.head_out = nn.Conv2d(f, cfg.depth_bins, 1)
        # Registered last: the release's modules keep the Torch7 file's order.
        self.refine = Refine(f, f // 2, cfg.depth_bins) if cfg.output_stride == 2 else None

    def forward_lowres(self, x: torch.Tensor) -> torch.Tensor:
        x = F.relu(self.stem_bn(self.stem_conv(x)))
        skip = self.stem_res1(x)  # (N, F/2, S/2, S/2)
        x = F.max_pool2d(skip, 2)
        x = self.stem_res3(self.stem_res2(x))
        for stack in self.stacks:
            x = stack(x)
        features = self.head(x)
        logits = self.head_out(features)
        if self.refine is not None:
            logits = self.refine(logits, features, skip)
        return logits

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return upsample_logits(self.forward_lowres(x), self.cfg.input_size)


def upsample_logits(lowres: torch.Tensor, size: int) -> torch.Tensor:
    """The release's final ``SpatialUpSamplingBilinear``: (N, D, h, w) -> (N, D, size, size), align_corners=True."""
    return F.interpolate(lowres, size=(size, size), mode="bilinear", align_corners=True)


def count_parameters(net: nn.Module) -> int:
    return sum(p.numel() for p in net.parameters())
