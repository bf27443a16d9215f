"""The framework-free listwise ranker: windows, permutations, bad generator output, images, async."""

from __future__ import annotations

import asyncio
import io
import json
import re
import threading

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from PIL import Image

from mm_rag_components.errors import ConfigError
from mm_rag_components.generation.base import ChatTurn
from mm_rag_components.rerank.listwise import ListwiseRanker
from mm_rag_components.rerank.listwise_prompts import DIRECT_PROMPT, resize_to_budget
from mm_rag_components.rerank.windows import borda_aggregate, plan_windows
from mm_rag_components.types import LISTWISE_FLAG, LISTWISE_PARSE_STATUS, LISTWISE_RANK, LISTWISE_RATIONALE, Candidate, Query

_CANDIDATE = re.compile(r"Candidate \[(\d+)\]:\n(?:\(image unavailable\)\n)?(item-\d+)")


def shown_items(turns: list[ChatTurn]) -> list[str]:
    """The candidate texts in the order the prompt numbers them (asserting 1..k numbering)."""
    found = _CANDIDATE.findall(turns[-1].text)
    assert [int(k) for k, _ in found] == list(range(1, len(found) + 1))
    return [item for _, item in found]


class Oracle:
    """Ranks the shown candidates by a hidden relevance (higher first), in JSON after reasoning."""

    def __init__(self, relevance: dict[str, float]) -> None:
        self.relevance = relevance
        self.calls: list[list[str]] = []

    def generate(self, turns: list[ChatTurn]) -> str:
        items = shown_items(turns)
        self.calls.append(items)
        ranked = sorted(range(len(items)), key=lambda i: -self.relevance[items[i]])
        return "The query needs X.\n" + json.dumps({"ranking": [i + 1 for i in ranked]})


class Scripted:
    """Returns scripted answers in turn (an exception instance is raised)."""

    def __init__(self, *answers: object) -> None:
        self.answers = list(answers)
        self.turns: list[list[ChatTurn]] = []

    def generate(self, turns: list[ChatTurn]) -> str:
        self.turns.append(turns)
        answer = self.answers[min(len(self.turns) - 1, len(self.answers) - 1)]
        if isinstance(answer, BaseException):
            raise answer
        return answer  # type: ignore[return-value]


def items(n: int) -> list[Candidate]:
    return [Candidate(id=f"c{i}", modality="text", text=f"item-{i}") for i in range(n)]


QUERY = Query(text="a red bicycle")


# ---------------------------------------------------------------- windows
@pytest.mark.parametrize(
    "n, size, step, expected",
    [
        (0, 4, 2, []),
        (1, 4, 2, []),
        (3, 4, 2, [(0, 3)]),
        (4, 4, 2, [(0, 4)]),
        (5, 4, 2, [(1, 5), (0, 4)]),
        (25, 20, 10, [(5, 25), (0, 20)]),  # RankGPT's loop stops here without ranking the head
        (11, 10, 10, [(1, 11), (0, 10)]),  # the head window is full, not a lone item
        (10, 4, 4, [(6, 10), (2, 6), (0, 4)]),
        (7, 3, 1, [(4, 7), (3, 6), (2, 5), (1, 4), (0, 3)]),
    ],
)
def test_plan_windows_edge_cases(n: int, size: int, step: int, expected: list[tuple[int, int]]) -> None:
    assert plan_windows(n, size, step) == expected


@settings(max_examples=300, deadline=None)
@given(n=st.integers(0, 80), size=st.integers(2, 20), data=st.data())
def test_windows_cover_everything_and_end_at_the_head(n: int, size: int, data: st.DataObject) -> None:
    step = data.draw(st.integers(1, size))
    windows = plan_windows(n, size, step)
    covered = {i for start, end in windows for i in range(start, end)}
    assert covered == (set(range(n)) if n >= 2 else set())
    if n >= 2:
        assert windows[0][1] == n  # starts at the back
        assert windows[-1] == (0, min(n, size))  # ends on a full head window
        assert all(end - start == min(n, size) for start, end in windows[-1:])
        assert all(2 <= end - start <= size for start, end in windows)


@pytest.mark.parametrize("size, step", [(1, 1), (4, 0), (4, 5)])
def test_invalid_windows_are_config_errors(size: int, step: int) -> None:
    with pytest.raises(ConfigError):
        plan_windows(10, size, step)
    with pytest.raises(ConfigError):
        ListwiseRanker(Scripted(""), window_size=size, step=step)


