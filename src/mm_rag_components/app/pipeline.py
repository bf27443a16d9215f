"""The QA pipeline every front end uses: retrieve → rerank → filter → answer, framework-free.

One :class:`QATurn` holds everything a user may want to see about a question: what was retrieved,
how it was reranked, what the filter kept and what it dropped (and why), the answer with its
citations, and how long each stage took. :class:`Conversation` keeps the exchanges for follow-up
questions.
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from collections.abc import AsyncIterator, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from ..answer import Answer, AnswerStream, Exchange, MultimodalAnswerer
from ..errors import ConfigError
from ..filters import Dropped, FilterPolicy
from ..index import MultimodalIndex
from ..rerank.base import Reranker
from ..retrieval import RetrievalOptions, RetrievalResult, retrieve
from ..rerank.pointwise import is_unscored
from ..types import RERANK_FLAG, Candidate, Query
from ..validate import integer


@dataclass
class QATurn:
    """One question through the pipeline (``answer`` is ``None`` until answered or streamed)."""

    question: Query
    retrieved: list[Candidate]
    ranked: list[Candidate]
    kept: list[Candidate]
    dropped: list[Dropped] = field(default_factory=list)
    answer: Answer | None = None
    timings: dict[str, float] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready: sources with their scores and provenance, drops with reasons, the answer."""
        answer = self.answer
        return {
            "question": {"text": self.question.text, "image": _describe_image(self.question.image)},
            "kept": [candidate_dict(c) for c in self.kept],
            "dropped": [{**candidate_dict(d.candidate), "reason": d.reason} for d in self.dropped],
            "retrieved": len(self.retrieved),
            "answer": None if answer is None else {
                "text": answer.text, "cited": answer.cited, "invalid_citations": answer.invalid_citations,
                "flag": answer.flag, "error": answer.error,
            },
            "timings": {k: round(v, 4) for k, v in self.timings.items()},
            "notes": list(self.notes),
        }


def candidate_dict(candidate: Candidate) -> dict[str, Any]:
    """A candidate as JSON-ready data (never image bytes)."""
    metadata = {k: v for k, v in candidate.metadata.items() if isinstance(v, (str, int, float, bool)) or v is None}
    return {
        "id": candidate.id, "modality": candidate.modality, "text": candidate.text,
        "image_path": candidate.image_path, "score": candidate.score, "metadata": metadata,
    }


def _describe_image(image: Any) -> str | None:
    if image is None:
        return None
    return str(image) if isinstance(image, str) and len(str(image)) < 4096 else f"<{type(image).__name__}>"


