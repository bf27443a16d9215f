"""Listwise reranking with a multimodal LLM: prompts, sliding windows, permutations, aggregation.

The core knows no framework. A *generator* turns chat turns (text and PIL images) into text; see
:mod:`mm_rag_components.rerank.generators` for a local transformers VLM and any LlamaIndex LLM.

How a ranking is made:

1. Windows of ``window_size`` candidates slide from the back of the list to the front by
   ``step``; the last window always starts at the head and is full (RankGPT's loop can stop
   before the head when ``n - window_size`` is not a multiple of ``step``; ours cannot).
2. Each window is shown as numbered candidates (``Candidate [3]: <image> <text>``) and the model's
   answer is read by the total parser :func:`~mm_rag_components.rerank.parse.parse_ranking`.
3. Optionally the list is ranked ``num_permutations`` times — the input order first, then seeded
   shuffles — and the rankings are aggregated with Borda counts to reduce position bias.

Bad output never loses a candidate: garbage, empty or truncated answers, hallucinated ids, a
generator exception or a timeout keep that window's order, and the window is flagged
(``parse_fallback``, ``partial_ranking``, ``generator_error``, ``timeout``) in the result.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
import math
import random
import threading
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any, Callable, Protocol, Sequence, Union, runtime_checkable

from ..errors import ConfigError, MediaError
from ..media import load_image
from ..types import Candidate, ImageSource, Query
from .listwise_prompts import COT_PROMPT, ListwisePrompt
from .parse import ParsedRanking, ParseStatus, parse_ranking

if TYPE_CHECKING:  # pragma: no cover
    from PIL import Image

logger = logging.getLogger(__name__)

#: Metadata keys written on reranked candidates / nodes.
LISTWISE_RANK = "listwise_rank"
LISTWISE_SCORE = "listwise_score"
LISTWISE_PARSE_STATUS = "listwise_parse_status"
LISTWISE_RATIONALE = "listwise_rationale"
LISTWISE_FLAG = "listwise_flag"
LISTWISE_KEYS = (LISTWISE_RANK, LISTWISE_SCORE, LISTWISE_PARSE_STATUS, LISTWISE_RATIONALE, LISTWISE_FLAG)

#: Window flags, and the per-candidate flag for an image that could not be loaded.
FLAG_TIMEOUT = "timeout"
FLAG_GENERATOR_ERROR = "generator_error"
FLAG_PARSE_FALLBACK = "parse_fallback"
FLAG_PARTIAL = "partial_ranking"
FLAG_IMAGE_ERROR = "image_error"

#: Default pixel budget for each image sent to the model (about 448 × 448).
DEFAULT_MAX_IMAGE_PIXELS = 448 * 448

Part = Union[str, "Image.Image"]
_STATUS_SEVERITY = {"json": 0, "arrows": 1, "digits": 2, "fallback": 3}


@dataclass(frozen=True)
class ChatTurn:
    """One chat message: a role (``system``/``user``/``assistant``) and text or image parts."""

    role: str
    parts: tuple[Part, ...]

    @property
    def text(self) -> str:
        """The text parts joined (images left out)."""
        return "\n".join(p for p in self.parts if isinstance(p, str))

    @property
    def images(self) -> list["Image.Image"]:
        return [p for p in self.parts if not isinstance(p, str)]


@runtime_checkable
class ListwiseGenerator(Protocol):
    """Anything that answers chat turns with text. ``agenerate`` (async) is optional."""

    def generate(self, turns: Sequence[ChatTurn]) -> str: ...


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


def plan_windows(n: int, window_size: int, step: int) -> list[tuple[int, int]]:
    """``(start, end)`` windows from the back of ``n`` items to the front, head always covered.

    The last window is ``(0, min(n, window_size))``, so the head is compared with the items that
    bubbled up from behind it even when the strides do not divide evenly.
    """
    if window_size < 2:
        raise ConfigError(f"window_size must be >= 2, got {window_size}")
    if not 1 <= step <= window_size:
        raise ConfigError(f"step must be between 1 and window_size ({window_size}), got {step}")
    if n < 2:
        return []
    windows: list[tuple[int, int]] = []
    end = n
    while True:
        start = max(0, end - window_size)
        if start == 0:
            windows.append((0, min(n, window_size)))
            return windows
        windows.append((start, end))
        end -= step


def borda_aggregate(rankings: Sequence[Sequence[int]], n: int) -> tuple[list[int], list[float]]:
    """Aggregate full rankings of ``range(n)`` by Borda count.

    Returns the aggregated order (ties broken by position in the first ranking) and each item's
    normalised score in [0, 1] (mean of ``(n - 1 - position) / (n - 1)`` over the rankings).
    """
    if not rankings:
        order = list(range(n))
        return order, [1.0 if n == 1 else 0.0] * n
    points = [0.0] * n
    for ranking in rankings:
        if sorted(ranking) != list(range(n)):
            raise ValueError("every ranking must be a permutation of range(n)")
        for position, index in enumerate(ranking):
            points[index] += n - 1 - position
    denominator = (n - 1) * len(rankings) if n > 1 else 1
    scores = [p / denominator if n > 1 else 1.0 for p in points]
    first_position = {index: pos for pos, index in enumerate(rankings[0])}
    order = sorted(range(n), key=lambda i: (-points[i], first_position[i]))
    return order, scores


def resize_to_budget(image: "Image.Image", max_pixels: int | None) -> "Image.Image":
    """``image`` scaled down (aspect kept) so that width × height ≤ ``max_pixels``."""
    if max_pixels is None:
        return image
    width, height = image.size
    if width * height <= max_pixels:
        return image
    from PIL import Image

    scale = math.sqrt(max_pixels / (width * height))
    size = (max(1, int(width * scale)), max(1, int(height * scale)))
    return image.resize(size, Image.Resampling.BICUBIC)


@dataclass(frozen=True)
class _Entry:
    """A candidate as shown in a prompt."""

    text: str | None
    image: "Image.Image | None"
    image_missing: bool


def build_messages(
    query_text: str | None,
    query_image: "Image.Image | None",
    entries: Sequence[_Entry],
    prompt: ListwisePrompt = COT_PROMPT,
    *,
    max_text_chars: int | None = 1000,
) -> list[ChatTurn]:
    """The chat turns for one window: system (if any) and one interleaved user turn."""
    n = len(entries)
    example = "[<best number>, ..., <worst number>]"
    arrows = "[<best number>] > ... > [<worst number>]"
    parts: list[Part] = [prompt.intro.format(n=n), prompt.query_header]
    if query_image is not None:
        parts.append(query_image)
    parts.append(_clip(query_text, max_text_chars) if query_text else prompt.image_query_text)
    for number, entry in enumerate(entries, start=1):
        parts.append(prompt.candidate_header.format(number=number))
        if entry.image is not None:
            parts.append(entry.image)
        elif entry.image_missing:
            parts.append(prompt.missing_image_text)
        if entry.text:
            parts.append(_clip(entry.text, max_text_chars))
        elif entry.image is None:
            parts.append(prompt.empty_text)
    parts.append(prompt.task.format(n=n, example=example, arrows=arrows))
    turns = [ChatTurn("system", (prompt.system,))] if prompt.system else []
    turns.append(ChatTurn("user", tuple(_merge_text(parts))))
    return turns


def _clip(text: str, limit: int | None) -> str:
    text = text.strip()
    if limit is not None and len(text) > limit:
        return text[: max(0, limit - 1)].rstrip() + "…"
    return text


def _merge_text(parts: Sequence[Part]) -> list[Part]:
    """Join neighbouring text parts with newlines (images stay separate parts)."""
    merged: list[Part] = []
    for part in parts:
        if isinstance(part, str) and merged and isinstance(merged[-1], str):
            merged[-1] = f"{merged[-1]}\n{part}"
        else:
            merged.append(part)
    return merged


def _default_image_of(candidate: Candidate) -> ImageSource | None:
    return candidate.image_source


class ListwiseRanker:
    """Rank candidates for a query with a listwise (chain-of-thought) multimodal LLM prompt.

    ``generator`` needs ``generate(turns) -> str`` and may offer ``async agenerate(turns)``.
    ``timeout`` (seconds) bounds each generator call: synchronously the call runs in a daemon
    worker thread that is abandoned on timeout (it cannot be killed; a local model keeps
    computing until it returns), asynchronously it is ``asyncio.wait_for``. ``image_of`` maps a
    candidate to its image source (default: ``candidate.image_source``).
    """

    def __init__(
        self,
        generator: ListwiseGenerator,
        *,
        prompt: ListwisePrompt = COT_PROMPT,
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
        if num_permutations < 1:
            raise ConfigError(f"num_permutations must be >= 1, got {num_permutations}")
        if timeout is not None and timeout <= 0:
            raise ConfigError(f"timeout must be positive seconds or None, got {timeout}")
        if max_image_pixels is not None and max_image_pixels < 1:
            raise ConfigError(f"max_image_pixels must be >= 1 or None, got {max_image_pixels}")
        if max_concurrency < 1:
            raise ConfigError(f"max_concurrency must be >= 1, got {max_concurrency}")
        self.generator = generator
        self.prompt = prompt
        self.window_size = window_size
        self.step = step
        self.num_permutations = num_permutations
        self.seed = seed
        self.max_image_pixels = max_image_pixels
        self.max_text_chars = max_text_chars
        self.max_rationale_chars = max_rationale_chars
        self.timeout = timeout
        self.max_concurrency = max_concurrency
        self.allow_urls = allow_urls
        self.keep_raw = keep_raw
        self.image_of = image_of or _default_image_of

    # ------------------------------------------------------------------ public API
    def rank(self, query: Query, candidates: Sequence[Candidate]) -> ListwiseResult:
        """Rank ``candidates`` for ``query`` (synchronous)."""
        query_image, entries, image_flags = self._prepare(query, candidates)
        passes = []
        for p, start_order in enumerate(self._start_orders(len(candidates))):
            passes.append(self._run_pass(p, start_order, query, query_image, entries))
        return self._combine(passes, image_flags)

    async def arank(self, query: Query, candidates: Sequence[Candidate]) -> ListwiseResult:
        """Rank ``candidates`` for ``query``; permutations run concurrently (``max_concurrency``)."""
        query_image, entries, image_flags = await asyncio.to_thread(self._prepare, query, candidates)
        semaphore = asyncio.Semaphore(self.max_concurrency)
        jobs = [
            self._arun_pass(p, order, query, query_image, entries, semaphore)
            for p, order in enumerate(self._start_orders(len(candidates)))
        ]
        passes = list(await asyncio.gather(*jobs))
        return self._combine(passes, image_flags)

    def rerank(self, query: Query, candidates: Sequence[Candidate]) -> list[Candidate]:
        """Copies of ``candidates``, best first, with ``listwise_*`` metadata."""
        return self.annotate(candidates, self.rank(query, candidates))

    async def arerank(self, query: Query, candidates: Sequence[Candidate]) -> list[Candidate]:
        """Async :meth:`rerank`."""
        return self.annotate(candidates, await self.arank(query, candidates))

    def annotate(self, candidates: Sequence[Candidate], result: ListwiseResult) -> list[Candidate]:
        """Candidates reordered by ``result``, each a copy carrying :func:`result_metadata`."""
        return [
            replace(candidates[i], metadata={**candidates[i].metadata, **self.result_metadata(result, i)})
            for i in result.order
        ]

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
            metadata[LISTWISE_RATIONALE] = _clip(rationale, self.max_rationale_chars)
        return metadata

    # ------------------------------------------------------------------ preparation
    def _start_orders(self, n: int) -> list[list[int]]:
        rng = random.Random(self.seed)
        orders = [list(range(n))]
        for _ in range(self.num_permutations - 1):
            shuffled = list(range(n))
            rng.shuffle(shuffled)
            orders.append(shuffled)
        return orders

    def _prepare(
        self, query: Query, candidates: Sequence[Candidate]
    ) -> tuple["Image.Image | None", list[_Entry], list[str | None]]:
        if not isinstance(query, Query):
            raise ConfigError(f"query must be a Query, got {type(query).__name__}")
        query_image = None
        if query.image is not None:
            query_image = resize_to_budget(
                load_image(query.image, allow_urls=self.allow_urls), self.max_image_pixels
            )
        entries: list[_Entry] = []
        image_flags: list[str | None] = []
        for candidate in candidates:
            source = self.image_of(candidate)
            image, missing = None, False
            if source is not None:
                try:
                    image = resize_to_budget(load_image(source, allow_urls=self.allow_urls), self.max_image_pixels)
                except MediaError as exc:
                    logger.warning("listwise: candidate %s image unusable, ranked on text: %s", candidate.id, exc)
                    missing = True
            elif candidate.modality == "image":
                logger.warning("listwise: image candidate %s has no image source", candidate.id)
                missing = True
            entries.append(_Entry(candidate.text, image, missing))
            image_flags.append(FLAG_IMAGE_ERROR if missing else None)
        return query_image, entries, image_flags

    # ------------------------------------------------------------------ passes
    def _run_pass(
        self, permutation: int, order: list[int], query: Query, query_image: Any, entries: list[_Entry]
    ) -> tuple[list[int], list[WindowOutcome]]:
        outcomes = []
        for start, end in plan_windows(len(order), self.window_size, self.step):
            members = order[start:end]
            turns = self._turns(query, query_image, entries, members)
            raw, flag, error = self._call(turns)
            outcome = self._outcome(permutation, start, end, members, raw, flag, error)
            order[start:end] = outcome.order
            outcomes.append(outcome)
        return order, outcomes

    async def _arun_pass(
        self,
        permutation: int,
        order: list[int],
        query: Query,
        query_image: Any,
        entries: list[_Entry],
        semaphore: asyncio.Semaphore,
    ) -> tuple[list[int], list[WindowOutcome]]:
        outcomes = []
        for start, end in plan_windows(len(order), self.window_size, self.step):
            members = order[start:end]
            turns = self._turns(query, query_image, entries, members)
            async with semaphore:
                raw, flag, error = await self._acall(turns)
            outcome = self._outcome(permutation, start, end, members, raw, flag, error)
            order[start:end] = outcome.order
            outcomes.append(outcome)
        return order, outcomes

    def _turns(self, query: Query, query_image: Any, entries: list[_Entry], members: list[int]) -> list[ChatTurn]:
        return build_messages(
            query.text, query_image, [entries[i] for i in members], self.prompt, max_text_chars=self.max_text_chars
        )

    def _outcome(
        self,
        permutation: int,
        start: int,
        end: int,
        members: list[int],
        raw: str | None,
        flag: str | None,
        error: str | None,
    ) -> WindowOutcome:
        if flag is not None:  # timeout or generator error: keep the window as it is
            parsed = ParsedRanking(list(range(len(members))), "fallback", "")
        else:
            parsed = parse_ranking(raw, len(members))
            if parsed.status == "fallback":
                flag = FLAG_PARSE_FALLBACK
            elif not parsed.complete or parsed.dropped:
                flag = FLAG_PARTIAL
        if flag is not None:
            logger.warning(
                "listwise: window %d:%d of pass %d flagged %s (status %s)%s",
                start, end, permutation, flag, parsed.status, f": {error}" if error else "",
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
            raw=raw if self.keep_raw else None,
            error=error,
        )

    # ------------------------------------------------------------------ generator calls
    def _call(self, turns: list[ChatTurn]) -> tuple[str | None, str | None, str | None]:
        """``(text, flag, error)`` of one generator call, with the sync deadline."""
        if self.timeout is None:
            try:
                return _as_text(self.generator.generate(turns)), None, None
            except Exception as exc:  # noqa: BLE001 - any backend failure keeps the window
                return None, FLAG_GENERATOR_ERROR, f"{type(exc).__name__}: {exc}"
        box: dict[str, Any] = {}

        def work() -> None:
            try:
                box["text"] = self.generator.generate(turns)
            except BaseException as exc:  # noqa: BLE001 - reported to the caller thread
                box["error"] = exc

        worker = threading.Thread(target=work, name="listwise-generate", daemon=True)
        worker.start()
        worker.join(self.timeout)
        if worker.is_alive():
            return None, FLAG_TIMEOUT, f"no answer within {self.timeout} s"
        if "error" in box:
            exc = box["error"]
            return None, FLAG_GENERATOR_ERROR, f"{type(exc).__name__}: {exc}"
        return _as_text(box.get("text")), None, None

    async def _acall(self, turns: list[ChatTurn]) -> tuple[str | None, str | None, str | None]:
        agenerate = getattr(self.generator, "agenerate", None)
        if agenerate is not None and inspect.iscoroutinefunction(agenerate):
            call = agenerate(turns)
        else:
            call = asyncio.to_thread(self.generator.generate, turns)
        try:
            text = await asyncio.wait_for(call, self.timeout)
        except asyncio.TimeoutError:
            return None, FLAG_TIMEOUT, f"no answer within {self.timeout} s"
        except Exception as exc:  # noqa: BLE001 - any backend failure keeps the window
            return None, FLAG_GENERATOR_ERROR, f"{type(exc).__name__}: {exc}"
        return _as_text(text), None, None

    # ------------------------------------------------------------------ aggregation
    def _combine(
        self, passes: list[tuple[list[int], list[WindowOutcome]]], image_flags: list[str | None]
    ) -> ListwiseResult:
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


def _as_text(value: object) -> str:
    """Generator output as text (``None`` → empty; objects with ``.text``/``.content`` unwrapped)."""
    if value is None:
        return ""
    if isinstance(value, str):
        return value
    for attribute in ("text", "content"):
        inner = getattr(value, attribute, None)
        if isinstance(inner, str):
            return inner
    return str(value)


__all__ = [
    "ChatTurn",
    "DEFAULT_MAX_IMAGE_PIXELS",
    "FLAG_GENERATOR_ERROR",
    "FLAG_IMAGE_ERROR",
    "FLAG_PARSE_FALLBACK",
    "FLAG_PARTIAL",
    "FLAG_TIMEOUT",
    "LISTWISE_FLAG",
    "LISTWISE_KEYS",
    "LISTWISE_PARSE_STATUS",
    "LISTWISE_RANK",
    "LISTWISE_RATIONALE",
    "LISTWISE_SCORE",
    "ListwiseGenerator",
    "ListwiseRanker",
    "ListwiseResult",
    "WindowOutcome",
    "borda_aggregate",
    "build_messages",
    "plan_windows",
    "resize_to_budget",
]