@settings(max_examples=60, deadline=None)
@given(n=st.integers(2, 30), size=st.integers(2, 8), data=st.data())
def test_sliding_windows_bring_the_true_top_to_the_head(n: int, size: int, data: st.DataObject) -> None:
    step = data.draw(st.integers(1, size - 1)) if size > 2 else 1
    relevance_order = data.draw(st.permutations(list(range(n))))
    relevance = {f"item-{i}": float(-rank) for rank, i in enumerate(relevance_order)}
    oracle = Oracle(relevance)
    result = ListwiseRanker(oracle, window_size=size, step=step).rank(QUERY, items(n))
    head = min(n, size - step)  # what bubbling back to front guarantees
    assert result.order[:head] == relevance_order[:head]
    assert sorted(result.order) == list(range(n))
    assert len(oracle.calls) == len(plan_windows(n, size, step))


# ---------------------------------------------------------------- bad generator output
class Boom(RuntimeError):
    pass


@pytest.mark.parametrize(
    "answer, status, flag",
    [
        ("", "fallback", "parse_fallback"),
        ("no idea, sorry", "fallback", "parse_fallback"),
        ('{"ranking": [42, 17]}', "fallback", "parse_fallback"),
        (Boom("backend down"), "fallback", "generator_error"),
        (None, "fallback", "parse_fallback"),
    ],
)
def test_bad_output_keeps_the_window_order_and_flags_it(answer: object, status: str, flag: str) -> None:
    ranker = ListwiseRanker(Scripted(answer), window_size=4, step=2)
    candidates = items(6)
    result = ranker.rank(QUERY, candidates)
    assert result.order == list(range(6))
    assert result.statuses == [status] * 6
    assert all(f == flag for f in result.flags)
    reranked = ranker.rerank(QUERY, candidates)
    assert [c.id for c in reranked] == [c.id for c in candidates]
    assert reranked[0].metadata[LISTWISE_FLAG] == flag
    if isinstance(answer, Boom):
        assert all("backend down" in (w.error or "") for w in result.windows)


def test_partial_and_truncated_answers_are_flagged_but_used() -> None:
    ranker = ListwiseRanker(Scripted('Reasoning here.\n{"ranking": [3, 1'), window_size=4, step=2)
    result = ranker.rank(QUERY, items(3))
    assert result.order == [2, 0, 1]
    assert result.statuses == ["digits"] * 3
    assert result.flags == ["partial_ranking"] * 3
    assert result.rationales == ["Reasoning here."] * 3


def test_one_bad_window_does_not_spoil_the_others() -> None:
    # window (2, 6) answers well, the head window (0, 4) fails
    generator = Scripted('{"ranking": [4, 3, 2, 1]}', Boom("flaky"))
    result = ListwiseRanker(generator, window_size=4, step=2).rank(QUERY, items(6))
    assert result.order == [0, 1, 5, 4, 3, 2]  # back window reversed, head window kept as it was
    assert result.flags[5] == "generator_error"  # it sat in the failed head window
    assert result.flags[2] is None and result.statuses[2] == "json"


def test_sync_timeout_is_flagged_and_nothing_is_lost() -> None:
    release = threading.Event()

    class Stuck:
        def generate(self, turns: list[ChatTurn]) -> str:
            release.wait(30)
            return '{"ranking": [2, 1]}'

    try:
        result = ListwiseRanker(Stuck(), window_size=3, step=1, timeout=0.05).rank(QUERY, items(3))
    finally:
        release.set()
    assert result.order == [0, 1, 2]
    assert result.flags == ["timeout"] * 3


def test_generator_must_have_generate() -> None:
    with pytest.raises(ConfigError):
        ListwiseRanker(object())  # type: ignore[arg-type]
    with pytest.raises(ConfigError):
        ListwiseRanker(Scripted(""), num_permutations=0)
    with pytest.raises(ConfigError):
        ListwiseRanker(Scripted(""), timeout=0)


# ---------------------------------------------------------------- permutations and Borda
def test_borda_aggregate() -> None:
    order, scores = borda_aggregate([[0, 1, 2], [1, 0, 2], [1, 2, 0]], 3)
    assert order == [1, 0, 2]
    assert scores == pytest.approx([1 / 2, 5 / 6, 1 / 6])
    # a tie (0 and 1 both 3 points) goes to the first ranking's order
    assert borda_aggregate([[0, 1], [1, 0]], 2)[0] == [0, 1]
    with pytest.raises(ValueError):
        borda_aggregate([[0, 0]], 2)


class PositionBiased:
    """Always prefers whatever is shown first: the bias that permutations should expose."""

    def __init__(self) -> None:
        self.shown: list[list[str]] = []

    def generate(self, turns: list[ChatTurn]) -> str:
        shown = shown_items(turns)
        self.shown.append(shown)
        return json.dumps({"ranking": list(range(1, len(shown) + 1))})


