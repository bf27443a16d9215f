"""The reranker contract: one protocol, new candidates (inputs untouched), provenance, config round
trips, and a core that knows no framework."""

from __future__ import annotations

import asyncio
import math
import re
import subprocess
import sys
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mm_rag_components import config
from mm_rag_components.errors import ConfigError
from mm_rag_components.filters import FilterPolicy
from mm_rag_components.rerank import ListwiseRanker, PointwiseRanker, Reranker, RerankResult
from mm_rag_components.scoring.base import PointScore
from mm_rag_components.types import Candidate, Query

SRC = Path(__file__).resolve().parents[1] / "src" / "mm_rag_components"
QUERY = Query(text="q")


class TableScorer:
    """Log-odds from a table by candidate id (missing ids: NaN, a broken backend)."""

    name = "table"

    def __init__(self, logodds: dict[str, float]) -> None:
        self.logodds = logodds

    def score(self, query: Query, candidates: list[Candidate]) -> list[PointScore]:
        return [PointScore(self.logodds.get(c.id, math.nan), 0.5) for c in candidates]


class FirstIsBest:
    """A listwise generator that always answers with the shown order."""

    def generate(self, turns: list) -> str:
        count = len(re.findall(r"Candidate \[\d+\]:", turns[-1].text))
        return '{"ranking": [%s]}' % ", ".join(str(i) for i in range(1, count + 1))


def candidates(scores: list[float | None]) -> list[Candidate]:
    return [Candidate(id=f"c{i}", modality="text", text=f"text {i}", score=s, metadata={"k": i}) for i, s in enumerate(scores)]


@pytest.mark.parametrize("make", [lambda: PointwiseRanker(TableScorer({})), lambda: ListwiseRanker(FirstIsBest())])
def test_both_rerankers_follow_the_protocol(make) -> None:
    reranker = make()
    assert isinstance(reranker, Reranker)
    inputs = candidates([0.3, 0.2, 0.1])
    snapshot = [(c.score, dict(c.metadata)) for c in inputs]
    result = reranker.rerank(QUERY, inputs)
    again = asyncio.run(reranker.arerank(QUERY, inputs))
    assert isinstance(result, RerankResult) and result.total == 3
    assert result.ids == again.ids and sorted(result.indices) == [0, 1, 2]
    assert [(c.score, c.metadata) for c in inputs] == snapshot  # never mutated
    for candidate, index in zip(result, result.indices):
        assert candidate is not inputs[index] and candidate.id == inputs[index].id
        assert candidate.metadata["retrieval_score"] == inputs[index].score and candidate.metadata["k"] == index
    with pytest.raises(ConfigError):
        reranker.rerank("not a query", inputs)
    with pytest.raises(ConfigError):
        reranker.rerank(QUERY, ["not a candidate"])


finite_or_not = st.one_of(st.none(), st.floats(allow_nan=True, allow_infinity=True), st.floats(-1, 1))


@settings(max_examples=200, deadline=None)
@given(
    retrieval=st.lists(finite_or_not, min_size=1, max_size=12),
    logodds=st.lists(st.one_of(st.floats(-20, 20), st.just(math.nan), st.just(math.inf), st.just(-math.inf)), min_size=12, max_size=12),
    weight=st.one_of(st.none(), st.floats(0, 2)),
)
def test_non_finite_scores_never_reach_a_score_nor_scramble_the_order(retrieval, logodds, weight) -> None:
    inputs = candidates(retrieval)
    scorer = TableScorer({c.id: z for c, z in zip(inputs, logodds)})
    result = PointwiseRanker(scorer, fusion_weight=weight).rerank(QUERY, inputs)
    assert sorted(result.indices) == list(range(len(inputs)))  # nothing lost
    scorable = [c for c in result if c.metadata["rerank_logodds"] is not None]
    unscorable = [c for c in result if c.metadata["rerank_logodds"] is None]
    assert all(math.isfinite(c.score) and math.isfinite(c.metadata["rerank_logodds"]) for c in scorable)
    for c in unscorable:  # missing, never a made-up number, and flagged
        assert c.score is None and c.metadata["rerank_score"] is None and c.metadata["calibrated_score"] is None
        assert c.metadata["rerank_flag"]
    assert result.candidates == scorable + unscorable  # unscorable ones last, in retrieval order
    assert [int(c.id[1:]) for c in unscorable] == sorted(int(c.id[1:]) for c in unscorable)
    assert [c.score for c in scorable] == sorted((c.score for c in scorable), reverse=True)
    for c in result:
        z = logodds[int(c.id[1:])]
        if not (math.isfinite(z) or z == -math.inf):
            assert "invalid_score" in c.metadata["rerank_flag"]
        if c.metadata["retrieval_score"] is not None:
            assert math.isfinite(c.metadata["retrieval_score"])
        elif weight is not None and c.score is not None:  # fused with a missing retrieval score
            assert "missing_retrieval_score" in c.metadata["rerank_flag"]


def test_top_n_cuts_and_scores_are_probabilities() -> None:
    result = PointwiseRanker(TableScorer({"c0": -1.0, "c1": 2.0, "c2": 0.0}), top_n=2).rerank(QUERY, candidates([0.1, 0.2, 0.3]))
    assert result.ids == ["c1", "c2"] and result.total == 3
    assert result[0].score == pytest.approx(1 / (1 + math.exp(-2.0)))


