"""Images for chat APIs: the formats we send and how they are encoded."""

from __future__ import annotations

import io
from typing import TYPE_CHECKING

from ..errors import ConfigError

if TYPE_CHECKING:  # pragma: no cover
    from PIL import Image

IMAGE_FORMATS = ("PNG", "JPEG", "WEBP")


def check_image_format(image_format: object) -> str:
    """``image_format`` upper-cased, or a :class:`ConfigError` unless PNG, JPEG or WEBP."""
    if not isinstance(image_format, str) or image_format.upper() not in IMAGE_FORMATS:
        raise ConfigError(f"image_format must be PNG, JPEG or WEBP, got {image_format!r}")
    return image_format.upper()


def encode_image(image: "Image.Image", image_format: str = "PNG") -> tuple[bytes, str]:
    """Encode a PIL image for a chat API; returns the bytes and their MIME type."""
    image_format = check_image_format(image_format)
    buffer = io.BytesIO()
    image.save(buffer, format=image_format, **({"quality": 90} if image_format == "JPEG" else {}))
    return buffer.getvalue(), f"image/{image_format.lower()}"


__all__ = ["IMAGE_FORMATS", "check_image_format", "encode_image"]
