"""What of the TensorRT path can be tested without TensorRT: recipes, cache keys, the engine cache's stale and
corrupt handling, the builder's version branches (against a stand-in module), error messages, the ONNX input."""

from __future__ import annotations

import json
import logging
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest

from realtime_vrn.backends.tensorrt import backend as tensorrt_backend
from realtime_vrn.backends.tensorrt import engines
from realtime_vrn.backends.registry import backend_names, open_backend
from realtime_vrn.backends.tensorrt.engines import EngineError, EngineRecipe, load_or_build
from realtime_vrn.errors import BackendError, ConfigError
from realtime_vrn.model.network import VRNConfig

TINY = VRNConfig(input_size=32, features=16, stacks=1, levels=1, branch_blocks=1, inner_branch_blocks=1,
                 depth_bins=8)


@pytest.fixture()
def onnx_file(tmp_path) -> Path:
    path = tmp_path / "model.onnx"
    path.write_bytes(b"not really onnx, but the cache only hashes it")
    return path


class FakeBuilder:
    """Stands in for TensorRT's builder: returns distinct bytes per call and counts the calls."""

    def __init__(self) -> None:
        self.calls = 0

    def __call__(self, onnx_path: Path, recipe: EngineRecipe) -> bytes:
        self.calls += 1
        return f"engine #{self.calls} of {onnx_path.name} ({recipe.name})".encode()


def build(onnx_file, builder, recipe=None, **kw):
    kw = {"tensorrt_version": "10.13.0", "gpu_name": "NVIDIA H100 80GB HBM3", **kw}
    return load_or_build(onnx_file, recipe or engines.load_recipe(), TINY, build=builder, **kw)


# -- recipes ------------------------------------------------------------------------------------------------------
def test_shipped_recipes_load_and_describe_their_engines():
    recipes = engines.list_recipes()
    assert {"fp16-b1", "fp32-b1", "fp16-b4"} <= set(recipes)
    assert engines.load_recipe().name == engines.DEFAULT_RECIPE == "fp16-b1"
    b4 = recipes["fp16-b4"]
    assert b4.input_shape(VRNConfig()) == (4, 3, 192, 192)
    assert b4.output_shape(VRNConfig()) == (4, 200, 48, 48)
    assert all(r.output == "logits" for r in recipes.values())


@pytest.mark.parametrize(
    "data, match",
    [
        ({"name": "x", "precision": "int8"}, "precision"),
        ({"name": "x", "output": "volume"}, "output"),
        ({"name": "x", "batch": 0}, "batch"),
        ({"name": "x", "batch": True}, "batch"),
        ({"name": "x", "workspace_mib": 1.5}, "workspace_mib"),
        ({"name": "x", "optimization_level": 9}, "optimization_level"),
        ({"name": "x", "fp16": True}, "unknown recipe keys"),
        ({"precision": "fp16"}, "needs a name"),
        ({"name": "a/b"}, "recipe name"),
        (["fp16"], "JSON object"),
    ],
)
def test_bad_recipes_are_rejected(data, match):
    with pytest.raises(ConfigError, match=match):
        EngineRecipe.from_dict(data)


def test_recipe_files_by_path_and_their_errors(tmp_path):
    good = tmp_path / "mine.json"
    good.write_text(json.dumps({"name": "mine", "precision": "fp32", "batch": 2}))
    assert engines.load_recipe(good) == EngineRecipe("mine", "fp32", 2)
    broken = tmp_path / "broken.json"
    broken.write_text("{")
    with pytest.raises(ConfigError, match="not valid JSON"):
        engines.load_recipe(broken)
    with pytest.raises(ConfigError, match="does not exist"):
        engines.load_recipe(tmp_path / "missing.json")
    with pytest.raises(ConfigError, match="fp16-b1"):  # an unknown name lists the shipped ones
        engines.load_recipe("fp8-b1")


def test_fp16_onnx_is_used_where_tensorrt_has_no_fp16_flag():
    trt10 = SimpleNamespace(BuilderFlag=SimpleNamespace(FP16=1))
    trt11 = SimpleNamespace(BuilderFlag=SimpleNamespace())
    fp16, fp32 = engines.load_recipe("fp16-b1"), engines.load_recipe("fp32-b1")
    assert not engines.needs_fp16_onnx(trt10, fp16)
    assert engines.needs_fp16_onnx(trt11, fp16)
    assert not engines.needs_fp16_onnx(trt11, fp32)


