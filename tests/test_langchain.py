"""LangChain adapters: retriever → rerank (pointwise / listwise) → filter inside
ContextualCompressionRetriever, image documents and queries, async, config, bad inputs."""

from __future__ import annotations

import asyncio
import base64
import io
import json
import re
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from fake_models import COLOURS, ColourShapeEmbedder
from langchain_classic.retrievers import ContextualCompressionRetriever
from langchain_classic.retrievers.document_compressors import DocumentCompressorPipeline
from langchain_core.documents import Document
from langchain_core.language_models.chat_models import BaseChatModel
from langchain_core.messages import AIMessage, BaseMessage, HumanMessage
from langchain_core.outputs import ChatGeneration, ChatResult
from PIL import Image

from mm_rag_components import MultimodalIndex
from mm_rag_components.errors import ConfigError
from mm_rag_components.filters import FilterPolicy
from mm_rag_components.integrations.langchain import (
    IMAGE_PATH,
    ListwiseReranker,
    MultimodalRetriever,
    PointwiseReranker,
    RelevanceFilter,
)
from mm_rag_components.media import load_image
from mm_rag_components.rerank.pointwise import PointwiseRanker
from mm_rag_components.scoring.base import PointScore
from mm_rag_components.types import Candidate, Query


# ------------------------------------------------------------------ fakes
def colour_of(image: Image.Image) -> str:
    pixels = np.asarray(image, dtype=np.float32)
    mean = pixels[pixels.sum(axis=2) < 600].mean(axis=0)
    return min(COLOURS, key=lambda c: float(np.linalg.norm(mean - np.array(COLOURS[c]))))


class ColourScorer:
    """Deterministic pointwise scorer: an image scores high when its drawn colour is the query's
    colour (named in the text, or the colour of the query image); a text when it names it."""

    name = "colour"

    def __init__(self) -> None:
        self.seen: list[tuple[Query, list[Candidate]]] = []
        self.async_calls = 0

    def _colour(self, query: Query) -> str | None:
        if query.image is not None:
            return colour_of(load_image(query.image))
        return next((c for c in COLOURS if c in (query.text or "").lower()), None)

    def score(self, query: Query, candidates: list[Candidate]) -> list[PointScore]:
        self.seen.append((query, list(candidates)))
        colour, out = self._colour(query), []
        for c in candidates:
            if c.modality == "image":
                out.append(PointScore.from_logodds(3.0 if colour_of(load_image(c.image_source)) == colour else -3.0))
            else:
                out.append(PointScore.from_logodds(0.5 if colour and colour in (c.text or "").lower() else -1.0))
        return out

    async def ascore(self, query: Query, candidates: list[Candidate]) -> list[PointScore]:
        self.async_calls += 1
        await asyncio.sleep(0)
        return self.score(query, candidates)


class RecordingChat(BaseChatModel):
    """A chat model that records the messages it gets and answers with a scripted ranking."""

    answer: str = '{"ranking": [1]}'
    received: list[list[BaseMessage]] = []
    async_calls: int = 0

    @property
    def _llm_type(self) -> str:
        return "recording-chat"

    def _reply(self, messages: list[BaseMessage]) -> ChatResult:
        self.received.append(list(messages))
        return ChatResult(generations=[ChatGeneration(message=AIMessage(content=self.answer))])

    def _generate(self, messages: list[BaseMessage], stop: Any = None, run_manager: Any = None, **kw: Any) -> ChatResult:
        return self._reply(messages)

    async def _agenerate(self, messages: list[BaseMessage], stop: Any = None, run_manager: Any = None, **kw: Any) -> ChatResult:
        self.async_calls += 1
        await asyncio.sleep(0)
        return self._reply(messages)


# ------------------------------------------------------------------ fixtures
@pytest.fixture(scope="module")
def folder(tmp_path_factory) -> Path:
    from mm_rag_components.testing import write_sample_folder

    return write_sample_folder(tmp_path_factory.mktemp("sample"))