@pytest.mark.parametrize(
    ("unscored", "expected"),
    [("last", ["c3", "c1", "c0", "c2", "c4"]), ("keep", ["c3", "c1", "c2", "c0", "c4"])],
)
def test_unscored_candidates_go_last_or_keep_their_positions(unscored, expected) -> None:
    # c2 and c4 have no score (a server listed neither answer): never dropped, never a made-up 0.5
    table = {"c0": -1.0, "c1": 0.5, "c3": 2.0}
    ranker = PointwiseRanker.create(scorer=TableScorer(table), unscored=unscored)
    result = ranker.rerank(QUERY, candidates([0.9, 0.8, 0.7, 0.6, 0.5]))
    assert [c.id for c in result.candidates] == expected
    assert result.indices == [int(c.id[1:]) for c in result.candidates]
    unscored_out = [c for c in result.candidates if c.id in ("c2", "c4")]
    assert all(c.metadata["rerank_flag"] for c in unscored_out)
    assert ranker.config()["unscored"] == unscored


@pytest.mark.parametrize(
    "build",
    [
        lambda: PointwiseRanker.create(),
        lambda: PointwiseRanker.create("m", scorer=TableScorer({})),
        lambda: PointwiseRanker.create(scorer=TableScorer({}), batch_size=3),
        lambda: PointwiseRanker.create(reranker=PointwiseRanker(TableScorer({})), top_n=3),
        lambda: PointwiseRanker(TableScorer({}), top_n=0),
        lambda: PointwiseRanker(TableScorer({}), fusion_weight=math.nan),
        lambda: PointwiseRanker(TableScorer({}), calibration=42),
        lambda: PointwiseRanker(TableScorer({}), unscored="first"),
        lambda: ListwiseRanker.create(generator=FirstIsBest(), max_new_tokens=3),
        lambda: ListwiseRanker.create(generator=FirstIsBest(), windowsize=3),
        lambda: ListwiseRanker(FirstIsBest(), num_permutations=1.5),
        lambda: ListwiseRanker(FirstIsBest(), prompt="nope"),
        lambda: FilterPolicy.from_kwargs(treshold=0.5),
        lambda: FilterPolicy(max_k=2.5),
        lambda: FilterPolicy(threshold="0.5"),
        lambda: FilterPolicy(threshold=math.inf),
    ],
)
def test_bad_settings_fail_at_construction(build) -> None:
    with pytest.raises(ConfigError):
        build()


def test_unknown_scorer_options_are_refused_before_loading(tmp_path) -> None:
    with pytest.raises(ConfigError, match="batchsize"):
        PointwiseRanker.create(tmp_path / "no-model", batchsize=8)


def test_pointwise_config_round_trips_through_plain_data(tiny_vlm_dirs) -> None:
    import json

    from mm_rag_components.calibration import Calibration
    from mm_rag_components.scoring.templates import PointwiseTemplate

    template = PointwiseTemplate(name="mine", parts=("Q: {query}", " D: {document}"), yes="yes", no="no")
    ranker = PointwiseRanker.create(
        tiny_vlm_dirs["causal"], template=template, batch_size=3, top_n=4, fusion_weight=0.5,
        calibration=Calibration("platt", a=2.0, b=-1.0),
    )
    data = json.loads(json.dumps(config.to_dict(ranker)))
    assert data["scorer"]["template"]["type"] == "PointwiseTemplate"
    rebuilt = config.from_dict(data)
    assert config.to_dict(rebuilt) == data
    inputs = candidates([0.1, 0.2])
    assert rebuilt.rerank(QUERY, inputs).ids == ranker.rerank(QUERY, inputs).ids
    assert config.to_dict(PointwiseRanker.create(tiny_vlm_dirs["causal"]))["scorer"]["template"] == "qwen3-vl-reranker"


def test_config_refuses_unknown_types_and_unsaveable_objects() -> None:
    with pytest.raises(ConfigError, match="unknown component"):
        config.from_dict({"type": "os.system"})
    with pytest.raises(ConfigError, match="cannot be saved"):
        config.to_dict(PointwiseRanker(TableScorer({})))
    with pytest.raises(ConfigError):
        config.from_dict({"type": "FilterPolicy", "treshold": 1.0})
    policy = FilterPolicy(score_key="calibrated_score", threshold=0.5, max_k=3)
    assert config.from_dict(config.to_dict(policy)) == policy


def test_the_core_imports_no_framework() -> None:
    """Nothing outside integrations/ imports llama_index, haystack or langchain."""
    offenders = []
    for path in SRC.rglob("*.py"):
        if "integrations" in path.relative_to(SRC).parts:
            continue
        for number, line in enumerate(path.read_text().splitlines(), start=1):
            if re.match(r"\s*(from|import)\s+(llama_index|haystack|langchain)", line):
                offenders.append(f"{path.relative_to(SRC)}:{number}: {line.strip()}")
    assert offenders == []
    code = (
        "import sys\n"
        "import mm_rag_components.rerank, mm_rag_components.filters, mm_rag_components.retrieval, "
        "mm_rag_components.scoring, mm_rag_components.calibration, mm_rag_components.config\n"
        "print([m for m in ('llama_index', 'haystack', 'langchain_core') if m in sys.modules])"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
