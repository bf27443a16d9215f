"""PointwiseReranker as a LlamaIndex node postprocessor, on plain candidates and in a query engine."""

import asyncio
import math

import numpy as np
import pytest
from llama_index.core.instrumentation import get_dispatcher
from llama_index.core.instrumentation.event_handlers import BaseEventHandler
from llama_index.core.llms import MockLLM
from llama_index.core.query_engine import RetrieverQueryEngine
from llama_index.core.schema import QueryBundle

from mm_rag_components import Candidate, MultimodalIndex, Query
from mm_rag_components.integrations.llama_index import MultimodalRetriever, PointwiseReranker
from mm_rag_components.errors import ConfigError
from mm_rag_components.integrations.llama_index.nodes import candidate_to_node
from mm_rag_components.rerank import PointwiseRanker
from mm_rag_components.scoring.base import PointScore


class FixedScorer:
    """A stand-in scorer with known log-odds per candidate id."""

    name = "fixed"

    def __init__(self, logodds):
        self.logodds = logodds

    def score(self, query, candidates):
        return [PointScore.from_logodds(self.logodds[c.id], None if math.isfinite(self.logodds[c.id]) else "unreadable_image") for c in candidates]


class Shift:
    """A stand-in calibration: sigmoid(logodds - 1)."""

    def apply(self, logodds):
        return 1 / (1 + np.exp(-(np.asarray(logodds) - 1.0)))


def nodes_for(ids_scores):
    return [candidate_to_node(Candidate(id=i, modality="text", text=f"text {i}", score=s)) for i, s in ids_scores]


def test_scores_become_probabilities_with_provenance():
    reranker = PointwiseReranker(scorer=FixedScorer({"a": -2.0, "b": 3.0, "c": 0.0}), top_n=2)
    out = reranker.postprocess_nodes(nodes_for([("a", 0.9), ("b", 0.1), ("c", 0.5)]), QueryBundle("q"))
    assert [n.node.node_id for n in out] == ["b", "c"]
    meta = out[0].node.metadata
    assert out[0].score == pytest.approx(1 / (1 + math.exp(-3.0)))
    assert meta["retrieval_score"] == 0.1 and meta["rerank_logodds"] == 3.0 and meta["rerank_flag"] is None
    assert "rerank_score" in out[0].node.excluded_llm_metadata_keys


def test_fusion_and_calibration():
    scorer = FixedScorer({"a": 0.0, "b": 0.2})
    fused = PointwiseReranker(scorer=scorer, fusion_weight=0.1).postprocess_nodes(nodes_for([("a", 0.9), ("b", 0.1)]), QueryBundle("q"))
    assert [n.node.node_id for n in fused] == ["a", "b"]
    assert fused[0].score == pytest.approx(0.9 + 0.1 * 0.5)
    calibrated = PointwiseReranker(scorer=scorer, calibration=Shift()).postprocess_nodes(nodes_for([("a", 0.9), ("b", 0.1)]), QueryBundle("q"))
    assert calibrated[0].node.node_id == "b"
    assert calibrated[0].score == pytest.approx(1 / (1 + math.exp(0.8)))
    assert calibrated[0].node.metadata["calibrated_score"] == calibrated[0].score


def test_unscorable_candidates_are_kept_last():
    inputs = [Candidate(id="a", modality="image", score=0.99), Candidate(id="b", modality="text", score=0.1)]
    ranked = PointwiseRanker(FixedScorer({"a": -math.inf, "b": -5.0})).rerank(Query(text="q"), inputs)
    assert ranked.ids == ["b", "a"] and ranked.indices == [1, 0]
    assert ranked[1].metadata["rerank_flag"] == "unreadable_image"
    assert inputs[0].metadata == {} and inputs[0].score == 0.99  # the input is never mutated


def test_bad_input_and_empty_lists():
    reranker = PointwiseReranker(scorer=FixedScorer({}))
    assert reranker.postprocess_nodes([], QueryBundle("q")) == []
    with pytest.raises(ConfigError, match="needs a query"):
        reranker.postprocess_nodes(nodes_for([("a", 1.0)]), None)
    with pytest.raises(ConfigError):
        PointwiseReranker()
    with pytest.raises(ConfigError):
        PointwiseReranker(scorer=FixedScorer({}), top_n=0)


def test_emits_rerank_events_and_supports_async():
    seen = []

    class Collect(BaseEventHandler):
        def handle(self, event, **kwargs):
            seen.append(event.class_name())

    handler = Collect()
    get_dispatcher().add_event_handler(handler)
    try:
        reranker = PointwiseReranker(scorer=FixedScorer({"a": 1.0, "b": 2.0}))
        out = asyncio.run(reranker.apostprocess_nodes(nodes_for([("a", 0.5), ("b", 0.5)]), QueryBundle("q")))
        assert [n.node.node_id for n in out] == ["b", "a"]
    finally:
        get_dispatcher().event_handlers.remove(handler)
    assert "ReRankStartEvent" in seen and "ReRankEndEvent" in seen


def test_real_model_reranks_retrieved_images_in_a_query_engine(tmp_path, clip_embedder, sample_folder, tiny_vlm_dirs):
    index = MultimodalIndex(tmp_path / "db", image_embedder=clip_embedder)
    index.ingest_folder(sample_folder)
    retriever = MultimodalRetriever(index, image_top_k=4, text_top_k=2)
    reranker = PointwiseReranker(tiny_vlm_dirs["idefics3"], top_n=3, batch_size=4)
    engine = RetrieverQueryEngine.from_args(retriever, llm=MockLLM(), node_postprocessors=[reranker])
    response = engine.query("a red circle")
    assert len(response.source_nodes) == 3
    retrieval = {n.node.node_id: n.score for n in retriever.retrieve("a red circle")}
    scores = [n.score for n in response.source_nodes]
    assert scores == sorted(scores, reverse=True)
    for n in response.source_nodes:
        meta = n.node.metadata
        assert 0.0 < meta["rerank_score"] < 1.0 and meta["retrieval_score"] == pytest.approx(retrieval[n.node.node_id])
        assert n.score == pytest.approx(meta["rerank_score"])
    image_query = reranker.postprocess_nodes(retriever.retrieve("red"), QueryBundle("", image_path=str(sample_folder / "red_circle.png")))
    assert len(image_query) == 3


def test_calibration_loaded_from_json(tmp_path):
    from mm_rag_components import fit_calibration

    rng = np.random.default_rng(0)
    logodds = rng.normal(0, 3, 400)
    labels = (rng.random(400) < 1 / (1 + np.exp(-logodds / 3))).astype(int)  # over-confident raw scores
    path = tmp_path / "cal.json"
    fit_calibration(logodds, labels).save(path)
    reranker = PointwiseReranker(scorer=FixedScorer({"a": 3.0, "b": -1.0}), calibration=str(path))
    out = reranker.postprocess_nodes(nodes_for([("a", 0.1), ("b", 0.2)]), QueryBundle("q"))
    assert [n.node.node_id for n in out] == ["a", "b"]
    calibrated = out[0].node.metadata["calibrated_score"]
    assert out[0].score == calibrated and 0.5 < calibrated < 1 / (1 + math.exp(-3.0))
