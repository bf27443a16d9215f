"""Scores from servers that rerank themselves: the Cohere/Jina ``/v1/rerank`` shape (vLLM,
SGLang, Jina, Cohere, Infinity …) and Hugging Face TEI's ``/rerank``.

Requests: ``api="cohere"`` sends ``{model, query, documents, top_n}`` and reads
``{"results": [{"index", "relevance_score"}]}`` — or SGLang's bare list of ``{"index", "score"}``;
``api="tei"`` sends ``{query, texts}`` and reads ``[{"index", "score"}]`` (sorted by score).
Scores are always mapped back by ``index``, never by position. With ``images=True`` (a server with
a multimodal reranker, e.g. vLLM serving jina-reranker-m0 or Qwen3-VL-Reranker) a document with an
image is sent as ``{"content": [{"type": "image_url", …}, {"type": "text", …}]}`` and so is an
image query. A mixed (page) candidate sends its image and its page text, cut to
``page_text_tokens`` (estimated at four characters a token); with ``images=False`` its text alone,
flagged ``image_not_shown``.

Log-odds: ``score_kind="probability"`` (the default; Cohere, Jina, vLLM and TEI's normalised
scores lie in [0, 1]) maps ``p`` to ``logit(p)``, ``p`` clipped to [1e-12, 1 − 1e-12]; a score
outside [0, 1] is flagged ``invalid_score``. ``score_kind="logit"`` keeps a raw score (TEI with
``raw_scores``) as the log-odds.
"""

from __future__ import annotations

import asyncio
import logging
import math
from collections.abc import Sequence
from typing import Any

from ..errors import BackendError, ConfigError, MediaError
from ..media import DEFAULT_MAX_PIXELS
from ..generation.images import check_image_format
from ..scoring.base import EMPTY_CANDIDATE, IMAGE_NOT_SHOWN, UNREADABLE_IMAGE, PointScore
from ..scoring.page_text import PAGE_TEXT_TOKENS, check_budget, page_text
from ..types import MIXED, Candidate, Query, join_flags
from ..validate import boolean, one_of, positive_int, text
from .answers import MISSING_SCORE, REQUEST_FAILED, RemotePointScore, as_float, failed, scored
from .chat_scorer import UNSUPPORTED_MODALITY
from .http import extra_body_dict, server_client
from .transport import TransportSettings, transport_settings
from .messages import image_part

logger = logging.getLogger(__name__)

APIS = {"cohere": "/v1/rerank", "tei": "/rerank"}
SCORE_KINDS = ("probability", "logit")
INVALID_SCORE = "invalid_score"
_EPS = 1e-12
#: At most 4 batches of one call in flight.
DEFAULT_TRANSPORT = TransportSettings(max_concurrency=4)


def _results(answer: Any) -> list[Any]:
    if isinstance(answer, list):
        return answer
    if isinstance(answer, dict):
        for key in ("results", "data"):
            if isinstance(answer.get(key), list):
                return answer[key]
    raise BackendError(f"unexpected rerank answer: {str(answer)[:120]!r}")