@pytest.fixture(scope="module")
def index(tmp_path_factory, folder) -> MultimodalIndex:
    idx = MultimodalIndex(tmp_path_factory.mktemp("db") / "chroma", image_embedder=ColourShapeEmbedder())
    idx.ingest_folder(folder)
    return idx


@pytest.fixture()
def retriever(index) -> MultimodalRetriever:
    return MultimodalRetriever(index, image_top_k=4, text_top_k=2)


def name(doc: Document) -> str:
    return Path(doc.metadata["source"]).name


# ------------------------------------------------------------------ retriever
def test_retriever_returns_image_and_text_documents(retriever, folder) -> None:
    docs = retriever.invoke("a red circle")
    images = [d for d in docs if IMAGE_PATH in d.metadata]
    texts = [d for d in docs if IMAGE_PATH not in d.metadata]
    assert len(images) == 4 and len(texts) == 2
    assert name(images[0]) == "red_circle.png" and images[0].metadata[IMAGE_PATH] == str(folder / "red_circle.png")
    assert images[0].page_content == "" and images[0].metadata["modality"] == "image"  # no caption ingested
    assert all(t.page_content and t.metadata["modality"] == "text" for t in texts)
    assert all(d.id and d.metadata["score_scale"] == "cosine" and "sha256" in d.metadata for d in docs)
    scores = [d.metadata["retrieval_score"] for d in docs]
    assert scores == sorted(scores, reverse=True)


def test_image_queries_in_every_form(index, folder) -> None:
    retriever = MultimodalRetriever(index, modalities=["image"], top_k=1)
    path = folder / "blue_square.png"
    pil = Image.open(path).convert("RGB")
    assert name(retriever.invoke({"image": str(path)})[0]) == "blue_square.png"
    assert name(retriever.invoke(Query(image=path))[0]) == "blue_square.png"
    assert name(retriever.invoke_multimodal(image=pil)[0]) == "blue_square.png"
    assert name(asyncio.run(retriever.ainvoke({"text": "", "image": path.read_bytes()}))[0]) == "blue_square.png"
    assert name(asyncio.run(retriever.ainvoke_multimodal(text="square", image=pil))[0]) == "blue_square.png"


# ------------------------------------------------------------------ pointwise in ContextualCompressionRetriever
def test_pointwise_reranker_inside_contextual_compression_sync_and_async(retriever, folder) -> None:
    scorer = ColourScorer()
    reranker = PointwiseReranker(scorer=scorer, top_n=3)
    pipeline = ContextualCompressionRetriever(base_compressor=reranker, base_retriever=retriever)

    docs = pipeline.invoke("something blue")
    query, seen = scorer.seen[-1]
    retrieval = {d.id: d.metadata["retrieval_score"] for d in retriever.invoke("something blue")}
    assert query == Query(text="something blue") and len(seen) == 6
    images = [c for c in seen if c.modality == "image"]
    assert len(images) == 4 and all(Path(c.image_path).is_file() and c.image_path == c.metadata[IMAGE_PATH] for c in images)
    assert len(docs) == 3 and all(name(d).startswith("blue_") for d in docs)
    scores = [d.metadata["relevance_score"] for d in docs]
    assert scores == sorted(scores, reverse=True) and scores[0] == pytest.approx(1 / (1 + np.exp(-3.0)))
    for d in docs:  # provenance added, retrieval metadata kept
        meta = d.metadata
        assert meta["rerank_score"] == meta["relevance_score"] and meta["rerank_logodds"] == 3.0
        assert meta["rerank_flag"] is None and meta["retrieval_score"] == retrieval[d.id]
        assert {"source", "sha256", "cosine", "rank", "score_scale", IMAGE_PATH} <= set(meta)
    assert reranker.last_result is not None and reranker.last_result.total == 6

    adocs = asyncio.run(pipeline.ainvoke("something blue"))
    assert scorer.async_calls == 1  # the core's native async path, not a thread around compress_documents
    assert [(d.id, d.metadata["relevance_score"]) for d in adocs] == [(d.id, d.metadata["relevance_score"]) for d in docs]