def test_permutations_are_seeded_shuffles_aggregated_by_borda() -> None:
    generator = PositionBiased()
    ranker = ListwiseRanker(generator, window_size=6, step=3, num_permutations=4, seed=7)
    result = ranker.rank(QUERY, items(6))
    assert generator.shown[0] == [f"item-{i}" for i in range(6)]  # the first pass is the input order
    assert len({tuple(s) for s in generator.shown}) > 1  # the others are shuffled
    assert {w.permutation for w in result.windows} == {0, 1, 2, 3}
    # a purely position-biased judge no longer decides the order on its own
    expected_order, expected_scores = borda_aggregate(
        [[int(s.split("-")[1]) for s in shown] for shown in generator.shown], 6
    )
    assert result.order == expected_order
    assert result.scores == pytest.approx(expected_scores)
    again = ListwiseRanker(PositionBiased(), window_size=6, step=3, num_permutations=4, seed=7).rank(QUERY, items(6))
    assert again.order == result.order
    other = PositionBiased()
    ListwiseRanker(other, window_size=6, step=3, num_permutations=4, seed=8).rank(QUERY, items(6))
    assert other.shown != generator.shown


def test_a_consistent_judge_wins_over_any_shuffle() -> None:
    relevance = {f"item-{i}": float(i) for i in range(7)}
    result = ListwiseRanker(Oracle(relevance), window_size=7, step=3, num_permutations=3, seed=1).rank(QUERY, items(7))
    assert result.order == [6, 5, 4, 3, 2, 1, 0]
    assert result.scores[6] == 1.0 and result.scores[0] == 0.0


# ---------------------------------------------------------------- prompts and images
def _png(size: tuple[int, int], color: tuple[int, int, int]) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", size, color).save(buffer, format="PNG")
    return buffer.getvalue()


def test_resize_to_budget_keeps_aspect() -> None:
    image = Image.new("RGB", (400, 100))
    small = resize_to_budget(image, 10_000)
    assert small.size[0] * small.size[1] <= 10_000
    assert abs(small.size[0] / small.size[1] - 4.0) < 0.1
    assert resize_to_budget(image, None) is image
    assert resize_to_budget(image, 40_000) is image


def test_prompt_interleaves_numbered_candidates_with_resized_images(tmp_path) -> None:
    path = tmp_path / "big.png"
    path.write_bytes(_png((640, 480), (255, 0, 0)))
    candidates = [
        Candidate(id="a", modality="image", image_path=str(path), text="item-0"),
        Candidate(id="b", modality="text", text="item-1"),
        Candidate(id="c", modality="image", image=_png((300, 300), (0, 0, 255))),
        Candidate(id="d", modality="image", image=b"not an image", text="item-3"),
    ]
    generator = Scripted('{"ranking": [3, 1, 2, 4]}')
    ranker = ListwiseRanker(generator, window_size=4, step=2, max_image_pixels=64 * 64)
    query = Query(text="red things", image=Image.new("RGB", (500, 500), (250, 10, 10)))
    reranked = ranker.rerank(query, candidates)
    turns = generator.turns[0]
    assert turns[0].role == "system" and turns[-1].role == "user"
    user = turns[-1]
    parts = user.parts
    images = [i for i, p in enumerate(parts) if not isinstance(p, str)]
    assert len(images) == 3  # the query image, then candidates 1 and 3 (4 is broken)
    assert all(p.size[0] * p.size[1] <= 64 * 64 for p in user.images)
    # each image sits right after its candidate header
    assert parts[images[1] - 1].endswith("Candidate [1]:")
    assert parts[images[2] - 1].endswith("Candidate [3]:")
    text = user.text
    assert "Query:" in text and "red things" in text
    assert "Candidate [4]:\n(image unavailable)\nitem-3" in text
    assert "Rank all 4 candidates" in text and '"ranking"' in text
    assert [c.id for c in reranked] == ["c", "a", "b", "d"]
    assert reranked[-1].metadata[LISTWISE_FLAG] == "image_error"
    assert reranked[0].metadata[LISTWISE_RANK] == 1
    assert reranked[0].metadata[LISTWISE_PARSE_STATUS] == "json"
    assert candidates[0].metadata == {}  # the inputs are not modified


def test_image_only_query_and_direct_prompt() -> None:
    generator = Scripted("[2] > [1]")
    ranker = ListwiseRanker(generator, prompt=DIRECT_PROMPT, window_size=2, step=1)
    result = ranker.rank(Query(image=Image.new("RGB", (8, 8))), items(2))
    assert result.order == [1, 0]
    assert result.statuses == ["arrows", "arrows"]
    assert "(the query is the image above)" in generator.turns[0][-1].text
    assert "[<best number>] >" in generator.turns[0][-1].text