class RerankEndpointScorer:
    """A :class:`~mm_rag_components.scoring.base.RelevanceScorer` over a rerank endpoint.

    ``base_url`` (the server root, e.g. ``http://127.0.0.1:8000``) and ``api_key`` default to
    ``MMRAG_RERANK_BASE_URL`` / ``MMRAG_RERANK_API_KEY``; ``path`` defaults to the API's own.
    Documents go in requests of ``batch_size``; a failed request flags its documents
    ``request_failed`` and the other requests still count. ``extra_body`` is merged into each request.
    ``transport``: timeouts, the whole-request deadline, retries, caps and ``max_concurrency``
    (batches of one call in flight; default 4), a :class:`~mm_rag_components.remote.transport.TransportSettings`.
    """

    #: The work happens on a server: calls may overlap (the web chat answers questions concurrently).
    remote = True

    def __init__(
        self,
        model: str | None = None,
        *,
        base_url: str | None = None,
        api_key: str | None = None,
        api: str = "cohere",
        path: str | None = None,
        score_kind: str = "probability",
        images: bool = False,
        allow_urls: bool = False,
        max_pixels: int | None = DEFAULT_MAX_PIXELS,
        image_format: str = "PNG",
        page_text_tokens: int | None = PAGE_TEXT_TOKENS,
        batch_size: int = 64,
        transport: TransportSettings | None = None,
        extra_body: dict[str, Any] | None = None,
        **deprecated: Any,
    ) -> None:
        self.model = text("model", model, optional=True)
        self.api = one_of("api", api, tuple(APIS))
        if self.api == "cohere" and self.model is None:
            raise ConfigError("api='cohere' needs model= (the served reranker's name)")
        self.path = text("path", path, optional=True) or APIS[self.api]
        self.score_kind = one_of("score_kind", score_kind, SCORE_KINDS)
        self.images = boolean("images", images)
        if self.images and self.api == "tei":
            raise ConfigError("TEI's /rerank takes text only; images=True needs api='cohere' and a server with a multimodal reranker")
        self.allow_urls = boolean("allow_urls", allow_urls)
        self.max_pixels = positive_int("max_pixels", max_pixels, optional=True)
        self.image_format = check_image_format(image_format)
        self.page_text_tokens = check_budget(page_text_tokens)
        self.batch_size = positive_int("batch_size", batch_size)
        self.transport = transport_settings(transport, deprecated, owner="RerankEndpointScorer", default=DEFAULT_TRANSPORT)
        self.max_concurrency = self.transport.max_concurrency
        self.extra_body = extra_body_dict(extra_body)
        self._base_url_arg = base_url
        self.client = server_client(
            base_url, api_key, url_env=("MMRAG_RERANK_BASE_URL",), key_env=("MMRAG_RERANK_API_KEY",), transport=self.transport,
        )
        self.base_url = self.client.base_url
        self.name = f"{self.model or self.api}@{self.base_url}"

    def config(self) -> dict[str, Any]:
        """Constructor arguments (the API key is never saved)."""
        return {
            "model": self.model, "base_url": self._base_url_arg, "api": self.api, "path": self.path,
            "score_kind": self.score_kind, "images": self.images, "allow_urls": self.allow_urls,
            "max_pixels": self.max_pixels, "image_format": self.image_format,
            "page_text_tokens": self.page_text_tokens, "batch_size": self.batch_size,
            "transport": self.transport, "extra_body": self.extra_body or None,
        }

    def cache_identity(self) -> dict[str, Any]:
        return {"server": self.base_url + self.path, "model": self.model, "api": self.api, "score_kind": self.score_kind,
                "image_format": self.image_format, "extra_body": self.extra_body or None, "page_text_tokens": self.page_text_tokens}

    # requests --------------------------------------------------------------------------------
    def _image(self, source: Any) -> dict[str, Any]:
        return image_part(source, allow_urls=self.allow_urls, max_pixels=self.max_pixels, image_format=self.image_format)

    def _query(self, query: Query) -> Any:
        if not isinstance(query, Query):
            raise ConfigError(f"query must be a Query, got {type(query).__name__}")
        if query.image is None:
            return query.text
        if not self.images:
            raise ConfigError(f"{self.name}: an image query needs images=True (a server with a multimodal reranker)")
        try:
            parts = [self._image(query.image)]
        except MediaError as exc:
            raise MediaError(f"query image: {exc}") from exc
        return {"content": parts + ([{"type": "text", "text": query.text}] if query.text else [])}

    def _prepare(self, candidates: Sequence[Candidate]) -> tuple[list[PointScore | None], list[tuple[int, Any]], list[str | None]]:
        """Scores decided here (failures), the documents to send by candidate index, and each
        candidate's flag from preparation (``truncated``, ``image_not_shown``)."""
        out: list[PointScore | None] = [None] * len(candidates)
        flags: list[str | None] = [None] * len(candidates)
        documents: list[tuple[int, Any]] = []
        for i, candidate in enumerate(candidates):
            source = candidate.image_source
            text, flags[i] = page_text(candidate, self.page_text_tokens)
            if source is not None and not self.images and candidate.modality == MIXED and text:
                source, flags[i] = None, join_flags(flags[i], IMAGE_NOT_SHOWN)  # a page judged on its text
            if source is None:
                if text:
                    documents.append((i, text))
                else:
                    out[i] = failed(EMPTY_CANDIDATE, "the candidate has neither an image nor text")
                continue
            if not self.images:
                out[i] = failed(UNSUPPORTED_MODALITY, "the candidate has an image; pass images=True if the server's reranker is multimodal")
                continue
            try:
                parts = [self._image(source)]
            except MediaError as exc:
                out[i] = failed(UNREADABLE_IMAGE, str(exc))
                continue
            documents.append((i, {"content": parts + ([{"type": "text", "text": text}] if text else [])}))
        return out, documents, flags

    def _body(self, query: Any, batch: list[tuple[int, Any]]) -> dict[str, Any]:
        docs = [doc for _, doc in batch]
        if self.api == "tei":
            return {"query": query, "texts": docs, **self.extra_body}
        return {"model": self.model, "query": query, "documents": docs, "top_n": len(docs), **self.extra_body}

    def _point(self, value: Any) -> PointScore:
        number = as_float(value)
        if number is None or not math.isfinite(number):
            return failed(MISSING_SCORE, f"the server returned {str(value)[:40]} as a score")
        if self.score_kind == "logit":
            return scored(number)
        if not 0.0 <= number <= 1.0:
            return failed(INVALID_SCORE, f"score {number!r} is not a probability; use score_kind='logit' for raw scores")
        p = min(max(number, _EPS), 1.0 - _EPS)
        return scored(math.log(p) - math.log1p(-p))

    def _read(self, batch: list[tuple[int, Any]], answer: Any, out: list[PointScore | None]) -> None:
        by_index: dict[int, Any] = {}
        for entry in _results(answer):
            if isinstance(entry, dict) and isinstance(entry.get("index"), int) and not isinstance(entry.get("index"), bool):
                by_index.setdefault(entry["index"], entry.get("relevance_score", entry.get("score")))
        for position, (i, _) in enumerate(batch):
            out[i] = self._point(by_index[position]) if position in by_index else failed(MISSING_SCORE, f"no result for document {position} of the request")

    @staticmethod
    def _fail(batch: list[tuple[int, Any]], out: list[PointScore | None], exc: BackendError) -> None:
        for i, _ in batch:
            out[i] = RemotePointScore(-math.inf, 0.0, REQUEST_FAILED, str(exc))

    def _batches(self, documents: list[tuple[int, Any]]) -> list[list[tuple[int, Any]]]:
        return [documents[s : s + self.batch_size] for s in range(0, len(documents), self.batch_size)]

    # scoring ---------------------------------------------------------------------------------
    def score(self, query: Query, candidates: Sequence[Candidate]) -> list[PointScore]:
        q = self._query(query)
        out, documents, flags = self._prepare(candidates)
        for batch in self._batches(documents):
            try:
                self._read(batch, self.client.post(self.path, self._body(q, batch)), out)
            except BackendError as exc:
                self._fail(batch, out, exc)
        return self._finish(out, flags)

    async def ascore(self, query: Query, candidates: Sequence[Candidate]) -> list[PointScore]:
        """Native async :meth:`score`; at most ``max_concurrency`` of this call's batches in flight."""
        q = self._query(query)
        out, documents, flags = self._prepare(candidates)
        semaphore = asyncio.Semaphore(self.max_concurrency)

        async def run(client: Any, batch: list[tuple[int, Any]]) -> None:
            try:
                async with semaphore:
                    answer = await self.client.apost(client, self.path, self._body(q, batch))
                self._read(batch, answer, out)
            except BackendError as exc:
                self._fail(batch, out, exc)

        if documents:
            async with self.client.async_client() as client:
                await asyncio.gather(*(run(client, batch) for batch in self._batches(documents)))
        return self._finish(out, flags)

    def _finish(self, out: list[PointScore | None], flags: list[str | None]) -> list[PointScore]:
        failures = [p for p in out if p is not None and p.flag == REQUEST_FAILED]
        if failures:
            logger.warning("%s: %d of %d document(s) unscored, e.g. %s", self.name, len(failures), len(out), getattr(failures[0], "detail", ""))
        points = [p if p is not None else failed(MISSING_SCORE, "not scored") for p in out]
        return [p if flag is None else RemotePointScore(p.logodds, p.probability, join_flags(flag, p.flag), getattr(p, "detail", None))
                for p, flag in zip(points, flags)]

    def close(self) -> None:
        self.client.close()


__all__ = ["APIS", "INVALID_SCORE", "RerankEndpointScorer", "SCORE_KINDS"]
