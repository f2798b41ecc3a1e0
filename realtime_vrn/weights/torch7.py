"""Convert the official Torch7 ``vrn-unguided.t7`` into our checkpoint, after checking every module of it.

Steps (:func:`convert_t7`, :func:`install_t7`):

1. **Read** the file with PyPI ``torchfile``'s parser, but lazily (:class:`_LazyT7Reader`): the module tree,
   numbers and strings are read as usual, while each tensor storage is only located (byte offset, length) and
   skipped. The released file is ~1.4 GB because it stores gradients, activation buffers and im2col buffers;
   ``torchfile.load`` would hold all of it in memory. Here only the ~77 MB of weights and biases are read
   afterwards, so peak memory is the model plus a copy of its parameters, whatever the file's size.
2. **Check the layout**: walk the tree depth first (root excluded, as the reference dump) and compare each
   module's class, nesting depth and weight shape with the expected layout: the released one is shipped as
   ``assets/vrn-unguided-layout.txt`` (generated from ``shared/reference/vrn/t7-layer-dump.txt``, a dump of
   the real file); other members of the VRN family (tests use small-channel ones) get the layout :func:`expected_layout`
   builds from a :class:`VRNConfig`, which equals the shipped file for the default configuration. The first
   divergence is reported with its module index, its path in the tree and expected vs found. Then every
   module's hyper-parameters that change the computation are checked (convolution stride and padding, pooling,
   upsampling factors, BatchNorm epsilon / ``train`` / ``affine``, tensor types).
3. **Copy**: the i-th SpatialConvolution / SpatialBatchNormalization of the file goes to the i-th ``Conv2d`` /
   ``ImageNorm`` of :class:`~realtime_vrn.model.network.VRN` (its module order equals the file's depth-first
   order). Conv weights are (out, in, kh, kw) in both; BN weight/bias are gamma/beta. Running statistics are
   not used: the release normalises each image with its own statistics (every BN has ``train = true``).
4. **Install** (:func:`install_t7`): self-check on a bundled real face (:mod:`realtime_vrn.weights.selfcheck`),
   then save ``<models_dir>/vrn-unguided.safetensors`` with its model card (provenance: source URL and the
   ``.t7``'s SHA-256, licence note).
"""

from __future__ import annotations

import functools
import itertools
import logging
import os
import struct
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

import numpy as np

from realtime_vrn.errors import WeightsError
from realtime_vrn.fileio import file_sha256
from realtime_vrn.model.network import BN_EPS, VRN, VRNConfig

log = logging.getLogger(__name__)

#: The released layout, generated from the reference dump (see the header of the file). Under assets/ because
#: that folder is package data (shipped in the wheel).
LAYOUT_FILE = Path(__file__).resolve().parent.parent / "assets" / "vrn-unguided-layout.txt"
#: The dump lists the children of the file's root; the root itself is a container whose ``modules`` hold them in
#: order. nn.Sequential is the only Torch7 container that runs a flat list of modules one after the other.
ROOT_CLASS = "nn.Sequential"
CONV = "nn.SpatialConvolution"
BN = "nn.SpatialBatchNormalization"
BILINEAR = "nn.SpatialUpSamplingBilinear"
#: (stride, padding) of a convolution by kernel size: the 7x7 stem is stride 2, pad 3; 3x3 keeps the size.
CONV_GEOMETRY = {7: (2, 3), 3: (1, 1), 1: (1, 0)}
#: Storage classes that hold float32 (CUDA tensors are saved as float32 too) or float64 numbers.
FLOAT_STORAGES = {"torch.FloatStorage": "<f4", "torch.CudaStorage": "<f4", "torch.DoubleStorage": "<f8",
                  "torch.CudaDoubleStorage": "<f8"}
OTHER_STORAGES = {"torch.LongStorage": "<i8", "torch.IntStorage": "<i4", "torch.ShortStorage": "<i2",
                  "torch.CharStorage": "i1", "torch.ByteStorage": "u1", "torch.HalfStorage": "<f2",
                  "torch.CudaLongStorage": "<i8", "torch.CudaIntStorage": "<i4", "torch.CudaByteStorage": "u1",
                  "torch.CudaHalfStorage": "<f2"}
#: Torch7's BatchNorm epsilon may be stored as a double of 1e-5; other values change the output.
EPS_TOLERANCE = 1e-9
_REFETCH = "the file is not the official vrn-unguided.t7 or is damaged; fetch it again (`realtime-vrn weights fetch`)"