def test_query_image_reaches_the_scorer_through_the_pipeline(retriever, folder) -> None:
    scorer = ColourScorer()
    pipeline = ContextualCompressionRetriever(base_compressor=PointwiseReranker(scorer=scorer, top_n=2), base_retriever=retriever)
    image = str(folder / "green_triangle.png")
    docs = pipeline.invoke({"text": "", "image": image})
    assert scorer.seen[-1][0] == Query(image=image)
    assert len(docs) == 2 and all(name(d).startswith("green_") for d in docs)


def test_documents_are_new_and_metadata_is_never_lost(folder) -> None:
    docs = [
        Document(page_content="a blue thing", metadata={"page": 3, "nested": {"a": [1, 2]}}),
        Document(page_content="a caption", metadata={IMAGE_PATH: str(folder / "blue_circle.png"), "source": "x"}, id="img"),
        Document(page_content="", metadata={"modality": "image", "source": str(folder / "red_square.png")}),
    ]
    snapshot = [(d.page_content, json.dumps(d.metadata, sort_keys=True)) for d in docs]
    scorer = ColourScorer()
    out = PointwiseReranker(scorer=scorer).compress_documents(docs, "blue")
    assert [c.modality for c in scorer.seen[-1][1]] == ["text", "image", "image"]
    assert scorer.seen[-1][1][2].image_path == str(folder / "red_square.png")  # image from "source"
    assert [d.id for d in out] == ["img", None, None] and out[1].metadata["page"] == 3
    assert out[1].metadata["nested"] == {"a": [1, 2]} and out[0].page_content == "a caption"
    assert all(o is not d for o in out for d in docs)
    assert [(d.page_content, json.dumps(d.metadata, sort_keys=True)) for d in docs] == snapshot


# ------------------------------------------------------------------ filtering
def test_relevance_filter_after_rerank_reports_reasons(retriever) -> None:
    reranker = PointwiseReranker(scorer=ColourScorer(), relevance_filter={"threshold": 0.5})
    pipeline = ContextualCompressionRetriever(base_compressor=reranker, base_retriever=retriever)
    docs = pipeline.invoke("a yellow square")
    report = reranker.last_report
    assert report is not None and report.total == 6 and report.kept == len(docs)
    assert all(d.metadata["relevance_score"] >= 0.5 for d in docs) and all(name(d).startswith("yellow_") for d in docs)
    assert report.reasons == {"below_threshold": 6 - len(docs)} and "below_threshold" in report.summary()
    dropped = reranker.last.dropped
    assert len(dropped) == report.dropped and all(d.metadata["filter_reason"] == "below_threshold" for d in dropped)
    assert set(report.dropped_ids) == {d.id for d in dropped}

    asyncio.run(pipeline.ainvoke("a yellow square"))
    assert reranker.last_report.reasons == report.reasons


def test_min_keep_and_a_standalone_filter_in_a_compressor_pipeline(retriever) -> None:
    policy = FilterPolicy(threshold=0.99, min_keep=1)
    reranker = PointwiseReranker(scorer=ColourScorer(), relevance_filter=policy)
    docs = reranker.compress_documents(retriever.invoke("red"), "red")
    assert len(docs) == 1 and docs[0].metadata["filter_reason"] == "below_threshold (kept by min_keep)"

    cut = RelevanceFilter(score_key="rerank_score", max_k=2)
    pipeline = ContextualCompressionRetriever(
        base_compressor=DocumentCompressorPipeline(transformers=[PointwiseReranker(scorer=ColourScorer()), cut]),
        base_retriever=retriever,
    )
    out = pipeline.invoke("red")
    assert len(out) == 2 and all(name(d).startswith("red_") for d in out)
    assert cut.last_report.reasons == {"over_max_k": 4}


