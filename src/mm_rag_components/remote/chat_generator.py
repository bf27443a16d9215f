"""An OpenAI-compatible chat model as a generator: chat turns (text and images) in, text out.

:class:`OpenAIChatGenerator` implements the generator protocol of
:mod:`~mm_rag_components.generation` — ``generate``, a native ``agenerate`` and streaming
``stream`` / ``astream`` — over ``/chat/completions`` of any OpenAI-compatible server (vLLM, llama.cpp,
Ollama, hosted APIs), so it can answer (:class:`~mm_rag_components.answer.MultimodalAnswerer`) and
rerank listwise (:class:`~mm_rag_components.rerank.listwise.ListwiseRanker`). Images travel as
``data:`` URIs. Requests are retried, bounded and capped as its
:class:`~mm_rag_components.remote.transport.TransportSettings` say; streams are read by
:mod:`~mm_rag_components.remote.chat_stream` (a first-piece bound, a whole-stream deadline,
byte and event caps).
"""

from __future__ import annotations

import asyncio
import base64
from collections.abc import AsyncIterator, Iterator, Sequence
from typing import Any

from ..errors import ConfigError
from ..generation.base import ChatTurn
from ..generation.images import check_image_format, encode_image
from ..validate import boolean, positive_int, text
from .chat_stream import answer_text, astream_text, stream_text
from .http import extra_body_dict, openai_client
from .transport import TransportSettings, transport_settings

PATH = "/chat/completions"


class OpenAIChatGenerator:
    """``model`` (the name the server knows) at ``base_url`` (``…/v1``; default ``MMRAG_BASE_URL``
    then ``OPENAI_BASE_URL``); ``api_key`` defaults to ``MMRAG_API_KEY`` then ``OPENAI_API_KEY``.

    Greedy by default (``temperature=0``), at most ``max_tokens`` tokens. ``accepts_images=False``
    for text-only models (callers then describe images instead of sending them).
    ``extra_body`` is merged into every request. ``transport``: timeouts, deadlines, retries and
    caps (:class:`~mm_rag_components.remote.transport.TransportSettings`).
    """

    #: The work happens on a server: calls may overlap (the web chat answers questions concurrently).
    remote = True

    def __init__(
        self,
        model: str,
        *,
        base_url: str | None = None,
        api_key: str | None = None,
        max_tokens: int = 512,
        temperature: float = 0.0,
        accepts_images: bool = True,
        image_format: str = "PNG",
        transport: TransportSettings | None = None,
        extra_body: dict[str, Any] | None = None,
        **deprecated: Any,
    ) -> None:
        self.model = text("model", model)
        self.max_tokens = positive_int("max_tokens", max_tokens)
        if isinstance(temperature, bool) or not isinstance(temperature, (int, float)) or not 0.0 <= temperature <= 2.0:
            raise ConfigError(f"temperature must be a number from 0 to 2, got {temperature!r}")
        self.temperature = float(temperature)
        self.accepts_images = boolean("accepts_images", accepts_images)
        self.image_format = check_image_format(image_format)
        self.extra_body = extra_body_dict(extra_body)
        self._base_url_arg = base_url
        self.transport = transport_settings(transport, deprecated, owner="OpenAIChatGenerator", default=TransportSettings(),
                                            accepted=("timeout", "retries", "backoff", "max_backoff"))
        self.client = openai_client(base_url, api_key, self.transport)
        self.base_url = self.client.base_url
        self.name = f"{self.model}@{self.base_url}"

    def config(self) -> dict[str, Any]:
        """Constructor arguments (the API key is never saved)."""
        return {
            "model": self.model, "base_url": self._base_url_arg, "max_tokens": self.max_tokens,
            "temperature": self.temperature, "accepts_images": self.accepts_images, "image_format": self.image_format,
            "transport": self.transport, "extra_body": self.extra_body or None,
        }

    # requests --------------------------------------------------------------------------------
    def messages(self, turns: Sequence[ChatTurn]) -> list[dict[str, Any]]:
        """Chat turns as OpenAI messages: a text-only turn as one string, else ``text`` /
        ``image_url`` parts in order (images as ``data:`` URIs)."""
        out = []
        for turn in turns:
            if not isinstance(turn, ChatTurn):
                raise ConfigError(f"turns must be ChatTurn objects, got {type(turn).__name__}")
            if all(isinstance(p, str) for p in turn.parts):
                out.append({"role": turn.role, "content": "\n".join(turn.parts)})
                continue
            parts: list[dict[str, Any]] = []
            for part in turn.parts:
                if isinstance(part, str):
                    parts.append({"type": "text", "text": part})
                else:
                    data, mime = encode_image(part, self.image_format)
                    url = f"data:{mime};base64,{base64.b64encode(data).decode('ascii')}"
                    parts.append({"type": "image_url", "image_url": {"url": url}})
            out.append({"role": turn.role, "content": parts})
        return out

    def payload(self, turns: Sequence[ChatTurn], *, stream: bool = False) -> dict[str, Any]:
        body = {**self.extra_body, "model": self.model, "messages": self.messages(turns),
                "max_tokens": self.max_tokens, "temperature": self.temperature}
        if stream:
            body["stream"] = True
        return body

    def generate(self, turns: Sequence[ChatTurn]) -> str:
        """The whole answer (one request, retried as :class:`JsonClient` does)."""
        return answer_text(self.client.post(PATH, self.payload(turns)))

    async def agenerate(self, turns: Sequence[ChatTurn]) -> str:
        """Native async :meth:`generate`."""
        payload = self.payload(turns)
        async with self.client.async_client() as client:
            return answer_text(await self.client.apost(client, PATH, payload))

    # streaming -------------------------------------------------------------------------------
    def stream(self, turns: Sequence[ChatTurn]) -> Iterator[str]:
        """The answer's text as the server streams it (server-sent events, ``stream: true``)."""
        yield from stream_text(self.client, PATH, self.payload(turns, stream=True))

    async def astream(self, turns: Sequence[ChatTurn]) -> AsyncIterator[str]:
        """Native async :meth:`stream` (the request is built in a worker thread: images are
        encoded there, not on the event loop)."""
        payload = await asyncio.to_thread(self.payload, turns, stream=True)
        pieces = astream_text(self.client, PATH, payload)
        try:
            async for piece in pieces:
                yield piece
        finally:
            await pieces.aclose()  # a reader that stops early closes the connection now

    def close(self) -> None:
        """Close the HTTP connection pool."""
        self.client.close()


__all__ = ["OpenAIChatGenerator", "answer_text"]
