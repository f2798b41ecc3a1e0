"""Checkpoint format (safetensors + configuration + provenance + SHA-256, strict loading) and the model registry."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
from pathlib import Path

import pytest
import torch

from realtime_vrn.errors import ConfigError, WeightsError
from realtime_vrn.model import checkpoint as ckpt_mod
from realtime_vrn.model.checkpoint import (
    FORMAT_TAG,
    CheckpointMeta,
    load_checkpoint,
    load_model,
    read_checkpoint_header,
    read_model_card,
    save_checkpoint,
    write_model_card,
)
from realtime_vrn.model.network import VRN, VRNConfig
from realtime_vrn.weights import registry

TINY = VRNConfig(features=16, stacks=1, levels=1, branch_blocks=1, inner_branch_blocks=1, depth_bins=8, input_size=32)
META = CheckpointMeta(source="unit test", licence="MIT", description="tiny random VRN")


def _tiny_model(seed: int = 0, cfg: VRNConfig = TINY) -> VRN:
    torch.manual_seed(seed)
    return VRN(cfg).eval()


@pytest.fixture()
def saved(tmp_path) -> tuple[Path, VRN, str]:
    net = _tiny_model()
    path = tmp_path / "tiny.safetensors"
    return path, net, save_checkpoint(path, net, META)


def _write_raw(path: Path, tensors: dict[str, torch.Tensor], metadata: dict[str, str]) -> Path:
    from safetensors.torch import save_file

    save_file(tensors, str(path), metadata=metadata)
    return path


def _our_metadata(cfg: VRNConfig = TINY, **override: str) -> dict[str, str]:
    meta = {
        "format": FORMAT_TAG,
        "format_version": "1",
        "config": cfg.to_json(),
        "source": "unit test",
        "licence": "MIT",
        "description": "",
    }
    meta.update(override)
    return meta


# -- format: round trip ---------------------------------------------------------------------------------------


def test_round_trip_keeps_config_weights_provenance_and_digest(saved):
    path, net, sha = saved
    ckpt = load_checkpoint(path)
    assert ckpt.cfg == TINY
    assert ckpt.meta == META
    assert ckpt.sha256 == sha == hashlib.sha256(path.read_bytes()).hexdigest()
    assert ckpt.state_dict.keys() == net.state_dict().keys()
    for name, tensor in net.state_dict().items():
        assert torch.equal(ckpt.state_dict[name], tensor), name


def test_saving_is_reproducible(tmp_path):
    """Same model and provenance -> same bytes, so a converted model's SHA-256 can be published and checked."""
    net = _tiny_model()
    digests = {save_checkpoint(tmp_path / f"{i}.safetensors", net, META) for i in range(4)}
    assert len(digests) == 1
    assert len({(tmp_path / f"{i}.safetensors").read_bytes() for i in range(4)}) == 1


def test_loaded_model_computes_what_the_saved_one_did(saved):
    path, net, _ = saved
    loaded = load_model(path)
    x = torch.rand(1, 3, 32, 32)
    with torch.inference_mode():
        torch.testing.assert_close(loaded.forward_lowres(x), net.forward_lowres(x), rtol=0, atol=0)
    assert not loaded.training


def test_header_is_read_without_the_tensors(saved):
    path, net, _ = saved
    header = read_checkpoint_header(path)
    assert header.cfg == TINY and header.meta == META and header.format_version == 1
    assert header.shapes["head_out.weight"] == (8, 16, 1, 1)


def test_save_accepts_a_provenance_dict_and_rejects_unknown_keys(tmp_path):
    net = _tiny_model()
    save_checkpoint(tmp_path / "a.safetensors", net, {"source": "s", "licence": "unknown"})
    assert load_checkpoint(tmp_path / "a.safetensors").meta.licence == "unknown"
    with pytest.raises(ValueError, match="unknown checkpoint metadata keys"):
        save_checkpoint(tmp_path / "b.safetensors", net, {"source": "s", "licence": "MIT", "author": "x"})


@pytest.mark.parametrize("field", ["source", "licence"])
def test_provenance_must_name_source_and_licence(field):
    values = {"source": "s", "licence": "MIT", field: " "}
    with pytest.raises(ValueError, match="non-empty source and licence"):
        CheckpointMeta(**values)


def test_save_rejects_other_suffixes_and_non_vrn_models(tmp_path):
    with pytest.raises(ValueError, match=r"must end in \.safetensors"):
        save_checkpoint(tmp_path / "x.pt", _tiny_model(), META)
    with pytest.raises(TypeError, match="expected a VRN model"):
        save_checkpoint(tmp_path / "x.safetensors", torch.nn.Linear(2, 2), META)


