"""The same pipeline — retrieve → pointwise rerank (a real tiny VLM) → filter — gives the same
ranked ids and scores in LlamaIndex, Haystack and LangChain: the adapters only convert."""

from __future__ import annotations

import pytest
from fake_models import ColourShapeEmbedder

from mm_rag_components import MultimodalIndex, Query
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


# pages: one mixed candidate (image + text) per page ---------------------------------------------
PAGE_RETRIEVAL = {"top_k": 3, "pages": True}
PAGE_FILTER = {"score_key": "rerank_score", "max_k": 3, "min_keep": 1}


@pytest.fixture(scope="module")
def page_index(tmp_path_factory):
    from mm_rag_components import Item
    from mm_rag_components.testing import write_sample_folder

    root = tmp_path_factory.mktemp("agree-pages")
    folder = write_sample_folder(root / "data")
    built = MultimodalIndex(root / "db", image_embedder=ColourShapeEmbedder(), chunk_size=20, chunk_overlap=8)
    items = []
    for n, shape in enumerate(["red_circle", "blue_square", "green_triangle", "yellow_circle"], start=1):
        meta = {"page_id": f"deck-{n}", "page": n, "page_count": 4, "title": "Shapes deck"}
        words = shape.replace("_", " ")
        text = f"Slide {n} shows a {words}. The {words} is drawn on white. Notes for the speaker about slide {n} follow here."
        items += [Item(image=str(folder / f"{shape}.png"), metadata=meta), Item(text=text, metadata=meta)]
    built.ingest(items)
    return built


def pages_in_each_framework(index, reranker) -> dict[str, list[tuple[str, float, str, str | None, str | None]]]:
    from haystack import Pipeline
    from langchain_classic.retrievers import ContextualCompressionRetriever
    from llama_index.core.schema import Node, QueryBundle

    from mm_rag_components.integrations import haystack as hs
    from mm_rag_components.integrations import langchain as lc
    from mm_rag_components.integrations import llama_index as li

    nodes = li.MultimodalRetriever(index, **PAGE_RETRIEVAL).retrieve(QUERY)
    nodes = li.PointwiseReranker(reranker=reranker).postprocess_nodes(nodes, QueryBundle(QUERY))
    nodes = li.RelevanceFilter(policy=FilterPolicy(**PAGE_FILTER)).postprocess_nodes(nodes)
    assert all(isinstance(n.node, Node) for n in nodes)  # text and image on one node: an LLM gets both blocks
    llama = [(n.node.node_id, n.score, n.node.get_content(), str(n.node.image_resource.path), n.node.metadata["modality"]) for n in nodes]

    pipe = Pipeline()
    pipe.add_component("retriever", hs.MultimodalRetriever(index, **PAGE_RETRIEVAL))
    pipe.add_component("reranker", hs.PointwiseReranker(reranker=reranker))
    pipe.add_component("filter", hs.RelevanceFilter(policy=FilterPolicy(**PAGE_FILTER)))
    pipe.connect("retriever.documents", "reranker.documents")
    pipe.connect("reranker.documents", "filter.documents")
    documents = pipe.run({"retriever": {"query": QUERY}, "reranker": {"query": QUERY}})["filter"]["documents"]
    assert all(d.meta["page_number"] == d.meta["page"] for d in documents)  # what DocumentToImageContent reads
    haystack = [(d.id, d.score, d.content, d.meta["file_path"], d.meta["modality"]) for d in documents]

    compressor = lc.PointwiseReranker(reranker=reranker, relevance_filter=FilterPolicy(**PAGE_FILTER))
    pipeline = ContextualCompressionRetriever(base_compressor=compressor, base_retriever=lc.MultimodalRetriever(index, **PAGE_RETRIEVAL))
    langchain = [(d.id, d.metadata["relevance_score"], d.page_content, d.metadata["image_path"], d.metadata["modality"])
                 for d in pipeline.invoke(QUERY)]
    return {"llama_index": llama, "haystack": haystack, "langchain": langchain}


def test_pages_rank_the_same_in_three_frameworks_with_image_and_text(page_index, reranker) -> None:
    from mm_rag_components.retrieval import retrieve

    core = retrieve(page_index, QUERY, **PAGE_RETRIEVAL)
    expected = list(FilterPolicy(**PAGE_FILTER).apply(reranker.rerank(Query(text=QUERY), core).candidates))
    runs = pages_in_each_framework(page_index, reranker)
    for name, rows in runs.items():
        assert [r[0] for r in rows] == [c.id for c in expected], name
        assert [r[1] for r in rows] == pytest.approx([c.score for c in expected], abs=1e-6), name
        assert [(r[2], r[3], r[4]) for r in rows] == [(c.text, c.image_path, "image+text") for c in expected], name
    assert len(expected) == 3 and all(c.modality == "image+text" and c.text.startswith("Slide") for c in expected)
