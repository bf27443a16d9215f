"""Generated bad input for rerankers, generators, filters and calibration: every case ends in a
result or a typed ``MMRagError`` — never another exception, never a lost candidate, never a hang."""

from __future__ import annotations

import asyncio
import json
import math

import numpy as np
import pytest
from bounds import time_limit
from hypothesis import given, settings
from hypothesis import strategies as st

from mm_rag_components.calibration import Calibration, expected_calibration_error, fit_calibration
from mm_rag_components.errors import MMRagError
from mm_rag_components.filters import FilterPolicy
from mm_rag_components.integrations.llama_index.filters import RelevanceFilter
from mm_rag_components.rerank import ListwiseRanker, PointwiseRanker
from mm_rag_components.scoring.base import PointScore
from mm_rag_components.types import Candidate, Query

QUERY = Query(text="a red bicycle")
junk = st.one_of(
    st.none(), st.booleans(), st.integers(-10**20, 10**20), st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=20), st.lists(st.integers(), max_size=3), st.dictionaries(st.text(max_size=5), st.integers(), max_size=2),
    st.just(object()),
)


def items(n: int) -> list[Candidate]:
    return [Candidate(id=f"c{i}", modality="text", text=f"item-{i}", score=1.0 - i / 10) for i in range(n)]


class Unreadable:
    def __str__(self) -> str:
        raise RuntimeError("unprintable")


class Answers:
    """A generator answering with drawn values: text, junk objects, or exceptions."""

    def __init__(self, answers: list[object]) -> None:
        self.answers = answers
        self.calls = 0

    def generate(self, turns: list) -> object:
        answer = self.answers[self.calls % len(self.answers)]
        self.calls += 1
        if isinstance(answer, BaseException):
            raise answer
        return answer


answers = st.one_of(
    st.text(max_size=200),
    st.lists(st.integers(-3, 12), max_size=12).map(lambda ids: json.dumps({"ranking": ids})),
    st.lists(st.integers(0, 12), max_size=12).map(lambda ids: " > ".join(f"[{i}]" for i in ids)),
    st.sampled_from([None, b"bytes", 42, Unreadable(), ValueError("backend down"), "x" * 50_000, "{\"ranking\": [1, 2"]),
)


