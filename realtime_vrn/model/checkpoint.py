"""Our checkpoint format: one ``.safetensors`` file that carries its own configuration and provenance.

Layout: the network's ``state_dict`` (float32 tensors, names as in :class:`~realtime_vrn.model.network.VRN`) and
string metadata (safetensors' ``__metadata__``)::

    format          "realtime-vrn-checkpoint"
    format_version  "1"
    config          VRNConfig as JSON (architecture; enough to rebuild the network)
    source          where the weights come from (URL, training run, "converted from vrn-unguided.t7", ...)
    licence         licence of the weights ("unknown" is allowed, but must be said)
    description     free text
    tensors_sha256  SHA-256 (hex) of the tensor bytes after the header (written since 2026-12; older files
                    have none): a file whose header is intact but whose tensor data is damaged is refused

The SHA-256 of the whole file is computed on every load and exposed as :attr:`Checkpoint.sha256`. It is
verified against an expected value when one is given, or else against the model card ``<stem>.json`` beside
the file when there is one (the installed-model registry writes one; see :func:`write_model_card`).
Loading is strict: every missing, unexpected or wrongly shaped tensor is reported in one :class:`WeightsError`,
and so is a tensor holding NaN or infinity (a network with such weights outputs nothing usable).
"""

from __future__ import annotations

import hashlib
import json
import os
import struct
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

import torch

from realtime_vrn.errors import WeightsError
from realtime_vrn.model.network import VRN, VRNConfig
from realtime_vrn.fileio import file_sha256, write_atomic  # file_sha256: also for this module's importers

FORMAT_TAG = "realtime-vrn-checkpoint"
#: Bump when the layout changes incompatibly; readers refuse newer versions.
FORMAT_VERSION = 1
SUFFIX = ".safetensors"
MODEL_CARD_SUFFIX = ".json"
#: safetensors: an 8-byte little-endian header length, then the JSON header, then the tensor bytes.
_HEADER_LEN_BYTES = 8
#: The tensor data starts at a multiple of this many bytes (the header is padded with spaces).
_HEADER_ALIGN = 8
#: Refuse absurd header lengths before reading them (safetensors itself caps headers at 100 MB).
_MAX_HEADER_BYTES = 100_000_000
#: Metadata key of the tensor bytes' SHA-256 (the whole file's digest cannot live inside the file).
TENSORS_SHA256_KEY = "tensors_sha256"
#: Tensors named per kind of mismatch in the one-line error (a wrong configuration makes every tensor wrong).
SHOWN_PROBLEMS = 3
_REMEDY = (
    "install a model with `realtime-vrn weights fetch` + `realtime-vrn weights convert FILE`, "
    "or pass a checkpoint written by realtime-vrn with --weights PATH"
)


@dataclass(frozen=True)
class CheckpointMeta:
    """Provenance of a checkpoint's weights (all strings; ``source`` and ``licence`` must not be empty)."""

    source: str
    licence: str
    description: str = ""

    def __post_init__(self) -> None:
        for name in ("source", "licence", "description"):
            if not isinstance(getattr(self, name), str):
                raise TypeError(f"CheckpointMeta.{name} must be a str, got {type(getattr(self, name)).__name__}")
        if not self.source.strip() or not self.licence.strip():
            raise ValueError("CheckpointMeta needs a non-empty source and licence (say 'unknown' if it is)")

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> "CheckpointMeta":
        known = {"source", "licence", "description"}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ValueError(f"unknown checkpoint metadata keys: {unknown}; expected {sorted(known)}")
        return cls(**data)


@dataclass(frozen=True)
class CheckpointHeader:
    """What a checkpoint says about itself, read without loading its tensors."""

    cfg: VRNConfig
    meta: CheckpointMeta
    format_version: int
    #: tensor name -> shape, as stored.
    shapes: dict[str, tuple[int, ...]] = field(repr=False)


