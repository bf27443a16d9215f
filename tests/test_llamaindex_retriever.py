"""MultimodalRetriever as a LlamaIndex BaseRetriever: typed nodes, image/composed queries,
async, callbacks, and inside a RetrieverQueryEngine with a mock LLM."""

import asyncio
import base64

import pytest
from fake_models import ColourShapeEmbedder, WordHashEmbedder
from llama_index.core.callbacks import CallbackManager, CBEventType, LlamaDebugHandler
from llama_index.core.llms import MockLLM
from llama_index.core.query_engine import RetrieverQueryEngine
from llama_index.core.schema import ImageNode, QueryBundle, TextNode
from PIL import Image

from mm_rag_components import MultimodalIndex
from mm_rag_components.integrations.llama_index import MultimodalRetriever
from mm_rag_components.errors import ConfigError
from mm_rag_components.retrieval import RetrievalOptions


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    from mm_rag_components.testing import write_sample_folder

    return write_sample_folder(tmp_path_factory.mktemp("sample"))


@pytest.fixture(scope="module")
def index(tmp_path_factory, folder):
    idx = MultimodalIndex(tmp_path_factory.mktemp("db") / "chroma", image_embedder=ColourShapeEmbedder())
    idx.ingest_folder(folder)
    return idx


def file_names(nodes):
    return [n.node.metadata["source"].rsplit("/", 1)[-1] for n in nodes]


def test_text_query_returns_typed_nodes_with_provenance(index):
    nodes = MultimodalRetriever(index, image_top_k=2, text_top_k=1).retrieve("a yellow triangle")
    images = [n for n in nodes if isinstance(n.node, ImageNode)]
    texts = [n for n in nodes if not isinstance(n.node, ImageNode)]
    assert len(images) == 2 and len(texts) == 1 and isinstance(texts[0].node, TextNode)
    assert file_names(images)[0] == "yellow_triangle.png"
    top = images[0].node
    assert top.image_path.endswith("yellow_triangle.png") and top.image is None  # a path, never base64
    assert top.metadata["retrieval_score"] == images[0].score and top.metadata["score_scale"] == "cosine"
    assert "score_scale" in top.excluded_llm_metadata_keys
    assert [n.score for n in nodes] == sorted((n.score for n in nodes), reverse=True)


def test_image_query_from_query_bundle_image_path(index, folder):
    retriever = MultimodalRetriever(index, modalities=["image"], top_k=1)
    nodes = retriever.retrieve(QueryBundle(query_str="", image_path=str(folder / "blue_square.png")))
    assert file_names(nodes) == ["blue_square.png"] and nodes[0].score == pytest.approx(1.0, abs=1e-4)


@pytest.mark.parametrize("kind", ["path", "str", "pil", "bytes", "base64"])
def test_retrieve_multimodal_accepts_every_image_source(index, folder, kind):
    path = folder / "green_triangle.png"
    image = {
        "path": path, "str": str(path), "pil": Image.open(path), "bytes": path.read_bytes(),
        "base64": base64.b64encode(path.read_bytes()).decode(),
    }[kind]
    nodes = MultimodalRetriever(index, modalities=["image"], top_k=1).retrieve_multimodal(image=image)
    assert file_names(nodes) == ["green_triangle.png"]


def test_composed_query_and_fusion_weight(index, folder):
    balanced = MultimodalRetriever(index, modalities=["image"], top_k=1, image_weight=0.5)
    image_heavy = MultimodalRetriever(index, modalities=["image"], top_k=1, image_weight=0.95)
    assert file_names(balanced.retrieve_multimodal(text="square", image=folder / "red_circle.png")) == ["red_square.png"]
    assert file_names(image_heavy.retrieve_multimodal(text="square", image=folder / "red_circle.png")) == ["red_circle.png"]


def test_filters_pass_through(index, folder):
    retriever = MultimodalRetriever(index, modalities=["image"], top_k=5, where={"file_name": {"$in": ["red_square.png", "blue_circle.png"]}})
    assert sorted(file_names(retriever.retrieve("red"))) == ["blue_circle.png", "red_square.png"]


def test_async_retrieval_matches_sync_and_runs_concurrently(index, folder):
    retriever = MultimodalRetriever(index, top_k=3)

    async def both():
        return await asyncio.gather(
            retriever.aretrieve("a blue circle"), retriever.aretrieve_multimodal(text="circle", image=folder / "red_circle.png")
        )

    by_text, composed = asyncio.run(both())
    assert [n.node.node_id for n in by_text] == [n.node.node_id for n in retriever.retrieve("a blue circle")]
    sync = retriever.retrieve_multimodal(text="circle", image=folder / "red_circle.png")
    assert [n.node.node_id for n in composed] == [n.node.node_id for n in sync]