# -- checksums ------------------------------------------------------------------------------------------------


def test_expected_digest_is_verified(saved):
    path, _, sha = saved
    assert load_checkpoint(path, expected_sha256=sha.upper()).sha256 == sha
    with pytest.raises(WeightsError, match="the caller expects 0{64}"):
        load_checkpoint(path, expected_sha256="0" * 64)
    with pytest.raises(ValueError, match="64 hex digits"):
        load_checkpoint(path, expected_sha256="abc")


def test_model_card_digest_is_verified_on_load(saved):
    path, _, sha = saved
    card_path = write_model_card(path)
    card = json.loads(card_path.read_text())
    assert card_path == path.with_suffix(".json")
    assert card["sha256"] == sha and card["licence"] == "MIT" and card["config"]["features"] == 16
    assert read_model_card(path)["sha256"] == sha
    data = bytearray(path.read_bytes())
    data[-5] ^= 0xFF  # flip bits inside the last tensor: same size, valid header, different content
    path.write_bytes(bytes(data))
    with pytest.raises(WeightsError, match="model card tiny.json expects"):
        load_checkpoint(path)


def test_unreadable_model_card_is_reported(saved):
    path, _, _ = saved
    path.with_suffix(".json").write_text("{not json")
    with pytest.raises(WeightsError, match="model card .* is unreadable"):
        load_checkpoint(path)
    path.with_suffix(".json").write_text('{"sha256": "short"}')
    with pytest.raises(WeightsError, match="no valid 'sha256'"):
        load_checkpoint(path)


# -- rejected files -------------------------------------------------------------------------------------------


def test_damaged_tensor_data_behind_an_intact_header_is_refused(saved):
    """Issue 13 item 8: bytes flipped in the tensor data (the header intact) used to load silently."""
    path, _, _ = saved
    data = bytearray(path.read_bytes())
    data[-100:-90] = b"\x7f" * 10  # inside the last tensor's float32 data
    path.write_bytes(bytes(data))
    read_checkpoint_header(path)  # the header is fine
    with pytest.raises(WeightsError, match="corrupt: its tensor data has SHA-256"):
        load_checkpoint(path)


def test_files_without_a_tensor_digest_still_load(saved, tmp_path):
    path, net, _ = saved
    raw = _write_raw(tmp_path / "old.safetensors", dict(net.state_dict()), _our_metadata())
    assert torch.equal(load_checkpoint(raw).state_dict["head_out.bias"], net.state_dict()["head_out.bias"])


def test_nan_weights_are_refused_in_one_line(tmp_path):
    net = _tiny_model()
    with torch.no_grad():
        net.head_out.bias[0] = float("nan")
        net.head_out.weight[1, 0] = float("inf")
    path = tmp_path / "nan.safetensors"
    save_checkpoint(path, net, META)
    with pytest.raises(WeightsError, match=r"NaN or infinite weights in 2 tensor\(s\) \(head_out") as err:
        load_checkpoint(path)
    assert "\n" not in str(err.value)


def test_missing_file(tmp_path):
    with pytest.raises(WeightsError, match="does not exist.*--weights PATH"):
        load_checkpoint(tmp_path / "nope.safetensors")


@pytest.mark.parametrize(
    "name, content",
    [
        ("empty.safetensors", b""),
        ("text.safetensors", b"this is not a checkpoint at all, just some text\n" * 4),
        ("vrn-unguided.t7", b"\x04\x00\x00\x00\x01\x00\x00\x00" + bytes(range(256)) * 8),
    ],
)
def test_non_safetensors_files_are_rejected_with_a_remedy(tmp_path, name, content):
    path = tmp_path / name
    path.write_bytes(content)
    with pytest.raises(WeightsError, match="is not a realtime-vrn checkpoint") as info:
        load_checkpoint(path)
    assert "realtime-vrn weights convert" in str(info.value)
    if name.endswith(".t7"):
        assert "looks like the official Torch7 file" in str(info.value)


@pytest.mark.parametrize("keep", [0.5, 0.999, 20 / 1000])
def test_truncated_files_are_reported_as_truncated(saved, keep):
    path, _, _ = saved
    data = path.read_bytes()
    cut = max(9, int(len(data) * keep)) if keep > 0.1 else 20  # 20 bytes: inside the JSON header
    path.write_bytes(data[:cut])
    with pytest.raises(WeightsError, match="is truncated"):
        load_checkpoint(path)
    with pytest.raises(WeightsError, match="is truncated"):
        read_checkpoint_header(path)


