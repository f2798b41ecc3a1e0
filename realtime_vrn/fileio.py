"""Small file helpers shared by the stages that write caches, models and outputs: the one atomic write and the one
file SHA-256."""

from __future__ import annotations

import hashlib
import os
import secrets
from pathlib import Path

#: Bytes read at a time when hashing a file.
HASH_CHUNK_BYTES = 1 << 20


def write_atomic(path: str | os.PathLike, data: bytes) -> None:
    """Write ``data`` to ``path`` through a temporary file in the same folder and a rename: a reader never sees
    half a file, and a crash leaves no partial file behind. The temporary name is unique (process and a random
    part: threads may write beside each other) and created exclusively, with mode 0o666 less the umask like a plain
    open(). OSError as the file system raised it."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def file_sha256(path: str | os.PathLike) -> str:
    """SHA-256 (hex) of a file, read in chunks of :data:`HASH_CHUNK_BYTES`."""
    digest = hashlib.sha256()
    with Path(path).open("rb") as fh:
        for chunk in iter(lambda: fh.read(HASH_CHUNK_BYTES), b""):
            digest.update(chunk)
    return digest.hexdigest()
