"""Image features on disk, shared by processes and kept across restarts.

One file per entry, ``<dir>/<key[:2]>/<key>.feat``: a magic line, a JSON header (key, dtype,
shape, sha256 of the payload) and the raw tensor bytes. The key is the sha256 of (model
fingerprint, processor settings, image sha256), so a different model, dtype or image size
setting never meets another's features.

Guarantees:

* **atomic writes** — an entry is written to a temporary file in the same folder and moved into
  place with ``os.replace``: a reader sees the whole old entry, the whole new one, or none;
* **corruption is detected** — a bad magic, header, size or checksum is a miss; the entry is
  removed and recomputed by the caller; so is an entry that is not a regular file (a symlink, a
  FIFO, a device: opened without following or waiting, never read past the cache's bound);
* **bounded** — past ``max_bytes`` the least recently used entries (file mtime; a hit touches
  it) are deleted down to 90 % of the bound; another process deleting the same file is fine;
* **never fatal** — every I/O problem is logged and counted as a miss (or a skipped write).
"""

from __future__ import annotations

import errno
import hashlib
import json
import logging
import os
import stat
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

from ..errors import ConfigError

logger = logging.getLogger(__name__)

MAGIC = b"MMRAG-FEATURES-1\n"
SUFFIX = ".feat"
_MAX_HEADER = 4096
_STALE_TEMP_S = 3600.0


class DiskFeatureCache:
    """Tensors by string key in ``path`` (created on first write), at most ``max_bytes`` in all."""

    def __init__(self, path: str | Path, *, max_bytes: int = 2 << 30) -> None:
        if not isinstance(path, (str, Path)) or not str(path).strip():
            raise ConfigError(f"vision_cache_dir must be a folder path, got {path!r}")
        if isinstance(max_bytes, bool) or not isinstance(max_bytes, int) or max_bytes < 1:
            raise ConfigError(f"vision_cache_max_bytes must be a positive integer, got {max_bytes!r}")
        self.path = Path(path).expanduser()
        self.max_bytes = max_bytes
        self.hits = self.misses = self.writes = self.corrupt = 0
        self._size: int | None = None  # bytes on disk as this process believes (rescanned when over)
        self._lock = threading.Lock()

    def _file(self, key: str) -> Path:
        return self.path / key[:2] / f"{key}{SUFFIX}"

    # reading ---------------------------------------------------------------------------------
    def get(self, key: str) -> Any | None:
        """The tensor stored under ``key``, or ``None`` (absent, unreadable or corrupt)."""
        file = self._file(key)
        try:
            tensor = decode(read_entry(file, self.max_bytes), key)
        except FileNotFoundError:
            self.misses += 1
            return None
        except OSError as exc:
            logger.warning("vision feature cache: cannot read %s: %s", file, exc)
            self.misses += 1
            return None
        except ValueError as exc:
            logger.warning("vision feature cache: corrupt entry %s (%s); recomputing it", file, exc)
            self.corrupt += 1
            self.misses += 1
            _unlink(file)
            return None
        try:
            os.utime(file, follow_symlinks=False)  # recently used: evicted last
        except OSError:
            pass
        self.hits += 1
        return tensor

    # writing ---------------------------------------------------------------------------------
    def put(self, key: str, tensor: Any) -> None:
        """Store ``tensor`` under ``key`` (atomically); problems are logged, never raised."""
        data = encode(key, tensor)
        file = self._file(key)
        try:
            file.parent.mkdir(parents=True, exist_ok=True)
            handle, temp = tempfile.mkstemp(prefix=".tmp-", dir=file.parent)
            try:
                with os.fdopen(handle, "wb") as out:
                    out.write(data)
                os.replace(temp, file)
            except BaseException:
                _unlink(Path(temp))
                raise
        except OSError as exc:
            logger.warning("vision feature cache: cannot write %s: %s", file, exc)
            return
        self.writes += 1
        with self._lock:
            if self._size is None:
                self._size = self._scan_size()
            else:
                self._size += len(data)
            if self._size > self.max_bytes:
                self._size = self._evict()

    def __contains__(self, key: str) -> bool:
        try:
            return stat.S_ISREG(os.lstat(self._file(key)).st_mode)
        except OSError:
            return False

    def _entries(self) -> list[tuple[float, int, Path]]:
        """(mtime, size, path) of every entry; stale temporary files are removed on the way."""
        found = []
        now = time.time()
        try:
            folders = [d for d in self.path.iterdir() if d.is_dir()]
        except OSError:
            return []
        for folder in folders:
            try:
                names = list(os.scandir(folder))
            except OSError:
                continue
            for entry in names:
                try:
                    info = entry.stat(follow_symlinks=False)
                except OSError:  # removed meanwhile
                    continue
                if entry.name.endswith(SUFFIX):
                    found.append((info.st_mtime, info.st_size, Path(entry.path)))
                elif entry.name.startswith(".tmp-") and now - info.st_mtime > _STALE_TEMP_S:
                    _unlink(Path(entry.path))
        return found

    def _scan_size(self) -> int:
        return sum(size for _, size, _ in self._entries())

    def _evict(self) -> int:
        """Delete least recently used entries down to 90 % of ``max_bytes``; the size left."""
        entries = sorted(self._entries())
        total = sum(size for _, size, _ in entries)
        target = int(self.max_bytes * 0.9)
        for _, size, file in entries:
            if total <= target:
                break
            _unlink(file)
            total -= size
        return total

    def size(self) -> int:
        """Bytes of entries on disk now."""
        return self._scan_size()

    def clear(self) -> None:
        for _, _, file in self._entries():
            _unlink(file)
        with self._lock:
            self._size = 0