@dataclass(frozen=True)
class Checkpoint:
    """A loaded checkpoint: configuration, float32 CPU tensors, provenance and the file's SHA-256 (hex)."""

    cfg: VRNConfig
    state_dict: dict[str, torch.Tensor] = field(repr=False)
    meta: CheckpointMeta
    sha256: str
    path: Path | None = None


def save_checkpoint(path: str | os.PathLike, model: VRN, meta: CheckpointMeta | Mapping[str, str]) -> str:
    """Write ``model`` (its ``cfg`` and float32 weights) and ``meta`` to ``path``; return the file's SHA-256.

    The file is written next to its destination and renamed into place, so a reader never sees half a file.
    """
    from safetensors.torch import save

    if not isinstance(model, VRN):
        raise TypeError(f"expected a VRN model, got {type(model).__name__}")
    meta = meta if isinstance(meta, CheckpointMeta) else CheckpointMeta.from_dict(meta)
    path = Path(path)
    if path.suffix != SUFFIX:
        raise ValueError(f"a checkpoint file name must end in {SUFFIX}, got {path.name}")
    tensors = {k: v.detach().to("cpu", torch.float32).contiguous() for k, v in model.state_dict().items()}
    metadata = {
        "format": FORMAT_TAG,
        "format_version": str(FORMAT_VERSION),
        "config": model.cfg.to_json(),
        "source": meta.source,
        "licence": meta.licence,
        "description": meta.description,
    }
    data = _canonical_header(save(tensors, metadata=metadata), tensors_sha256=True)
    path.parent.mkdir(parents=True, exist_ok=True)
    write_atomic(path, data)
    return hashlib.sha256(data).hexdigest()


def read_checkpoint_header(path: str | os.PathLike) -> CheckpointHeader:
    """Read and validate a checkpoint's configuration and provenance without loading its tensors.

    Raises WeightsError when the file is missing, is not a safetensors file, is truncated or is not ours.
    """
    path = Path(path)
    size = _existing_file_size(path)
    with path.open("rb") as fh:
        head = fh.read(_HEADER_LEN_BYTES + 1)
        header_len = _header_length(path, head, size)
        fh.seek(_HEADER_LEN_BYTES)
        raw = fh.read(header_len)
    return _parse_header(path, raw, header_len, size)


def load_checkpoint(path: str | os.PathLike, expected_sha256: str | None = None) -> Checkpoint:
    """Load a checkpoint, computing its SHA-256 and checking it.

    expected_sha256: hex digest the file must have; None = the ``sha256`` of the model card ``<stem>.json``
    beside the file when there is one, else no check. Raises WeightsError (file missing, not safetensors,
    truncated, corrupt, not a realtime-vrn checkpoint, written by a newer version, checksum mismatch).
    """
    path = Path(path)
    if expected_sha256 is not None:
        if not _is_sha256(expected_sha256):
            raise ValueError(f"expected_sha256 must be 64 hex digits, got {expected_sha256!r}")
        return _load(path, expected_sha256.lower(), "the caller")
    card = read_model_card(path)
    if card is None:
        return _load(path, None, "")
    return _load(path, card["sha256"].lower(), f"its model card {model_card_path(path).name}")


def model_from_checkpoint(checkpoint: Checkpoint, device: str | torch.device = "cpu") -> VRN:
    """Build the network of ``checkpoint`` and load its weights strictly; returned in eval mode on ``device``."""
    net = VRN(checkpoint.cfg)
    expected = net.state_dict()
    problems = _state_dict_problems(expected, checkpoint.state_dict, limit=SHOWN_PROBLEMS)
    if problems:
        where = checkpoint.path or "checkpoint"
        c = checkpoint.cfg
        err = WeightsError(f"{where} does not match its configuration ({c.input_size} px input, {c.features} "
                           f"features, {c.stacks} stacks, {c.depth_bins} depth bins): " + "; ".join(problems)
                           + " (--debug lists every tensor)")
        if hasattr(err, "add_note"):  # Python >= 3.11: shown under the traceback that --debug prints
            err.add_note(f"configuration: {c}\n" + "\n".join(_state_dict_problems(expected, checkpoint.state_dict,
                                                                                  limit=None)))
        raise err
    net.load_state_dict(checkpoint.state_dict, strict=True)
    return net.eval().to(device)


