"""Haystack listwise reranking through a Haystack chat generator component (ImageContent parts,
native run_async, YAML round trip) and the ingest component."""

from __future__ import annotations

import asyncio
import base64
import io
import re

import pytest
from haystack import Document, Pipeline, component
from haystack.dataclasses import ByteStream, ChatMessage, ImageContent
from PIL import Image
from test_haystack import ALLOWED, SavedColourShape, names

from mm_rag_components import MultimodalIndex
from mm_rag_components.errors import ConfigError, ModelError
from mm_rag_components.integrations.haystack import (
    HaystackChatGenerator,
    ListwiseReranker,
    MultimodalDocumentWriter,
    MultimodalRetriever,
)


@component
class FakeChatGenerator:
    """Ranks the shown candidates in reverse order; records the messages it received."""

    def __init__(self, reverse: bool = True) -> None:
        self.reverse = reverse
        self.calls: list[tuple[str, list[ChatMessage]]] = []

    def _reply(self, messages: list[ChatMessage]) -> dict:
        n = len(re.findall(r"Candidate \[\d+\]:", "\n".join(messages[-1].texts)))
        order = range(n, 0, -1) if self.reverse else range(1, n + 1)
        answer = "Required: the colour and the shape.\n" + '{"ranking": [%s]}' % ", ".join(map(str, order))
        return {"replies": [ChatMessage.from_assistant(answer)]}

    @component.output_types(replies=list[ChatMessage])
    def run(self, messages: list[ChatMessage]) -> dict:
        self.calls.append(("sync", messages))
        return self._reply(messages)

    @component.output_types(replies=list[ChatMessage])
    async def run_async(self, messages: list[ChatMessage]) -> dict:
        self.calls.append(("async", messages))
        await asyncio.sleep(0)
        return self._reply(messages)


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    from mm_rag_components.testing import write_sample_folder

    return write_sample_folder(tmp_path_factory.mktemp("sample"))


@pytest.fixture(scope="module")
def index(tmp_path_factory, folder):
    idx = MultimodalIndex(tmp_path_factory.mktemp("db") / "chroma", image_embedder=SavedColourShape())
    idx.ingest_folder(folder)
    return idx


def listwise_pipeline(index, chat) -> Pipeline:
    pipe = Pipeline()
    pipe.add_component("retriever", MultimodalRetriever(index, image_top_k=3, text_top_k=1))
    pipe.add_component("listwise", ListwiseReranker(chat_generator=chat, window_size=10, image_format="JPEG"))
    pipe.connect("retriever.documents", "listwise.documents")
    return pipe


def test_listwise_shows_images_to_the_chat_generator_and_reverses_the_order(index, folder):
    chat = FakeChatGenerator()
    pipe = listwise_pipeline(index, chat)
    query = {"query": "a red circle", "image": str(folder / "red_square.png")}
    retrieved = pipe.get_component("retriever").run(**query)["documents"]
    out = pipe.run(query)["listwise"]["documents"]
    assert [d.id for d in out] == [d.id for d in reversed(retrieved)]
    retrieval = {d.id: d.score for d in retrieved}
    (mode, messages), = chat.calls
    user = messages[-1]
    assert mode == "sync" and messages[0].role.value == "system"
    images = user.images
    assert len(images) == 1 + sum(d.meta["modality"] == "image" for d in retrieved)  # query image + candidates
    assert all(isinstance(i, ImageContent) and i.mime_type == "image/jpeg" for i in images)
    Image.open(io.BytesIO(base64.b64decode(images[1].base64_image))).verify()
    for rank, doc in enumerate(out, start=1):
        assert doc.meta["listwise_rank"] == rank and doc.meta["listwise_parse_status"] == "json"
        assert doc.score == doc.meta["listwise_score"] and "colour and the shape" in doc.meta["listwise_rationale"]
        assert doc.meta["retrieval_score"] == retrieval[doc.id] and doc.meta["sha256"]  # original score and meta kept
    assert out[0].score == 1.0 and out[-1].score == 0.0


def test_listwise_run_async_awaits_the_chat_generators_run_async(index):
    chat = FakeChatGenerator()
    pipe = listwise_pipeline(index, chat)
    out = asyncio.run(pipe.run_async({"query": "a blue triangle"}))["listwise"]["documents"]
    assert [mode for mode, _ in chat.calls] == ["async"] and out


