"""Pointwise yes/no scoring through any OpenAI-compatible server, from its log-probabilities.

Two modes:

* ``mode="chat"`` — ``/chat/completions``: the template's messages (images as ``data:`` URIs),
  the server applies its own chat template; ``max_tokens=1``, ``logprobs=true``,
  ``top_logprobs=k``. For servers and hosted APIs that only take messages.
* ``mode="raw"`` — ``/completions``: the prompt text rendered here by
  :class:`~mm_rag_components.scoring.prompt_builder.PromptBuilder` with the model's own tokenizer
  and chat template — the very text :class:`TransformersScorer` tokenizes — and ``logprobs=k``.
  The mode for parity checks. Text only (``/completions`` takes no images).

The log-odds and flags are those of :mod:`~mm_rag_components.remote.answers`; the top-k cap is
handled in :mod:`~mm_rag_components.remote.logprob_requests`. A failed request flags its
candidate ``request_failed`` (the reason in ``detail``); the others are still scored.
"""

from __future__ import annotations

import asyncio
import logging
import weakref
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..errors import BackendError, ConfigError, MediaError
from ..media import DEFAULT_MAX_PIXELS
from ..rerank.base import join_flags
from ..generation.images import check_image_format
from ..scoring.base import EMPTY_CANDIDATE, IMAGE_NOT_SHOWN, MISSING_IMAGE, UNREADABLE_IMAGE, PointScore
from ..scoring.page_text import PAGE_TEXT_TOKENS, check_budget, page_text
from ..scoring.prompt_builder import PROMPT_TOO_LONG
from ..scoring.templates import BUILTIN_TEMPLATES, DEFAULT_TEMPLATE, PointwiseTemplate, get_template
from ..types import MIXED, Candidate, Query
from ..validate import boolean, integer, one_of, positive_int, text
from .answers import MISSING_LOGPROBS, REQUEST_FAILED, answer_score, chat_top_logprobs, completion_top_logprobs, failed
from .http import extra_body_dict, openai_client
from .logprob_requests import LogprobRequests
from .messages import chat_messages, image_part
from .raw_prompts import RawPrompts
from .transport import TransportSettings, transport_settings

logger = logging.getLogger(__name__)

MODES = ("chat", "raw")
ANSWERS = ("auto", "exact", "variants")
UNSUPPORTED_MODALITY = "unsupported_modality"  # as TransformersScorer's (text-only model, image candidate)


@dataclass
class _Job:
    index: int
    payload: dict[str, Any] | None = None
    flag: str | None = None  # a flag from preparation (truncated, missing_image …)
    result: PointScore | None = None


