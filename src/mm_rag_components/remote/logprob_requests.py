"""One-token requests that ask for the top log-probabilities, and the server's top-k cap.

Servers cap ``k`` differently (vLLM ``--max-logprobs``, 20 by default; OpenAI 20; llama.cpp
thousands). A refusal that names a smaller cap (HTTP 400/422) is answered by asking again, once,
at that cap, which is then used for every later request; a refusal that names none is the
request's failure — the cap is never guessed.
"""

from __future__ import annotations

import logging
from typing import Any

import httpx

from .answers import logprobs_cap
from .http import JsonClient, RemoteError

logger = logging.getLogger(__name__)


class LogprobRequests:
    """``/chat/completions`` (``mode="chat"``) or ``/completions`` (``"raw"``) with ``max_tokens=1``."""

    def __init__(self, client: JsonClient, *, model: str, mode: str, top_logprobs: int, extra_body: dict[str, Any]) -> None:
        self.client = client
        self.model = model
        self.mode = mode
        self.top_logprobs = top_logprobs
        self.extra_body = extra_body
        self.cap: int | None = None
        self.path = "/chat/completions" if mode == "chat" else "/completions"

    @property
    def k(self) -> int:
        """``top_logprobs``, or the server's cap once it has named one."""
        return self.cap if self.cap is not None else self.top_logprobs

    def payload(self, body: dict[str, Any]) -> dict[str, Any]:
        logprobs = {"logprobs": True, "top_logprobs": self.k} if self.mode == "chat" else {"logprobs": self.k}
        return {"model": self.model, **body, "max_tokens": 1, "temperature": 0.0, **logprobs, **self.extra_body}

    def _capped(self, error: RemoteError) -> bool:
        """True when ``error`` names a smaller cap (now remembered)."""
        if error.status not in (400, 422) or self.cap is not None:
            return False
        cap = logprobs_cap(error.body or str(error), self.top_logprobs)
        if cap is None:
            return False
        logger.warning("%s caps top log-probabilities at %d (asked %d); using %d", self.client.base_url, cap, self.top_logprobs, cap)
        self.cap = cap
        return True

    def call(self, body: dict[str, Any]) -> Any:
        try:
            return self.client.post(self.path, self.payload(body))
        except RemoteError as exc:
            if not self._capped(exc):
                raise
        return self.client.post(self.path, self.payload(body))

    async def acall(self, session: httpx.AsyncClient, body: dict[str, Any]) -> Any:
        try:
            return await self.client.apost(session, self.path, self.payload(body))
        except RemoteError as exc:
            if not self._capped(exc):
                raise
        return await self.client.apost(session, self.path, self.payload(body))


__all__ = ["LogprobRequests"]
