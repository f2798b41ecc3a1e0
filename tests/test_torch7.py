"""Converting Torch7 VRN files: layout checks, exact weight copy, Torch7-faithful outputs, clear errors, install.

Every file is written by the tests (``torch7_writer.py``); neither the official file nor a converted copy is
needed. Outputs are compared with a NumPy forward pass that interprets the file's module tree as Torch7 does
(read with plain ``torchfile.load``, independent of the converter and of ``realtime_vrn.model``).
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np
import pytest
import torch

from realtime_vrn.errors import WeightsError
from realtime_vrn.model.checkpoint import load_checkpoint, load_model
from realtime_vrn.model.network import ImageNorm, VRNConfig, count_parameters
from realtime_vrn.weights import official, registry, selfcheck
from realtime_vrn.weights.torch7 import (
    LazyTensor,
    build_layout,
    convert_t7,
    format_layout,
    install_t7,
    layout_from_dump,
    parse_layout,
    read_t7_tree,
    release_layout,
)
from conftest import SHARED
from torch7_writer import (
    T7Family,
    Tensor,
    TorchObject,
    build_vrn_t7,
    dump_lines,
    find_modules,
    parent_of,
    write_t7,
)

torchfile = pytest.importorskip("torchfile")

REFERENCE_DUMP = SHARED / "reference" / "vrn" / "t7-layer-dump.txt"
#: The released structure (2 stacks, 4 levels, 6/9 blocks: all 1339 modules) with few channels and a small input.
SMALL = T7Family(input_size=64, features=16, depth_bins=8)
SMALL_CFG = VRNConfig(**dataclasses.asdict(SMALL))
#: Agreement required between the converted network and the Torch7 reference, on probabilities in [0, 1].
ATOL = 1e-4


# -- a NumPy Torch7 forward (batch of one), from the raw tensors of a torchfile.load tree -------------------------


def load_raw(path: Path):
    """The file as plain ``torchfile`` reads it. Without the list heuristic: torchfile 0.1.0 then compares each
    element of a Lua array with the table (``elem == obj``), which fails on numpy arrays (tables of tensors, such
    as a ConcatTable's ``output``, are in every saved model); Lua arrays stay {1: ..., 2: ...} dicts."""
    return torchfile.load(str(path), use_list_heuristic=False)


def _name(m) -> str:
    return m._typename.decode()


def _children(m) -> list:
    table = m.modules or {}
    return [table[k] for k in sorted(table)]


def t7_forward(m, x):
    """Torch7 ``module:forward(x)`` for the modules VRN uses. x: (C, H, W) float64, or a list for table modules."""
    name = _name(m)
    if name == "nn.Sequential":
        for child in _children(m):
            x = t7_forward(child, x)
        return x
    if name == "nn.ConcatTable":
        return [t7_forward(child, x) for child in _children(m)]
    if name == "nn.CAddTable":
        return sum(x[1:], x[0].copy())
    if name == "nn.Identity":
        return x
    if name == "nn.SpatialConvolution":
        return _conv(x, m.weight.astype(np.float64), m.bias.astype(np.float64), m.dW, m.padW)
    if name == "nn.SpatialBatchNormalization":  # train = true: statistics of this image, biased variance
        mean = x.mean(axis=(1, 2), keepdims=True)
        var = x.var(axis=(1, 2), keepdims=True)
        gamma, beta = m.weight.astype(np.float64), m.bias.astype(np.float64)
        return (x - mean) / np.sqrt(var + m.eps) * gamma[:, None, None] + beta[:, None, None]
    if name == "nn.ReLU":
        return np.maximum(x, 0.0)
    if name == "nn.SpatialMaxPooling":
        c, h, w = x.shape
        k = m.kW
        return x[:, : h // k * k, : w // k * k].reshape(c, h // k, k, w // k, k).max(axis=(2, 4))
    if name == "nn.SpatialUpSamplingNearest":
        return x.repeat(m.scale_factor, axis=1).repeat(m.scale_factor, axis=2)
    if name == "nn.SpatialUpSamplingBilinear":  # Torch7: corners aligned, src = dst * (in - 1) / (out - 1)
        ry, rx = _bilinear_matrix(x.shape[1], m.oheight), _bilinear_matrix(x.shape[2], m.owidth)
        return np.einsum("yh,chw,xw->cyx", ry, x, rx)
    if name == "nn.Sigmoid":
        return 1.0 / (1.0 + np.exp(-x))
    raise NotImplementedError(name)


def _conv(x, weight, bias, stride, pad):
    nout, nin, kh, kw = weight.shape
    xp = np.pad(x, ((0, 0), (pad, pad), (pad, pad)))
    windows = np.lib.stride_tricks.sliding_window_view(xp, (kh, kw), axis=(1, 2))[:, ::stride, ::stride]
    _, ho, wo, _, _ = windows.shape
    cols = windows.transpose(0, 3, 4, 1, 2).reshape(nin * kh * kw, ho * wo)
    return (weight.reshape(nout, -1) @ cols).reshape(nout, ho, wo) + bias[:, None, None]


def _bilinear_matrix(n_in: int, n_out: int) -> np.ndarray:
    src = np.arange(n_out) * ((n_in - 1) / (n_out - 1))
    lo = np.minimum(np.floor(src).astype(int), n_in - 1)
    hi = np.minimum(lo + 1, n_in - 1)
    frac = src - lo
    r = np.zeros((n_out, n_in))
    r[np.arange(n_out), lo] += 1 - frac
    r[np.arange(n_out), hi] += frac
    return r


def _face_input(size: int) -> np.ndarray:
    """The bundled real face, cropped for an S = ``size`` network: (3, S, S) float64 RGB in [0, 1]."""
    crop, _ = selfcheck.load_face(size)
    return crop.transpose(2, 0, 1).astype(np.float64) / 255.0


def _assert_matches_torch7(path: Path, net, size: int) -> None:
    x = _face_input(size)
    (reference,) = t7_forward(load_raw(path), x)  # the release wraps its output in a table
    with torch.inference_mode():
        ours = torch.sigmoid(net(torch.from_numpy(x).float()[None]))[0].numpy()
    assert ours.shape == reference.shape
    np.testing.assert_allclose(ours, reference, rtol=0, atol=ATOL)


# -- fixtures ------------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def small_file(tmp_path_factory) -> Path:
    return write_t7(tmp_path_factory.mktemp("t7") / "small.t7", build_vrn_t7(SMALL, seed=1))


def _write_variant(tmp_path: Path, edit, family: T7Family = SMALL, name: str = "bad.t7") -> Path:
    root = build_vrn_t7(family, seed=2)
    edit(root)
    return write_t7(tmp_path / name, root)


def _convert_error(path: Path, cfg: VRNConfig = SMALL_CFG) -> str:
    with pytest.raises(WeightsError) as info:
        convert_t7(path, cfg)
    return str(info.value)


# -- the expected layout -------------------------------------------------------------------------------------------


def test_shipped_layout_is_the_reference_dump():
    if not REFERENCE_DUMP.is_file():
        pytest.skip(f"reference dump not here: {REFERENCE_DUMP}")
    assert release_layout() == layout_from_dump(REFERENCE_DUMP.read_text())


def test_shipped_layout_counts():
    layout = release_layout()
    names = [e.classname for e in layout]
    assert len(layout) == 1339
    assert names.count("nn.SpatialConvolution") == 276
    assert names.count("nn.SpatialBatchNormalization") == 273
    params = sum(int(np.prod(e.shape)) + e.shape[0] for e in layout if e.shape is not None)
    assert params == official.PARAMETER_COUNT == 19_184_968
    assert parse_layout(format_layout(layout)) == layout


def test_family_layout_builder_reproduces_the_release():
    assert build_layout(VRNConfig()) == release_layout()


def test_test_writer_builds_the_released_tree():
    """The writer's tree (built independently, the Torch7 way) has the released layout, line for line."""
    lines = dump_lines(build_vrn_t7())
    if REFERENCE_DUMP.is_file():
        assert lines == [line.rstrip("\n") for line in REFERENCE_DUMP.read_text().splitlines()]
    assert layout_from_dump("\n".join(lines)) == release_layout()


# -- conversion: exact weights and Torch7 outputs ----------------------------------------------------------------


def test_full_size_file_converts_every_tensor_exactly(tmp_path):
    """(a) The released layout at full size, random weights: 276 + 273 modules copied bit for bit."""
    path = write_t7(tmp_path / "vrn-unguided.t7", build_vrn_t7(seed=3))
    net = convert_t7(path)
    assert count_parameters(net) == official.PARAMETER_COUNT
    raw = load_raw(path)
    ordered = [m for m in _walk(raw) if _name(m) in ("nn.SpatialConvolution", "nn.SpatialBatchNormalization")]
    targets = [m for m in net.modules() if isinstance(m, (torch.nn.Conv2d, ImageNorm))]
    assert len(ordered) == len(targets) == 549
    for src, dst in zip(ordered, targets):
        np.testing.assert_array_equal(dst.weight.detach().numpy(), src.weight)
        np.testing.assert_array_equal(dst.bias.detach().numpy(), src.bias)


def _walk(m):
    for child in _children(m):
        yield child
        yield from _walk(child)


@pytest.mark.parametrize("variant", ["plain", "shared_parameters", "buffers"])
def test_small_variant_reproduces_torch7_forward(tmp_path, variant):
    """The released structure with 16 features: our network on a real face equals the Torch7 reference to 1e-4.

    shared_parameters: weights are views into one flat storage (a model saved after getParameters()).
    buffers: gradients, running statistics and activation buffers are stored too (as in the release).
    """
    root = build_vrn_t7(SMALL, seed=4, shared_parameters=variant == "shared_parameters",
                        buffers=variant == "buffers")
    path = write_t7(tmp_path / f"{variant}.t7", root)
    _assert_matches_torch7(path, convert_t7(path, SMALL_CFG), SMALL.input_size)


@pytest.mark.slow
def test_full_size_reproduces_torch7_forward(tmp_path):
    """The released network at full size (192 x 192, 200 bins) against the NumPy Torch7 forward."""
    path = write_t7(tmp_path / "vrn-unguided.t7", build_vrn_t7(seed=5))
    _assert_matches_torch7(path, convert_t7(path), 192)


def test_lazy_reader_leaves_buffers_in_the_file(tmp_path):
    """Storages are located, not read: a 64 MB activation buffer costs nothing until asked for."""
    big = Tensor.zeros((1, 256, 256, 256))
    path = write_t7(tmp_path / "buffers.t7", TorchObject("nn.Sigmoid", {"output": big, "weight": np.ones((2, 3))}))
    tree = read_t7_tree(path)
    output = tree._obj[b"output"]
    assert isinstance(output, LazyTensor) and output.shape == (1, 256, 256, 256)
    with path.open("rb") as fh:
        np.testing.assert_array_equal(tree._obj[b"weight"].read(fh), np.ones((2, 3), np.float32))


def test_strided_tensor_is_read_with_its_strides(tmp_path):
    storage_values = np.arange(12, dtype=np.float32)
    t = Tensor.of(storage_values)
    transposed = Tensor(t.storage, (4, 3), (1, 4), 0)  # a (3, 4) matrix transposed
    path = write_t7(tmp_path / "strided.t7", {"a": transposed})
    tree = read_t7_tree(path)
    with path.open("rb") as fh:
        np.testing.assert_array_equal(tree[b"a"].read(fh), storage_values.reshape(3, 4).T)


# -- bad files: each one a clear error -----------------------------------------------------------------------------


def test_wrong_layer_type_names_the_module(tmp_path):
    def edit(root):
        relu = find_modules(root, "nn.ReLU")[5]
        parent, i = parent_of(root, relu)
        parent.fields["modules"][i] = TorchObject("nn.Tanh", {"train": True})

    message = _convert_error(_write_variant(tmp_path, edit))
    assert "at module #" in message and "expected nn.ReLU" in message and "found nn.Tanh" in message
    assert "root.modules[" in message


def test_missing_layer_names_where_it_diverges(tmp_path):
    def edit(root):
        bn = find_modules(root, "nn.SpatialBatchNormalization")[40]
        parent, i = parent_of(root, bn)
        del parent.fields["modules"][i]

    message = _convert_error(_write_variant(tmp_path, edit))
    assert "expected nn.SpatialBatchNormalization" in message and "found nn.ReLU" in message
    assert "1338 modules found, 1339 expected" in message


def test_missing_last_layer_reports_end_of_network(tmp_path):
    def edit(root):
        head = root.modules[-1].modules[0]
        head.fields["modules"].pop()  # the Sigmoid

    message = _convert_error(_write_variant(tmp_path, edit))
    assert "expected nn.Sigmoid" in message and "found the end of the network" in message


def test_extra_module_is_refused(tmp_path):
    message = _convert_error(_write_variant(
        tmp_path, lambda root: root.fields["modules"].append(TorchObject("nn.Identity", {}))))
    assert "extra nn.Identity" in message


def test_wrong_nesting_is_refused(tmp_path):
    def edit(root):  # the first residual's skip conv moved out of its Sequential
        skip = root.modules[3].modules[0].modules[1]
        root.modules[3].modules[0].fields["modules"][1] = skip.modules[0]

    message = _convert_error(_write_variant(tmp_path, edit))
    assert "expected nn.Sequential" in message and "found nn.SpatialConvolution" in message


def test_wrong_weight_shape_is_refused(tmp_path):
    def edit(root):
        conv = find_modules(root, "nn.SpatialConvolution")[10]
        conv.fields["weight"] = Tensor.of(np.zeros((8, 8, 3, 3), np.float32))

    message = _convert_error(_write_variant(tmp_path, edit))
    assert "with weight (8, 8, 3, 3)" in message


def test_wrong_channel_count_is_not_the_release(tmp_path):
    path = write_t7(tmp_path / "small.t7", build_vrn_t7(SMALL))
    message = _convert_error(path, VRNConfig())
    assert "not the released vrn-unguided network" in message
    assert "at module #0 (root.modules[1])" in message and "(64, 3, 7, 7)" in message


def test_wrong_stride_is_refused(tmp_path):
    def edit(root):
        root.modules[0].fields["dW"] = 1

    message = _convert_error(_write_variant(tmp_path, edit))
    assert "module #0 nn.SpatialConvolution" in message and "(7, 7, 1, 2, 3, 3)" in message


def test_batchnorm_in_evaluation_mode_is_refused(tmp_path):
    def edit(root):
        find_modules(root, "nn.SpatialBatchNormalization")[3].fields["train"] = False

    assert "train = false" in _convert_error(_write_variant(tmp_path, edit))


def test_integer_weights_are_refused(tmp_path):
    def edit(root):
        conv = root.modules[0]
        conv.fields["weight"] = Tensor.of(np.zeros(conv.fields["weight"].size), "torch.LongTensor")

    assert "weight is a torch.LongTensor" in _convert_error(_write_variant(tmp_path, edit))


def test_bilinear_output_size_is_checked(tmp_path):
    def edit(root):
        up = find_modules(root, "nn.SpatialUpSamplingBilinear")[0]
        up.fields["oheight"] = up.fields["owidth"] = 32

    assert "expected an output of 64 x 64" in _convert_error(_write_variant(tmp_path, edit))


def test_bilinear_scale_factor_four_is_accepted_with_a_warning(tmp_path, caplog):
    """nn's other form, scale_factor = 4, would give (g - 1) * 3 + g px in Torch7; accepted, the output is S x S."""
    def edit(root):
        up = find_modules(root, "nn.SpatialUpSamplingBilinear")[0]
        del up.fields["oheight"], up.fields["owidth"]
        up.fields["scale_factor"] = 4

    with caplog.at_level("WARNING"):
        convert_t7(_write_variant(tmp_path, edit), SMALL_CFG)
    assert "scale_factor 4" in caplog.text and "61 px" in caplog.text


@pytest.mark.parametrize("fraction", [0.0001, 0.5, 0.999])
def test_truncated_file_is_reported(tmp_path, small_file, fraction):
    data = small_file.read_bytes()
    path = tmp_path / "truncated.t7"
    path.write_bytes(data[: int(len(data) * fraction)])
    message = _convert_error(path)
    assert "truncated" in message and "fetch it again" in message


def test_html_page_is_not_a_torch7_file(tmp_path):
    path = tmp_path / "vrn-unguided.t7"
    path.write_bytes(b"<!DOCTYPE html><html><body>Access denied</body></html>")
    assert "HTML" in _convert_error(path)


def test_garbage_and_missing_files(tmp_path):
    garbage = tmp_path / "garbage.t7"
    garbage.write_bytes(np.random.default_rng(0).bytes(4096))
    assert "Torch7" in _convert_error(garbage) or "truncated" in _convert_error(garbage)
    assert "does not exist" in _convert_error(tmp_path / "nowhere.t7")
    table = write_t7(tmp_path / "table.t7", {"a": 1})
    assert "root object" in _convert_error(table)


# -- install: checkpoint, provenance, self-check ------------------------------------------------------------------


def test_install_writes_checkpoint_with_provenance(tmp_path, small_file, vrn_home):
    result = install_t7(small_file, cfg=SMALL_CFG, selfcheck=False)
    assert result.path == registry.models_dir() / "vrn-unguided.safetensors"
    ckpt = load_checkpoint(result.path)
    assert ckpt.sha256 == result.sha256
    assert ckpt.meta.licence == "code MIT; weight licence not stated by the authors"
    assert official.URL in ckpt.meta.source and result.source_sha256 in ckpt.meta.source
    card = json.loads(result.card_path.read_text())
    assert card["sha256"] == result.sha256
    [info] = [m for m in registry.list_models() if m.name == "vrn-unguided"]  # beside the shipped models
    assert (info.name, info.licence) == ("vrn-unguided", official.LICENCE_NOTE)
    assert registry.resolve_weights(model="vrn-unguided") == result.path
    loaded, direct = load_model(result.path), convert_t7(small_file, SMALL_CFG)
    x = torch.from_numpy(_face_input(SMALL.input_size)).float()[None]
    with torch.inference_mode():
        torch.testing.assert_close(loaded(x), direct(x), rtol=0, atol=0)


def test_install_refuses_a_model_that_fails_the_selfcheck(tmp_path, vrn_home):
    """Random weights (the right layout) do not reconstruct a face: nothing is installed."""
    family = T7Family(input_size=192, features=16, depth_bins=200)
    path = write_t7(tmp_path / "random.t7", build_vrn_t7(family, seed=6))
    with pytest.raises(WeightsError, match="failed the self-check on a real face"):
        install_t7(path, cfg=VRNConfig(**dataclasses.asdict(family)))
    assert not registry.models_dir().exists() or not list(registry.models_dir().iterdir())


# -- the command line ------------------------------------------------------------------------------------------


def test_cli_convert_then_list(tmp_path, vrn_home, capsys):
    from realtime_vrn.cli import main

    path = write_t7(tmp_path / "vrn-unguided.t7", build_vrn_t7(seed=7))
    assert main(["weights", "convert", str(path), "--no-selfcheck"]) == 0
    out = capsys.readouterr().out
    assert "installed vrn-unguided" in out and "--model vrn-unguided" in out
    assert main(["weights", "list"]) == 0
    out = capsys.readouterr().out
    assert "vrn-unguided" in out and official.LICENCE_NOTE in out and official.URL in out and "sha256" in out


def test_cli_convert_bad_file_is_one_line_error(tmp_path, vrn_home, capsys):
    from realtime_vrn.cli import main

    path = tmp_path / "vrn-unguided.t7"
    path.write_bytes(b"\x04\x00\x00\x00\x01\x00")
    assert main(["weights", "convert", str(path)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("realtime-vrn: error: ") and "truncated" in err and err.count("\n") == 1


def test_cli_list_without_models(vrn_home, capsys, monkeypatch):
    from realtime_vrn.cli import main

    monkeypatch.setattr(registry, "PACKAGE_MODELS_DIR", vrn_home / "no-shipped-models")
    assert main(["weights", "list"]) == 0
    assert "no models installed" in capsys.readouterr().out


# -- the self-check criterion ------------------------------------------------------------------------------------


def _face_volume(landmarks: np.ndarray, size: int = 192, depth: int = 200, shift=(0.0, 0.0), flip: bool = False):
    """A face-like logit volume: a half-ellipsoid dome over the landmark box, nose (box centre) nearest."""
    lo, hi = landmarks.min(axis=0), landmarks.max(axis=0)
    centre = (lo + hi) / 2 + np.asarray(shift) - [0, 0.1 * (hi - lo)[1]]
    radii = np.array([0.65, 0.8]) * (hi - lo)
    yy, xx = np.mgrid[:size, :size]
    r2 = ((xx - centre[0]) / radii[0]) ** 2 + ((yy - centre[1]) / radii[1]) ** 2
    inside = r2 < 1
    back, relief = 60, 100
    front = back + relief * np.sqrt(np.clip(1 - r2, 0, 1))
    z = np.arange(depth)[:, None, None]
    occupied = inside & (z >= back - 20) & (z <= front)
    if flip:
        occupied = occupied[::-1]
    return np.where(occupied, 4.0, -4.0)


def test_selfcheck_accepts_a_face_shaped_volume():
    _, landmarks = selfcheck.load_face()
    report = selfcheck.check_volume(_face_volume(landmarks), landmarks)
    assert report.passed, report.summary()


@pytest.mark.parametrize("case, failing", [
    ("empty", {"occupancy", "one blob", "face-sized", "in place", "faces the camera"}),
    ("full", {"occupancy", "face-sized", "faces the camera"}),
    ("shifted", {"in place"}),
    ("flipped", {"faces the camera"}),
    ("dense noise", {"face-sized"}),
    ("speckle", {"occupancy", "one blob"}),
])
def test_selfcheck_rejects_wrong_volumes(case, failing):
    _, landmarks = selfcheck.load_face()
    volume = {
        "empty": lambda: np.full((200, 192, 192), -1.0),
        "full": lambda: np.full((200, 192, 192), 1.0),
        "shifted": lambda: _face_volume(landmarks, shift=(60.0, 0.0)),
        "flipped": lambda: _face_volume(landmarks, flip=True),
        "dense noise": lambda: np.random.default_rng(0).standard_normal((200, 192, 192)) - 2.0,
        "speckle": lambda: np.random.default_rng(0).standard_normal((200, 192, 192)) - 3.5,
    }[case]()
    report = selfcheck.check_volume(volume, landmarks)
    assert not report.passed
    assert {c.name for c in report.checks if not c.passed} >= failing, report.summary()


def test_selfcheck_crop_matches_mediapipe_on_the_asset():
    """The stored landmarks are what the pipeline's tracker finds on the bundled photo (asset provenance)."""
    pytest.importorskip("mediapipe")
    import cv2

    from realtime_vrn.landmarks import open_tracker

    photo = cv2.cvtColor(cv2.imread(str(selfcheck.PHOTO)), cv2.COLOR_BGR2RGB)
    with open_tracker(static=True) as tracker:
        found = tracker.process(photo, 0.0)
    stored = np.asarray(json.loads(selfcheck.LANDMARKS.read_text())["landmarks68"])
    assert found is not None
    assert np.abs(found.points68 - stored).max() < 1.0
    crop, in_crop = selfcheck.load_face()
    assert crop.shape == (192, 192, 3) and crop.dtype == np.uint8
    side = np.sqrt(np.prod(in_crop.max(axis=0) - in_crop.min(axis=0)))
    assert side == pytest.approx(90.0, abs=0.01)  # the paper's crop: landmark box of 90 px