class OpenAIChatScorer:
    """p(relevant) from a served model's yes/no log-probabilities.

    ``model``: the model name the server knows. ``base_url`` (``…/v1``) and ``api_key`` default to
    ``MMRAG_BASE_URL`` / ``MMRAG_API_KEY``, then ``OPENAI_BASE_URL`` / ``OPENAI_API_KEY``.
    ``tokenizer`` (raw mode): a tokenizer name or directory (``gguf_file`` to read it from a GGUF
    there), or a loaded tokenizer. ``answers``: ``"exact"`` answer tokens (raw default) or all ``"variants"`` (chat
    default). ``extra_body`` is merged into every request (e.g. ``{"chat_template_kwargs":
    {"enable_thinking": False}}`` for vLLM). ``transport``: timeouts, the whole-request deadline,
    retries, caps and ``max_concurrency`` (requests in flight at once), a
    :class:`~mm_rag_components.remote.transport.TransportSettings`.
    ``accepts_images=False`` for a server whose model reads text only: images are not sent, a
    candidate with an image and text is judged on its text (flagged ``image_not_shown``), one with
    an image alone is left unscored (``unsupported_modality``), and so is every candidate of a
    query that is only an image. ``page_text_tokens``: a mixed (page) candidate's text is cut to
    this many tokens — of the tokenizer in raw mode, estimated at four characters a token in chat
    mode (:mod:`~mm_rag_components.scoring.page_text`); its image and text go in one message.
    """

    #: The work happens on a server: calls may overlap (the web chat answers questions concurrently).
    remote = True

    def __init__(
        self,
        model: str,
        *,
        base_url: str | None = None,
        api_key: str | None = None,
        mode: str = "chat",
        tokenizer: str | Path | Any = None,
        gguf_file: str | None = None,
        template: str | PointwiseTemplate = DEFAULT_TEMPLATE,
        instruction: str | None = None,
        top_logprobs: int = 20,
        answers: str = "auto",
        max_length: int | None = None,
        page_text_tokens: int | None = PAGE_TEXT_TOKENS,
        allow_urls: bool = False,
        max_pixels: int | None = DEFAULT_MAX_PIXELS,
        image_format: str = "PNG",
        transport: TransportSettings | None = None,
        extra_body: dict[str, Any] | None = None,
        local_files_only: bool | None = None,
        accepts_images: bool = True,
        **deprecated: Any,
    ) -> None:
        self.model = text("model", model)
        self.accepts_images = boolean("accepts_images", accepts_images)
        self.mode = one_of("mode", mode, MODES)
        self.template = get_template(template)
        self.instruction = text("instruction", instruction, optional=True, non_empty=False)
        self.top_logprobs = positive_int("top_logprobs", top_logprobs)
        self.answers = one_of("answers", answers, ANSWERS)
        self.max_length = integer("max_length", max_length, minimum=8, optional=True)
        self.page_text_tokens = check_budget(page_text_tokens)
        self.allow_urls = boolean("allow_urls", allow_urls)
        self.max_pixels = positive_int("max_pixels", max_pixels, optional=True)
        self.image_format = check_image_format(image_format)
        self.transport = transport_settings(transport, deprecated, owner="OpenAIChatScorer", default=TransportSettings())
        self.max_concurrency = self.transport.max_concurrency
        self.extra_body = extra_body_dict(extra_body)
        self._base_url_arg = base_url
        self.client = openai_client(base_url, api_key, self.transport)
        self.base_url = self.client.base_url
        self.name = f"{self.model}@{self.base_url}"
        self.tokenizer_name = tokenizer
        self.gguf_file = gguf_file
        self.local_files_only = local_files_only
        self.prompts: RawPrompts | None = None
        if self.mode == "raw":
            if tokenizer is None:
                raise ConfigError("mode='raw' needs tokenizer= (the served model's tokenizer name or directory)")
            self.prompts = RawPrompts(tokenizer, self.template, instruction=self.instruction, max_length=self.max_length, gguf_file=gguf_file, local_files_only=local_files_only)
        elif tokenizer is not None or max_length is not None:
            raise ConfigError("tokenizer= and max_length= apply to mode='raw' only")
        self.exact = self.answers == "exact" or (self.answers == "auto" and self.mode == "raw")
        if self.exact and self.prompts is None:
            raise ConfigError("answers='exact' needs mode='raw' (the tokenizer names the exact answer tokens)")
        self.requests = LogprobRequests(self.client, model=self.model, mode=self.mode, top_logprobs=self.top_logprobs, extra_body=self.extra_body)
        self._semaphores: weakref.WeakKeyDictionary[Any, asyncio.Semaphore] = weakref.WeakKeyDictionary()

    def config(self) -> dict[str, Any]:
        """Constructor arguments (the API key is never saved)."""
        builtin = BUILTIN_TEMPLATES.get(self.template.name) == self.template
        return {
            "model": self.model,
            "base_url": self._base_url_arg,
            "mode": self.mode,
            # a loaded tokenizer object is not saved: pass tokenizer= again when rebuilding
            "tokenizer": str(self.tokenizer_name) if isinstance(self.tokenizer_name, (str, Path)) else None,
            "gguf_file": self.gguf_file,
            "template": self.template.name if builtin else self.template,
            "instruction": self.instruction,
            "top_logprobs": self.top_logprobs,
            "answers": self.answers,
            "max_length": self.max_length,
            "page_text_tokens": self.page_text_tokens,
            "allow_urls": self.allow_urls,
            "max_pixels": self.max_pixels,
            "image_format": self.image_format,
            "transport": self.transport,
            "extra_body": self.extra_body or None,
            "local_files_only": self.local_files_only,
            "accepts_images": self.accepts_images,
        }

    def cache_identity(self) -> dict[str, Any]:
        """What decides a score (for :class:`~mm_rag_components.scoring.cache.ScoreCache`)."""
        keep = ("model", "mode", "tokenizer", "gguf_file", "instruction", "answers", "max_length", "image_format", "extra_body",
                "accepts_images", "page_text_tokens")
        return {"server": self.base_url, "template": self.template, **{k: v for k, v in self.config().items() if k in keep}}

    @property
    def effective_top_logprobs(self) -> int:
        """``top_logprobs``, or the server's cap once it has named one."""
        return self.requests.k

    # preparation -----------------------------------------------------------------------------
    def _query_image(self, query: Query) -> dict[str, Any] | None:
        if query.image is None or not self.accepts_images:
            return None
        if self.mode == "raw":
            raise ConfigError("mode='raw' sends text prompts only; an image query needs mode='chat'")
        try:
            return image_part(query.image, allow_urls=self.allow_urls, max_pixels=self.max_pixels, image_format=self.image_format)
        except MediaError as exc:
            raise MediaError(f"query image: {exc}") from exc

    def _prepare(self, query: Query, candidates: Sequence[Candidate]) -> list[_Job]:
        if not isinstance(query, Query):
            raise ConfigError(f"query must be a Query, got {type(query).__name__}")
        query_image = self._query_image(query)
        blind_query = query.image is not None and not self.accepts_images
        if blind_query:
            logger.warning("%s reads text only; the query image is not sent", self.name)
        jobs = []
        for i, candidate in enumerate(candidates):
            job = _Job(i, flag=IMAGE_NOT_SHOWN if blind_query else None)
            jobs.append(job)
            source = candidate.image_source
            if source is None and not candidate.text:
                job.result = failed(EMPTY_CANDIDATE, "the candidate has neither an image nor text")
                continue
            if blind_query and not query.text:
                job.result = failed(UNSUPPORTED_MODALITY, "the query is only an image and the server's model reads text only")
                continue
            if source is None and candidate.modality in ("image", MIXED):
                job.flag = join_flags(job.flag, MISSING_IMAGE)
            document, cut = page_text(candidate, self.page_text_tokens, self.prompts.tokenizer if self.prompts is not None else None)
            job.flag = join_flags(job.flag, cut)
            if source is not None and not self.accepts_images:
                if not candidate.text:
                    job.result = failed(UNSUPPORTED_MODALITY, "an image without text; the server's model reads text only")
                    continue
                job.flag, source = join_flags(job.flag, IMAGE_NOT_SHOWN), None
            if self.prompts is not None:
                if source is not None:
                    job.result = failed(UNSUPPORTED_MODALITY, "mode='raw' sends text only; use mode='chat' for images")
                    continue
                prompt = self.prompts.build(query.text, document)
                if prompt is None:
                    job.result = failed(PROMPT_TOO_LONG, f"the prompt does not fit max_length={self.max_length}")
                    continue
                job.payload, job.flag = {"prompt": prompt.text}, join_flags(job.flag, prompt.flag)
                continue
            document_image = None
            if source is not None:
                try:
                    document_image = image_part(source, allow_urls=self.allow_urls, max_pixels=self.max_pixels, image_format=self.image_format)
                except MediaError as exc:
                    job.result = failed(UNREADABLE_IMAGE, str(exc))
                    continue
            messages = chat_messages(
                self.template, query_text=query.text, document=document,
                query_image=query_image, document_image=document_image, instruction=self.instruction,
            )
            job.payload = {"messages": messages}
        return jobs

    def _read(self, job: _Job, answer: Any) -> PointScore:
        pairs = chat_top_logprobs(answer) if self.mode == "chat" else completion_top_logprobs(answer)
        if pairs is None:
            return failed(MISSING_LOGPROBS, "the answer has no log-probabilities (does the server support logprobs?)")
        if self.exact:
            assert self.prompts is not None
            point = answer_score(pairs, self.prompts.yes_forms, self.prompts.no_forms, exact=True)
        else:
            point = answer_score(pairs, [self.template.yes], [self.template.no], exact=False)
        if job.flag is None:
            return point
        return type(point)(point.logodds, point.probability, join_flags(job.flag, point.flag), getattr(point, "detail", None))

    def _finish(self, jobs: list[_Job]) -> list[PointScore]:
        out = [job.result for job in jobs]
        failures = [p for p in out if p is not None and p.flag == REQUEST_FAILED]
        if failures:
            logger.warning("%s: %d of %d request(s) failed, e.g. %s", self.name, len(failures), len(out), getattr(failures[0], "detail", ""))
        return out  # type: ignore[return-value]

    # scoring ---------------------------------------------------------------------------------
    def _run(self, job: _Job) -> None:
        assert job.payload is not None
        try:
            job.result = self._read(job, self.requests.call(job.payload))
        except BackendError as exc:
            job.result = failed(REQUEST_FAILED, str(exc))

    def score(self, query: Query, candidates: Sequence[Candidate]) -> list[PointScore]:
        """p(relevant) for every candidate; requests run in up to ``max_concurrency`` threads."""
        jobs = self._prepare(query, candidates)
        pending = [job for job in jobs if job.result is None]
        if len(pending) == 1:
            self._run(pending[0])
        elif pending:
            with ThreadPoolExecutor(min(self.max_concurrency, len(pending)), thread_name_prefix="mm-rag-remote") as pool:
                list(pool.map(self._run, pending))
        return self._finish(jobs)

    def _semaphore(self) -> asyncio.Semaphore:
        """One semaphore per event loop, shared by every concurrent ``ascore`` on it."""
        loop = asyncio.get_running_loop()
        semaphore = self._semaphores.get(loop)
        if semaphore is None:
            semaphore = self._semaphores[loop] = asyncio.Semaphore(self.max_concurrency)
        return semaphore

    async def ascore(self, query: Query, candidates: Sequence[Candidate]) -> list[PointScore]:
        """Native async :meth:`score`: at most ``max_concurrency`` requests in flight per event
        loop, across all concurrent calls."""
        jobs = await asyncio.to_thread(self._prepare, query, candidates)  # images are encoded off the event loop
        pending = [job for job in jobs if job.result is None]
        if not pending:
            return self._finish(jobs)
        semaphore = self._semaphore()

        async def run(client: Any, job: _Job) -> None:
            assert job.payload is not None
            try:
                async with semaphore:
                    answer = await self.requests.acall(client, job.payload)
                job.result = self._read(job, answer)
            except BackendError as exc:
                job.result = failed(REQUEST_FAILED, str(exc))

        async with self.client.async_client() as client:
            await asyncio.gather(*(run(client, job) for job in pending))
        return self._finish(jobs)

    def close(self) -> None:
        """Close the sync HTTP connection pool."""
        self.client.close()


__all__ = ["ANSWERS", "MODES", "OpenAIChatScorer", "UNSUPPORTED_MODALITY"]
