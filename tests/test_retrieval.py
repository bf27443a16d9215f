"""Query routing, composed queries, modality selection, score scales and filters."""

import asyncio

import numpy as np
import pytest
from llama_index.core.llms import MockLLM
from llama_index.core.query_engine import RetrieverQueryEngine
from llama_index.core.schema import ImageNode, QueryBundle, TextNode
from PIL import Image

from mm_rag_components import MultimodalIndex, MultimodalRetriever, Query, TextEmbedder
from mm_rag_components.errors import ConfigError
from mm_rag_components.retrieval import RetrievalOptions, query_vector, retrieve
from mm_rag_components.testing import build_tiny_text_embedder


@pytest.fixture()
def index(tmp_path, clip_embedder, sample_folder):
    idx = MultimodalIndex(tmp_path / "db", image_embedder=clip_embedder)
    idx.ingest_folder(sample_folder, metadata={"set": "sample"})
    return idx


def test_image_query_finds_itself_first(index, sample_folder):
    result = retrieve(index, Query(image=sample_folder / "yellow_triangle.png"), RetrievalOptions(modalities=["image"], top_k=3))
    top = result.candidates[0]
    assert top.image_path.endswith("yellow_triangle.png") and top.score == pytest.approx(1.0, abs=1e-4)
    assert [c.modality for c in result.candidates] == ["image"] * 3


def test_text_query_finds_an_exact_text_chunk(index):
    text = "Red, green and blue are the primary colours of light. Mixing them gives white."
    result = retrieve(index, Query(text=text), RetrievalOptions(modalities=["text"], top_k=2))
    assert result.candidates[0].text == text
    assert result.candidates[0].metadata["score_scale"] == "cosine"


def test_per_modality_top_k_and_one_cosine_scale(index):
    result = retrieve(index, Query(text="a red circle"), RetrievalOptions(image_top_k=4, text_top_k=2))
    modalities = [c.modality for c in result.candidates]
    assert modalities.count("image") == 4 and modalities.count("text") == 2
    scores = [c.score for c in result.candidates]
    assert scores == sorted(scores, reverse=True)
    assert all(c.metadata["score_scale"] == "cosine" and c.score == c.metadata["cosine"] for c in result.candidates)


def test_composed_query_fuses_image_and_text_vectors(index, sample_folder):
    image = sample_folder / "green_circle.png"
    e = index.image_embedder
    expected = 0.7 * e.embed_images([image])[0] + 0.3 * e.embed_texts(["something green"])[0]
    expected /= np.linalg.norm(expected)
    got = query_vector(index, Query(text="something green", image=image), image_weight=0.7)
    np.testing.assert_allclose(got, expected, atol=1e-5)
    result = retrieve(index, Query(text="something green", image=image), RetrievalOptions(modalities=["image"], image_weight=0.9))
    assert result.candidates[0].image_path.endswith("green_circle.png")


def test_metadata_filters_pass_through(index, tmp_path, clip_embedder):
    index.ingest([__import__("mm_rag_components").Item(text="Boats float on water.", metadata={"set": "extra"})])
    hits = retrieve(index, Query(text="boats"), RetrievalOptions(modalities=["text"], top_k=10, where={"set": "extra"}))
    assert [c.text for c in hits.candidates] == ["Boats float on water."]


def test_separate_text_embedder_merges_by_reciprocal_rank(tmp_path, clip_embedder, sample_folder):
    text_embedder = TextEmbedder(build_tiny_text_embedder(tmp_path / "text-model"))
    idx = MultimodalIndex(tmp_path / "db2", image_embedder=clip_embedder, text_embedder=text_embedder)
    idx.ingest_folder(sample_folder)
    assert idx.count() == {"image": 12, "text": 3}
    result = retrieve(idx, Query(text="trains", image=sample_folder / "red_square.png"), RetrievalOptions(top_k=2))
    assert {c.metadata["score_scale"] for c in result.candidates} == {"rrf"}
    assert sorted(c.score for c in result.candidates) == pytest.approx([1 / 62, 1 / 62, 1 / 61, 1 / 61])
    assert all("cosine" in c.metadata for c in result.candidates)
    image_only = retrieve(idx, Query(image=sample_folder / "red_square.png"))
    assert all(c.modality == "image" for c in image_only.candidates)
    assert image_only.notes and "skipped" in image_only.notes[0]


def test_bad_options_are_config_errors():
    with pytest.raises(ConfigError):
        RetrievalOptions(modalities=["audio"])
    with pytest.raises(ConfigError):
        RetrievalOptions(top_k=0)
    with pytest.raises(ConfigError):
        RetrievalOptions(image_weight=1.5)


def test_llamaindex_retriever_returns_typed_nodes(index, sample_folder):
    retriever = MultimodalRetriever(index, image_top_k=2, text_top_k=1)
    nodes = retriever.retrieve(QueryBundle(query_str="", image_path=str(sample_folder / "blue_circle.png")))
    images = [n for n in nodes if isinstance(n.node, ImageNode)]
    assert images[0].node.image_path.endswith("blue_circle.png") and images[0].node.image is None
    assert any(isinstance(n.node, TextNode) and not isinstance(n.node, ImageNode) for n in nodes)
    assert nodes[0].node.metadata["retrieval_score"] == nodes[0].score
    pil_nodes = retriever.retrieve_multimodal(image=Image.open(sample_folder / "blue_circle.png"))
    assert pil_nodes[0].node.image_path.endswith("blue_circle.png")
    async_nodes = asyncio.run(retriever.aretrieve("a blue circle"))
    assert [n.node.node_id for n in async_nodes] == [n.node.node_id for n in retriever.retrieve("a blue circle")]


def test_llamaindex_retriever_inside_a_query_engine(index):
    retriever = MultimodalRetriever(index, modalities=["text"], top_k=2)
    engine = RetrieverQueryEngine.from_args(retriever, llm=MockLLM())
    response = engine.query("What are the primary colours of light?")
    assert len(response.source_nodes) == 2
    assert any("primary colours" in n.node.get_content() for n in response.source_nodes)
    assert "primary colours" in str(response)  # MockLLM echoes the prompt, which holds the context
