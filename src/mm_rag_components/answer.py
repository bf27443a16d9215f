"""The answer stage: a question (text and/or image) and the candidates a filter kept → an answer
that cites its sources by number.

When the filter kept nothing, the model is not asked to guess: the answer says there is not enough
relevant context (flag ``no_context``). Sources are shown numbered, images interleaved, like the
listwise prompt; earlier exchanges of a conversation come first, as chat turns (text only). A
document page (a candidate with a ``page`` number, e.g. a mixed ``"image+text"`` page) is shown
with its image and its text under ``[2] report.pdf, p. 7`` — its file name (else its title) and
page — and :func:`source_label` / :attr:`Answer.references` name it so in citations.

Any generator of :mod:`~mm_rag_components.generation` answers: a local transformers model, a
framework LLM (LlamaIndex, Haystack, LangChain) or an OpenAI-compatible server. A generator with
``stream(turns)`` streams the answer (:meth:`MultimodalAnswerer.stream`).
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING, Any, NamedTuple

from .answer_stream import AnswerStream, threaded  # noqa: F401 - threaded: re-exported
from .backed import Backed
from .errors import ConfigError
from .generation.base import ChatTurn, Generator
from .generation.calls import FLAG_GENERATOR_ERROR, acall_generator, call_generator, in_daemon_thread
from .generation.context import DEFAULT_MAX_IMAGE_PIXELS, PromptEntry, clip_text, merge_text, prepare_entries
from .types import FILE_NAME, PAGE, SOURCE, TITLE, Candidate, Query
from .validate import boolean, integer, number, positive_int

if TYPE_CHECKING:  # pragma: no cover
    from PIL import Image

NO_CONTEXT = "no_context"
_CITATION = re.compile(r"\[(\d{1,4})\]")


@dataclass(frozen=True)
class AnswerPrompt:
    """The strings of the answer prompt (``{n}``: number of sources)."""

    system: str = (
        "You answer questions using only the numbered sources you are given: texts and images. "
        "Cite every source you use by its number in square brackets, like [2]. If the sources do "
        "not contain the answer, say that you do not have enough information; never guess."
    )
    sources_header: str = "Sources ({n}):"
    source_header: str = "[{number}]"
    #: A document page's header (``{document}``: its file name or title; ``{page}``: its number).
    page_header: str = "[{number}] {document}, p. {page}"
    question_header: str = "Question:"
    image_question_text: str = "(the question is the image above)"
    task: str = "Answer the question from the sources above, citing them like [1]."
    no_context: str = "I don't have enough relevant context to answer that: nothing retrieved was relevant enough."
    missing_image_text: str = "(image unavailable)"
    unseen_image_text: str = "(an image, not shown: this model reads text only)"
    empty_text: str = "(no text)"


class Exchange(NamedTuple):
    """One earlier question and its answer, for follow-up questions."""

    question: str
    answer: str


@dataclass
class Answer:
    """An answer, the sources it was given (numbered from 1 in this order), the source numbers it
    cites (valid ones, in order of first mention) and a flag when something went wrong
    (``no_context``, ``generator_error``, ``timeout``)."""

    text: str
    sources: list[Candidate]
    cited: list[int] = field(default_factory=list)
    invalid_citations: list[int] = field(default_factory=list)
    flag: str | None = None
    error: str | None = None

    @property
    def cited_sources(self) -> list[Candidate]:
        return [self.sources[n - 1] for n in self.cited]

    @property
    def references(self) -> list[str]:
        """One line per cited source, as the answer cites it: ``[2] report.pdf, p. 7``."""
        return [f"[{n}] {source_label(self.sources[n - 1]) or self.sources[n - 1].id}" for n in self.cited]


def document_name(candidate: Candidate) -> str | None:
    """A source's document name: its file name, else the last part of its source, else its title."""
    meta = candidate.metadata
    source = meta.get(SOURCE)
    tail = PurePosixPath(source.replace("\\", "/")).name if isinstance(source, str) else None
    for value in (meta.get(FILE_NAME), tail, meta.get(TITLE)):
        if isinstance(value, str) and value.strip():
            return value.strip()
    return None


def page_number(candidate: Candidate) -> int | None:
    """A source's 1-based page number, when it is a document page."""
    page = candidate.metadata.get(PAGE)
    return page if isinstance(page, int) and not isinstance(page, bool) and page >= 1 else None


def source_label(candidate: Candidate) -> str | None:
    """How answers and chats name a source: ``"report.pdf, p. 7"`` for a page, the document
    name for a file, ``None`` when it has neither."""
    name, page = document_name(candidate), page_number(candidate)
    if name is not None and page is not None:
        return f"{name}, p. {page}"
    return name