# -- cache keys ---------------------------------------------------------------------------------------------------
def test_engine_key_covers_onnx_tensorrt_gpu_precision_and_shape(onnx_file, tmp_path):
    recipe = engines.load_recipe()
    key = engines.engine_key(onnx_file, recipe, TINY, "10.13.0", "H100")
    assert key.onnx_sha256 == engines.file_sha256(onnx_file)
    assert key.input_shape == (1, 3, 32, 32) and key.output_shape == (1, 8, 8, 8)
    other_onnx = tmp_path / "other.onnx"
    other_onnx.write_bytes(b"other")
    variants = [
        engines.engine_key(other_onnx, recipe, TINY, "10.13.0", "H100"),
        engines.engine_key(onnx_file, recipe, TINY, "11.0.0", "H100"),
        engines.engine_key(onnx_file, recipe, TINY, "10.13.0", "H200"),
        engines.engine_key(onnx_file, engines.load_recipe("fp32-b1"), TINY, "10.13.0", "H100"),
        engines.engine_key(onnx_file, engines.load_recipe("fp16-b4"), TINY, "10.13.0", "H100"),
        engines.engine_key(onnx_file, recipe, VRNConfig(input_size=64, depth_bins=8), "10.13.0", "H100"),
    ]
    digests = {key.digest()} | {v.digest() for v in variants}
    assert len(digests) == 1 + len(variants)
    assert key.digest() == engines.engine_key(onnx_file, recipe, TINY, "10.13.0", "H100").digest()


def test_engines_live_in_the_user_cache(vrn_home, onnx_file):
    recipe = engines.load_recipe()
    key = engines.engine_key(onnx_file, recipe, TINY, "10.13.0", "H100")
    path = engines.engine_path(recipe, key)
    assert path.parent == vrn_home / "engines"
    assert path.name == f"fp16-b1-{key.onnx_sha256[:16]}.engine"


# -- the cache ----------------------------------------------------------------------------------------------------
def test_built_once_then_read_from_the_cache(vrn_home, onnx_file):
    builder = FakeBuilder()
    first, path = build(onnx_file, builder)
    second, same_path = build(onnx_file, builder)
    assert builder.calls == 1 and first == second and path == same_path and path.is_file()
    meta = json.loads(path.with_suffix(".json").read_text())
    assert meta["key"]["tensorrt_version"] == "10.13.0" and meta["key"]["precision"] == "fp16"


@pytest.mark.parametrize("change", [{"tensorrt_version": "11.0.0"}, {"gpu_name": "NVIDIA H200"}],
                         ids=["tensorrt-upgrade", "other-gpu"])
def test_stale_engine_is_rebuilt_with_a_warning(vrn_home, onnx_file, caplog, change):
    builder = FakeBuilder()
    build(onnx_file, builder)
    with caplog.at_level(logging.WARNING, logger="realtime_vrn.backends.tensorrt.engines"):
        data, path = build(onnx_file, builder, **change)
    assert builder.calls == 2 and data.startswith(b"engine #2")
    assert "stale" in caplog.text and next(iter(change)) in caplog.text
    assert build(onnx_file, builder, **change)[0] == data  # the rebuilt engine replaced the stale one


def test_corrupt_engine_is_refused_with_a_clear_message(vrn_home, onnx_file):
    builder = FakeBuilder()
    _, path = build(onnx_file, builder)
    path.write_bytes(b"bit rot")
    with pytest.raises(EngineError, match=r"corrupt: its checksum.*engine build --force"):
        build(onnx_file, builder)
    data, _ = build(onnx_file, builder, force=True)  # --force rebuilds it
    assert builder.calls == 2 and build(onnx_file, builder)[0] == data


@pytest.mark.parametrize("sidecar", [None, "{", '{"format": 1}'], ids=["missing", "not-json", "incomplete"])
def test_engine_without_a_readable_record_is_corrupt(vrn_home, onnx_file, sidecar):
    _, path = build(onnx_file, FakeBuilder())
    record = path.with_suffix(".json")
    record.unlink() if sidecar is None else record.write_text(sidecar)
    with pytest.raises(EngineError, match=str(path.name)):
        build(onnx_file, FakeBuilder())


def test_build_failures_are_engine_errors(vrn_home, onnx_file, tmp_path):
    with pytest.raises(EngineError, match="empty engine"):
        build(onnx_file, lambda path, recipe: b"")
    with pytest.raises(EngineError, match="does not exist"):
        build(tmp_path / "missing.onnx", FakeBuilder())
    assert issubclass(EngineError, BackendError)