@settings(max_examples=150, deadline=None)
@given(
    script=st.lists(answers, min_size=1, max_size=5),
    n=st.integers(0, 14),
    window=st.integers(2, 6),
    permutations=st.integers(1, 3),
    asynchronous=st.booleans(),
)
def test_listwise_keeps_every_candidate_whatever_the_generator_does(script, n, window, permutations, asynchronous) -> None:
    ranker = ListwiseRanker(Answers(script), window_size=window, step=max(1, window // 2), num_permutations=permutations)
    with time_limit():
        if asynchronous:
            result = asyncio.run(ranker.arerank(QUERY, items(n)))
        else:
            result = ranker.rerank(QUERY, items(n))
    assert sorted(result.indices) == list(range(n)) and result.total == n
    assert all(0.0 <= c.score <= 1.0 for c in result)


class TableScorer:
    name = "table"

    def __init__(self, values: list[object]) -> None:
        self.values = values

    def score(self, query: Query, candidates: list[Candidate]) -> list[PointScore]:
        return [PointScore(v, 0.5) if isinstance(v, float) else PointScore(math.nan, 0.5) for v in self.values[: len(candidates)]]


@settings(max_examples=100, deadline=None)
@given(values=st.lists(st.floats(allow_nan=True, allow_infinity=True), min_size=1, max_size=10), extra=st.integers(0, 2))
def test_a_scorer_returning_the_wrong_count_is_a_typed_error(values, extra) -> None:
    candidates = items(len(values) + extra)
    with time_limit():
        try:
            result = PointwiseRanker(TableScorer(values)).rerank(QUERY, candidates)
        except MMRagError:
            assert extra > 0
        else:
            assert extra == 0 and sorted(result.indices) == list(range(len(candidates)))


policy_kwargs = st.dictionaries(
    st.sampled_from(["score_key", "threshold", "max_k", "margin", "top_p", "temperature", "min_keep", "on_missing",
                     "treshold", "maxk", "top-p"]),
    junk,
    max_size=4,
)


@settings(max_examples=200, deadline=None)
@given(kwargs=policy_kwargs)
def test_filter_settings_are_valid_or_a_typed_error(kwargs) -> None:
    for build in (FilterPolicy.from_kwargs, RelevanceFilter):
        try:
            built = build(**kwargs)
        except MMRagError:
            continue
        policy = built if isinstance(built, FilterPolicy) else built.policy
        assert set(kwargs) <= {"score_key", "threshold", "max_k", "margin", "top_p", "temperature", "min_keep", "on_missing"}
        assert policy.threshold is None or math.isfinite(policy.threshold)


ranker_kwargs = st.dictionaries(
    st.sampled_from(["top_n", "window_size", "step", "num_permutations", "seed", "timeout", "max_concurrency",
                     "max_image_pixels", "prompt", "fusion_weight", "calibration", "windowsize"]),
    junk,
    max_size=3,
)


@settings(max_examples=200, deadline=None)
@given(kwargs=ranker_kwargs)
def test_reranker_settings_are_valid_or_a_typed_error(kwargs) -> None:
    pointwise = {k: v for k, v in kwargs.items() if k in ("top_n", "fusion_weight", "calibration")}
    listwise = {k: v for k, v in kwargs.items() if k not in ("fusion_weight", "calibration")}
    for build in (lambda: PointwiseRanker(TableScorer([0.0] * 3), **pointwise), lambda: ListwiseRanker.create(generator=Answers(["[1]"]), **listwise)):
        try:
            ranker = build()
        except MMRagError:
            continue
        with time_limit():
            result = ranker.rerank(QUERY, items(3))
        assert len(result) == min(ranker.top_n or 3, 3) and result.total == 3
        assert len(set(result.indices)) == len(result) and set(result.indices) <= {0, 1, 2}


calibration_data = st.one_of(
    st.dictionaries(st.sampled_from(["method", "a", "b", "temperature", "input_kind", "n_samples", "format_version", "extra"]), junk, max_size=6),
    junk,
)


@settings(max_examples=200, deadline=None)
@given(data=calibration_data)
def test_calibration_data_is_valid_or_a_typed_error(data) -> None:
    try:
        calibration = Calibration.from_dict(data)  # type: ignore[arg-type]
    except MMRagError:
        return
    values = calibration.apply([-3.0, 0.0, 3.0])
    assert all(0.0 <= v <= 1.0 for v in values)


@settings(max_examples=60, deadline=None)
@given(raw=st.one_of(st.binary(max_size=200), st.integers(1, 40).map(lambda d: "[" * d * 50), st.just("{}" + " " * 70_000)))
def test_calibration_files_are_bounded_and_checked(tmp_path_factory, raw) -> None:
    path = tmp_path_factory.mktemp("cal") / "cal.json"
    path.write_bytes(raw.encode() if isinstance(raw, str) else raw)
    with time_limit():
        try:
            Calibration.load(path)
        except MMRagError:
            pass


@settings(max_examples=100, deadline=None)
@given(
    probs=st.lists(st.one_of(st.floats(0, 1), junk), max_size=8),
    labels=st.lists(st.one_of(st.sampled_from([0, 1, True, False]), junk), max_size=8),
)
def test_ece_and_fitting_check_their_inputs(probs, labels) -> None:
    try:
        ece = expected_calibration_error(probs, labels)
    except MMRagError:
        pass
    else:  # a weighted mean of gaps between two numbers in [0, 1]
        assert 0.0 <= ece <= 1.0
    try:
        calibration = fit_calibration(probs, labels)
    except MMRagError:
        return
    y = np.asarray(labels, dtype=np.float64).ravel()  # accepted: numbers, both classes, one per score
    assert calibration.method == "platt" and calibration.n_samples == y.size == np.asarray(probs, dtype=np.float64).size >= 2
    assert set(y.tolist()) == {0.0, 1.0} and math.isfinite(calibration.a) and math.isfinite(calibration.b)


def test_one_class_or_one_sample_is_a_typed_error() -> None:
    with pytest.raises(MMRagError, match="single class"):
        fit_calibration([0.1, 0.2, 0.3], [1, 1, 1])
    with pytest.raises(MMRagError, match="two"):
        fit_calibration([0.1], [1])
    with pytest.raises(MMRagError, match="labels"):
        expected_calibration_error([0.2, 0.7], [0.5, 2])