def test_long_texts_and_rationales_are_clipped() -> None:
    long = "item-0 " + "word " * 500
    ranker = ListwiseRanker(
        Scripted("why " * 400 + '\n{"ranking": [2, 1]}'), max_text_chars=50, max_rationale_chars=100
    )
    out = ranker.rerank(QUERY, [Candidate(id="x", modality="text", text=long), *items(2)[1:]])
    prompt_text = ranker.generator.turns[0][-1].text  # type: ignore[attr-defined]
    assert "word " * 20 not in prompt_text
    assert len(out[0].metadata[LISTWISE_RATIONALE]) <= 100


def test_single_candidate_needs_no_call() -> None:
    generator = Scripted("unused")
    out = ListwiseRanker(generator).rerank(QUERY, items(1))
    assert generator.turns == []
    assert out[0].metadata[LISTWISE_RANK] == 1
    assert LISTWISE_PARSE_STATUS not in out[0].metadata
    assert ListwiseRanker(generator).rerank(QUERY, []).candidates == []


# ---------------------------------------------------------------- async
class AsyncOracle(Oracle):
    def __init__(self, relevance: dict[str, float]) -> None:
        super().__init__(relevance)
        self.in_flight = 0
        self.max_in_flight = 0

    async def agenerate(self, turns: list[ChatTurn]) -> str:
        self.in_flight += 1
        self.max_in_flight = max(self.max_in_flight, self.in_flight)
        await asyncio.sleep(0.01)
        self.in_flight -= 1
        return self.generate(turns)


def test_async_matches_sync_and_runs_permutations_concurrently() -> None:
    relevance = {f"item-{i}": float((i * 7) % 10) for i in range(10)}
    sync = ListwiseRanker(Oracle(relevance), window_size=4, step=2, num_permutations=3, seed=3).rank(QUERY, items(10))
    generator = AsyncOracle(relevance)
    ranker = ListwiseRanker(generator, window_size=4, step=2, num_permutations=3, seed=3)
    result = asyncio.run(ranker.arank(QUERY, items(10)))
    assert result.order == sync.order
    assert result.scores == pytest.approx(sync.scores)
    assert generator.max_in_flight == 3  # the three passes overlap
    limited = AsyncOracle(relevance)
    asyncio.run(ListwiseRanker(limited, window_size=4, step=2, num_permutations=3, max_concurrency=1).arank(QUERY, items(10)))
    assert limited.max_in_flight == 1


def test_async_timeout_and_errors_are_flagged() -> None:
    class Slow:
        def generate(self, turns: list[ChatTurn]) -> str:
            raise AssertionError("the async path must use agenerate")

        async def agenerate(self, turns: list[ChatTurn]) -> str:
            await asyncio.sleep(30)
            return ""

    result = asyncio.run(ListwiseRanker(Slow(), window_size=3, step=1, timeout=0.05).arank(QUERY, items(3)))
    assert result.order == [0, 1, 2] and result.flags == ["timeout"] * 3
    # a sync-only generator runs in a thread on the async path; its errors are flagged too
    failing = asyncio.run(ListwiseRanker(Scripted(Boom("x")), window_size=3, step=1).arank(QUERY, items(3)))
    assert failing.flags == ["generator_error"] * 3


class Unprintable:
    """A generator answer whose text cannot be read."""

    @property
    def text(self) -> str:
        raise RuntimeError("no text here")

    def __str__(self) -> str:
        raise RuntimeError("cannot print me")


class AsyncUnprintable:
    def generate(self, turns: list[ChatTurn]) -> object:
        return Unprintable()

    async def agenerate(self, turns: list[ChatTurn]) -> object:
        return Unprintable()


@pytest.mark.parametrize("path", ["sync", "sync-timeout", "async-thread", "async-native"])
def test_an_answer_whose_text_cannot_be_read_is_flagged_on_every_path(path: str) -> None:
    generator = AsyncUnprintable() if path == "async-native" else Scripted(Unprintable())
    ranker = ListwiseRanker(generator, timeout=30 if path != "sync" else None)
    if path.startswith("async"):
        result = asyncio.run(ranker.arank(QUERY, items(3)))
    else:
        result = ranker.rank(QUERY, items(3))
    assert result.order == [0, 1, 2]
    assert result.flags == ["generator_error"] * 3
    assert "cannot print me" in (result.windows[0].error or "") or "no text" in (result.windows[0].error or "")


@pytest.mark.parametrize("timeout", [0, -1, float("inf"), float("nan"), "10", True])
def test_timeout_must_be_finite_positive_seconds(timeout: object) -> None:
    with pytest.raises(ConfigError, match="timeout"):
        ListwiseRanker(Scripted("x"), timeout=timeout)  # type: ignore[arg-type]
