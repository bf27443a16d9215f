"""A score that was never computed is missing, never 0.

* the pointwise ranker gives an unscored candidate ``score`` / ``rerank_score`` /
  ``rerank_logodds`` / ``calibrated_score`` ``None``, a flag saying why, its retrieval score kept
  in ``retrieval_score``, and ranks the unscored in retrieval order after the scored ones;
* a filter applies its ``on_missing`` rule to them — also when none could be scored;
* ``mm-rag query --rerank pointwise`` with an unreachable reranker server prints ``rerank none
  (request_failed)`` (``null`` in ``--json``), keeps the retrieval order, says that nothing could
  be scored in one line on stderr and exits 2; a server that scores some candidates exits 0.
"""

from __future__ import annotations

import itertools
import json
import math
import threading

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mm_rag_components.calibration import Calibration
from mm_rag_components.cli import main, models
from mm_rag_components.errors import ConfigError
from mm_rag_components.filters import FilterPolicy
from mm_rag_components.rerank.pointwise import PointwiseRanker, is_unscored
from mm_rag_components.scoring.base import PointScore
from mm_rag_components.types import Candidate, Query
from remote_support import FakeServer, Reply, chat_reply, free_port

CASES = settings(max_examples=150, deadline=None, database=None)
QUERY = Query(text="q")
FLAGS = [None, "request_failed", "unreadable_image", "no_answer_logprobs", "prompt_too_long"]


class Table:
    """Scores by candidate id: a float is a log-odds, a str or None an unscored candidate (its flag)."""

    name = "table"

    def __init__(self, table: dict[str, object]) -> None:
        self.table = table

    def score(self, query, candidates):
        out = []
        for c in candidates:
            value = self.table[c.id]
            out.append(PointScore.from_logodds(value) if isinstance(value, float) else PointScore(-math.inf, 0.0, value))
        return out


def candidates(retrieval: list[float]) -> list[Candidate]:
    return [Candidate(id=f"c{i}", modality="text", text=f"t{i}", score=s) for i, s in enumerate(retrieval)]


scored_or_not = st.one_of(st.floats(-12, 12), st.sampled_from(FLAGS))


@CASES
@given(values=st.lists(scored_or_not, min_size=1, max_size=10), weight=st.one_of(st.none(), st.floats(0, 2)),
       calibrated=st.booleans(), unscored=st.sampled_from(["last", "keep"]))
def test_an_unscored_candidate_has_no_score_a_flag_and_its_retrieval_score(values, weight, calibrated, unscored):
    inputs = candidates([1.0 - i / 20 for i in range(len(values))])  # retrieval order = input order
    calibration = Calibration(method="platt", a=0.5, b=0.1) if calibrated else None
    ranker = PointwiseRanker(Table({c.id: v for c, v in zip(inputs, values)}), fusion_weight=weight, calibration=calibration,
                             unscored=unscored)
    result = ranker.rerank(QUERY, inputs)
    assert sorted(result.indices) == list(range(len(inputs)))
    for c in result:
        value = values[int(c.id[1:])]
        meta = c.metadata
        assert meta["retrieval_score"] == inputs[int(c.id[1:])].score  # never replaced
        if isinstance(value, float):
            assert not is_unscored(c) and 0.0 < meta["rerank_score"] < 1.0 and math.isfinite(c.score)
        else:
            assert is_unscored(c) and c.score is None
            assert meta["rerank_score"] is None and meta["rerank_logodds"] is None and meta["calibrated_score"] is None
            assert meta["rerank_flag"] == (value or "no_score")
    unscored_ids = [int(c.id[1:]) for c in result if is_unscored(c)]
    assert unscored_ids == sorted(unscored_ids)  # in retrieval order
    if unscored == "keep":
        assert all(result.indices[k] == i for k, i in enumerate(result.indices) if not isinstance(values[i], float))
    json.dumps([c.metadata for c in result], allow_nan=False)  # JSON-ready: no -Infinity anywhere


policies = st.builds(
    dict,
    threshold=st.one_of(st.none(), st.floats(0, 1)),
    max_k=st.one_of(st.none(), st.integers(0, 6)),
    top_p=st.one_of(st.none(), st.floats(0.1, 1)),
    min_keep=st.integers(0, 3),
    on_missing=st.sampled_from(["drop", "keep", "error"]),
    score_key=st.sampled_from(["score", "rerank_score"]),
)