# ------------------------------------------------------------------ listwise through a LangChain chat model
def test_listwise_reranker_sends_image_blocks_to_a_chat_model(retriever, folder) -> None:
    chat = RecordingChat(answer='Reasoning: the last one fits best.\n{"ranking": [3, 2, 1]}', received=[])
    reranker = ListwiseReranker(llm=chat, window_size=3, step=1)
    pipeline = ContextualCompressionRetriever(base_compressor=reranker, base_retriever=MultimodalRetriever(retriever.index, image_top_k=2, text_top_k=1))
    retrieved = pipeline.base_retriever.invoke({"text": "a red circle", "image": str(folder / "red_circle.png")})
    docs = pipeline.invoke({"text": "a red circle", "image": str(folder / "red_circle.png")})
    assert [d.id for d in docs] == [d.id for d in reversed(retrieved)]
    assert [d.metadata["listwise_rank"] for d in docs] == [1, 2, 3]
    assert all(d.metadata["relevance_score"] == d.metadata["listwise_score"] for d in docs)
    assert docs[0].metadata["listwise_parse_status"] == "json" and "last one" in docs[0].metadata["listwise_rationale"]
    user = [m for m in chat.received[-1] if isinstance(m, HumanMessage)][0]
    images = [b for b in user.content if isinstance(b, dict) and b["type"] == "image"]
    assert len(images) == 1 + sum(IMAGE_PATH in d.metadata for d in retrieved)  # query image + candidate images
    assert all(b["mime_type"] == "image/png" for b in images)
    assert Image.open(io.BytesIO(base64.b64decode(images[0]["base64"]))).size[0] > 0
    assert any(b["type"] == "text" and "a red circle" in b["text"] for b in user.content)
    assert reranker.last_listwise is not None and reranker.last_listwise.windows[0].status == "json"

    asyncio.run(pipeline.ainvoke("a red circle"))
    assert chat.async_calls == 1  # native async through the chat model's ainvoke


# ------------------------------------------------------------------ the real tiny VLM
def test_real_tiny_vlm_reranks_image_documents(retriever, folder, tiny_vlm_dirs) -> None:
    reranker = PointwiseReranker(tiny_vlm_dirs["idefics3"], top_n=3, batch_size=4, relevance_filter={"min_keep": 1, "top_p": 0.99})
    pipeline = ContextualCompressionRetriever(base_compressor=reranker, base_retriever=retriever)
    docs = pipeline.invoke("a red circle")
    assert 1 <= len(docs) <= 3 and reranker.last_result.total == 6
    scores = [d.metadata["relevance_score"] for d in reranker.last.documents]
    assert scores == sorted(scores, reverse=True)  # the filter keeps the reranked order
    for d in reranker.last_result.candidates:
        assert 0.0 < d.metadata["rerank_score"] < 1.0 and d.metadata["rerank_flag"] is None  # images were read
    adocs = asyncio.run(pipeline.ainvoke({"image": str(folder / "red_circle.png")}))
    assert 1 <= len(adocs) <= 3 and all(0.0 < d.metadata["rerank_score"] < 1.0 for d in adocs)


# ------------------------------------------------------------------ bad inputs
def test_bad_inputs_are_config_errors(index, folder) -> None:
    scorer = ColourScorer()
    with pytest.raises(ConfigError, match="treshold"):
        PointwiseReranker(scorer=scorer, treshold=0.5)
    with pytest.raises(ConfigError, match="treshold"):
        PointwiseReranker(scorer=scorer, relevance_filter={"treshold": 0.5})
    with pytest.raises(ConfigError, match="treshold"):
        RelevanceFilter(treshold=0.5)
    with pytest.raises(ConfigError, match="topk"):
        MultimodalRetriever(index, topk=3)
    with pytest.raises(ConfigError, match="exactly one"):
        PointwiseReranker()
    with pytest.raises(ConfigError, match="window_sise"):
        ListwiseReranker(llm=RecordingChat(), window_sise=3)
    with pytest.raises(ConfigError):
        ListwiseReranker(llm=object())
    with pytest.raises(ConfigError):
        ListwiseReranker(generator=object())
    with pytest.raises(ConfigError):
        MultimodalRetriever("not an index")
    with pytest.raises(ConfigError):
        PointwiseReranker(scorer=scorer, relevance_filter=0.5)
    reranker = PointwiseReranker(scorer=scorer)
    doc = Document(page_content="text")
    for bad_docs in (["text"], "text", [doc, {"page_content": "x"}], doc):
        with pytest.raises(ConfigError):
            reranker.compress_documents(bad_docs, "q")
    for bad_query in (42, "", {"txt": "q"}, ["q"], None):
        with pytest.raises(ConfigError):
            reranker.compress_documents([doc], bad_query)
    with pytest.raises(ConfigError, match="image_path"):
        reranker.compress_documents([Document(page_content="x", metadata={IMAGE_PATH: 5})], "q")
    with pytest.raises(ConfigError, match="image_path"):
        reranker.compress_documents([Document(page_content="x", metadata={"modality": "image"})], "q")
    with pytest.raises(ConfigError):
        asyncio.run(reranker.acompress_documents([doc], 42))
    with pytest.raises(ConfigError):
        MultimodalRetriever(index).invoke(42)
    assert reranker.compress_documents([], "q") == []


