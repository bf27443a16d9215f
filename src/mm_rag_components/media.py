"""Load images safely and identify content by hash.

Accepted sources: a file path, raw bytes, a base64 string (plain or a ``data:`` URI), a PIL
image, or an ``http(s)`` URL — URLs only when the caller passes ``allow_urls=True`` (or a
:class:`~mm_rag_components.remote.urls.UrlPolicy`), fetched under that policy: public addresses
only on every redirect hop, a byte cap and a whole-fetch deadline. A ``data:`` URI is capped like
a download. Images come back as RGB with their EXIF orientation applied. A pixel limit guards
against decompression bombs; every failure is a :class:`~mm_rag_components.errors.MediaError`.

Image files are read only when they are regular files (never a FIFO or a device, even through a
symlink) and only up to a byte limit (:mod:`~mm_rag_components.files`, which also walks folders);
text repair (:func:`clean_text`, :func:`clean_path`) lives in :mod:`~mm_rag_components.unicode`.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import io
import os
import re
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from .errors import ConfigError, MediaError
from .files import (  # noqa: F401 - re-exported: media's names since 0.1
    IMAGE_SUFFIXES, TEXT_SUFFIXES, FoundFile, file_kind, media_kind, read_regular_file, walk_media,
)
from .unicode import clean_path, clean_text  # noqa: F401 - re-exported

if TYPE_CHECKING:  # pragma: no cover
    from PIL import Image

    from .remote.urls import UrlPolicy
    from .types import ImageSource

#: Default pixel limit (width × height): 64 megapixels. Pass ``max_pixels`` to change it.
DEFAULT_MAX_PIXELS = 64_000_000
#: Default byte limit for URL downloads: 32 MiB.
DEFAULT_MAX_DOWNLOAD_BYTES = 32 * 1024 * 1024
#: Default byte limit for reading an image file: 64 MiB.
DEFAULT_MAX_IMAGE_BYTES = 64 * 1024 * 1024
#: Default byte limit for reading a text file: 8 MiB.
DEFAULT_MAX_TEXT_BYTES = 8 * 1024 * 1024


#: Longest ``source`` accepted (a path, URL or name, never a payload).
MAX_SOURCE_CHARS = 4096
#: Strings at least this long made only of base64 characters are taken for encoded data.
BLOB_MIN_CHARS = 512

_BASE64_RUN = re.compile(r"[A-Za-z0-9+/=_-]+")

_PIL_LIMIT_LOCK = threading.Lock()


@dataclass(frozen=True)
class LoadedImage:
    """A decoded RGB image, the sha256 of its source bytes, and where it came from."""

    image: "Image.Image"
    sha256: str
    origin: str | None = None


def content_hash(data: bytes | str) -> str:
    """sha256 hex digest of ``data`` (text is hashed as UTF-8; lone surrogates as their code units)."""
    if isinstance(data, str):
        data = data.encode("utf-8", "surrogatepass")
    return hashlib.sha256(data).hexdigest()


def check_source(source: object) -> tuple[str | None, bool]:
    """``(source, repaired)``: an item's ``source`` as it will be stored. ``None`` and ``""`` give
    ``None``; a path becomes its text; invalid Unicode is repaired (``repaired`` is then True).
    Refused with :class:`~mm_rag_components.errors.ConfigError`: other types, more than
    :data:`MAX_SOURCE_CHARS` characters, ``data:`` URIs and base64 data (a source names the
    data, it is not the data: pass the image as ``Item.image``)."""
    if source is None or source == "":
        return None, False
    if isinstance(source, os.PathLike):
        text, repaired = clean_path(source)
    elif isinstance(source, str):
        text, repaired = clean_text(source)
    else:
        raise ConfigError(f"source must be a string or a path, got {type(source).__name__}")
    if len(text) > MAX_SOURCE_CHARS:
        raise ConfigError(f"source is {len(text):,} characters, over the limit of {MAX_SOURCE_CHARS:,}")
    if text[:5].lower() == "data:" or (len(text) >= BLOB_MIN_CHARS and _BASE64_RUN.fullmatch(text)):
        kind = "a data: URI" if text[:5].lower() == "data:" else "base64 data"
        raise ConfigError(f"source is {kind}, which is not stored; pass the image as Item.image and give a short source")
    return text, repaired


def is_url(source: object) -> bool:
    return isinstance(source, str) and source.lower().startswith(("http://", "https://"))


def _looks_like_path(text: str) -> bool:
    return len(text) < 4096 and ("/" in text or "\\" in text or Path(text).suffix.lower() in IMAGE_SUFFIXES)


def read_image_bytes(
    source: "ImageSource",
    *,
    allow_urls: "bool | UrlPolicy" = False,
    max_download_bytes: int = DEFAULT_MAX_DOWNLOAD_BYTES,
    timeout: float = 10.0,
    max_file_bytes: int | None = DEFAULT_MAX_IMAGE_BYTES,
) -> tuple[bytes, str | None]:
    """Return the encoded bytes behind ``source`` and its origin (path/URL or ``None``).

    PIL images are not accepted here (they have no encoded bytes); use :func:`load_image`.
    Files must be regular files of at most ``max_file_bytes`` (see :func:`read_regular_file`).
    With ``allow_urls=True`` a URL is fetched under the default
    :class:`~mm_rag_components.remote.urls.UrlPolicy` (``max_download_bytes``, ``timeout`` per
    socket operation); pass a ``UrlPolicy`` to choose. ``data:`` URIs hold at most
    ``max_download_bytes``.
    """
    if isinstance(source, (bytes, bytearray, memoryview)):
        return bytes(source), None
    if isinstance(source, Path):
        return _read_file(source, max_file_bytes), str(source)
    if not isinstance(source, str):
        raise MediaError(f"unsupported image source type: {type(source).__name__}")
    if is_url(source):
        if not allow_urls:
            raise MediaError(f"URL image sources are disabled; pass allow_urls=True to fetch {source!r}")
        return _download(source, allow_urls, max_download_bytes, timeout), source
    if source.startswith("data:"):
        header, comma, payload = source.partition(",")
        if not comma or ";base64" not in header.lower():
            raise MediaError("a data: URI image must be base64-encoded (data:image/...;base64,...)")
        if len(payload) > 2 * (4 * -(-max_download_bytes // 3)):  # refused before decoding
            raise MediaError(f"a data: URI of {len(payload):,} characters is over the limit of {max_download_bytes:,} bytes")
        data = _b64decode(payload)
        if len(data) > max_download_bytes:
            raise MediaError(f"a data: URI of {len(data):,} bytes is over the limit of {max_download_bytes:,} bytes")
        return data, None
    path = Path(source)
    if _exists(path):
        return _read_file(path, max_file_bytes), str(path)
    # Base64 text may contain "/" (every JPEG's starts with "/9j/"), so it is tried before
    # deciding the string was meant as a path. No real image encodes to fewer than 24 bytes.
    try:
        data = _b64decode(source)
    except MediaError:
        if _looks_like_path(source):
            raise MediaError(f"{source}: no such file") from None
        raise
    if len(data) < 24 and _looks_like_path(source):
        raise MediaError(f"{source}: no such file")
    return data, None


def load_image(
    source: "ImageSource",
    *,
    allow_urls: "bool | UrlPolicy" = False,
    max_pixels: int | None = DEFAULT_MAX_PIXELS,
) -> "Image.Image":
    """Decode ``source`` into an RGB PIL image with EXIF orientation applied."""
    return load_image_with_hash(source, allow_urls=allow_urls, max_pixels=max_pixels).image


def load_image_with_hash(
    source: "ImageSource",
    *,
    allow_urls: "bool | UrlPolicy" = False,
    max_pixels: int | None = DEFAULT_MAX_PIXELS,
) -> LoadedImage:
    """Like :func:`load_image`, also returning the sha256 of the source bytes."""
    from PIL import Image

    if isinstance(source, Image.Image):
        _check_pixels(source.size, max_pixels, "PIL image")
        rgb = _normalise(source)
        digest = hashlib.sha256(f"{rgb.mode}{rgb.size}".encode() + rgb.tobytes()).hexdigest()
        return LoadedImage(rgb, digest, None)
    data, origin = read_image_bytes(source, allow_urls=allow_urls)
    return LoadedImage(decode_image(data, max_pixels=max_pixels, origin=origin), content_hash(data), origin)


def decode_image(data: bytes, *, max_pixels: int | None = DEFAULT_MAX_PIXELS, origin: str | None = None) -> "Image.Image":
    """Decode encoded image bytes, enforcing ``max_pixels`` before the pixels are read."""
    from PIL import Image, UnidentifiedImageError

    where = origin or "<bytes>"
    if not data:
        raise MediaError(f"{where}: empty image data (0 bytes)")
    with _PIL_LIMIT_LOCK:
        # We enforce our own limit; lift PIL's global one only for this open.
        saved = Image.MAX_IMAGE_PIXELS
        Image.MAX_IMAGE_PIXELS = None
        try:
            img = Image.open(io.BytesIO(data))
        except UnidentifiedImageError as exc:
            if b"%PDF-" in data[:1024]:
                raise MediaError(f"{where}: a PDF, not an image (name it .pdf to ingest its pages)") from exc
            raise MediaError(f"{where}: not a recognised image format") from exc
        except (OSError, ValueError, SyntaxError) as exc:
            raise MediaError(f"{where}: cannot open image: {exc}") from exc
        finally:
            Image.MAX_IMAGE_PIXELS = saved
    _check_pixels(img.size, max_pixels, where)
    try:
        img.load()
    except (OSError, ValueError, SyntaxError) as exc:  # truncated or corrupt pixel data
        raise MediaError(f"{where}: corrupt or truncated image: {exc}") from exc
    return _normalise(img)


def _normalise(img: "Image.Image") -> "Image.Image":
    from PIL import ImageOps

    try:
        img = ImageOps.exif_transpose(img)
    except Exception:  # noqa: BLE001 - broken EXIF must not lose the image
        pass
    if img.mode.startswith("I"):  # 16/32-bit greyscale: PIL's convert would clip to white
        img = _to_8bit(img)
    if img.mode != "RGB":
        if img.mode in ("RGBA", "LA", "PA") or (img.mode == "P" and "transparency" in img.info):
            from PIL import Image

            rgba = img.convert("RGBA")
            background = Image.new("RGB", rgba.size, (255, 255, 255))
            background.paste(rgba, mask=rgba.getchannel("A"))
            img = background
        else:
            img = img.convert("RGB")
    return img


def _to_8bit(img: "Image.Image") -> "Image.Image":
    """Map 16-bit (``I;16*``) or 32-bit integer (``I``) greyscale to 8-bit ``L``."""
    import numpy as np
    from PIL import Image

    values = np.asarray(img).astype(np.float64)
    top = float(values.max()) if values.size else 0.0
    if img.mode.startswith("I;16") or 255 < top <= 65535:
        values = values / 257.0
    elif top > 65535:
        values = values * (255.0 / top)
    return Image.fromarray(np.clip(np.rint(values), 0, 255).astype(np.uint8))


def _check_pixels(size: tuple[int, int], max_pixels: int | None, where: str) -> None:
    width, height = size
    if width <= 0 or height <= 0:
        raise MediaError(f"{where}: image has no pixels ({width}x{height})")
    if max_pixels is not None and width * height > max_pixels:
        raise MediaError(
            f"{where}: {width}x{height} = {width * height:,} pixels exceeds the limit of "
            f"{max_pixels:,} (possible decompression bomb; raise max_pixels to allow it)"
        )


def _exists(path: Path) -> bool:
    """``path.exists()`` that answers False for strings no file system accepts (too long, NUL)."""
    try:
        return path.exists()
    except (OSError, ValueError):
        return False


def _read_file(path: Path, max_bytes: int | None) -> bytes:
    return read_regular_file(path, max_bytes=max_bytes, limit_name="max_image_bytes")


def _b64decode(payload: str) -> bytes:
    try:
        return base64.b64decode("".join(payload.split()), validate=True)
    except (binascii.Error, ValueError) as exc:
        raise MediaError("string is neither an existing path, a URL nor valid base64 image data") from exc


def _download(url: str, allow_urls: "bool | UrlPolicy", max_bytes: int, timeout: float) -> bytes:
    """``url`` fetched under ``allow_urls`` (a policy, or ``True``: the default one)."""
    from .remote.urls import UrlPolicy, fetch

    if allow_urls is True:
        allow_urls = UrlPolicy.from_env(max_bytes=max_bytes, timeout=timeout)
    if not isinstance(allow_urls, UrlPolicy):
        raise ConfigError(f"allow_urls must be True, False or a UrlPolicy, got {allow_urls!r}")
    return fetch(url, allow_urls)


__all__ = [
    "DEFAULT_MAX_IMAGE_BYTES",
    "DEFAULT_MAX_PIXELS",
    "DEFAULT_MAX_TEXT_BYTES",
    "FoundFile",
    "IMAGE_SUFFIXES",
    "media_kind",
    "LoadedImage",
    "MAX_SOURCE_CHARS",
    "TEXT_SUFFIXES",
    "check_source",
    "clean_path",
    "clean_text",
    "content_hash",
    "decode_image",
    "file_kind",
    "is_url",
    "load_image",
    "load_image_with_hash",
    "read_image_bytes",
    "read_regular_file",
    "walk_media",
]