def read_citations(text: str, n: int) -> tuple[list[int], list[int]]:
    """Valid (1..n) and invalid source numbers cited as ``[k]`` in ``text``, first mention first."""
    numbers = list(dict.fromkeys(int(m) for m in _CITATION.findall(text)))
    return [k for k in numbers if 1 <= k <= n], [k for k in numbers if not 1 <= k <= n]


class MultimodalAnswerer(Backed):
    """Answer questions from kept candidates with a (multimodal) generator.

    ``max_sources`` caps the sources shown (the first ones: pass them best first);
    ``history_turns`` the earlier exchanges repeated to the model; ``timeout`` (seconds) bounds a
    call, streamed or not (a timed-out local generation is told to stop; a timed-out stream keeps
    what it streamed, flagged ``timeout``).
    """

    BACKEND = "generator"

    OPTIONS = ("prompt", "max_sources", "max_image_pixels", "max_text_chars", "timeout", "history_turns", "allow_urls")

    def __init__(
        self,
        generator: Generator,
        *,
        prompt: AnswerPrompt | None = None,
        max_sources: int = 8,
        max_image_pixels: int | None = DEFAULT_MAX_IMAGE_PIXELS,
        max_text_chars: int | None = 2000,
        timeout: float | None = None,
        history_turns: int = 3,
        allow_urls: bool = False,
    ) -> None:
        if not callable(getattr(generator, "generate", None)):
            raise ConfigError("generator must have a generate(turns) -> str method")
        if prompt is not None and not isinstance(prompt, AnswerPrompt):
            raise ConfigError(f"prompt must be an AnswerPrompt, got {type(prompt).__name__}")
        self.generator = generator
        self.prompt = prompt or AnswerPrompt()
        self.max_sources = positive_int("max_sources", max_sources)
        self.max_image_pixels = positive_int("max_image_pixels", max_image_pixels, optional=True)
        self.max_text_chars = positive_int("max_text_chars", max_text_chars, optional=True)
        self.timeout = number("timeout", timeout, minimum=0.0, exclusive_minimum=True, maximum=7 * 24 * 3600.0, optional=True)
        self.history_turns = integer("history_turns", history_turns, minimum=0)
        self.allow_urls = boolean("allow_urls", allow_urls)

    @classmethod
    def create(
        cls, model: str | Path | None = None, *, generator: Generator | None = None, **options: Any
    ) -> MultimodalAnswerer:
        """Build from a local ``model`` (name or directory; ``max_new_tokens``, ``device`` … go to
        its :class:`~mm_rag_components.generation.transformers.TransformersGenerator`) or a ``generator``."""
        if (model is None) == (generator is None):
            raise ConfigError("give exactly one of model (a name or directory) or generator")
        from .generation.transformers import generator_or_local

        own = {k: options.pop(k) for k in cls.OPTIONS if k in options}
        return cls(generator_or_local(model, generator, options, "MultimodalAnswerer"), **own)

    def config(self) -> dict[str, Any]:
        return {
            "generator": self.generator, "prompt": self.prompt, "max_sources": self.max_sources,
            "max_image_pixels": self.max_image_pixels, "max_text_chars": self.max_text_chars,
            "timeout": self.timeout, "history_turns": self.history_turns, "allow_urls": self.allow_urls,
        }

    # prompt ----------------------------------------------------------------------------------
    def messages(self, question: Query, sources: Sequence[Candidate], history: Sequence[Exchange] = ()) -> list[ChatTurn]:
        """The chat turns for ``question`` over ``sources`` (already cut to ``max_sources``)."""
        if not isinstance(question, Query):
            raise ConfigError(f"question must be a Query, got {type(question).__name__}")
        prepared = prepare_entries(
            question, sources, sees_images=bool(getattr(self.generator, "accepts_images", True)),
            allow_urls=self.allow_urls, max_image_pixels=self.max_image_pixels, who=self.name,
        )
        turns = [ChatTurn("system", (self.prompt.system,))]
        for exchange in list(history)[-self.history_turns :] if self.history_turns else []:
            turns += [ChatTurn("user", (str(exchange.question),)), ChatTurn("assistant", (str(exchange.answer),))]
        parts = self._source_parts(prepared.entries, sources)
        parts.append(self.prompt.question_header)
        if prepared.query_image is not None:
            parts.append(prepared.query_image)
        parts.append(clip_text(question.text, self.max_text_chars) if question.text else self.prompt.image_question_text)
        parts.append(self.prompt.task)
        turns.append(ChatTurn("user", tuple(merge_text(parts))))
        return turns

    def _source_parts(self, entries: list[PromptEntry], sources: Sequence[Candidate]) -> list[Any]:
        notes = {"missing": self.prompt.missing_image_text, "unseen": self.prompt.unseen_image_text}
        parts: list[str | Image.Image] = [self.prompt.sources_header.format(n=len(entries))]
        for k, (entry, source) in enumerate(zip(entries, sources), start=1):
            name, page = document_name(source), page_number(source)
            if name is not None and page is not None:
                parts.append(self.prompt.page_header.format(number=k, document=name, page=page))
            else:
                parts.append(self.prompt.source_header.format(number=k))
            if entry.image is not None:
                parts.append(entry.image)
            elif entry.image_note is not None:
                parts.append(notes[entry.image_note])
            if entry.text:
                parts.append(clip_text(entry.text, self.max_text_chars))
            elif entry.image is None:
                parts.append(self.prompt.empty_text)
        return parts

    # answering -------------------------------------------------------------------------------
    def _sources(self, question: Query, candidates: Sequence[Candidate]) -> list[Candidate]:
        """The sources shown (the first ``max_sources``), after checking the arguments."""
        if not isinstance(question, Query):
            raise ConfigError(f"question must be a Query, got {type(question).__name__}")
        if isinstance(candidates, (str, bytes)) or not all(isinstance(c, Candidate) for c in candidates):
            raise ConfigError("candidates must be a sequence of Candidate")
        return list(candidates)[: self.max_sources]

    def _finish(self, sources: list[Candidate], text: str, flag: str | None = None, error: str | None = None) -> Answer:
        cited, invalid = read_citations(text, len(sources))
        return Answer(text.strip(), sources, cited, invalid, flag, error)

    def _no_context(self) -> Answer:
        return Answer(self.prompt.no_context, [], flag=NO_CONTEXT)

    def answer(self, question: Query, candidates: Sequence[Candidate], history: Sequence[Exchange] = ()) -> Answer:
        """The answer to ``question`` from ``candidates`` (best first); see the module docstring."""
        sources = self._sources(question, candidates)
        if not sources:
            return self._no_context()
        call = call_generator(self.generator, self.messages(question, sources, history), self.timeout)
        return self._finish(sources, call.text or "", call.flag, call.error)

    async def aanswer(self, question: Query, candidates: Sequence[Candidate], history: Sequence[Exchange] = ()) -> Answer:
        """Async :meth:`answer` (native when the generator has ``agenerate``)."""
        sources = self._sources(question, candidates)
        if not sources:
            return self._no_context()
        turns = await in_daemon_thread(lambda: self.messages(question, sources, history))
        call = await acall_generator(self.generator, turns, self.timeout)
        return self._finish(sources, call.text or "", call.flag, call.error)

    def stream(self, question: Query, candidates: Sequence[Candidate], history: Sequence[Exchange] = ()) -> AnswerStream:
        """The answer as it is generated (the whole answer at once when the generator cannot stream)."""
        sources = self._sources(question, candidates)
        stream = getattr(self.generator, "stream", None)
        if not sources or not callable(stream):
            answer = self.answer(question, sources, history)
            return AnswerStream(iter([answer.text]), lambda _text, _error: answer)
        return self._streaming(sources, iter(stream(self.messages(question, sources, history))))

    async def astream(self, question: Query, candidates: Sequence[Candidate], history: Sequence[Exchange] = ()) -> AnswerStream:
        """Async :meth:`stream` (iterate it with ``async for``): the generator's native
        ``astream`` when it has one, else its ``stream`` read in a worker thread, else the whole
        answer at once (:meth:`aanswer`). The prompt (images encoded) is built off the event loop."""
        sources = self._sources(question, candidates)
        native = getattr(self.generator, "astream", None)
        sync = getattr(self.generator, "stream", None)
        if not sources or not (callable(native) or callable(sync)):
            answer = await self.aanswer(question, sources, history)
            return AnswerStream(iter([answer.text]), lambda _text, _error: answer)
        turns = await in_daemon_thread(lambda: self.messages(question, sources, history))
        return self._streaming(sources, native(turns) if callable(native) else iter(sync(turns)))  # type: ignore[misc]

    def _streaming(self, sources: list[Candidate], pieces: Iterator[str] | AsyncIterator[str]) -> AnswerStream:
        def finish(text: str, error: str | None) -> Answer:
            return self._finish(sources, text, FLAG_GENERATOR_ERROR if error else None, error)

        return AnswerStream(pieces, finish, self.timeout)


__all__ = [
    "NO_CONTEXT", "Answer", "AnswerPrompt", "AnswerStream", "Exchange", "MultimodalAnswerer", "document_name", "page_number",
    "read_citations", "source_label",
]
