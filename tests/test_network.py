"""The VRN network: the released architecture's size and layout, output shapes, configuration checks."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from realtime_vrn.model.network import VRN, ImageNorm, VRNConfig, count_parameters, upsample_logits

SMALL = VRNConfig(features=64, stacks=1, levels=2, depth_bins=32, input_size=96)
RELEASED_PARAMETERS = 19_184_968


pytestmark = pytest.mark.usefixtures("one_torch_thread")  # conftest.py


@pytest.fixture(scope="module")
def released() -> VRN:
    torch.manual_seed(0)
    return VRN().eval()


def test_released_network_has_the_t7_parameter_count(released):
    assert count_parameters(released) == RELEASED_PARAMETERS


def test_released_network_layer_layout_matches_the_t7_dump(released):
    convs = [m for m in released.modules() if isinstance(m, nn.Conv2d)]
    norms = [m for m in released.modules() if isinstance(m, ImageNorm)]
    assert len(convs) == 276 and len(norms) == 273
    assert tuple(convs[0].weight.shape) == (64, 3, 7, 7)
    assert tuple(convs[-1].weight.shape) == (200, 256, 1, 1)


def test_released_network_output_shapes_on_a_real_face(released, astronaut):
    """The one full-size forward pass of the suite (~1-2 s on one thread): (1, 200, 48, 48) logits, x4 upsample
    to (1, 200, 192, 192). forward() == upsample_logits(forward_lowres()) is checked on a small model below."""
    face = torch.from_numpy(astronaut[0:256, 97:353].copy()).permute(2, 0, 1)[None]  # (1, 3, 256, 256) RGB
    x = torch.nn.functional.interpolate(face.float() / 255, size=(192, 192), mode="bilinear", antialias=True)
    with torch.inference_mode():
        low = released.forward_lowres(x)
        full = upsample_logits(low, released.cfg.input_size)
    assert low.shape == (1, 200, 48, 48) and low.dtype == torch.float32
    assert full.shape == (1, 200, 192, 192)
    assert torch.isfinite(low).all()


def test_forward_is_the_upsampled_lowres_output():
    torch.manual_seed(0)
    net = VRN(SMALL).eval()
    x = torch.rand(1, 3, 96, 96)
    with torch.inference_mode():
        low = net.forward_lowres(x)
        full = net(x)
    assert low.shape == (1, 32, 24, 24) and full.shape == (1, 32, 96, 96)
    torch.testing.assert_close(full, upsample_logits(low, 96))
    # align_corners=True: the grid's corner samples land exactly on the output's corners
    torch.testing.assert_close(full[..., 0, 0], low[..., 0, 0])
    torch.testing.assert_close(full[..., -1, -1], low[..., -1, -1])


def test_refinement_head_outputs_a_grid_twice_as_fine_and_starts_as_the_coarse_head():
    """output_stride=2: (N, D, S/2, S/2) logits = the release head's logits upsampled x2 (align_corners=True)
    plus a residual whose last convolution starts at zero; the release configuration has no such head."""
    assert VRN(SMALL).refine is None and SMALL.grid_size == 24
    cfg = VRNConfig(**{**SMALL.__dict__, "output_stride": 2})
    assert cfg.grid_size == 48
    torch.manual_seed(0)
    net = VRN(cfg).eval()
    x = torch.rand(2, 3, 96, 96)
    coarse = {}
    net.head_out.register_forward_hook(lambda m, i, o: coarse.setdefault("logits", o))
    with torch.inference_mode():
        low = net.forward_lowres(x)
    assert low.shape == (2, 32, 48, 48)
    torch.testing.assert_close(low, upsample_logits(coarse["logits"], 48))
    with torch.no_grad():
        net.refine.out.weight.normal_(0, 0.1)
        again = net.forward_lowres(x)
    assert (again - low).abs().max() > 0.01  # the residual is live once trained
    net.train()
    net.forward_lowres(x).square().mean().backward()
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in net.refine.parameters())


def test_frames_of_a_batch_are_independent():
    """Per-image normalisation (Torch7 BN in training mode): a frame's output does not depend on its batch."""
    torch.manual_seed(0)
    net = VRN(SMALL).eval()
    x = torch.rand(2, 3, 96, 96)
    with torch.inference_mode():
        together = net.forward_lowres(x)
        alone = net.forward_lowres(x[1:])
    torch.testing.assert_close(together[1:], alone, rtol=1e-5, atol=1e-5)


def test_guided_configuration_takes_landmark_channels():
    cfg = VRNConfig(features=32, stacks=1, levels=1, depth_bins=8, input_size=64, in_channels=3 + 68)
    net = VRN(cfg).eval()
    with torch.inference_mode():
        out = net.forward_lowres(torch.rand(1, 71, 64, 64))
    assert cfg.guided and out.shape == (1, 8, 16, 16)


def test_config_json_round_trip():
    assert VRNConfig.from_dict(__import__("json").loads(SMALL.to_json())) == SMALL


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"input_size": 100}, "multiple of 8"),
        ({"features": 30}, "multiple of 4"),
        ({"stacks": 0}, "stacks must be >= 1"),
        ({"depth_bins": 0}, "depth_bins must be >= 1"),
        ({"output_stride": 3}, "output_stride must be one of"),
    ],
)
def test_config_rejects_bad_values(kwargs, message):
    with pytest.raises(ValueError, match=message):
        VRNConfig(**kwargs)


def test_config_rejects_unknown_keys():
    with pytest.raises(ValueError, match="unknown VRN configuration keys"):
        VRNConfig.from_dict({"features": 64, "dropout": 0.1})


def test_image_channels_is_the_one_input_rule():
    """uint8 RGB (H, W, 3) -> float32 (3, H, W) in [0, 1], bit for bit the division training used
    (``torch.float().div_(255)``), batched or not."""
    from realtime_vrn.model.guidance import image_channels

    image = np.arange(256 * 3, dtype=np.int64).reshape(16, 16, 3).astype(np.uint8)
    want = torch.from_numpy(image).permute(2, 0, 1).float().div_(255.0).numpy()
    got = image_channels(image)
    assert got.dtype == np.float32 and got.shape == (3, 16, 16)
    np.testing.assert_array_equal(got, want)
    np.testing.assert_array_equal(image_channels(np.stack([image, image]))[1], want)