def test_foreign_safetensors_file_is_rejected(tmp_path):
    path = _write_raw(tmp_path / "other.safetensors", {"w": torch.zeros(2)}, {"format": "pt"})
    with pytest.raises(WeightsError, match="without the 'realtime-vrn-checkpoint' format tag"):
        load_checkpoint(path)


def test_newer_format_version_asks_for_an_upgrade(tmp_path):
    tensors = _tiny_model().state_dict()
    path = _write_raw(tmp_path / "future.safetensors", tensors, _our_metadata(format_version="2"))
    with pytest.raises(WeightsError, match="format version 2.*upgrade realtime-vrn"):
        load_checkpoint(path)


def test_invalid_config_metadata(tmp_path):
    tensors = _tiny_model().state_dict()
    path = _write_raw(tmp_path / "bad.safetensors", tensors, _our_metadata(config='{"features": 30}'))
    with pytest.raises(WeightsError, match="invalid metadata.*multiple of 4"):
        load_checkpoint(path)


def test_strict_loading_reports_every_mismatch_at_once(tmp_path):
    tensors = dict(_tiny_model().state_dict())
    del tensors["stem_conv.weight"]
    del tensors["head.0.bias"]
    tensors["extra.weight"] = torch.zeros(3)
    tensors["head_out.weight"] = torch.zeros(9, 16, 1, 1)
    path = _write_raw(tmp_path / "mismatch.safetensors", tensors, _our_metadata())
    with pytest.raises(WeightsError) as info:
        load_model(path)
    message = str(info.value)
    assert "2 missing: stem_conv.weight, head.0.bias" in message
    assert "1 unexpected: extra.weight" in message
    assert "1 wrong shape: head_out.weight (9, 16, 1, 1) (expected (8, 16, 1, 1))" in message
    assert "\n" not in message


def test_checkpoint_of_another_configuration_does_not_load_silently(tmp_path):
    """Weights of a 16-feature model with a 32-feature configuration: every tensor shape is reported wrong."""
    other = dataclasses.replace(TINY, features=32)
    path = _write_raw(tmp_path / "wrongcfg.safetensors", _tiny_model().state_dict(), _our_metadata(cfg=other))
    with pytest.raises(WeightsError, match="wrong shape"):
        load_model(path)


# -- installed-model registry ---------------------------------------------------------------------------------


@pytest.fixture()
def no_shipped_models(tmp_path, monkeypatch) -> Path:
    """An empty stand-in for the package's shipped models (a trained default will be shipped later)."""
    shipped = tmp_path / "shipped"
    shipped.mkdir()
    monkeypatch.setattr(registry, "PACKAGE_MODELS_DIR", shipped)
    return shipped


def _install(folder: Path, name: str, seed: int = 0, card: bool = True) -> Path:
    path = folder / f"{name}.safetensors"
    save_checkpoint(path, _tiny_model(seed), CheckpointMeta(source=f"test {name}", licence="MIT"))
    if card:
        write_model_card(path)
    return path


def test_home_dir_follows_the_environment(vrn_home):
    assert registry.home_dir() == vrn_home
    assert registry.models_dir() == vrn_home / "models"
    assert registry.onnx_dir() == vrn_home / "onnx"


def test_home_dir_defaults_to_the_user_cache(monkeypatch):
    from platformdirs import user_cache_dir

    monkeypatch.delenv("REALTIME_VRN_HOME", raising=False)
    assert registry.home_dir() == Path(user_cache_dir("realtime-vrn"))


def test_nothing_installed_says_how_to_get_weights(vrn_home, no_shipped_models):
    assert registry.list_models() == []
    with pytest.raises(WeightsError) as info:
        registry.resolve_weights(None, None)
    message = str(info.value)
    assert "no model weights are installed" in message
    assert "realtime-vrn weights fetch" in message and "realtime-vrn weights convert FILE" in message
    assert "--weights PATH" in message and "\n" not in message
    with pytest.raises(WeightsError, match="model 'vrn-small' is not installed; no model weights"):
        registry.resolve_weights(registry.DEFAULT_MODEL, None)


