"""A small writer for the Torch7 binary serialisation format, and VRN-shaped Torch7 files built with it.

Writes the subset that PyPI ``torchfile`` reads (Torch7 ``File.lua`` / ``generic/Tensor.c`` / ``Storage.c``, binary
mode, little-endian, 4-byte ints, 8-byte longs as on 64-bit Linux where the release was written):

- nil, numbers (doubles), booleans (ints 0/1), strings (int length + bytes);
- tables: ``TYPE_TABLE``, a reference index, the number of entries, then key/value pairs (a Python list becomes
  a Lua array with keys 1..n; a dict keeps its keys);
- torch objects: ``TYPE_TORCH``, a reference index, the version string ``"V 1"``, the class name, then the
  payload: for ``torch.*Tensor`` ndim, sizes, strides, 1-based storage offset and the storage object; for
  ``torch.*Storage`` its length and raw elements; for ``nn.*`` modules the table of their fields.

Every table and torch object is written once; later occurrences of the same Python object are written as a
reference to its index, exactly as Torch7 does for shared storages and modules. Large zero buffers
(:class:`ZeroStorage`) are streamed without allocating them, so a file of the release's real size (~1.4 GB of
stored gradients and activation buffers) can be written with little memory.

The second half builds the module tree of the released ``vrn-unguided.t7`` (or any member of the VRN family)
from scratch, following the Torch7 construction of the hourglass (not the package's converter), with random
weights: see :func:`build_vrn_t7`.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np

TYPE_NIL = 0
TYPE_NUMBER = 1
TYPE_STRING = 2
TYPE_TABLE = 3
TYPE_TORCH = 4
TYPE_BOOLEAN = 5

_STORAGE_DTYPES = {
    "torch.FloatStorage": np.dtype("<f4"),
    "torch.DoubleStorage": np.dtype("<f8"),
    "torch.LongStorage": np.dtype("<i8"),
    "torch.IntStorage": np.dtype("<i4"),
    "torch.ByteStorage": np.dtype("u1"),
}
_ZERO_CHUNK_BYTES = 1 << 22


# -- the objects a file holds ------------------------------------------------------------------------------------


@dataclass(eq=False)
class Storage:
    """A torch storage: a flat array of elements (``data`` is 1-D)."""

    data: np.ndarray
    typename: str = "torch.FloatStorage"

    @property
    def length(self) -> int:
        return int(self.data.size)


@dataclass(eq=False)
class ZeroStorage:
    """A storage of ``length`` zeros, written in chunks without allocating it (big activation buffers)."""

    length: int
    typename: str = "torch.FloatStorage"


@dataclass(eq=False)
class Tensor:
    """A torch tensor: a strided view of a storage. ``offset`` is 0-based in elements (written 1-based)."""

    storage: Storage | ZeroStorage | None
    size: tuple[int, ...]
    stride: tuple[int, ...]
    offset: int = 0
    typename: str = "torch.FloatTensor"

    @classmethod
    def of(cls, array: np.ndarray, typename: str = "torch.FloatTensor") -> "Tensor":
        """A contiguous tensor with its own storage holding ``array``."""
        storage_type = typename.replace("Tensor", "Storage")
        data = np.ascontiguousarray(array, dtype=_STORAGE_DTYPES[storage_type]).reshape(-1)
        return cls(Storage(data, storage_type), tuple(array.shape), _contiguous_strides(array.shape), 0, typename)

    @classmethod
    def zeros(cls, shape: tuple[int, ...]) -> "Tensor":
        """A float tensor of zeros whose storage is streamed (see :class:`ZeroStorage`)."""
        return cls(ZeroStorage(int(np.prod(shape))), tuple(shape), _contiguous_strides(shape))

    @classmethod
    def empty(cls) -> "Tensor":
        """``torch.FloatTensor()``: no dimensions, no storage."""
        return cls(None, (), ())

    @classmethod
    def view(cls, storage: Storage, offset: int, shape: tuple[int, ...]) -> "Tensor":
        """A contiguous view into a shared storage (as after ``getParameters()``)."""
        return cls(storage, tuple(shape), _contiguous_strides(shape), offset, "torch.FloatTensor")


@dataclass(eq=False)
class TorchObject:
    """A torch class instance other than tensors and storages, e.g. an ``nn`` module: class name + fields."""

    typename: str
    fields: dict[str, Any] = field(default_factory=dict)

    @property
    def modules(self) -> list["TorchObject"]:
        return self.fields.get("modules", [])


def _contiguous_strides(shape: tuple[int, ...]) -> tuple[int, ...]:
    strides, step = [], 1
    for n in reversed(shape):
        strides.append(step)
        step *= int(n)
    return tuple(reversed(strides))


# -- the writer -------------------------------------------------------------------------------------------------


class T7Writer:
    """Serialises Python values to a binary file object in the Torch7 format (see the module docstring)."""

    def __init__(self, fh: BinaryIO) -> None:
        self.fh = fh
        self._indices: dict[int, int] = {}
        self._alive: list[Any] = []  # keeps written objects alive so their id() is never reused

    def write(self, obj: Any) -> None:
        if obj is None:
            self._int(TYPE_NIL)
        elif isinstance(obj, (bool, np.bool_)):
            self._int(TYPE_BOOLEAN)
            self._int(1 if obj else 0)
        elif isinstance(obj, (int, float, np.integer, np.floating)):
            self._int(TYPE_NUMBER)
            self.fh.write(struct.pack("<d", float(obj)))
        elif isinstance(obj, (str, bytes)):
            self._int(TYPE_STRING)
            self._string(obj)
        elif isinstance(obj, (dict, list)):
            if self._reference(TYPE_TABLE, obj):
                return
            items = list(obj.items()) if isinstance(obj, dict) else [(i + 1, v) for i, v in enumerate(obj)]
            self._int(len(items))
            for key, value in items:
                self.write(key)
                self.write(value)
        elif isinstance(obj, (TorchObject, Tensor, Storage, ZeroStorage)):
            if self._reference(TYPE_TORCH, obj):
                return
            self._string("V 1")
            self._string(obj.typename)
            if isinstance(obj, Tensor):
                self._tensor(obj)
            elif isinstance(obj, (Storage, ZeroStorage)):
                self._storage(obj)
            else:
                self.write(obj.fields)
        elif isinstance(obj, np.ndarray):
            self.write(Tensor.of(obj))
        else:
            raise TypeError(f"cannot write {type(obj).__name__} in Torch7 format")

    def _reference(self, typeidx: int, obj: Any) -> bool:
        """Write the type and reference index; True when ``obj`` was written before (only the index is needed)."""
        self._int(typeidx)
        key = id(obj)
        if key in self._indices:
            self._int(self._indices[key])
            return True
        index = len(self._indices) + 1
        self._indices[key] = index
        self._alive.append(obj)
        self._int(index)
        return False

    def _tensor(self, t: Tensor) -> None:
        self._int(len(t.size))
        for values in (t.size, t.stride):
            self.fh.write(struct.pack(f"<{len(values)}q", *values))
        self.fh.write(struct.pack("<q", t.offset + 1))
        self.write(t.storage)

    def _storage(self, s: Storage | ZeroStorage) -> None:
        self.fh.write(struct.pack("<q", s.length))
        if isinstance(s, Storage):
            self.fh.write(np.ascontiguousarray(s.data, dtype=_STORAGE_DTYPES[s.typename]).tobytes())
            return
        remaining = s.length * _STORAGE_DTYPES[s.typename].itemsize
        zeros = bytes(min(remaining, _ZERO_CHUNK_BYTES))
        while remaining:
            n = min(remaining, len(zeros))
            self.fh.write(zeros[:n] if n < len(zeros) else zeros)
            remaining -= n

    def _string(self, s: str | bytes) -> None:
        data = s.encode() if isinstance(s, str) else s
        self._int(len(data))
        self.fh.write(data)

    def _int(self, value: int) -> None:
        self.fh.write(struct.pack("<i", value))


def write_t7(path: str | Path, obj: Any) -> Path:
    """Write ``obj`` (a module tree, table, tensor, ...) to ``path`` as a Torch7 binary file."""
    path = Path(path)
    with path.open("wb") as fh:
        T7Writer(fh).write(obj)
    return path


# -- VRN-shaped files -------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class T7Family:
    """The hyper-parameters of a VRN-family Torch7 file (defaults: the released vrn-unguided.t7)."""

    input_size: int = 192
    in_channels: int = 3
    features: int = 256
    stacks: int = 2
    levels: int = 4
    branch_blocks: int = 6
    inner_branch_blocks: int = 9
    depth_bins: int = 200


class _Builder:
    """Builds ``nn`` module objects with Torch7's fields, tracking (C, H, W) of a batch of one.

    weights: "random" gives conv weights ~ N(0, 1/fan_in), biases and BN beta ~ N(0, 0.1), gamma ~ 1 + N(0, 0.1).
    buffers: True adds what a Torch7 model saved after training holds: gradWeight/gradBias, running statistics,
    output/gradInput of the last forward at batch size one, all as streamed zeros (the real file is ~1.4 GB
    because of them; these give 1.43 GB at full size). False writes empty tensors for those fields.
    shared_parameters: True puts every weight and bias in one flat storage (as ``getParameters()`` leaves them).
    """

    def __init__(self, rng: np.random.Generator, buffers: bool, shared_parameters: bool) -> None:
        self.rng = rng
        self.buffers = buffers
        self.shared = shared_parameters
        self._params: list[tuple[Tensor, np.ndarray]] = []

    # parameters and buffers
    def param(self, values: np.ndarray) -> Tensor:
        if not self.shared:
            return Tensor.of(values.astype(np.float32))
        tensor = Tensor(None, tuple(values.shape), _contiguous_strides(values.shape))
        self._params.append((tensor, values.astype(np.float32)))
        return tensor

    def finish(self) -> None:
        """Shared mode: lay every parameter into one flat storage and point the tensors at it."""
        if not self.shared:
            return
        flat = np.concatenate([v.reshape(-1) for _, v in self._params]) if self._params else np.zeros(0, np.float32)
        storage = Storage(flat)
        offset = 0
        for tensor, values in self._params:
            tensor.storage, tensor.offset = storage, offset
            offset += values.size

    def buffer(self, shape: tuple[int, ...]) -> Tensor:
        return Tensor.zeros(shape) if self.buffers else Tensor.empty()

    def _base(self, typename: str, cin: tuple, cout: tuple, **fields: Any) -> TorchObject:
        base = {"train": True, "_type": "torch.FloatTensor", "output": self.buffer((1, *cout)),
                "gradInput": self.buffer((1, *cin))}
        base.update(fields)
        return TorchObject(typename, base)

    # modules; each returns (module, output shape)
    def conv(self, cin: tuple, nout: int, k: int, stride: int = 1, pad: int = 0) -> tuple[TorchObject, tuple]:
        nin, h, w = cin
        ho, wo = (h + 2 * pad - k) // stride + 1, (w + 2 * pad - k) // stride + 1
        fan_in = nin * k * k
        weight = self.rng.standard_normal((nout, nin, k, k)) / np.sqrt(fan_in)
        bias = 0.1 * self.rng.standard_normal(nout)
        cout = (nout, ho, wo)
        m = self._base(
            "nn.SpatialConvolution", cin, cout,
            nInputPlane=nin, nOutputPlane=nout, kW=k, kH=k, dW=stride, dH=stride, padW=pad, padH=pad,
            weight=self.param(weight), bias=self.param(bias),
            gradWeight=self.buffer((nout, nin, k, k)), gradBias=self.buffer((nout,)),
            finput=Tensor.empty(), fgradInput=Tensor.empty(),  # im2col buffers: freed before saving
        )
        return m, cout

    def bn(self, cin: tuple) -> tuple[TorchObject, tuple]:
        c = cin[0]
        m = self._base(
            "nn.SpatialBatchNormalization", cin, cin, eps=1e-5, momentum=0.1, affine=True,
            weight=self.param(1.0 + 0.1 * self.rng.standard_normal(c)),
            bias=self.param(0.1 * self.rng.standard_normal(c)),
            running_mean=self.buffer((c,)), running_var=self.buffer((c,)),
            gradWeight=self.buffer((c,)), gradBias=self.buffer((c,)),
            save_mean=self.buffer((c,)), save_std=self.buffer((c,)),
        )
        return m, cin

    def relu(self, cin: tuple) -> tuple[TorchObject, tuple]:
        # In place, as in the hourglass code (nn.ReLU(true)): `sequential` points its output at its input's.
        return self._base("nn.ReLU", cin, cin, threshold=0, val=0, inplace=True), cin

    def maxpool(self, cin: tuple) -> tuple[TorchObject, tuple]:
        cout = (cin[0], cin[1] // 2, cin[2] // 2)
        return self._base("nn.SpatialMaxPooling", cin, cout, kW=2, kH=2, dW=2, dH=2, padW=0, padH=0,
                          ceil_mode=False, indices=self.buffer((1, *cout))), cout

    def up_nearest(self, cin: tuple) -> tuple[TorchObject, tuple]:
        cout = (cin[0], cin[1] * 2, cin[2] * 2)
        return self._base("nn.SpatialUpSamplingNearest", cin, cout, scale_factor=2), cout

    def up_bilinear(self, cin: tuple, size: int) -> tuple[TorchObject, tuple]:
        cout = (cin[0], size, size)
        return self._base("nn.SpatialUpSamplingBilinear", cin, cout, oheight=size, owidth=size), cout

    def sigmoid(self, cin: tuple) -> tuple[TorchObject, tuple]:
        return self._base("nn.Sigmoid", cin, cin), cin

    def identity(self, cin: tuple) -> tuple[TorchObject, tuple]:
        return TorchObject("nn.Identity", {"train": True, "_type": "torch.FloatTensor"}), cin

    def sequential(self, cin: tuple, parts: list) -> tuple[TorchObject, Any]:
        """parts: callables shape -> (module, shape), applied in order."""
        modules, shape = [], cin
        for part in parts:
            module, shape = part(shape)
            if module.fields.get("inplace") and modules:  # Torch7 in-place modules: output is the input tensor
                previous = modules[-1].fields.get("output")
                module.fields["output"] = previous[0] if isinstance(previous, list) else previous
            modules.append(module)
        # Torch7's Sequential keeps references: its output is the last module's, its gradInput the first's.
        return TorchObject("nn.Sequential", {"modules": modules, "train": True, "_type": "torch.FloatTensor",
                                             "output": modules[-1].fields.get("output") if modules else None,
                                             "gradInput": modules[0].fields.get("gradInput") if modules else None,
                                             }), shape

    def concat(self, cin: tuple, parts: list) -> tuple[TorchObject, list]:
        built = [part(cin) for part in parts]
        modules = [m for m, _ in built]
        return TorchObject("nn.ConcatTable", {"modules": modules, "train": True, "_type": "torch.FloatTensor",
                                              "output": [m.fields.get("output") for m in modules],
                                              "gradInput": self.buffer((1, *cin))}), [s for _, s in built]

    def cadd(self, shapes: list) -> tuple[TorchObject, tuple]:
        # In place, as in the hourglass code (nn.CAddTable(true)): the output is the first input's tensor
        # (`sequential` links it) and every gradInput entry is the same gradOutput tensor.
        shape = shapes[0]
        grad = self.buffer((1, *shape))
        return TorchObject("nn.CAddTable", {"inplace": True, "train": True, "_type": "torch.FloatTensor",
                                            "output": None, "gradInput": [grad for _ in shapes]}), shape


def _residual(b: _Builder, nout: int):
    """Torch7 ``Residual(numIn, numOut)`` of the hourglass code: ConcatTable(convBlock, skip) + CAddTable."""

    def build(cin: tuple):
        nin, mid = cin[0], nout // 2
        main = lambda s: b.sequential(s, [  # noqa: E731
            b.bn, b.relu, lambda t: b.conv(t, mid, 1),
            b.bn, b.relu, lambda t: b.conv(t, mid, 3, 1, 1),
            b.bn, b.relu, lambda t: b.conv(t, nout, 1),
        ])
        skip = b.identity if nin == nout else (lambda s: b.sequential(s, [lambda t: b.conv(t, nout, 1)]))
        return b.sequential(cin, [lambda s: b.concat(s, [main, skip]), b.cadd])

    return build


def _level_parts(b: _Builder, fam: T7Family, depth: int) -> list:
    """The parts of one hourglass level: ConcatTable(A, B), CAddTable, Res (recursion in A, un-pooled)."""
    f = fam.features
    upper = [_residual(b, f) for _ in range(3)]
    if depth > 1:
        upper.append(lambda s: b.sequential(s, _level_parts(b, fam, depth - 1)))
    n_lower = fam.branch_blocks if depth > 1 else fam.inner_branch_blocks
    lower = [b.maxpool, *[_residual(b, f) for _ in range(n_lower)], b.up_nearest]
    return [
        lambda s: b.concat(s, [lambda t: b.sequential(t, upper), lambda t: b.sequential(t, lower)]),
        b.cadd,
        _residual(b, f),
    ]


def _conv_bn_relu(b: _Builder, nout: int):
    return lambda s: b.sequential(s, [lambda t: b.conv(t, nout, 1), b.bn, b.relu])


def build_vrn_t7(family: T7Family = T7Family(), *, seed: int = 0, buffers: bool = False,
                 shared_parameters: bool = False) -> TorchObject:
    """The module tree of a VRN-family Torch7 file (the released layout for the default family), random weights.

    The root is an ``nn.Sequential`` whose children are, in order: the stem (conv7x7/2, BN, ReLU, Res, maxpool,
    Res, Res), one ``ConcatTable(Identity, hourglass) + CAddTable`` pair per stack, and the head
    ``ConcatTable(Sequential(Sequential(conv, BN, ReLU), conv, bilinear upsample, Sigmoid))``.
    """
    b = _Builder(np.random.default_rng(seed), buffers, shared_parameters)
    f = fam = family

    def stack(s):
        hourglass = lambda t: b.sequential(t, [*_level_parts(b, fam, fam.levels),  # noqa: E731
                                              _conv_bn_relu(b, f.features), _conv_bn_relu(b, f.features)])
        return b.concat(s, [b.identity, hourglass])

    head = lambda s: b.sequential(s, [  # noqa: E731
        _conv_bn_relu(b, f.features), lambda t: b.conv(t, f.depth_bins, 1),
        lambda t: b.up_bilinear(t, f.input_size), b.sigmoid,
    ])
    parts = [
        lambda s: b.conv(s, f.features // 4, 7, 2, 3), b.bn, b.relu,
        _residual(b, f.features // 2), b.maxpool, _residual(b, f.features // 2), _residual(b, f.features),
    ]
    for _ in range(f.stacks):
        parts += [stack, b.cadd]
    parts.append(lambda s: b.concat(s, [head]))
    root, _ = b.sequential((f.in_channels, f.input_size, f.input_size), parts)
    b.finish()
    return root


def iter_modules(root: TorchObject, depth: int = 0):
    """(depth, module) of every module under ``root``, depth first, root excluded (the dump's order)."""
    for child in root.modules:
        yield depth, child
        yield from iter_modules(child, depth + 1)


def find_modules(root: TorchObject, typename: str) -> list[TorchObject]:
    return [m for _, m in iter_modules(root) if m.typename == typename]


def parent_of(root: TorchObject, target: TorchObject) -> tuple[TorchObject, int]:
    """(parent, 0-based position) of ``target`` in the tree."""
    for _, m in [(0, root), *iter_modules(root)]:
        for i, child in enumerate(m.modules):
            if child is target:
                return m, i
    raise ValueError("module not in tree")


def dump_lines(root: TorchObject) -> list[str]:
    """The tree in the format of ``t7-layer-dump.txt``: index, indented class name, weight shape."""
    lines = []
    for i, (depth, m) in enumerate(iter_modules(root)):
        weight = m.fields.get("weight")
        shape = str(tuple(weight.size)) if isinstance(weight, Tensor) else ""
        lines.append(f"{i}\t{'    ' * depth}{m.typename}\t{shape}")
    return lines