@dataclass(frozen=True)
class LayoutEntry:
    """One module of a Torch7 VRN file in depth-first order: nesting depth (0 = child of the root), Lua class
    name, and weight shape (conv: out, in, kh, kw; BN: channels,) or None for modules without weights."""

    depth: int
    classname: str
    shape: tuple[int, ...] | None = None


# -- expected layouts -------------------------------------------------------------------------------------------


def layout_from_dump(text: str) -> list[LayoutEntry]:
    """Parse ``t7-layer-dump.txt`` lines ``index<TAB><4 spaces per depth>class<TAB>(shape)``."""
    entries = []
    for line in text.splitlines():
        if not line.strip():
            continue
        index, name, shape = (line.split("\t") + ["", ""])[:3]
        if int(index) != len(entries):
            raise ValueError(f"dump line {line!r}: expected index {len(entries)}")
        depth = (len(name) - len(name.lstrip(" "))) // 4
        dims = tuple(int(d) for d in shape.strip().strip("()").split(",") if d.strip())
        entries.append(LayoutEntry(depth, name.strip(), dims or None))
    return entries


def format_layout(entries: list[LayoutEntry]) -> str:
    """One line per module: ``depth class [d0,d1,...]`` (the format of ``assets/vrn-unguided-layout.txt``)."""
    lines = []
    for e in entries:
        shape = "" if e.shape is None else " " + ",".join(str(d) for d in e.shape)
        lines.append(f"{e.depth} {e.classname}{shape}")
    return "\n".join(lines) + "\n"


def parse_layout(text: str) -> list[LayoutEntry]:
    """Read :func:`format_layout` text (``#`` comments and blank lines ignored)."""
    entries = []
    for line in text.splitlines():
        line = line.split("#", 1)[0].strip()
        if not line:
            continue
        parts = line.split()
        shape = tuple(int(d) for d in parts[2].split(",")) if len(parts) > 2 else None
        entries.append(LayoutEntry(int(parts[0]), parts[1], shape))
    return entries


def release_layout() -> list[LayoutEntry]:
    """The released vrn-unguided.t7 layout shipped with the package (1339 modules)."""
    return parse_layout(LAYOUT_FILE.read_text(encoding="utf-8"))


def expected_layout(cfg: VRNConfig) -> list[LayoutEntry]:
    """The layout of a VRN-family Torch7 file for ``cfg``: the shipped release layout for the default one, else
    built the way the release's Torch7 code builds the hourglass (equal to the shipped file for the default)."""
    if cfg == VRNConfig():
        return release_layout()
    return build_layout(cfg)