def test_listwise_yaml_round_trip_keeps_the_chat_generator(index):
    pipe = listwise_pipeline(index, FakeChatGenerator(reverse=False))
    text = pipe.dumps()
    for expected in ("ListwiseRanker", "HaystackChatGenerator", "test_haystack_listwise.FakeChatGenerator"):
        assert expected in text
    loaded = Pipeline.loads(text, allowed_modules=[*ALLOWED, "test_haystack_listwise"])
    listwise = loaded.get_component("listwise")
    assert isinstance(listwise.chat_generator, FakeChatGenerator) and listwise.chat_generator.reverse is False
    assert listwise.reranker.generator.image_format == "JPEG"
    assert loaded.to_dict()["components"] == pipe.to_dict()["components"]
    first = pipe.run({"query": "a green square"})["listwise"]["documents"]
    again = loaded.run({"query": "a green square"})["listwise"]["documents"]
    assert [(d.id, d.score) for d in again] == [(d.id, d.score) for d in first]


def test_chat_generator_options_and_bad_backends_are_config_errors():
    with pytest.raises(ConfigError):
        ListwiseReranker(chat_generator=object())
    with pytest.raises(ConfigError):
        ListwiseReranker(chat_generator=FakeChatGenerator(), generator=HaystackChatGenerator(FakeChatGenerator()))
    with pytest.raises(ConfigError):
        ListwiseReranker("some/model", generation_kwargs={"temperature": 0})
    with pytest.raises(ConfigError):
        ListwiseReranker(chat_generator=FakeChatGenerator(), windowsize=3)
    with pytest.raises(ConfigError):
        ListwiseReranker(chat_generator=FakeChatGenerator(), image_format="BMP")
    with pytest.raises(ConfigError):
        ListwiseReranker(chat_generator=FakeChatGenerator()).run(documents=[Document(content="x")])


def test_a_broken_reply_is_flagged_not_fatal():
    @component
    class Silent:
        @component.output_types(replies=list[ChatMessage])
        def run(self, messages: list[ChatMessage]) -> dict:
            return {"replies": []}

    docs = [Document(content="first"), Document(content="second")]
    out = ListwiseReranker(chat_generator=Silent()).run(documents=docs, query="q")["documents"]
    assert [d.content for d in out] == ["first", "second"] and out[0].meta["listwise_flag"] == "generator_error"


def test_local_listwise_model_loads_in_warm_up(tmp_path):
    reranker = ListwiseReranker(tmp_path / "missing-vlm", max_new_tokens=8)  # nothing is read yet
    assert reranker.to_dict()["init_parameters"]["reranker"]["generator"]["max_new_tokens"] == 8
    with pytest.raises(ModelError):
        reranker.warm_up()


def _png_bytes(colour: tuple[int, int, int]) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (64, 64), colour).save(buffer, format="PNG")
    return buffer.getvalue()


def test_writer_ingests_documents_and_files(tmp_path, folder):
    index = MultimodalIndex(tmp_path / "db", image_embedder=SavedColourShape())
    writer = MultimodalDocumentWriter(index)
    (tmp_path / "notes.csv").write_text("a,b")
    (tmp_path / "bad.txt").write_bytes(b"\xff\xfe\xfa broken")
    docs = [
        Document(content="A red circle on white.", meta={"file_path": str(folder / "red_circle.png"), "author": "me"}),
        Document(content="Trains carry freight.", meta={"file_path": "trains.txt", "lang": "en", "rerank_score": 0.3}),
        Document(blob=ByteStream(_png_bytes((30, 60, 220)), mime_type="image/png"), meta={"origin": "upload"}),
        Document(content="   "),
    ]
    sources = [folder / "blue_square.png", folder / "cats.txt"]
    sources += [tmp_path / "notes.csv", tmp_path / "bad.txt", tmp_path / "nope.png"]
    out = writer.run(documents=docs, sources=sources)
    counts = out["counts"]
    assert counts["added"] == 5 and counts["ignored"] == 1 and counts["skipped"] == 3
    assert out["documents_written"] == counts["records"] >= 5 and "nope.png" in out["summary"]
    again = writer.run(sources=[folder])["counts"]  # the whole folder: files known by path are unchanged
    assert again["unchanged"] == 3 and again["added"] == len(list(folder.iterdir())) - 3
    found = MultimodalRetriever(index, modalities=["image"], top_k=1).run(query="a red circle")["documents"]
    assert names(found) == ["red_circle.png"] and found[0].meta["author"] == "me"
    texts = MultimodalRetriever(index, modalities=["text"], top_k=5).run(query="freight trains")["documents"]
    trains = [d for d in texts if d.meta.get("lang") == "en"]
    assert trains and "rerank_score" not in trains[0].meta  # provenance is not stored as content metadata
    assert MultimodalDocumentWriter.from_dict(writer.to_dict()).index.collection == index.collection
    with pytest.raises(ConfigError):
        writer.run()
    with pytest.raises(ConfigError):
        writer.run(sources=str(folder))
