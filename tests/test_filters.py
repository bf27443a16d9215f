"""Relevance filters: composable modes, min_keep, drop reasons, the LlamaIndex postprocessor."""

from __future__ import annotations

import asyncio
import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from llama_index.core.schema import NodeWithScore, TextNode

from mm_rag_components.errors import ConfigError
from mm_rag_components.filters import FilterPolicy
from mm_rag_components.integrations.llama_index.filters import FILTER_REASON, RelevanceFilter
from mm_rag_components.types import Candidate

SCORES = [0.2, 0.9, 0.55, 0.7, 0.05, 0.85]


def test_absolute_threshold() -> None:
    kept, report = FilterPolicy(threshold=0.5).decide(SCORES)
    assert kept == [1, 2, 3, 5]  # input order is kept
    assert report.reasons == {"below_threshold": 2}
    assert report.decisions == ["below_threshold", None, None, None, "below_threshold", None]
    assert report.summary() == "kept 4 of 6; dropped below_threshold=2"


def test_adaptive_up_to_k() -> None:
    kept, report = FilterPolicy(threshold=0.5, max_k=2).decide(SCORES)
    assert kept == [1, 5]  # the best two of those above 0.5
    assert report.reasons == {"below_threshold": 2, "over_max_k": 2}
    kept, _ = FilterPolicy(threshold=0.8, max_k=3).decide(SCORES)
    assert kept == [1, 5]  # fewer than k pass: adaptive


def test_relative_margin() -> None:
    kept, report = FilterPolicy(margin=0.1).decide(SCORES)
    assert kept == [1, 5]
    assert report.reasons == {"below_margin": 4}


def test_top_p_mass() -> None:
    logodds = [3.0, 0.0, 2.0, -5.0]
    # softmax: ≈ [0.705, 0.035, 0.259, 0.0002]
    kept, report = FilterPolicy(top_p=0.9).decide(logodds)
    assert kept == [0, 2]
    assert report.reasons == {"outside_top_p": 2}
    assert FilterPolicy(top_p=0.5).decide(logodds)[0] == [0]
    # a higher temperature flattens the distribution: more items needed for the same mass
    assert FilterPolicy(top_p=0.9, temperature=2.0).decide(logodds)[0] == [0, 1, 2]
    assert FilterPolicy(top_p=1.0).decide(logodds)[0] == [0, 1, 2, 3]


def test_min_keep_restores_the_best_dropped() -> None:
    kept, report = FilterPolicy(threshold=0.95, min_keep=2).decide(SCORES, ids=list("abcdef"))
    assert kept == [1, 5]
    assert report.restored == {1: "below_threshold", 5: "below_threshold"}
    assert report.reasons == {"below_threshold": 4}
    assert report.dropped_ids == {"a": "below_threshold", "c": "below_threshold", "d": "below_threshold", "e": "below_threshold"}
    assert "2 kept by min_keep" in report.summary()
    assert FilterPolicy(threshold=2.0, min_keep=10).decide([0.1, 0.2])[0] == [0, 1]


def test_modes_compose_in_order() -> None:
    scores = [0.95, 0.9, 0.6, 0.55, 0.3]
    kept, report = FilterPolicy(threshold=0.5, margin=0.37, max_k=2).decide(scores)
    assert kept == [0, 1]
    assert report.decisions == [None, None, "over_max_k", "below_margin", "below_threshold"]


def test_missing_scores() -> None:
    scores = [0.9, None, float("nan"), 0.7]
    kept, report = FilterPolicy(threshold=0.5).decide(scores)
    assert kept == [0, 3]
    assert report.reasons == {"missing_score": 2}
    assert FilterPolicy(threshold=0.5, on_missing="keep").decide(scores)[0] == [0, 1, 2, 3]
    with pytest.raises(ConfigError):
        FilterPolicy(on_missing="error").decide(scores)
    with pytest.raises(ConfigError, match="score key"):
        FilterPolicy(threshold=0.5).decide([None, None])
    # min_keep prefers scored items over unscored ones
    assert FilterPolicy(threshold=0.99, min_keep=1).decide(scores)[0] == [0]


def test_infinite_scores() -> None:
    assert FilterPolicy(top_p=0.5).decide([-math.inf, -math.inf])[0] == [0]
    assert FilterPolicy(top_p=0.9).decide([math.inf, 1.0, 2.0])[0] == [0]
    assert FilterPolicy(threshold=0.0).decide([-math.inf, 0.5])[0] == [1]