def test_callbacks_see_every_kind_of_query(index, folder):
    debug = LlamaDebugHandler()
    retriever = MultimodalRetriever(index, top_k=1, callback_manager=CallbackManager([debug]))
    retriever.retrieve("red")
    retriever.retrieve_multimodal(image=Image.open(folder / "red_square.png"))
    assert len(debug.get_event_pairs(CBEventType.RETRIEVE)) == 2


def test_skipped_modality_is_visible_in_last_notes(tmp_path, folder):
    idx = MultimodalIndex(tmp_path / "db", image_embedder=ColourShapeEmbedder(), text_embedder=WordHashEmbedder())
    idx.ingest_folder(folder)
    retriever = MultimodalRetriever(idx, top_k=2)
    nodes = retriever.retrieve_multimodal(image=folder / "red_square.png")
    assert all(isinstance(n.node, ImageNode) for n in nodes) and retriever.last_notes
    mixed = retriever.retrieve_multimodal(text="trains", image=folder / "red_square.png")
    assert {n.node.metadata["score_scale"] for n in mixed} == {"rrf"} and retriever.last_notes == []


def test_bad_options_and_empty_queries_are_config_errors(index):
    with pytest.raises(ConfigError):
        MultimodalRetriever(index, modalities=["video"])
    with pytest.raises(ConfigError):
        MultimodalRetriever(index, top_k=0)
    with pytest.raises(ConfigError):
        MultimodalRetriever(index).retrieve_multimodal()
    assert isinstance(MultimodalRetriever(index).options, RetrievalOptions)


def test_retriever_inside_a_query_engine_with_a_mock_llm(index):
    retriever = MultimodalRetriever(index, modalities=["text"], top_k=2)
    expected = [n.node.node_id for n in retriever.retrieve("primary colours of light: red green blue")]
    engine = RetrieverQueryEngine.from_args(retriever, llm=MockLLM())
    response = engine.query("primary colours of light: red green blue")
    assert [n.node.node_id for n in response.source_nodes] == expected
    assert any("primary colours" in n.node.get_content() for n in response.source_nodes)
    assert "primary colours" in str(response)  # MockLLM echoes the prompt, which holds the context


def test_tiny_clip_plumbing_through_llamaindex(tmp_path, clip_embedder, folder):
    idx = MultimodalIndex(tmp_path / "db", image_embedder=clip_embedder)
    idx.ingest_folder(folder)
    retriever = MultimodalRetriever(idx, image_top_k=2, text_top_k=1)
    nodes = retriever.retrieve(QueryBundle(query_str="", image_path=str(folder / "blue_circle.png")))
    images = [n for n in nodes if isinstance(n.node, ImageNode)]
    assert images[0].node.image_path.endswith("blue_circle.png") and images[0].score == pytest.approx(1.0, abs=1e-4)
    assert any(not isinstance(n.node, ImageNode) for n in nodes)
    engine = RetrieverQueryEngine.from_args(MultimodalRetriever(idx, modalities=["text"], top_k=3), llm=MockLLM())
    cats = (folder / "cats.txt").read_text()
    response = engine.query(cats)  # an exact match: the only ranking a random-weight CLIP gets right
    assert len(response.source_nodes) == 3 and response.source_nodes[0].node.get_content() == cats


def test_query_engine_in_multimodal_mode_sends_the_images_to_the_llm(tmp_path, clip_embedder, sample_folder):
    """The README's recipe: RetrieverQueryEngine(..., multimodal=True) hands every kept image to the
    LLM as an image block; without it LlamaIndex sends text only."""
    from llama_index.core.base.llms.types import ImageBlock

    class SpyLLM(MockLLM):
        model_config = {"extra": "allow"}

        def chat(self, messages, **kwargs):
            self.received.extend(b for m in messages for b in m.blocks)
            return super().chat(messages, **kwargs)

    index = MultimodalIndex(tmp_path / "db", image_embedder=clip_embedder)
    index.ingest_folder(sample_folder)
    retriever = MultimodalRetriever(index, image_top_k=3, text_top_k=1)
    sent = {}
    for multimodal in (True, False):
        llm = SpyLLM(is_chat_model=True, max_tokens=8)
        llm.received = []
        response = RetrieverQueryEngine.from_args(retriever, llm=llm, multimodal=multimodal).query("a red circle")
        sent[multimodal] = [b for b in llm.received if isinstance(b, ImageBlock)]
        images = [n for n in response.source_nodes if n.node.metadata.get("modality") == "image"]
        assert len(images) == 3
    assert len(sent[True]) == 3 and sent[False] == []
    received = sorted(Image.open(block.resolve_image()).convert("RGB").tobytes() for block in sent[True])
    expected = sorted(Image.open(n.node.image_path).convert("RGB").tobytes() for n in response.source_nodes if n.node.metadata.get("modality") == "image")
    assert received == expected  # the very pixels of the retrieved images
