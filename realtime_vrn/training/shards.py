"""The on-disk layout of training shards: ``shard-K.npz`` files (the arrays of :mod:`.dataset`) and their MediaPipe
sidecars ``shard-K.mp.npz`` (:mod:`.annotate`). Both modules read and write through these names."""

from __future__ import annotations

from pathlib import Path

import numpy as np

#: shard-K.npz -> shard-K.mp.npz: MediaPipe's points on each crop of the shard (``realtime-vrn data annotate``).
SIDECAR_SUFFIX = ".mp.npz"


def sidecar_path(shard: Path) -> Path:
    """shard-K.npz -> shard-K.mp.npz."""
    return shard.with_name(shard.stem + SIDECAR_SUFFIX)


def shard_files(folder: str | Path) -> list[Path]:
    """The finished ``shard-K.npz`` files of a folder, sorted (not ``.tmp`` files being written, not the
    ``shard-K.mp.npz`` MediaPipe sidecars)."""
    return [p for p in sorted(Path(folder).glob("shard-*.npz")) if ".tmp" not in p.name
            and not p.name.endswith(SIDECAR_SUFFIX)]


def load_shard(path: str | Path) -> dict[str, np.ndarray]:
    with np.load(path, allow_pickle=False) as d:
        return {k: d[k] for k in d.files}