@CASES
@given(values=st.lists(scored_or_not, min_size=1, max_size=8), options=policies)
def test_a_filter_applies_on_missing_to_unscored_candidates(values, options):
    ranked = PointwiseRanker(Table({f"c{i}": v for i, v in enumerate(values)})).rerank(QUERY, candidates([0.5] * len(values))).candidates
    unscored = {f"c{i}" for i, v in enumerate(values) if not isinstance(v, float)}
    assert unscored == {c.id for c in ranked if is_unscored(c)}
    policy = FilterPolicy(**options)
    if unscored and policy.on_missing == "error":
        with pytest.raises(ConfigError, match="have no score"):
            policy.apply(ranked)
        return
    result = policy.apply(ranked)  # never "check the score key": these scores are missing, and flagged
    kept = {c.id for c in result.kept}
    if policy.on_missing == "keep":
        assert unscored <= kept
    else:
        reasons = {d.candidate.id: d.reason for d in result.dropped}
        restored = {ranked[i].id for i in result.report.restored}
        assert all(reasons.get(i) == "missing_score" or i in restored for i in unscored)
    if unscored == {c.id for c in ranked} and policy.on_missing == "drop":
        assert len(kept) == min(policy.min_keep, len(ranked))


def test_a_misspelt_score_key_is_still_an_error():
    ranked = PointwiseRanker(Table({"c0": 1.0, "c1": 2.0})).rerank(QUERY, candidates([0.5, 0.4])).candidates
    with pytest.raises(ConfigError, match="score key"):
        FilterPolicy(threshold=0.5, score_key="rerank_scor").apply(ranked)


# ------------------------------------------------------------------ the command


@pytest.fixture(scope="module")
def indexed(tmp_path_factory) -> str:
    from mm_rag_components.testing import write_sample_folder

    root = tmp_path_factory.mktemp("missing-scores")
    db = str(root / "state" / "chroma")
    assert main(["ingest", str(write_sample_folder(root / "data")), "--tiny", "--db", db]) == 0
    models.tiny_vlm(db)
    return db


def _query(db: str, reranker: str, *extra: str) -> list[str]:
    return ["query", "a red circle", "--tiny", "--db", db, "--modalities", "image", "--top-k", "4", "--rerank", "pointwise",
            "--reranker", reranker, "--reranker-model", "judge", "--timeout", "5", *extra]


FILTERS = {"no filter": [], "threshold": ["--filter", "threshold=0.5"], "keep missing": ["--filter", "threshold=0.5,on_missing=keep"],
           "min_keep": ["--filter", "threshold=0.5,min_keep=2"], "rerank_score": ["--filter", "max_k=2,score_key=rerank_score"]}


@pytest.mark.parametrize("flt", sorted(FILTERS))
def test_an_unreachable_reranker_is_missing_scores_and_exit_2(indexed, capsys, flt):
    retrieved = _retrieved(indexed, capsys)
    dead = f"http://127.0.0.1:{free_port()}/v1"
    capsys.readouterr()
    assert main(_query(indexed, dead, *FILTERS[flt], "--json")) == 2
    out, err = capsys.readouterr()
    data = json.loads(out)  # the result is still printed, as strict JSON
    everything = data["kept"] + data["dropped"]
    assert {c["id"] for c in everything} == set(retrieved)
    for c in everything:
        assert c["score"] is None and c["metadata"]["rerank_score"] is None and c["metadata"]["rerank_logodds"] is None
        assert c["metadata"]["rerank_flag"] == "request_failed" and isinstance(c["metadata"]["retrieval_score"], float)
    assert [c["id"] for c in data["kept"]] == [i for i in retrieved if i in {c["id"] for c in data["kept"]}]  # retrieval order
    if flt == "keep missing":
        assert len(data["kept"]) == 4
    elif flt == "min_keep":
        assert len(data["kept"]) == 2
    else:
        assert all(d["reason"] == "missing_score" for d in data["dropped"])
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("mm-rag: error: the reranker could not score any of the 4 candidates")

    assert main(_query(indexed, dead, *FILTERS[flt])) == 2
    out, err = capsys.readouterr()
    assert "0.000" not in out and "rerank none (request_failed)" in out and "could not score any" in err


def _retrieved(db: str, capsys) -> list[str]:
    capsys.readouterr()
    assert main(["query", "a red circle", "--tiny", "--db", db, "--modalities", "image", "--top-k", "4", "--json"]) == 0
    return [c["id"] for c in json.loads(capsys.readouterr().out)["kept"]]


def test_a_reranker_that_scores_some_candidates_exits_0_with_the_rest_missing(indexed, capsys):
    count = itertools.count()
    lock = threading.Lock()

    def every_other(path, body, headers):
        with lock:
            number = next(count)
        return Reply(body=chat_reply({"yes": -0.2, "no": -1.8})) if number % 2 else Reply(status=400, body={"error": "no"})

    with FakeServer(every_other) as server:
        capsys.readouterr()
        assert main(_query(indexed, server.url + "/v1", "--json")) == 0
    kept = json.loads(capsys.readouterr().out)["kept"]
    scored = [c for c in kept if c["score"] is not None]
    missing = [c for c in kept if c["score"] is None]
    assert len(scored) == len(missing) == 2 and kept == scored + missing
    assert all(0.0 < c["metadata"]["rerank_score"] < 1.0 for c in scored)
    assert all(c["metadata"]["rerank_flag"] == "request_failed" and c["metadata"]["rerank_score"] is None for c in missing)