@pytest.mark.parametrize(
    "kwargs",
    [
        {"max_k": -1},
        {"margin": -0.1},
        {"top_p": 0.0},
        {"top_p": 1.5},
        {"temperature": 0.0},
        {"min_keep": -1},
        {"on_missing": "ignore"},
        {"threshold": float("nan")},
    ],
)
def test_invalid_policies(kwargs: dict) -> None:
    with pytest.raises(ConfigError):
        FilterPolicy(**kwargs)
    with pytest.raises(ConfigError):
        RelevanceFilter(**kwargs)


@settings(max_examples=300, deadline=None)
@given(
    scores=st.lists(st.floats(-10, 10), max_size=25),
    threshold=st.one_of(st.none(), st.floats(-10, 10)),
    max_k=st.one_of(st.none(), st.integers(0, 10)),
    margin=st.one_of(st.none(), st.floats(0, 5)),
    top_p=st.one_of(st.none(), st.floats(0.01, 1.0)),
    min_keep=st.integers(0, 5),
)
def test_every_item_is_kept_or_has_a_reason(scores, threshold, max_k, margin, top_p, min_keep) -> None:
    policy = FilterPolicy(threshold=threshold, max_k=max_k, margin=margin, top_p=top_p, min_keep=min_keep)
    kept, report = policy.decide(scores)
    assert kept == sorted(kept)
    assert report.kept == len(kept) and report.dropped == len(scores) - len(kept)
    assert sum(report.reasons.values()) == report.dropped
    assert all((d is None) == (i in kept) for i, d in enumerate(report.decisions))
    assert len(kept) >= min(min_keep, len(scores))
    if max_k is not None and len(kept) > max_k:
        assert len(kept) <= min_keep
    if threshold is not None and len(kept) > min_keep:
        assert all(scores[i] >= threshold for i in kept if i not in report.restored)


def test_policy_applies_to_candidates_and_reads_any_score() -> None:
    candidates = [Candidate(id=str(i), modality="text", text="x", score=s, metadata={"p": 1 - s}) for i, s in enumerate([0.1, 0.8])]
    result = FilterPolicy(threshold=0.5).apply(candidates)
    assert [c.id for c in result.kept] == ["1"] and result.kept_indices == [1]
    assert [(d.candidate.id, d.index, d.reason) for d in result.dropped] == [("0", 0, "below_threshold")]
    assert [c.id for c in FilterPolicy(score_key="p", threshold=0.5).apply(candidates)] == ["0"]
    restored = FilterPolicy(threshold=0.95, min_keep=1).apply(candidates)
    assert restored.kept[0].metadata["filter_reason"] == "below_threshold (kept by min_keep)"
    assert "filter_reason" not in candidates[1].metadata  # the input is never mutated


def _nodes() -> list[NodeWithScore]:
    return [
        NodeWithScore(
            node=TextNode(id_=f"n{i}", text=f"t{i}", metadata={"calibrated_score": p}),
            score=s,
        )
        for i, (s, p) in enumerate([(0.9, 0.2), (0.8, 0.7), (0.3, 0.95), (0.1, 0.4)])
    ]


def test_relevance_filter_postprocessor_reads_the_named_score() -> None:
    by_score = RelevanceFilter(threshold=0.5)
    assert [n.node.node_id for n in by_score.postprocess_nodes(_nodes())] == ["n0", "n1"]
    calibrated = RelevanceFilter(score_key="calibrated_score", threshold=0.5)
    assert [n.node.node_id for n in calibrated.postprocess_nodes(_nodes())] == ["n1", "n2"]
    report = calibrated.last_report
    assert report is not None
    assert report.reasons == {"below_threshold": 2}
    assert report.dropped_ids == {"n0": "below_threshold", "n3": "below_threshold"}


def test_relevance_filter_min_keep_marks_restored_nodes() -> None:
    relevance_filter = RelevanceFilter(score_key="calibrated_score", threshold=0.99, min_keep=1)
    (kept,) = relevance_filter.postprocess_nodes(_nodes())
    assert kept.node.node_id == "n2"
    assert kept.node.metadata[FILTER_REASON] == "below_threshold (kept by min_keep)"
    assert FILTER_REASON in kept.node.excluded_llm_metadata_keys
    assert relevance_filter.last_report.restored == {2: "below_threshold"}  # type: ignore[union-attr]


def test_relevance_filter_async_and_wrong_key() -> None:
    relevance_filter = RelevanceFilter(top_p=0.6, temperature=0.1)
    kept = asyncio.run(relevance_filter.apostprocess_nodes(_nodes()))
    assert [n.node.node_id for n in kept] == ["n0"]
    assert relevance_filter.last_report.reasons == {"outside_top_p": 3}  # type: ignore[union-attr]
    with pytest.raises(ConfigError):
        RelevanceFilter(score_key="rerank_score", threshold=0.5).postprocess_nodes(_nodes())
    assert RelevanceFilter(threshold=0.5).postprocess_nodes([]) == []