# ------------------------------------------------------------------ configuration
def test_reranker_and_filter_config_round_trips(tiny_vlm_dirs) -> None:
    pointwise = PointwiseReranker(tiny_vlm_dirs["idefics3"], top_n=2, batch_size=3, relevance_filter={"threshold": 0.3, "min_keep": 1})
    data = json.loads(json.dumps(pointwise.to_dict()))
    assert data["reranker"]["scorer"]["type"] == "TransformersScorer" and data["relevance_filter"]["threshold"] == 0.3
    again = PointwiseReranker.from_dict(data)
    assert isinstance(again, PointwiseReranker) and again.to_dict() == data and again.top_n == 2
    assert PointwiseReranker.from_dict(data, top_n=5).top_n == 5

    chat = RecordingChat(answer='{"ranking": [2, 1]}', received=[])
    listwise = ListwiseReranker(llm=chat, image_format="JPEG", window_size=4, step=2, relevance_filter=FilterPolicy(max_k=1))
    data = json.loads(json.dumps(listwise.to_dict()))
    assert data["reranker"]["generator"]["llm"] == {"class": "RecordingChat", "model": "RecordingChat"}
    with pytest.raises(ConfigError, match="llm="):
        ListwiseReranker.from_dict(data)
    rebuilt = ListwiseReranker.from_dict(data, llm=chat)
    assert rebuilt.to_dict() == data and rebuilt.ranker.generator.llm is chat
    out = rebuilt.compress_documents([Document(page_content="a"), Document(page_content="b")], "q")
    assert [d.page_content for d in out] == ["b"] and rebuilt.last_report.reasons == {"over_max_k": 1}

    filt = RelevanceFilter(score_key="calibrated_score", top_p=0.9)
    assert RelevanceFilter.from_dict(json.loads(json.dumps(filt.to_dict()))).policy == filt.policy
    with pytest.raises(ConfigError):
        PointwiseReranker.from_dict({"relevance_filter": None})


def test_retriever_config_round_trip(tmp_path, clip_embedder) -> None:
    index = MultimodalIndex(tmp_path / "db", image_embedder=clip_embedder)
    retriever = MultimodalRetriever(index, modalities=["image"], image_top_k=2)
    data = json.loads(json.dumps(retriever.to_dict()))
    assert data["index"]["image_embedder"]["type"] == "ClipEmbedder" and data["options"]["image_top_k"] == 2
    rebuilt_retriever = MultimodalRetriever.from_dict(data, image_embedder=clip_embedder)
    assert rebuilt_retriever.options == retriever.options and rebuilt_retriever.to_dict() == data
    with pytest.raises(ConfigError):
        MultimodalRetriever.from_dict({"options": {}})


def test_a_ready_core_reranker_is_wrapped_as_is() -> None:
    core = PointwiseRanker(ColourScorer(), top_n=1)
    assert PointwiseReranker(reranker=core).reranker is core
    with pytest.raises(ConfigError):
        PointwiseReranker(reranker=core, top_n=2)
    assert re.search(r"colour", repr(PointwiseReranker(reranker=core)))