def read_entry(file: Path, limit: int) -> bytes:
    """The bytes of entry ``file``, read as untrusted: opened without following a symlink or
    waiting on a FIFO, a regular file of at most ``limit`` bytes — anything else is a ``ValueError``
    (a corrupt entry), never a hang or an endless read."""
    try:
        handle = os.open(file, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0))
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            raise ValueError("a symbolic link, not a regular file") from None
        raise
    try:
        info = os.fstat(handle)
        if not stat.S_ISREG(info.st_mode):
            raise ValueError("not a regular file")
        if info.st_size > limit:
            raise ValueError(f"{info.st_size} bytes, more than the cache's {limit}")
    except BaseException:
        os.close(handle)
        raise
    with os.fdopen(handle, "rb") as entry:
        data = entry.read(info.st_size + 1)
    if len(data) != info.st_size:
        raise ValueError("the file changed while it was read")
    return data


def encode(key: str, tensor: Any) -> bytes:
    """``MAGIC``, a 4-byte header length, the JSON header, the raw bytes of ``tensor``."""
    import torch

    tensor = tensor.detach().to("cpu").contiguous()
    payload = tensor.reshape(-1).view(torch.uint8).numpy().tobytes() if tensor.numel() else b""
    header = json.dumps({
        "key": key, "dtype": str(tensor.dtype).removeprefix("torch."), "shape": list(tensor.shape),
        "sha256": hashlib.sha256(payload).hexdigest(),
    }).encode()
    return MAGIC + len(header).to_bytes(4, "big") + header + payload


def decode(data: bytes, key: str) -> Any:
    """The tensor in ``data``; ``ValueError`` when anything does not check out."""
    import torch

    if not data.startswith(MAGIC) or len(data) < len(MAGIC) + 4:
        raise ValueError("bad magic")
    start = len(MAGIC) + 4
    length = int.from_bytes(data[len(MAGIC) : start], "big")
    if not 0 < length <= _MAX_HEADER or len(data) < start + length:
        raise ValueError("bad header length")
    try:
        header = json.loads(data[start : start + length])
        dtype = getattr(torch, str(header["dtype"]))
        shape = [int(n) for n in header["shape"]]
    except (ValueError, KeyError, TypeError, AttributeError) as exc:
        raise ValueError(f"bad header: {exc}") from None
    if header.get("key") != key or not isinstance(dtype, torch.dtype):
        raise ValueError("header does not match the key")
    payload = data[start + length :]
    count = 1
    for n in shape:
        count *= n
    if any(n < 0 for n in shape) or len(payload) != count * dtype.itemsize:
        raise ValueError(f"{len(payload)} bytes for shape {shape} of {dtype}")
    if hashlib.sha256(payload).hexdigest() != header.get("sha256"):
        raise ValueError("checksum mismatch")
    if not payload:
        return torch.empty(shape, dtype=dtype)
    tensor = torch.frombuffer(bytearray(payload), dtype=torch.uint8).view(dtype).reshape(shape)
    if not tensor.is_floating_point() or not bool(torch.isfinite(tensor).all()):
        raise ValueError("not finite floating-point features")
    return tensor


def _unlink(file: Path) -> None:
    try:
        file.unlink()
    except OSError:  # gone already (another process evicted it) or not ours to remove
        pass


__all__ = ["DiskFeatureCache", "decode", "encode"]