class QAPipeline:
    """Retrieve from ``index``, rerank (optional), filter (optional), answer (optional).

    Retrieval options come as a :class:`RetrievalOptions` or its keywords; ``reranker`` is any
    core :class:`~mm_rag_components.rerank.base.Reranker`; ``relevance_filter`` a
    :class:`~mm_rag_components.filters.FilterPolicy`; ``answerer`` a
    :class:`~mm_rag_components.answer.MultimodalAnswerer`.
    """

    def __init__(
        self,
        index: MultimodalIndex,
        *,
        retrieval: RetrievalOptions | None = None,
        reranker: Reranker | None = None,
        relevance_filter: FilterPolicy | None = None,
        answerer: MultimodalAnswerer | None = None,
        **retrieval_options: Any,
    ) -> None:
        if not isinstance(index, MultimodalIndex):
            raise ConfigError(f"index must be a MultimodalIndex, got {type(index).__name__}")
        if reranker is not None and not isinstance(reranker, Reranker):
            raise ConfigError(f"reranker must follow the Reranker protocol, got {type(reranker).__name__}")
        if relevance_filter is not None and not isinstance(relevance_filter, FilterPolicy):
            raise ConfigError(f"relevance_filter must be a FilterPolicy, got {type(relevance_filter).__name__}")
        if answerer is not None and not isinstance(answerer, MultimodalAnswerer):
            raise ConfigError(f"answerer must be a MultimodalAnswerer, got {type(answerer).__name__}")
        self.index = index
        self.retrieval = RetrievalOptions.resolve(retrieval, **retrieval_options)
        self.reranker = reranker
        self.relevance_filter = relevance_filter
        self.answerer = answerer

    def config(self) -> dict[str, Any]:
        """Constructor arguments (see :mod:`mm_rag_components.config`): the index, the retrieval
        options, and the reranker, filter and answerer when present."""
        return {
            "index": self.index, "retrieval": self.retrieval, "reranker": self.reranker,
            "relevance_filter": self.relevance_filter, "answerer": self.answerer,
        }

    def warm_up(self) -> None:
        """Load every model now (embedders, reranker, answerer)."""
        for part in (self.index.image_embedder, self.index.text_embedder, self.reranker, self.answerer):
            warm = getattr(part, "warm_up", None)
            if callable(warm):
                warm()

    @property
    def remote(self) -> bool:
        """True when the reranker and the answerer (those present) work on servers: questions may
        then run concurrently (retrieval's embedder is local, quick and safe to share)."""
        return all(getattr(part, "remote", False) for part in (self.reranker, self.answerer) if part is not None)

    def search(self, question: Query | str) -> QATurn:
        """Retrieve, rerank and filter (no answer)."""
        query, timings = _query(question), {}
        with _timed(timings, "retrieve"):
            result = retrieve(self.index, query, self.retrieval)
        ranked = list(result)
        if self.reranker is not None and ranked:
            with _timed(timings, "rerank"):
                ranked = self.reranker.rerank(query, ranked).candidates
        return self._turn(query, result, ranked, timings)

    async def asearch(self, question: Query | str) -> QATurn:
        """Async :meth:`search`: retrieval in a worker thread, the reranker's ``arerank`` (native
        for servers, with their bounded concurrency)."""
        query, timings = _query(question), {}
        with _timed(timings, "retrieve"):
            result = await asyncio.to_thread(retrieve, self.index, query, self.retrieval)
        ranked = list(result)
        if self.reranker is not None and ranked:
            with _timed(timings, "rerank"):
                ranked = (await self.reranker.arerank(query, ranked)).candidates
        return self._turn(query, result, ranked, timings)

    def _turn(self, query: Query, result: RetrievalResult, ranked: list[Candidate], timings: dict[str, float]) -> QATurn:
        kept, dropped = ranked, []
        if self.relevance_filter is not None and ranked:
            filtered = self.relevance_filter.apply(ranked)
            kept, dropped = filtered.kept, filtered.dropped
        notes = list(result.notes)
        unscored = Counter(c.metadata.get(RERANK_FLAG) or "no score" for c in ranked if is_unscored(c))
        if unscored:
            why = ", ".join(f"{flag}: {n}" for flag, n in unscored.items())
            notes.append(f"the reranker could not score {sum(unscored.values())} of {len(ranked)} candidates ({why})")
        return QATurn(query, list(result), ranked, kept, dropped, timings=timings, notes=notes)

    def ask(self, question: Query | str, history: list[Exchange] | tuple[Exchange, ...] = ()) -> QATurn:
        """:meth:`search`, then the answer (needs an ``answerer``)."""
        answerer = self._answerer()
        turn = self.search(question)
        with _timed(turn.timings, "answer"):
            turn.answer = answerer.answer(turn.question, turn.kept, history)
        return turn

    def ask_stream(
        self, question: Query | str, history: list[Exchange] | tuple[Exchange, ...] = ()
    ) -> tuple[QATurn, Iterator[str]]:
        """:meth:`search` now, and the answer's text as it comes; ``turn.answer`` is set when the
        iteration ends."""
        self._answerer()
        turn = self.search(question)
        return turn, self.answer_stream(turn, history)

    def answer_stream(self, turn: QATurn, history: list[Exchange] | tuple[Exchange, ...] = ()) -> Iterator[str]:
        """The answer to a turn :meth:`search` made, as it comes (``turn.answer`` is set when the
        iteration ends): a caller may search, look at the sources, and only then ask the model."""
        return _filling(turn, self._answerer().stream(turn.question, turn.kept, history))

    async def aask_stream(
        self, question: Query | str, history: list[Exchange] | tuple[Exchange, ...] = ()
    ) -> tuple[QATurn, AsyncIterator[str]]:
        """Async :meth:`ask_stream`: iterate the answer with ``async for``."""
        answerer = self._answerer()
        turn = await self.asearch(question)
        stream = await answerer.astream(turn.question, turn.kept, history)
        return turn, _afilling(turn, stream)

    def _answerer(self) -> MultimodalAnswerer:
        if self.answerer is None:
            raise ConfigError("this pipeline has no answerer; pass answerer=MultimodalAnswerer(...)")
        return self.answerer


def _query(question: Query | str) -> Query:
    return Query(text=question) if isinstance(question, str) else question


@contextmanager
def _timed(timings: dict[str, float], stage: str) -> Iterator[None]:
    start = time.perf_counter()
    yield
    timings[stage] = time.perf_counter() - start


def _filling(turn: QATurn, stream: AnswerStream) -> Iterator[str]:
    with _timed(turn.timings, "answer"):
        yield from stream
    turn.answer = stream.answer


async def _afilling(turn: QATurn, stream: AnswerStream) -> AsyncIterator[str]:
    with _timed(turn.timings, "answer"):
        async for piece in stream:
            yield piece
    turn.answer = stream.answer


class Conversation:
    """A pipeline plus the exchanges so far, for follow-up questions (at most ``max_exchanges`` kept)."""

    def __init__(self, pipeline: QAPipeline, *, max_exchanges: int = 20) -> None:
        self.pipeline = pipeline
        self.max_exchanges = integer("max_exchanges", max_exchanges, minimum=1)
        self.history: list[Exchange] = []

    def ask(self, text: str | None = None, image: Any = None) -> QATurn:
        turn = self.pipeline.ask(Query(text=text, image=image), tuple(self.history))
        self._remember(turn)
        return turn

    def ask_stream(self, text: str | None = None, image: Any = None) -> tuple[QATurn, Iterator[str]]:
        turn, pieces = self.pipeline.ask_stream(Query(text=text, image=image), tuple(self.history))

        def remembering() -> Iterator[str]:
            yield from pieces
            self._remember(turn)

        return turn, remembering()

    def _remember(self, turn: QATurn) -> None:
        if turn.answer is not None and turn.answer.flag is None:
            question = turn.question.text or "(an image)"
            self.history = [*self.history, Exchange(question, turn.answer.text)][-self.max_exchanges :]

    def reset(self) -> None:
        self.history = []


__all__ = ["Conversation", "QAPipeline", "QATurn", "candidate_dict"]