# -- the builder, against a stand-in TensorRT module ---------------------------------------------------------------
class FakeTensorRT:
    """Records what build_serialized_engine asks of TensorRT; ``version`` 10 has BuilderFlag.FP16, 11 does not."""

    def __init__(self, version: int, parse_ok: bool = True, build_ok: bool = True) -> None:
        self.log: list[tuple] = []
        trt = self

        class Logger:
            WARNING = 2

            def __init__(self, severity): pass

        class Network:
            pass

        class Parser:
            num_errors = 0 if parse_ok else 1

            def __init__(self, network, logger): pass

            def parse_from_file(self, path):
                trt.log.append(("parse", Path(path).name))
                return parse_ok

            def get_error(self, i):
                return "Unsupported ONNX op: Foo"

        class Config:
            def set_memory_pool_limit(self, pool, size):
                trt.log.append(("workspace", size))

            def set_flag(self, flag):
                trt.log.append(("flag", flag))

            @property
            def builder_optimization_level(self): return None

            @builder_optimization_level.setter
            def builder_optimization_level(self, level):
                trt.log.append(("level", level))

        class Builder:
            def __init__(self, logger): pass

            def create_network(self, flags):
                trt.log.append(("network_flags", flags))
                return Network()

            def create_builder_config(self):
                return Config()

            def build_serialized_network(self, network, config):
                return b"serialized" if build_ok else None

        self.Logger, self.Builder, self.OnnxParser = Logger, Builder, Parser
        self.MemoryPoolType = SimpleNamespace(WORKSPACE="workspace")
        self.NetworkDefinitionCreationFlag = SimpleNamespace(STRONGLY_TYPED=1)
        self.BuilderFlag = SimpleNamespace(FP16="FP16") if version == 10 else SimpleNamespace()


def test_tensorrt10_builds_fp16_with_the_builder_flag(tmp_path):
    trt = FakeTensorRT(10)
    data = tensorrt_backend.build_serialized_engine(trt, tmp_path / "m.onnx", engines.load_recipe("fp16-b1"))
    assert data == b"serialized"
    assert ("network_flags", 0) in trt.log and ("flag", "FP16") in trt.log
    assert ("workspace", 2048 << 20) in trt.log and ("level", 3) in trt.log


def test_tensorrt10_fp32_recipe_sets_no_precision_flag(tmp_path):
    trt = FakeTensorRT(10)
    tensorrt_backend.build_serialized_engine(trt, tmp_path / "m.onnx", engines.load_recipe("fp32-b1"))
    assert not [entry for entry in trt.log if entry[0] == "flag"]


def test_tensorrt11_builds_a_strongly_typed_network(tmp_path):
    trt = FakeTensorRT(11)
    tensorrt_backend.build_serialized_engine(trt, tmp_path / "m.onnx", engines.load_recipe("fp16-b1"))
    assert ("network_flags", 1 << 1) in trt.log and not [entry for entry in trt.log if entry[0] == "flag"]


def test_builder_reports_parser_and_build_failures(tmp_path):
    recipe = engines.load_recipe()
    with pytest.raises(EngineError, match="Unsupported ONNX op: Foo"):
        tensorrt_backend.build_serialized_engine(FakeTensorRT(10, parse_ok=False), tmp_path / "m.onnx", recipe)
    with pytest.raises(EngineError, match="could not build"):
        tensorrt_backend.build_serialized_engine(FakeTensorRT(11, build_ok=False), tmp_path / "m.onnx", recipe)


# -- the backend without TensorRT ---------------------------------------------------------------------------------
def test_import_error_names_the_tensorrt_extra(monkeypatch):
    monkeypatch.setitem(sys.modules, "tensorrt", None)
    with pytest.raises(ImportError, match=r"`tensorrt` extra.*realtime-vrn\[tensorrt\]"):
        tensorrt_backend.import_tensorrt()


def test_backend_is_registered_last_and_explains_itself(monkeypatch, tmp_path):
    monkeypatch.setitem(sys.modules, "tensorrt", None)
    assert not tensorrt_backend.can_start()
    assert backend_names()[-1] == "tensorrt"
    with pytest.raises(BackendError, match=r"tensorrt: .*`tensorrt` extra"):
        open_backend("tensorrt", tmp_path / "model.safetensors")
    backend = tensorrt_backend.TensorRTBackend(tmp_path / "model.safetensors")
    assert backend.describe() == "tensorrt (not open)"
    backend.close()
    backend.close()


