"""Pointwise templates as OpenAI-style chat messages; images as ``image_url`` content parts.

An image travels as a ``data:`` URI of the image the local scorer would see (decoded, EXIF
orientation applied, pixel limit checked, re-encoded as ``image_format``), so every server gets
the same pixels whatever the source was (path, bytes, base64, PIL). An ``http(s)`` URL is passed
through for the server to fetch only when the user allows URLs (``allow_urls=True``); otherwise it
is refused like any unreadable image.
"""

from __future__ import annotations

import base64
from typing import Any

from ..errors import MediaError
from ..media import DEFAULT_MAX_PIXELS, is_url, load_image_with_hash
from ..generation.images import encode_image
from ..scoring.templates import PointwiseTemplate
from ..types import ImageSource


def image_part(
    source: ImageSource, *, allow_urls: bool = False, max_pixels: int | None = DEFAULT_MAX_PIXELS, image_format: str = "PNG"
) -> dict[str, Any]:
    """``{"type": "image_url", "image_url": {"url": …}}`` for ``source`` (a :class:`MediaError`
    when it cannot be read, or is a URL while URLs are not allowed)."""
    if is_url(source):
        if not allow_urls:
            raise MediaError(f"URL image sources are disabled; pass allow_urls=True to let the server fetch {source!r}")
        return {"type": "image_url", "image_url": {"url": source}}
    loaded = load_image_with_hash(source, max_pixels=max_pixels)
    data, mime = encode_image(loaded.image, image_format)
    return {"type": "image_url", "image_url": {"url": f"data:{mime};base64,{base64.b64encode(data).decode('ascii')}"}}


def chat_messages(
    template: PointwiseTemplate,
    *,
    query_text: str | None,
    document: str | None,
    query_image: dict[str, Any] | None,
    document_image: dict[str, Any] | None,
    instruction: str | None = None,
) -> list[dict[str, Any]]:
    """The template's messages with ready image parts in its image slots.

    A message with text only gets its text as one string (what every server accepts); one with
    images gets a list of ``text`` / ``image_url`` parts in template order.
    """
    messages, order = template.messages(
        query=query_text,
        document=document,
        query_image=query_image is not None,
        document_image=document_image is not None,
        instruction=instruction,
    )
    images = iter(query_image if label == "query" else document_image for label in order)
    out = []
    for message in messages:
        parts = [next(images) if part["type"] == "image" else {"type": "text", "text": part["text"]} for part in message["content"]]
        if all(p["type"] == "text" for p in parts):
            out.append({"role": message["role"], "content": "".join(p["text"] for p in parts)})
        else:
            out.append({"role": message["role"], "content": parts})
    return out


__all__ = ["chat_messages", "image_part"]