def build_layout(cfg: VRNConfig) -> list[LayoutEntry]:
    """The Torch7 module tree of ``cfg``, depth first (see ``shared/docs/vrn-reference.md`` §2)."""
    f = cfg.features
    children = [
        (CONV, (f // 4, cfg.in_channels, 7, 7), []), (BN, (f // 4,), []), ("nn.ReLU", None, []),
        _res(f // 4, f // 2), ("nn.SpatialMaxPooling", None, []), _res(f // 2, f // 2), _res(f // 2, f),
    ]
    for _ in range(cfg.stacks):
        hourglass = _seq(*_level(cfg, cfg.levels), _conv_bn_relu(f, f), _conv_bn_relu(f, f))
        children += [("nn.ConcatTable", None, [("nn.Identity", None, []), hourglass]), ("nn.CAddTable", None, [])]
    head = _seq(_conv_bn_relu(f, f), (CONV, (cfg.depth_bins, f, 1, 1), []), (BILINEAR, None, []),
                ("nn.Sigmoid", None, []))
    children.append(("nn.ConcatTable", None, [head]))
    entries: list[LayoutEntry] = []
    _flatten(children, 0, entries)
    return entries


def _seq(*children) -> tuple:
    return ("nn.Sequential", None, list(children))


def _res(cin: int, cout: int) -> tuple:
    mid = cout // 2
    main = _seq((BN, (cin,), []), ("nn.ReLU", None, []), (CONV, (mid, cin, 1, 1), []),
                (BN, (mid,), []), ("nn.ReLU", None, []), (CONV, (mid, mid, 3, 3), []),
                (BN, (mid,), []), ("nn.ReLU", None, []), (CONV, (cout, mid, 1, 1), []))
    skip = ("nn.Identity", None, []) if cin == cout else _seq((CONV, (cout, cin, 1, 1), []))
    return _seq(("nn.ConcatTable", None, [main, skip]), ("nn.CAddTable", None, []))


def _level(cfg: VRNConfig, depth: int) -> list[tuple]:
    f = cfg.features
    upper = [_res(f, f) for _ in range(3)]
    if depth > 1:
        upper.append(_seq(*_level(cfg, depth - 1)))
    n_lower = cfg.branch_blocks if depth > 1 else cfg.inner_branch_blocks
    lower = [("nn.SpatialMaxPooling", None, []), *[_res(f, f) for _ in range(n_lower)],
             ("nn.SpatialUpSamplingNearest", None, [])]
    return [("nn.ConcatTable", None, [_seq(*upper), _seq(*lower)]), ("nn.CAddTable", None, []), _res(f, f)]


def _conv_bn_relu(cin: int, cout: int) -> tuple:
    return _seq((CONV, (cout, cin, 1, 1), []), (BN, (cout,), []), ("nn.ReLU", None, []))


def _flatten(children: list[tuple], depth: int, out: list[LayoutEntry]) -> None:
    for name, shape, grandchildren in children:
        out.append(LayoutEntry(depth, name, shape))
        _flatten(grandchildren, depth + 1, out)


# -- lazy Torch7 reading ---------------------------------------------------------------------------------------


class _Truncated(Exception):
    """The file ends inside an object (raised with the byte position)."""


@dataclass(frozen=True)
class LazyStorage:
    """A storage located in the file but not read: ``length`` elements of ``dtype`` from byte ``file_offset``."""

    typename: str
    dtype: str
    file_offset: int
    length: int


@dataclass(frozen=True)
class LazyTensor:
    """A tensor header: a strided view (sizes, strides in elements, 0-based offset) of a :class:`LazyStorage`."""

    typename: str
    size: tuple[int, ...]
    stride: tuple[int, ...]
    storage_offset: int
    storage: LazyStorage | None

    @property
    def shape(self) -> tuple[int, ...]:
        return self.size if self.storage is not None else (0,)

    def read(self, fh) -> np.ndarray:
        """The tensor's values as a new C-contiguous float32 array (reads only its own span of the storage)."""
        if self.storage is None or not self.size or 0 in self.size:
            return np.zeros(self.shape if self.storage is not None else (0,), np.float32)
        itemsize = np.dtype(self.storage.dtype).itemsize
        span = 1 + sum((n - 1) * s for n, s in zip(self.size, self.stride))
        if self.storage_offset < 0 or self.storage_offset + span > self.storage.length:
            raise WeightsError(f"a {self.typename} of shape {self.size} reaches past its storage of "
                               f"{self.storage.length} elements; {_REFETCH}")
        fh.seek(self.storage.file_offset + self.storage_offset * itemsize)
        raw = bytearray(span * itemsize)  # writable, so torch.from_numpy can share it
        if fh.readinto(raw) != len(raw):
            raise WeightsError(f"the file ends inside a {self.typename} of shape {self.size}; {_REFETCH}")
        flat = np.frombuffer(raw, dtype=self.storage.dtype, count=span)
        view = np.lib.stride_tricks.as_strided(flat, shape=self.size, strides=[s * itemsize for s in self.stride])
        return np.ascontiguousarray(view, dtype=np.float32)


def _torchfile():
    try:
        import torchfile
    except ImportError as err:
        raise WeightsError("converting Torch7 files needs the `torchfile` package: "
                           "pip install 'realtime-vrn[convert]' (or pip install torchfile)") from err
    return torchfile


_INT = struct.Struct("<i")
_LONG = struct.Struct("<q")


@functools.lru_cache(maxsize=None)
def _lazy_reader_class():
    """torchfile.T7Reader, reading little-endian 64-bit longs and leaving storages in the file."""
    torchfile = _torchfile()

    class _LazyT7Reader(torchfile.T7Reader):
        def __init__(self, fh, file_size: int) -> None:
            super().__init__(fh, use_list_heuristic=True, use_int_heuristic=True, utf8_decode_strings=False)
            self.file_size = file_size

        def _bytes(self, n: int) -> bytes:
            data = self.f.read(n)
            if len(data) != n:
                raise _Truncated(self.f.tell())
            return data

        def _read(self, fmt):
            fmt = "<" + fmt
            return struct.unpack(fmt, self._bytes(struct.calcsize(fmt)))

        def read_int(self):
            return _INT.unpack(self._bytes(4))[0]

        def read_long(self):
            return _LONG.unpack(self._bytes(8))[0]

        def read_long_array(self, n):
            if n < 0 or 8 * n > self.file_size:
                raise _Truncated(self.f.tell())
            return list(self._read(f"{n}q")) if n else []

        def read_string(self, disable_utf8=False):
            n = self.read_int()
            if n < 0 or self.f.tell() + n > self.file_size:  # a corrupt length must not allocate gigabytes
                raise _Truncated(self.f.tell())
            return self._bytes(n)

        def read_obj(self):
            start = self.f.tell()
            if self.read_int() != torchfile.TYPE_TORCH:
                self.f.seek(start)
                return super().read_obj()
            index = self.read_int()
            if index in self.objects:
                return self.objects[index]
            version = self.read_string()
            if version.startswith(b"V "):
                version_number, class_name = int(float(version[2:])), self.read_string()
            else:
                version_number, class_name = 0, version
            name = class_name.decode("latin-1")
            if name.endswith("Storage"):
                obj = self._storage(name)
            elif name.startswith("torch.") and name.endswith("Tensor"):
                obj = self._tensor(name)
            else:
                obj = torchfile.TorchObject(class_name, version_number=version_number)
                self.objects[index] = obj  # before its fields: a module may refer to itself
                obj._obj = self.read_obj()
            self.objects[index] = obj
            return obj

        def _storage(self, name: str) -> LazyStorage:
            dtype = FLOAT_STORAGES.get(name) or OTHER_STORAGES.get(name)
            if dtype is None:
                raise WeightsError(f"unknown Torch7 storage class {name!r} at byte {self.f.tell()}; {_REFETCH}")
            length = self.read_long()
            offset = self.f.tell()
            nbytes = length * np.dtype(dtype).itemsize
            if length < 0 or offset + nbytes > self.file_size:
                raise _Truncated(offset)
            self.f.seek(nbytes, os.SEEK_CUR)
            return LazyStorage(name, dtype, offset, length)

        def _tensor(self, name: str) -> LazyTensor:
            ndim = self.read_int()
            size = tuple(self.read_long_array(ndim))
            stride = tuple(self.read_long_array(ndim))
            storage_offset = self.read_long() - 1
            storage = self.read_obj()
            if storage is not None and not isinstance(storage, LazyStorage):
                raise WeightsError(f"a {name} at byte {self.f.tell()} has no storage; {_REFETCH}")
            if ndim == 0 or storage is None:
                return LazyTensor(name, (), (), 0, None)
            return LazyTensor(name, size, stride, storage_offset, storage)

    return _LazyT7Reader


def read_t7_tree(path: str | os.PathLike) -> Any:
    """The object stored in a Torch7 file, with tensors as :class:`LazyTensor` headers (nothing big is read).

    Raises WeightsError when the file is missing, truncated or not a Torch7 binary file.
    """
    path = Path(path)
    if not path.is_file():
        raise WeightsError(f"{path} does not exist or is not a file")
    size = path.stat().st_size
    torchfile = _torchfile()
    reader_class = _lazy_reader_class()
    with path.open("rb") as fh:
        head = fh.read(16)
        fh.seek(0)
        if head.lstrip().startswith(b"<"):
            raise WeightsError(f"{path} is an HTML/XML page, not a Torch7 file (a failed download?); {_REFETCH}")
        reader = reader_class(fh, size)
        try:
            return reader.read_obj()
        except _Truncated as err:
            raise WeightsError(f"{path} is truncated: it ends at byte {size} inside an object that starts before "
                               f"byte {err.args[0]} ({size / 1e6:.1f} MB read); the download or copy was "
                               f"interrupted: fetch it again (`realtime-vrn weights fetch` resumes)") from None
        except (torchfile.T7ReaderException, struct.error, ValueError, UnicodeDecodeError, RecursionError) as err:
            raise WeightsError(f"{path} is not a readable Torch7 binary file (at byte {fh.tell()}: {err}); "
                               f"{_REFETCH}") from None


# -- walking and checking ----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class FoundModule:
    """A module of the file in depth-first order: its index, depth, Lua path and class name."""

    index: int
    depth: int
    path: str
    classname: str
    module: Any

    def field(self, name: str, default: Any = None) -> Any:
        return _field(self.module, name, default)


def _field(module: Any, name: str, default: Any = None) -> Any:
    table = getattr(module, "_obj", None)
    if not isinstance(table, dict):
        return default
    return table.get(name.encode(), default)


def _classname(module: Any) -> str:
    typename = getattr(module, "_typename", None)
    if isinstance(typename, bytes):
        return typename.decode("latin-1")
    return f"<a {type(module).__name__}, not a torch module>"


def walk_modules(root: Any) -> Iterator[FoundModule]:
    """Every module under ``root`` depth first (root excluded), descending into any module with ``modules``."""
    counter = itertools.count()

    def visit(module: Any, depth: int, prefix: str) -> Iterator[FoundModule]:
        children = _field(module, "modules")
        if not isinstance(children, list):
            return
        for i, child in enumerate(children, start=1):
            path = f"{prefix}.modules[{i}]"
            yield FoundModule(next(counter), depth, path, _classname(child), child)
            yield from visit(child, depth + 1, path)

    yield from visit(root, 0, "root")


def _weight_shape(found: FoundModule) -> tuple[int, ...] | None:
    weight = found.field("weight")
    return weight.shape if isinstance(weight, LazyTensor) else None


def check_layout(root: Any, expected: list[LayoutEntry], source: str, what: str) -> list[FoundModule]:
    """Compare the file's module tree with ``expected``; return the found modules or raise at the first divergence.

    source: the file's name for messages; what: the expected network, e.g. "the released vrn-unguided network".
    """
    root_class = _classname(root)
    if root_class != ROOT_CLASS:
        raise WeightsError(f"{source} is not {what}: its root object is {root_class}, expected {ROOT_CLASS}; "
                           f"{_REFETCH}")
    found = list(walk_modules(root))
    expected_paths = _paths(expected)
    for i in range(max(len(found), len(expected))):
        exp = expected[i] if i < len(expected) else None
        got = found[i] if i < len(found) else None
        problem = _divergence(exp, got)
        if problem:
            where = expected_paths[i] if exp is not None else got.path
            raise WeightsError(f"{source} is not {what}: at module #{i} ({where}) {problem} "
                               f"[{len(found)} modules found, {len(expected)} expected]; {_REFETCH}")
    return found


def _divergence(exp: LayoutEntry | None, got: FoundModule | None) -> str | None:
    if exp is None:
        return f"expected the end of the network, found an extra {got.classname} at depth {got.depth}"
    if got is None:
        return f"expected {_describe(exp)}, found the end of the network (a missing module)"
    if (got.classname, got.depth) != (exp.classname, exp.depth):
        return f"expected {_describe(exp)}, found {got.classname} at depth {got.depth} ({got.path})"
    shape = _weight_shape(got)
    if exp.shape is not None and shape != exp.shape:
        found = "no weight" if shape is None else f"weight {shape}"
        return f"expected {_describe(exp)}, found {got.classname} with {found}"
    return None


def _describe(e: LayoutEntry) -> str:
    weight = f" with weight {e.shape}" if e.shape is not None else ""
    return f"{e.classname}{weight} at depth {e.depth}"


def _paths(entries: list[LayoutEntry]) -> list[str]:
    """Lua paths (``root.modules[4].modules[1]``) of a layout's entries."""
    paths, stack = [], []  # stack[d] = (path of the latest module at depth d, its child count so far)
    counts: list[int] = [0]
    for e in entries:
        del stack[e.depth:]
        del counts[e.depth + 1:]
        counts[e.depth] += 1
        parent = stack[-1] if stack else "root"
        path = f"{parent}.modules[{counts[e.depth]}]"
        paths.append(path)
        stack.append(path)
        counts.append(0)
    return paths


def check_hyperparameters(found: list[FoundModule], cfg: VRNConfig, source: str) -> None:
    """Check what the layout does not show: strides, paddings, factors, BN settings, tensor types."""
    problems = []
    for m in found:
        problem = _module_problem(m, cfg)
        if problem:
            problems.append(f"module #{m.index} {m.classname} ({m.path}): {problem}")
    if problems:
        more = f" (and {len(problems) - 3} more)" if len(problems) > 3 else ""
        raise WeightsError(f"{source} does not compute what the VRN network computes: " + "; ".join(problems[:3])
                           + more + f"; {_REFETCH}")


def _module_problem(m: FoundModule, cfg: VRNConfig) -> str | None:
    checks = {
        CONV: _conv_problem,
        BN: _bn_problem,
        "nn.SpatialMaxPooling": _maxpool_problem,
        "nn.SpatialUpSamplingNearest": _nearest_problem,
        BILINEAR: _bilinear_problem,
        "nn.ReLU": _relu_problem,
    }
    check = checks.get(m.classname)
    return check(m, cfg) if check else None


def _tensor_problem(m: FoundModule, name: str, shape: tuple[int, ...]) -> str | None:
    t = m.field(name)
    if not isinstance(t, LazyTensor) or t.storage is None:
        return f"no {name} tensor"
    if t.storage.typename not in FLOAT_STORAGES:
        return f"{name} is a {t.typename}, expected a float tensor"
    if t.shape != shape:
        return f"{name} has shape {t.shape}, expected {shape}"
    return None


def _conv_problem(m: FoundModule, cfg: VRNConfig) -> str | None:
    nout, nin, kh, kw = _weight_shape(m)
    problem = _tensor_problem(m, "weight", (nout, nin, kh, kw)) or _tensor_problem(m, "bias", (nout,))
    if problem:
        return problem
    stride, pad = CONV_GEOMETRY.get(kh, (1, (kh - 1) // 2))
    legacy_pad = m.field("padding", 0)  # nn before padW/padH stored one `padding`
    got = (m.field("kW", kw), m.field("kH", kh), m.field("dW", 1), m.field("dH", 1),
           m.field("padW", legacy_pad), m.field("padH", m.field("padW", legacy_pad)))
    want = (kw, kh, stride, stride, pad, pad)
    if got != want:
        return f"kernel/stride/padding (kW, kH, dW, dH, padW, padH) = {got}, expected {want}"
    return None


def _bn_problem(m: FoundModule, cfg: VRNConfig) -> str | None:
    (channels,) = _weight_shape(m)
    problem = _tensor_problem(m, "weight", (channels,)) or _tensor_problem(m, "bias", (channels,))
    if problem:
        return problem
    eps = m.field("eps", BN_EPS)
    if not isinstance(eps, (int, float)) or abs(eps - BN_EPS) > EPS_TOLERANCE:
        return f"eps = {eps}, expected {BN_EPS}"
    if m.field("train", True) is not True:
        # Torch7 would then normalise with the running statistics; the release (and our network) never does.
        return "train = false (evaluation mode with running statistics), expected train = true as released"
    if m.field("affine", True) is not True:
        return "affine = false, expected an affine BatchNorm"
    return None


def _maxpool_problem(m: FoundModule, cfg: VRNConfig) -> str | None:
    got = tuple(m.field(k, d) for k, d in (("kW", None), ("kH", None), ("dW", None), ("dH", None),
                                            ("padW", 0), ("padH", 0)))
    if got != (2, 2, 2, 2, 0, 0):
        return f"(kW, kH, dW, dH, padW, padH) = {got}, expected (2, 2, 2, 2, 0, 0)"
    return None


def _nearest_problem(m: FoundModule, cfg: VRNConfig) -> str | None:
    factor = m.field("scale_factor")
    return None if factor == 2 else f"scale_factor = {factor}, expected 2"


def _bilinear_problem(m: FoundModule, cfg: VRNConfig) -> str | None:
    size, factor = cfg.input_size, cfg.input_size // cfg.grid_size
    oheight, owidth, scale = m.field("oheight"), m.field("owidth"), m.field("scale_factor")
    if (oheight, owidth) == (size, size):
        return None
    if scale == factor and oheight is None and owidth is None:
        # Torch7 gives (g - 1) * (s - 1) + g pixels for a factor s (189 from 48 with s = 4), not g * s; the
        # released outputs are S x S, which is what our network computes (align_corners bilinear to S).
        log.warning("module #%d %s has scale_factor %d: Torch7 would output %d px, the release's documented "
                    "output (and ours) is %d px", m.index, m.classname, scale,
                    (cfg.grid_size - 1) * (scale - 1) + cfg.grid_size, size)
        return None
    return f"oheight/owidth = {oheight}/{owidth}, scale_factor = {scale}; expected an output of {size} x {size}"


def _relu_problem(m: FoundModule, cfg: VRNConfig) -> str | None:
    threshold, value = m.field("threshold", 0), m.field("val", 0)
    return None if (threshold, value) == (0, 0) else f"threshold/val = {threshold}/{value}, expected 0/0"


# -- conversion ---------------------------------------------------------------------------------------------------


def convert_t7(path: str | os.PathLike, cfg: VRNConfig | None = None) -> VRN:
    """Read a VRN-family Torch7 file, check it completely, and return the :class:`VRN` holding its weights.

    cfg: the architecture the file must have (default: the released vrn-unguided network). The model is returned
    in eval mode on the CPU. Raises WeightsError for a missing, truncated, unreadable or different file, with
    the place where it diverges from the expected layout.
    """
    import torch

    path = Path(path)
    cfg = cfg or VRNConfig()
    what = ("the released vrn-unguided network" if cfg == VRNConfig()
            else f"the VRN network of configuration {cfg.to_json()}")
    started = time.perf_counter()
    root = read_t7_tree(path)
    found = check_layout(root, expected_layout(cfg), path.name, what)
    check_hyperparameters(found, cfg, path.name)
    layers = [m for m in found if m.classname in (CONV, BN)]
    net = VRN(cfg)
    targets = _weight_modules(net)
    if len(targets) != len(layers):  # the layout matched, so only a network/layout disagreement gets here
        raise RuntimeError(f"VRN({cfg}) has {len(targets)} conv/norm modules, the layout {len(layers)}")
    with path.open("rb") as fh, torch.no_grad():
        for m, target in zip(layers, targets):
            for name in ("weight", "bias"):
                values = m.field(name).read(fh)
                destination = getattr(target, name)
                if tuple(destination.shape) != values.shape:
                    raise RuntimeError(f"{m.path}.{name} {values.shape} vs {type(target).__name__} "
                                       f"{tuple(destination.shape)}")
                if not np.all(np.isfinite(values)):
                    raise WeightsError(f"{path.name}: module #{m.index} ({m.path}) has non-finite {name} values; "
                                       f"{_REFETCH}")
                destination.copy_(torch.from_numpy(values))
    log.info("read %d convolutions and %d norms from %s in %.1f s", sum(m.classname == CONV for m in layers),
             sum(m.classname == BN for m in layers), path, time.perf_counter() - started)
    return net.eval()


def _weight_modules(net: VRN) -> list:
    from torch import nn

    from realtime_vrn.model.network import ImageNorm

    return [m for m in net.modules() if isinstance(m, (nn.Conv2d, ImageNorm))]


@dataclass(frozen=True)
class InstallResult:
    """What :func:`install_t7` wrote: the checkpoint, its model card and SHA-256, the source's SHA-256."""

    name: str
    path: Path
    card_path: Path
    sha256: str
    source_sha256: str
    seconds: float
    selfcheck: Any = None  # realtime_vrn.weights.selfcheck.SelfCheckReport, or None when skipped


def install_t7(path: str | os.PathLike, *, name: str | None = None, models_dir: str | os.PathLike | None = None,
               cfg: VRNConfig | None = None, selfcheck: bool = True) -> InstallResult:
    """Convert ``path`` and install it as ``<models_dir>/<name>.safetensors`` (+ model card).

    name: default ``vrn-unguided``; models_dir: default the user's models folder (``registry.models_dir()``).
    selfcheck: run the network on the bundled face first and refuse to install a model that fails
    (:func:`realtime_vrn.weights.selfcheck.require_face`). An existing model of that name is replaced.
    """
    from realtime_vrn import __version__
    from realtime_vrn.model.checkpoint import CheckpointMeta, save_checkpoint, write_model_card
    from realtime_vrn.weights import official, registry

    started = time.perf_counter()
    path = Path(path)
    name = name or official.MODEL_NAME
    net = convert_t7(path, cfg)
    report = None
    if selfcheck:
        from realtime_vrn.weights.selfcheck import require_face

        report = require_face(net, source=path.name)
    else:
        log.warning("self-check skipped: %s was installed without running it on a face", name)
    source_sha256 = file_sha256(path)
    meta = CheckpointMeta(
        source=f"{path.name} (SHA-256 {source_sha256}), the official release {official.URL}, converted by "
               f"realtime-vrn {__version__}",
        licence=official.LICENCE_NOTE,
        description=f"VRN (unguided), the official release of {official.PAPER}",
    )
    folder = Path(models_dir).expanduser() if models_dir is not None else registry.models_dir()
    target = folder / f"{name}.safetensors"
    sha256 = save_checkpoint(target, net, meta)
    card = write_model_card(target)
    return InstallResult(name, target, card, sha256, source_sha256, time.perf_counter() - started, report)