def load_model(path: str | os.PathLike, device: str | torch.device = "cpu") -> VRN:
    """Load ``path`` (see :func:`load_checkpoint`) into a :class:`VRN` in eval mode on ``device``."""
    return model_from_checkpoint(load_checkpoint(path), device)


# -- model card (sidecar) -------------------------------------------------------------------------------------


def model_card_path(checkpoint_path: str | os.PathLike) -> Path:
    """``<dir>/<stem>.json`` for ``<dir>/<stem>.safetensors``."""
    return Path(checkpoint_path).with_suffix(MODEL_CARD_SUFFIX)


def write_model_card(checkpoint_path: str | os.PathLike) -> Path:
    """Write the model card beside a checkpoint: name, SHA-256, size, provenance, configuration. Returns its path.

    Loading the checkpoint later verifies the file against the card's SHA-256.
    """
    checkpoint_path = Path(checkpoint_path)
    ckpt = _load(checkpoint_path, None, "")  # an older card beside it is replaced, not trusted
    card = {
        "name": checkpoint_path.stem,
        "sha256": ckpt.sha256,
        "size_bytes": checkpoint_path.stat().st_size,
        "source": ckpt.meta.source,
        "licence": ckpt.meta.licence,
        "description": ckpt.meta.description,
        "config": json.loads(ckpt.cfg.to_json()),
    }
    card_path = model_card_path(checkpoint_path)
    write_atomic(card_path, (json.dumps(card, indent=2, sort_keys=True) + "\n").encode())
    return card_path


