"""The same pipeline — retrieve → pointwise rerank (a real tiny VLM) → filter — gives the same
ranked ids and scores in LlamaIndex, Haystack and LangChain: the adapters only convert."""

from __future__ import annotations

import pytest
from fake_models import ColourShapeEmbedder

from mm_rag_components import MultimodalIndex
from mm_rag_components.filters import FilterPolicy
from mm_rag_components.rerank import PointwiseRanker

QUERY = "a red circle"
RETRIEVAL = {"image_top_k": 6, "text_top_k": 2}
FILTER = {"score_key": "rerank_score", "max_k": 4, "min_keep": 1}


@pytest.fixture(scope="module")
def index(tmp_path_factory):
    from mm_rag_components.testing import write_sample_folder

    root = tmp_path_factory.mktemp("agree")
    built = MultimodalIndex(root / "db", image_embedder=ColourShapeEmbedder())
    built.ingest_folder(write_sample_folder(root / "data"))
    return built


@pytest.fixture(scope="module")
def reranker(tiny_vlm_dirs) -> PointwiseRanker:
    return PointwiseRanker.create(tiny_vlm_dirs["idefics3"], top_n=6, batch_size=4)


def llama_index_run(index, reranker) -> list[tuple[str, float]]:
    from llama_index.core.schema import QueryBundle

    from mm_rag_components.integrations.llama_index import MultimodalRetriever, PointwiseReranker, RelevanceFilter

    nodes = MultimodalRetriever(index, **RETRIEVAL).retrieve(QUERY)
    nodes = PointwiseReranker(reranker=reranker).postprocess_nodes(nodes, QueryBundle(QUERY))
    nodes = RelevanceFilter(policy=FilterPolicy(**FILTER)).postprocess_nodes(nodes)
    return [(n.node.node_id, n.score) for n in nodes]


def haystack_run(index, reranker) -> list[tuple[str, float]]:
    from haystack import Pipeline

    from mm_rag_components.integrations.haystack import MultimodalRetriever, PointwiseReranker, RelevanceFilter

    pipe = Pipeline()
    pipe.add_component("retriever", MultimodalRetriever(index, **RETRIEVAL))
    pipe.add_component("reranker", PointwiseReranker(reranker=reranker))
    pipe.add_component("filter", RelevanceFilter(policy=FilterPolicy(**FILTER)))
    pipe.connect("retriever.documents", "reranker.documents")
    pipe.connect("reranker.documents", "filter.documents")
    out = pipe.run({"retriever": {"query": QUERY}, "reranker": {"query": QUERY}})
    return [(d.id, d.score) for d in out["filter"]["documents"]]


def langchain_run(index, reranker) -> list[tuple[str, float]]:
    from langchain_classic.retrievers import ContextualCompressionRetriever

    from mm_rag_components.integrations.langchain import MultimodalRetriever, PointwiseReranker

    compressor = PointwiseReranker(reranker=reranker, relevance_filter=FilterPolicy(**FILTER))
    pipeline = ContextualCompressionRetriever(base_compressor=compressor, base_retriever=MultimodalRetriever(index, **RETRIEVAL))
    return [(d.id, d.metadata["relevance_score"]) for d in pipeline.invoke(QUERY)]


def test_three_frameworks_give_the_same_ranked_ids_and_scores(index, reranker) -> None:
    runs = {name: run(index, reranker) for name, run in
            (("llama_index", llama_index_run), ("haystack", haystack_run), ("langchain", langchain_run))}
    reference = runs["llama_index"]
    assert len(reference) == 4
    for name, ranked in runs.items():
        assert [i for i, _ in ranked] == [i for i, _ in reference], name
        assert [s for _, s in ranked] == pytest.approx([s for _, s in reference], abs=1e-6), name