def test_list_and_resolve_installed_models(vrn_home, no_shipped_models):
    user = _install(registry.models_dir().mkdir(parents=True) or registry.models_dir(), "vrn-unguided")
    shipped = _install(no_shipped_models, registry.DEFAULT_MODEL, seed=1)
    models = {m.name: m for m in registry.list_models()}
    assert set(models) == {"vrn-unguided", "vrn-small"}
    info = models["vrn-unguided"]
    assert info.path == user and info.size_bytes == user.stat().st_size
    assert info.sha256 == hashlib.sha256(user.read_bytes()).hexdigest()
    assert info.source == "test vrn-unguided" and info.licence == "MIT" and info.config == TINY
    assert registry.resolve_weights("vrn-unguided", None) == user
    assert registry.resolve_weights(None, None) == shipped  # the default model wins when installed
    assert registry.resolve_weights(None, user) == user


def test_user_model_shadows_a_shipped_one(vrn_home, no_shipped_models):
    _install(no_shipped_models, "vrn-small", seed=1)
    registry.models_dir().mkdir(parents=True)
    user = _install(registry.models_dir(), "vrn-small", seed=2)
    assert registry.resolve_weights("vrn-small", None) == user
    assert [m.path for m in registry.list_models()] == [user]


def test_without_the_default_the_first_installed_model_is_used(vrn_home, no_shipped_models):
    registry.models_dir().mkdir(parents=True)
    first = _install(registry.models_dir(), "a-model", card=False)
    _install(registry.models_dir(), "b-model", card=False)
    assert registry.resolve_weights(None, None) == first


def test_unknown_model_name_lists_installed_ones(vrn_home, no_shipped_models):
    registry.models_dir().mkdir(parents=True)
    _install(registry.models_dir(), "vrn-unguided")
    with pytest.raises(WeightsError, match="model 'nope' is not installed; installed models: vrn-unguided"):
        registry.resolve_weights("nope", None)


@pytest.mark.parametrize("name", ["../escape", "a/b", "", ".hidden"])
def test_model_names_are_plain_names(vrn_home, name):
    with pytest.raises(ConfigError, match="a model name is a plain name"):
        registry.resolve_weights(name, None)


def test_explicit_weights_must_exist_and_be_a_checkpoint(vrn_home, tmp_path):
    with pytest.raises(WeightsError, match="does not exist"):
        registry.resolve_weights(None, tmp_path / "missing.safetensors")
    t7 = tmp_path / "vrn-unguided.t7"
    t7.write_bytes(b"\x04\x00\x00\x00" * 100)
    with pytest.raises(WeightsError, match="convert it with `realtime-vrn weights convert FILE`"):
        registry.resolve_weights(None, t7)


def test_model_and_weights_together_are_a_config_error(vrn_home, saved):
    with pytest.raises(ConfigError, match="not both"):
        registry.resolve_weights("vrn-small", saved[0])


def test_list_skips_a_corrupt_model_with_a_warning(vrn_home, no_shipped_models, caplog):
    registry.models_dir().mkdir(parents=True)
    good = _install(registry.models_dir(), "good")
    (registry.models_dir() / "broken.safetensors").write_bytes(b"garbage" * 10)
    with caplog.at_level(logging.WARNING, logger=registry.__name__):
        models = registry.list_models()
    assert [m.path for m in models] == [good]
    assert "broken.safetensors" in caplog.text


def test_header_reader_does_not_load_tensors(saved, monkeypatch):
    """Listing models and resolving paths read headers only (no safetensors deserialisation)."""
    monkeypatch.setattr(ckpt_mod, "_deserialize", lambda *a: pytest.fail("tensors were loaded"))
    read_checkpoint_header(saved[0])


def test_a_configuration_mismatch_is_one_readable_line(tmp_path):
    """Issue 13: a config/tensor mismatch printed the whole VRNConfig and up to 8 tensors per kind; now a short
    summary, with every tensor in the exception's note (shown by --debug's traceback)."""
    other = dataclasses.replace(TINY, features=32)
    path = _write_raw(tmp_path / "wrongcfg.safetensors", _tiny_model().state_dict(), _our_metadata(cfg=other))
    with pytest.raises(WeightsError) as info:
        load_model(path)
    message = str(info.value)
    assert "(32 px input, 32 features, 1 stacks, 8 depth bins)" in message and "VRNConfig(" not in message
    assert message.count("(expected") == 3 and "more)" in message and "--debug" in message
    note = "\n".join(getattr(info.value, "__notes__", [message]))
    assert len(note.splitlines()) >= 2 or not hasattr(info.value, "add_note")
