"""Listwise reranking with a multimodal LLM: one ranking per window, windows and permutations
aggregated.

The core knows no framework. A *generator* (:mod:`.chat`) turns chat turns into text; the prompt
comes from :mod:`.listwise_prompts`, the window and Borda arithmetic from :mod:`.windows`, and
the answer is read by the total parser :func:`~mm_rag_components.rerank.parse.parse_ranking`.

How a ranking is made:

1. Windows of ``window_size`` candidates slide from the back of the list to the front by
   ``step``; the last window always starts at the head and is full.
2. Each window is shown as numbered candidates (``Candidate [3]: <image> <text>``); the model's
   answer is parsed into a permutation of the window.
3. Optionally the list is ranked ``num_permutations`` times — the input order first, then seeded
   shuffles — and the rankings are aggregated with Borda counts to reduce position bias.

Bad output never loses a candidate: garbage, empty or truncated answers, hallucinated ids, a
generator exception, an answer whose text cannot be read, or a timeout keep that window's order,
and the window is flagged (``parse_fallback``, ``partial_ranking``, ``generator_error``,
``timeout``). A model that cannot load is not a window's problem: its ``ModelError`` is raised.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from ..backed import Backed
from ..errors import ConfigError
from ..generation.base import ChatTurn, Generator
from ..generation.calls import FLAG_GENERATOR_ERROR, FLAG_TIMEOUT, GeneratorCall, acall_generator, call_generator, in_daemon_thread
from ..types import LISTWISE_FLAG, LISTWISE_PARSE_STATUS, LISTWISE_RANK, LISTWISE_RATIONALE, LISTWISE_SCORE
from ..types import Candidate, ImageSource, Query
from ..validate import boolean, integer, no_unknown, number, positive_int
from .base import RerankResult, check_query, cut, reranked_copy
from .listwise_prompts import (
    COT_PROMPT,
    DEFAULT_MAX_IMAGE_PIXELS,
    PROMPTS,
    ListwisePrompt,
    FLAG_IMAGE_ERROR,
    FLAG_IMAGE_NOT_SHOWN,
    PreparedPrompt,
    PromptEntry,
    build_messages,
    clip_text,
    get_prompt,
    prepare_entries,
)
from .parse import ParsedRanking, ParseStatus, parse_ranking
from .windows import borda_aggregate, plan_windows, start_orders

logger = logging.getLogger(__name__)

#: Window flags (``timeout`` and ``generator_error`` come from :mod:`.chat`), and the
#: per-candidate flags for images that could not be shown.
FLAG_PARSE_FALLBACK = "parse_fallback"
FLAG_PARTIAL = "partial_ranking"

#: The most permutations ranked (each is a full pass of model calls).
MAX_PERMUTATIONS = 64
#: The longest per-call timeout accepted (a week): larger values overflow the platform's timers.
MAX_TIMEOUT = 7 * 24 * 3600.0
_STATUS_SEVERITY = {"json": 0, "arrows": 1, "digits": 2, "fallback": 3}
#: Options of :meth:`ListwiseRanker.__init__` (the rest of :meth:`ListwiseRanker.create`'s
#: keywords go to the generator).
_RANKER_OPTIONS = (
    "top_n", "prompt", "window_size", "step", "num_permutations", "seed", "max_image_pixels",
    "max_text_chars", "max_rationale_chars", "timeout", "max_concurrency", "allow_urls", "keep_raw", "image_of",
)


@dataclass
class WindowOutcome:
    """What happened in one window of one pass.

    ``members`` are input indices in the order shown to the model; ``order`` the same indices,
    best first, after parsing. ``flag`` is ``None`` for a clean, complete answer.
    """

    permutation: int
    start: int
    end: int
    members: list[int]
    order: list[int]
    status: ParseStatus
    rationale: str = ""
    flag: str | None = None
    raw: str | None = None
    error: str | None = None


@dataclass
class ListwiseResult:
    """A listwise ranking of ``n`` input candidates.

    ``order`` lists input indices, best first. Per input index: ``scores`` (Borda score in
    [0, 1], 1 = ranked first in every pass), ``statuses`` (worst parse status among the windows
    that saw it, ``None`` when no window was needed), ``flags`` (comma-joined, ``None`` if clean)
    and ``rationales`` (reasoning of the last window that placed it in the first pass).
    """

    order: list[int]
    scores: list[float]
    statuses: list[ParseStatus | None]
    flags: list[str | None]
    rationales: list[str | None]
    windows: list[WindowOutcome] = field(default_factory=list)

    @property
    def ranks(self) -> list[int]:
        """1-based final rank of each input index."""
        ranks = [0] * len(self.order)
        for position, index in enumerate(self.order):
            ranks[index] = position + 1
        return ranks


def _default_image_of(candidate: Candidate) -> ImageSource | None:
    return candidate.image_source


class ListwiseRanker(Backed):
    """Rank candidates for a query with a listwise (chain-of-thought) multimodal LLM prompt.

    ``generator`` follows :class:`~mm_rag_components.generation.base.Generator`; build one
    from a local model with :meth:`create`. ``timeout`` (seconds, finite) bounds each generator
    call: a timed-out call is abandoned (its daemon thread keeps neither the process nor the
    event loop waiting) and told to stop when the generator takes a ``stop_event``.
    ``image_of`` maps a candidate to its image source (default: ``candidate.image_source``).
    """

    BACKEND = "generator"

    def __init__(
        self,
        generator: Generator,
        *,
        top_n: int | None = None,
        prompt: str | ListwisePrompt = COT_PROMPT,
        window_size: int = 10,
        step: int = 5,
        num_permutations: int = 1,
        seed: int = 0,
        max_image_pixels: int | None = DEFAULT_MAX_IMAGE_PIXELS,
        max_text_chars: int | None = 1000,
        max_rationale_chars: int | None = 2000,
        timeout: float | None = None,
        max_concurrency: int = 4,
        allow_urls: bool = False,
        keep_raw: bool = False,
        image_of: Callable[[Candidate], ImageSource | None] | None = None,
    ) -> None:
        if not callable(getattr(generator, "generate", None)):
            raise ConfigError("generator must have a generate(turns) -> str method")
        plan_windows(0, window_size, step)  # validates window_size and step
        self.generator = generator
        self.top_n = positive_int("top_n", top_n, optional=True)
        self.prompt = get_prompt(prompt)
        self.window_size = window_size
        self.step = step
        self.num_permutations = integer("num_permutations", num_permutations, minimum=1)
        if self.num_permutations > MAX_PERMUTATIONS:
            raise ConfigError(f"num_permutations must be <= {MAX_PERMUTATIONS}, got {num_permutations}")
        self.seed = integer("seed", seed)
        self.max_image_pixels = positive_int("max_image_pixels", max_image_pixels, optional=True)
        self.max_text_chars = positive_int("max_text_chars", max_text_chars, optional=True)
        self.max_rationale_chars = positive_int("max_rationale_chars", max_rationale_chars, optional=True)
        self.timeout = number("timeout", timeout, minimum=0.0, exclusive_minimum=True, maximum=MAX_TIMEOUT, optional=True)
        self.max_concurrency = positive_int("max_concurrency", max_concurrency)
        self.allow_urls = boolean("allow_urls", allow_urls)
        self.keep_raw = boolean("keep_raw", keep_raw)
        if image_of is not None and not callable(image_of):
            raise ConfigError("image_of must be a function of a candidate, or None")
        self.image_of = image_of or _default_image_of
        
    @classmethod
    def create(
        cls,
        model: str | Path | None = None,
        *,
        generator: Generator | None = None,
        reranker: ListwiseRanker | None = None,
        **options: Any,
    ) -> ListwiseRanker:
        """The one place a listwise reranker is built from keywords (every adapter uses it).

        Give exactly one of ``reranker`` (returned as is), ``generator``, or ``model`` (a local
        model name or directory for :class:`~mm_rag_components.generation.transformers.TransformersGenerator`,
        which takes the options the ranker does not, e.g. ``max_new_tokens``, ``device``).
        """
        if sum(x is not None for x in (model, generator, reranker)) != 1:
            raise ConfigError("give exactly one of model (a name or directory), generator/llm or reranker")
        if reranker is not None:
            no_unknown("with reranker=, no other option applies", options)
            if not isinstance(reranker, ListwiseRanker):
                raise ConfigError(f"reranker must be a ListwiseRanker, got {type(reranker).__name__}")
            return reranker
        from ..generation.transformers import generator_or_local

        own = {k: options.pop(k) for k in _RANKER_OPTIONS if k in options}
        return cls(generator_or_local(model, generator, options, "ListwiseRanker"), **own)

    def config(self) -> dict[str, Any]:
        if self.image_of is not _default_image_of:
            raise ConfigError("a ListwiseRanker with a custom image_of function cannot be saved")
        prompt = self.prompt.name if PROMPTS.get(self.prompt.name) == self.prompt else self.prompt
        return {
            "generator": self.generator, "top_n": self.top_n, "prompt": prompt,
            "window_size": self.window_size, "step": self.step, "num_permutations": self.num_permutations,
            "seed": self.seed, "max_image_pixels": self.max_image_pixels, "max_text_chars": self.max_text_chars,
            "max_rationale_chars": self.max_rationale_chars, "timeout": self.timeout,
            "max_concurrency": self.max_concurrency, "allow_urls": self.allow_urls, "keep_raw": self.keep_raw,
        }

    # ------------------------------------------------------------------ public API
    def rank(self, query: Query, candidates: Sequence[Candidate]) -> ListwiseResult:
        """The full ranking of ``candidates`` for ``query`` (synchronous)."""
        query, items = check_query(query, candidates)
        query_image, entries, image_flags = self._prepare(query, items)
        passes = [
            self._run_pass(p, order, query, query_image, entries)
            for p, order in enumerate(start_orders(len(items), self.num_permutations, self.seed))
        ]
        return self._combine(passes, image_flags)

    async def arank(self, query: Query, candidates: Sequence[Candidate]) -> ListwiseResult:
        """Async :meth:`rank`; permutations run concurrently (at most ``max_concurrency`` calls)."""
        query, items = check_query(query, candidates)
        query_image, entries, image_flags = await in_daemon_thread(lambda: self._prepare(query, items))
        semaphore = asyncio.Semaphore(self.max_concurrency)
        jobs = [
            self._arun_pass(p, order, query, query_image, entries, semaphore)
            for p, order in enumerate(start_orders(len(items), self.num_permutations, self.seed))
        ]
        passes = list(await asyncio.gather(*jobs))
        return self._combine(passes, image_flags)

    def rerank(self, query: Query, candidates: Sequence[Candidate]) -> RerankResult:
        """Copies of ``candidates``, best first (cut to ``top_n``), score = Borda score, with
        ``listwise_*`` metadata."""
        return self.to_result(candidates, self.rank(query, candidates))

    async def arerank(self, query: Query, candidates: Sequence[Candidate]) -> RerankResult:
        """Async :meth:`rerank`."""
        return self.to_result(candidates, await self.arank(query, candidates))

    def to_result(self, candidates: Sequence[Candidate], result: ListwiseResult) -> RerankResult:
        order = cut(result.order, self.top_n)
        ranked = [reranked_copy(candidates[i], result.scores[i], self.result_metadata(result, i)) for i in order]
        return RerankResult(ranked, order, len(candidates), details=result)

    def result_metadata(self, result: ListwiseResult, index: int) -> dict[str, Any]:
        """The ``listwise_*`` metadata for input ``index`` (status omitted when no call was made)."""
        metadata: dict[str, Any] = {
            LISTWISE_RANK: result.ranks[index],
            LISTWISE_SCORE: result.scores[index],
            LISTWISE_FLAG: result.flags[index],
        }
        if result.statuses[index] is not None:
            metadata[LISTWISE_PARSE_STATUS] = result.statuses[index]
        rationale = result.rationales[index]
        if rationale:
            metadata[LISTWISE_RATIONALE] = clip_text(rationale, self.max_rationale_chars)
        return metadata

    # ------------------------------------------------------------------ preparation
    def _prepare(self, query: Query, candidates: list[Candidate]) -> PreparedPrompt:
        return prepare_entries(
            query, candidates, sees_images=bool(getattr(self.generator, "accepts_images", True)),
            allow_urls=self.allow_urls, max_image_pixels=self.max_image_pixels, image_of=self.image_of, who=self.name,
        )

    # ------------------------------------------------------------------ passes
    def _run_pass(
        self, permutation: int, order: list[int], query: Query, query_image: Any, entries: list[PromptEntry]
    ) -> tuple[list[int], list[WindowOutcome]]:
        outcomes = []
        for start, end in plan_windows(len(order), self.window_size, self.step):
            members = order[start:end]
            call = call_generator(self.generator, self._turns(query, query_image, entries, members), self.timeout)
            outcome = self._outcome(permutation, start, end, members, call)
            order[start:end] = outcome.order
            outcomes.append(outcome)
        return order, outcomes

    async def _arun_pass(
        self,
        permutation: int,
        order: list[int],
        query: Query,
        query_image: Any,
        entries: list[PromptEntry],
        semaphore: asyncio.Semaphore,
    ) -> tuple[list[int], list[WindowOutcome]]:
        outcomes = []
        for start, end in plan_windows(len(order), self.window_size, self.step):
            members = order[start:end]
            turns = self._turns(query, query_image, entries, members)
            async with semaphore:
                call = await acall_generator(self.generator, turns, self.timeout)
            outcome = self._outcome(permutation, start, end, members, call)
            order[start:end] = outcome.order
            outcomes.append(outcome)
        return order, outcomes

    def _turns(self, query: Query, query_image: Any, entries: list[PromptEntry], members: list[int]) -> list[ChatTurn]:
        return build_messages(
            query.text, query_image, [entries[i] for i in members], self.prompt, max_text_chars=self.max_text_chars
        )

    def _outcome(self, permutation: int, start: int, end: int, members: list[int], call: GeneratorCall) -> WindowOutcome:
        flag = call.flag
        if flag is not None:  # timeout or generator error: keep the window as it is
            parsed = ParsedRanking(list(range(len(members))), "fallback", "")
        else:
            parsed = parse_ranking(call.text, len(members))
            if parsed.status == "fallback":
                flag = FLAG_PARSE_FALLBACK
            elif not parsed.complete or parsed.dropped:
                flag = FLAG_PARTIAL
        if flag is not None:
            logger.warning(
                "listwise: window %d:%d of pass %d flagged %s (status %s)%s",
                start, end, permutation, flag, parsed.status, f": {call.error}" if call.error else "",
            )
        return WindowOutcome(
            permutation=permutation,
            start=start,
            end=end,
            members=list(members),
            order=[members[i] for i in parsed.order],
            status=parsed.status,
            rationale=parsed.rationale,
            flag=flag,
            raw=call.text if self.keep_raw else None,
            error=call.error,
        )

    # ------------------------------------------------------------------ aggregation
    def _combine(self, passes: list[tuple[list[int], list[WindowOutcome]]], image_flags: list[str | None]) -> ListwiseResult:
        n = len(image_flags)
        order, scores = borda_aggregate([ranking for ranking, _ in passes], n)
        statuses: list[ParseStatus | None] = [None] * n
        flags: list[list[str]] = [[f] if f else [] for f in image_flags]
        rationales: list[str | None] = [None] * n
        windows = [w for _, outcomes in passes for w in outcomes]
        for window in windows:
            for index in window.members:
                current = statuses[index]
                if current is None or _STATUS_SEVERITY[window.status] > _STATUS_SEVERITY[current]:
                    statuses[index] = window.status
                if window.flag and window.flag not in flags[index]:
                    flags[index].append(window.flag)
                if window.permutation == 0 and window.rationale:
                    rationales[index] = window.rationale
        return ListwiseResult(
            order=order,
            scores=scores,
            statuses=statuses,
            flags=[",".join(f) if f else None for f in flags],
            rationales=rationales,
            windows=windows,
        )


__all__ = [
    "FLAG_GENERATOR_ERROR",
    "FLAG_IMAGE_ERROR",
    "FLAG_IMAGE_NOT_SHOWN",
    "FLAG_PARSE_FALLBACK",
    "FLAG_PARTIAL",
    "FLAG_TIMEOUT",
    "ListwiseRanker",
    "ListwiseResult",
    "WindowOutcome",
]