# -- the ONNX an engine is built from -----------------------------------------------------------------------------
def test_fp16_onnx_export_has_the_named_float32_io_the_engine_expects(tmp_path):
    onnx = pytest.importorskip("onnx")
    from realtime_vrn.model.export import INPUT_NAME, OUTPUT_NAME, export_onnx
    from realtime_vrn.model.network import VRN

    path = export_onnx(VRN(TINY), tmp_path / "tiny-fp16.onnx", batch=1, fp16=True)
    graph = onnx.load(str(path)).graph
    recipe = engines.load_recipe("fp16-b1")

    def io(values):
        return {v.name: (v.type.tensor_type.elem_type, tuple(d.dim_value for d in v.type.tensor_type.shape.dim))
                for v in values}

    assert io(graph.input) == {INPUT_NAME: (onnx.TensorProto.FLOAT, recipe.input_shape(TINY))}
    assert io(graph.output) == {OUTPUT_NAME: (onnx.TensorProto.FLOAT, recipe.output_shape(TINY))}
    assert onnx.TensorProto.FLOAT16 in {t.data_type for t in graph.initializer}  # FP16 inside: strongly typed


# -- the runtime around the engine, against a stand-in engine on the CPU ------------------------------------------
class _FakeStream:
    cuda_stream = 0

    def wait_stream(self, other) -> None:
        pass

    def synchronize(self) -> None:
        pass


class _FakeContext:
    """Stands in for an execution context: output row i = the mean of input row i (the padding rows included)."""

    def __init__(self, backend) -> None:
        self.backend = backend
        self.calls = 0

    def execute_async_v3(self, stream_handle: int) -> bool:
        self.calls += 1
        means = self.backend._input.mean(dim=(1, 2, 3))
        self.backend._output.copy_(means[:, None, None, None].expand_as(self.backend._output))
        return True


@pytest.fixture()
def fake_engine_backend(monkeypatch, tmp_path):
    """A TensorRTBackend opened on the fp16-b4 recipe with CPU tensors and a stand-in engine: what ``_open``
    leaves behind, without TensorRT or a GPU."""
    import contextlib

    import torch

    monkeypatch.setattr(torch.cuda, "current_stream", lambda device=None: _FakeStream())
    monkeypatch.setattr(torch.cuda, "stream", lambda stream: contextlib.nullcontext())

    def fake_open(self) -> None:
        self.cfg, self.recipe = TINY, engines.load_recipe("fp16-b4")
        self._input = torch.zeros(self.recipe.input_shape(TINY))
        self._output = torch.zeros(self.recipe.output_shape(TINY))
        self._host_in, self._host_out = torch.zeros_like(self._input), torch.zeros_like(self._output)
        self._stream, self._context = _FakeStream(), _FakeContext(self)
        self.outputs_on_device = True

    monkeypatch.setattr(tensorrt_backend.TensorRTBackend, "_open", fake_open)
    with tensorrt_backend.TensorRTBackend(tmp_path / "model.safetensors", recipe="fp16-b4") as backend:
        yield backend


def _crops(n: int):
    import numpy as np

    return np.stack([np.full((3, 32, 32), 0.1 * (k + 1), np.float32) for k in range(n)])


@pytest.mark.parametrize("n", [1, 3, 4])
def test_infer_device_returns_exactly_the_batch_rows(fake_engine_backend, n):
    import numpy as np

    out = fake_engine_backend.infer_device(_crops(n))
    assert tuple(out.shape) == (n, 8, 8, 8) and out.is_contiguous()
    np.testing.assert_allclose(out[:, 0, 0, 0].numpy(), 0.1 * np.arange(1, n + 1), rtol=1e-6)


def test_infer_device_takes_a_tensor_batch_of_fewer_rows(fake_engine_backend):
    import numpy as np
    import torch

    fake_engine_backend.infer_device(_crops(4))  # leaves non-zero rows in the engine's input
    out = fake_engine_backend.infer_device(torch.from_numpy(_crops(2)))
    assert tuple(out.shape) == (2, 8, 8, 8)
    np.testing.assert_allclose(out[:, 0, 0, 0].numpy(), [0.1, 0.2], rtol=1e-6)
    assert float(fake_engine_backend._input[2:].abs().max()) == 0.0  # padding rows are zeros


def test_infer_runs_larger_batches_in_engine_sized_chunks(fake_engine_backend):
    import numpy as np

    out = fake_engine_backend.infer(_crops(6))
    assert out.shape == (6, 8, 8, 8) and out.dtype == np.float32
    np.testing.assert_allclose(out[:, 0, 0, 0], 0.1 * np.arange(1, 7), rtol=1e-6)
    assert fake_engine_backend._context.calls == 2


def test_infer_device_refuses_more_crops_than_the_engine_takes(fake_engine_backend):
    with pytest.raises(BackendError, match="fp16-b4 engine takes at most 4 crops per call"):
        fake_engine_backend.infer_device(_crops(5))