def read_model_card(checkpoint_path: str | os.PathLike) -> dict[str, Any] | None:
    """The model card beside ``checkpoint_path`` as a dict, or None when there is none.

    Raises WeightsError when the card exists but is not a JSON object with a 64-hex-digit ``sha256``.
    """
    card_path = model_card_path(checkpoint_path)
    if not card_path.is_file():
        return None
    try:
        card = json.loads(card_path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise WeightsError(
            f"model card {card_path} is unreadable ({err}); delete it or install the model again"
        ) from err
    if not isinstance(card, dict) or not _is_sha256(card.get("sha256")):
        raise WeightsError(f"model card {card_path} has no valid 'sha256'; delete it or install the model again")
    return card


# -- internals ------------------------------------------------------------------------------------------------


def _load(path: Path, expected_sha256: str | None, origin: str) -> Checkpoint:
    _existing_file_size(path)
    data = path.read_bytes()  # one read serves the checksum and the tensors (~77 MB for the released model)
    size = len(data)
    header_len = _header_length(path, data[: _HEADER_LEN_BYTES + 1], size)
    header = _parse_header(path, data[_HEADER_LEN_BYTES : _HEADER_LEN_BYTES + header_len], header_len, size)
    sha256 = hashlib.sha256(data).hexdigest()
    if expected_sha256 is not None and sha256 != expected_sha256:
        raise WeightsError(
            f"checkpoint {path} has SHA-256 {sha256}, but {origin} expects {expected_sha256}: the file is corrupt "
            f"or not the model it claims to be; install it again"
        )
    _check_tensor_digest(path, data, header_len)
    state_dict = _deserialize(path, data)
    _check_finite(path, state_dict)
    return Checkpoint(cfg=header.cfg, state_dict=state_dict, meta=header.meta, sha256=sha256, path=path)


def _check_tensor_digest(path: Path, data: bytes, header_len: int) -> None:
    """Compare the tensor bytes with the ``tensors_sha256`` the writer stored in the header (when there is one)."""
    raw = data[_HEADER_LEN_BYTES : _HEADER_LEN_BYTES + header_len]
    expected = (json.loads(raw).get("__metadata__") or {}).get(TENSORS_SHA256_KEY)
    if expected is None:
        return
    found = hashlib.sha256(data[_HEADER_LEN_BYTES + header_len :]).hexdigest()
    if found != expected:
        raise WeightsError(f"checkpoint {path} is corrupt: its tensor data has SHA-256 {found[:12]}..., its header "
                           f"records {str(expected)[:12]}...; install or copy the model again")


def _check_finite(path: Path, state_dict: Mapping[str, torch.Tensor]) -> None:
    bad = [name for name, t in state_dict.items() if t.is_floating_point() and not bool(torch.isfinite(t).all())]
    if bad:
        raise WeightsError(f"checkpoint {path} has NaN or infinite weights in {len(bad)} tensor(s) "
                           f"({_abbreviate(bad, 3)}): the training diverged or the file is damaged; use another "
                           f"checkpoint")


def _is_sha256(value: object) -> bool:
    return isinstance(value, str) and len(value) == 64 and all(c in "0123456789abcdefABCDEF" for c in value)


def _existing_file_size(path: Path) -> int:
    if not path.exists():
        raise WeightsError(f"checkpoint {path} does not exist; {_REMEDY}")
    if not path.is_file():
        raise WeightsError(f"checkpoint {path} is not a file; {_REMEDY}")
    return path.stat().st_size


def _not_ours(path: Path, why: str) -> WeightsError:
    hint = ""
    if path.suffix.lower() == ".t7":
        hint = " It looks like the official Torch7 file: convert it with `realtime-vrn weights convert FILE`."
    return WeightsError(f"{path} is not a realtime-vrn checkpoint ({why}).{hint} To fix: {_REMEDY}")


def _truncated(path: Path, expected: int, size: int) -> WeightsError:
    return WeightsError(
        f"checkpoint {path} is truncated ({size} of {expected} bytes): a download or copy was interrupted; "
        f"install the model again"
    )


def _header_length(path: Path, head: bytes, size: int) -> int:
    """The JSON header's length from the file's first 9 bytes (length + the header's opening brace)."""
    if len(head) <= _HEADER_LEN_BYTES:
        raise _not_ours(path, f"only {size} bytes, too short for a safetensors file")
    (header_len,) = struct.unpack("<Q", head[:_HEADER_LEN_BYTES])
    if header_len == 0 or header_len > _MAX_HEADER_BYTES:
        raise _not_ours(path, "no safetensors header")
    if _HEADER_LEN_BYTES + header_len > size:
        if head[_HEADER_LEN_BYTES:] == b"{":  # a safetensors header cut short
            raise _truncated(path, _HEADER_LEN_BYTES + header_len, size)
        raise _not_ours(path, "no safetensors header")
    if head[_HEADER_LEN_BYTES:] != b"{":
        raise _not_ours(path, "no safetensors header")
    return header_len


def _parse_header(path: Path, raw: bytes, header_len: int, size: int) -> CheckpointHeader:
    try:
        header = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError):
        raise _not_ours(path, "its header is not safetensors JSON") from None
    if not isinstance(header, dict):
        raise _not_ours(path, "its header is not safetensors JSON")
    metadata = header.pop("__metadata__", None) or {}
    if not isinstance(metadata, dict):
        raise _not_ours(path, "its safetensors metadata is not a string table")
    if metadata.get("format") != FORMAT_TAG:
        raise _not_ours(path, f"a safetensors file without the {FORMAT_TAG!r} format tag")
    try:
        version = int(metadata.get("format_version", ""))
    except ValueError:
        raise WeightsError(f"checkpoint {path} has an invalid format_version; install the model again") from None
    if version > FORMAT_VERSION:
        raise WeightsError(
            f"checkpoint {path} has format version {version}, this realtime-vrn reads up to {FORMAT_VERSION}: "
            f"upgrade realtime-vrn"
        )
    try:
        cfg = VRNConfig.from_dict(json.loads(metadata["config"]))
        meta = CheckpointMeta(
            source=metadata["source"], licence=metadata["licence"], description=metadata.get("description", "")
        )
    except (KeyError, TypeError, ValueError) as err:
        raise WeightsError(f"checkpoint {path} has invalid metadata ({err}); install the model again") from err
    shapes: dict[str, tuple[int, ...]] = {}
    data_end = 0
    for name, info in header.items():
        try:
            shapes[name] = tuple(int(d) for d in info["shape"])
            data_end = max(data_end, int(info["data_offsets"][1]))
        except (KeyError, TypeError, ValueError, IndexError):
            raise WeightsError(f"checkpoint {path} has a corrupt entry for tensor {name!r}; install it again") from None
    expected_size = _HEADER_LEN_BYTES + header_len + data_end
    if size < expected_size:
        raise _truncated(path, expected_size, size)
    return CheckpointHeader(cfg=cfg, meta=meta, format_version=version, shapes=shapes)


def _deserialize(path: Path, data: bytes) -> dict[str, torch.Tensor]:
    from safetensors import SafetensorError
    from safetensors.torch import load

    try:
        return load(data)
    except (SafetensorError, ValueError, RuntimeError) as err:
        raise WeightsError(f"checkpoint {path} is corrupt ({err}); install the model again") from err


def _state_dict_problems(expected: Mapping[str, torch.Tensor], found: Mapping[str, torch.Tensor],
                         limit: int | None = 8) -> list[str]:
    """Every difference between the network's tensors and the file's, as short phrases (empty when they match);
    each kind names at most ``limit`` tensors (None: all)."""
    problems = []
    missing = [k for k in expected if k not in found]
    unexpected = [k for k in found if k not in expected]
    wrong = [
        f"{k} {tuple(found[k].shape)} (expected {tuple(v.shape)})"
        for k, v in expected.items()
        if k in found and tuple(found[k].shape) != tuple(v.shape)
    ]
    not_float = [f"{k} ({found[k].dtype})" for k in expected if k in found and not found[k].is_floating_point()]
    for label, items in (
        ("missing", missing),
        ("unexpected", unexpected),
        ("wrong shape", wrong),
        ("not floating point", not_float),
    ):
        if items:
            problems.append(f"{len(items)} {label}: {_abbreviate(items, limit or len(items))}")
    return problems


def _abbreviate(items: list[str], limit: int = 8) -> str:
    shown = ", ".join(items[:limit])
    return shown + (f", ... ({len(items) - limit} more)" if len(items) > limit else "")


def _canonical_header(data: bytes, tensors_sha256: bool = False) -> bytes:
    """Rewrite a serialised safetensors file's JSON header with sorted keys (the tensor bytes are unchanged);
    ``tensors_sha256`` adds the SHA-256 of the tensor bytes to the metadata (:data:`TENSORS_SHA256_KEY`).

    safetensors writes the metadata table in hash-map order, so saving the same model twice gave different
    bytes and SHA-256s; with a canonical header a conversion is reproducible and its digest can be published.
    """
    (header_len,) = struct.unpack("<Q", data[:_HEADER_LEN_BYTES])
    header = json.loads(data[_HEADER_LEN_BYTES : _HEADER_LEN_BYTES + header_len])
    if tensors_sha256:
        digest = hashlib.sha256(data[_HEADER_LEN_BYTES + header_len :]).hexdigest()
        header.setdefault("__metadata__", {})[TENSORS_SHA256_KEY] = digest
    raw = json.dumps(header, sort_keys=True, separators=(",", ":")).encode()
    raw += b" " * (-len(raw) % _HEADER_ALIGN)  # safetensors pads with spaces so the tensor data stays aligned
    return struct.pack("<Q", len(raw)) + raw + data[_HEADER_LEN_BYTES + header_len :]


