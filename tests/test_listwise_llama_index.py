"""ListwiseReranker as a LlamaIndex postprocessor: LLM image blocks, async, local transformers VLM."""

from __future__ import annotations

import asyncio
import base64
import io
import re
from typing import Any, Sequence

import pytest
from llama_index.core.base.llms.types import (
    ChatMessage,
    ChatResponse,
    CompletionResponse,
    ImageBlock,
    LLMMetadata,
    MessageRole,
    TextBlock,
)
from llama_index.core.llms.custom import CustomLLM
from llama_index.core.schema import ImageNode, NodeWithScore, QueryBundle, TextNode
from PIL import Image

from mm_rag_components import config
from mm_rag_components.errors import ConfigError, ModelError
from mm_rag_components.integrations.llama_index.generator import LlamaIndexGenerator
from mm_rag_components.integrations.llama_index.listwise import ListwiseReranker
from mm_rag_components.generation.base import ChatTurn
from mm_rag_components.generation.transformers import TransformersGenerator
from mm_rag_components.rerank.listwise import ListwiseRanker
from mm_rag_components.types import Candidate, Query


class RecordingLLM(CustomLLM):
    """Records the chat messages it receives and answers with scripted text."""

    answers: list[str] = []
    received: list[list[ChatMessage]] = []
    async_calls: int = 0

    @property
    def metadata(self) -> LLMMetadata:
        return LLMMetadata(model_name="recording-llm", is_chat_model=True)

    def _answer(self, messages: Sequence[ChatMessage]) -> ChatResponse:
        self.received.append(list(messages))
        text = self.answers[min(len(self.received) - 1, len(self.answers) - 1)]
        return ChatResponse(message=ChatMessage(role=MessageRole.ASSISTANT, content=text))

    def chat(self, messages: Sequence[ChatMessage], **kwargs: Any) -> ChatResponse:
        return self._answer(messages)

    async def achat(self, messages: Sequence[ChatMessage], **kwargs: Any) -> ChatResponse:
        self.async_calls += 1
        await asyncio.sleep(0)
        return self._answer(messages)

    def complete(self, prompt: str, formatted: bool = False, **kwargs: Any) -> CompletionResponse:
        raise AssertionError("the reranker must use chat, not complete")

    def stream_complete(self, prompt: str, formatted: bool = False, **kwargs: Any):  # pragma: no cover
        raise AssertionError("not used")


def _png(color: tuple[int, int, int], size: tuple[int, int] = (120, 90)) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", size, color).save(buffer, format="PNG")
    return buffer.getvalue()


@pytest.fixture
def nodes(tmp_path) -> list[NodeWithScore]:
    red = tmp_path / "red.png"
    red.write_bytes(_png((255, 0, 0)))
    return [
        NodeWithScore(node=TextNode(id_="t1", text="a blue bicycle leaning on a wall"), score=0.9),
        NodeWithScore(node=ImageNode(id_="i1", image_path=str(red), text="photo"), score=0.8),
        NodeWithScore(node=ImageNode(id_="i2", image=base64.b64encode(_png((0, 0, 255))).decode()), score=0.7),
    ]


def _decode(block: ImageBlock) -> Image.Image:
    return Image.open(block.resolve_image())


def test_llm_receives_numbered_candidates_with_image_blocks(nodes: list[NodeWithScore]) -> None:
    llm = RecordingLLM(answers=['Elements: red, bicycle.\n{"ranking": [2, 3, 1]}'], received=[])
    reranker = ListwiseReranker(llm=llm, window_size=5, step=2, max_image_pixels=32 * 32)
    out = reranker.postprocess_nodes(nodes, query_str="a red bicycle")
    assert [n.node.node_id for n in out] == ["i1", "i2", "t1"]
    (messages,) = llm.received
    assert [m.role for m in messages] == [MessageRole.SYSTEM, MessageRole.USER]
    blocks = messages[1].blocks
    kinds = ["image" if isinstance(b, ImageBlock) else "text" for b in blocks]
    assert kinds.count("image") == 2
    for index, kind in enumerate(kinds):
        if kind == "image":  # every image directly follows its candidate header
            assert isinstance(blocks[index - 1], TextBlock)
            assert re.search(r"Candidate \[[23]\]:$", blocks[index - 1].text)
    images = [_decode(b) for b in blocks if isinstance(b, ImageBlock)]
    assert images[0].getpixel((0, 0))[0] > 200 and images[1].getpixel((0, 0))[2] > 200  # red, then blue
    assert all(i.size[0] * i.size[1] <= 32 * 32 for i in images)
    text = "\n".join(b.text for b in blocks if isinstance(b, TextBlock))
    assert "Candidate [1]:\na blue bicycle leaning on a wall" in text and "a red bicycle" in text
    top = out[0]
    assert top.score == 1.0
    assert top.node.metadata["listwise_rank"] == 1
    assert top.node.metadata["listwise_parse_status"] == "json"
    assert top.node.metadata["listwise_rationale"] == "Elements: red, bicycle."
    assert top.node.metadata["listwise_flag"] is None
    assert "listwise_rationale" in top.node.excluded_llm_metadata_keys  # provenance not leaked into prompts
    assert reranker.last_listwise is not None and reranker.last_listwise.windows[0].status == "json"


def test_async_uses_achat_and_top_n(nodes: list[NodeWithScore]) -> None:
    llm = RecordingLLM(answers=["[3] > [1] > [2]"], received=[])
    reranker = ListwiseReranker(llm=llm, top_n=2, num_permutations=2, seed=0)
    out = asyncio.run(reranker.apostprocess_nodes(nodes, query_bundle=QueryBundle("blue")))
    assert llm.async_calls == 2
    assert len(out) == 2
    assert out[0].node.metadata["listwise_parse_status"] == "arrows"


def test_garbage_keeps_order_and_flags_nodes(nodes: list[NodeWithScore]) -> None:
    llm = RecordingLLM(answers=["lorem ipsum"], received=[])
    out = ListwiseReranker(llm=llm).postprocess_nodes(nodes, query_str="anything")
    assert [n.node.node_id for n in out] == ["t1", "i1", "i2"]
    assert {n.node.metadata["listwise_flag"] for n in out} == {"parse_fallback"}
    assert {n.node.metadata["listwise_parse_status"] for n in out} == {"fallback"}


def test_adapter_arguments() -> None:
    llm = RecordingLLM(answers=[""], received=[])
    with pytest.raises(ConfigError):
        ListwiseReranker()
    with pytest.raises(ConfigError):
        ListwiseReranker("some/model", llm=llm)
    with pytest.raises(ConfigError):
        ListwiseReranker(llm=llm, top_n=0)
    with pytest.raises(ConfigError):
        ListwiseReranker(llm=llm).postprocess_nodes([NodeWithScore(node=TextNode(text="x"))])
    assert ListwiseReranker(llm=llm).postprocess_nodes([], query_str="q") == []
    with pytest.raises(ConfigError):
        LlamaIndexGenerator(object())


# ---------------------------------------------------------------- local transformers VLM
@pytest.fixture(scope="module", params=["idefics3", "llava"])
def tiny_vlm(request, tmp_path_factory):
    from mm_rag_components.testing import vlm

    builder = {"idefics3": vlm.build_tiny_idefics3, "llava": vlm.build_tiny_llava}[request.param]
    return builder(tmp_path_factory.mktemp(request.param) / "model")


def test_transformers_generator_sees_every_image_and_decodes_greedily(tiny_vlm, monkeypatch) -> None:
    generator = TransformersGenerator(tiny_vlm, max_new_tokens=6)
    generator.warm_up()
    seen: list[dict[str, Any]] = []
    original = generator._model.generate

    def spy(**kwargs: Any):
        seen.append(kwargs)
        return original(**kwargs)

    monkeypatch.setattr(generator._model, "generate", spy)
    images = [Image.new("RGB", (48, 40), (40 * i, 90, 160)) for i in range(3)]
    candidates = [Candidate(id=f"c{i}", modality="image", image=images[i], text=f"photo {i}") for i in range(2)]
    candidates.append(Candidate(id="t", modality="text", text="a caption"))
    ranker = ListwiseRanker(generator, window_size=3, step=1, keep_raw=True, max_image_pixels=32 * 32)
    query = Query(text="a red thing", image=images[2])
    first = ranker.rank(query, candidates)
    second = ranker.rank(query, candidates)
    (call,) = seen[:1]
    assert call["do_sample"] is False and call["max_new_tokens"] == 6
    assert "pixel_values" in call
    # the query image and the two candidate images all reach the vision tower
    pixel_values = call["pixel_values"]
    n_images = pixel_values.shape[0] * (pixel_values.shape[1] if pixel_values.dim() == 5 else 1)
    assert n_images == 3
    raw = first.windows[0].raw
    assert isinstance(raw, str)
    assert raw == second.windows[0].raw  # greedy decoding is deterministic
    assert sorted(first.order) == [0, 1, 2]  # random weights: whatever it says, nothing is lost
    assert all(w.flag in (None, "parse_fallback", "partial_ranking") for w in first.windows)


def test_transformers_generator_through_the_adapter_async(tiny_vlm) -> None:
    reranker = ListwiseReranker(tiny_vlm, max_new_tokens=4, system_role=False)
    nodes = [NodeWithScore(node=TextNode(id_=f"n{i}", text=f"text {i}"), score=1.0) for i in range(3)]
    out = asyncio.run(reranker.apostprocess_nodes(nodes, query_str="text"))
    assert sorted(n.node.node_id for n in out) == ["n0", "n1", "n2"]
    assert all("listwise_parse_status" in n.node.metadata for n in out)


def test_a_model_that_cannot_load_is_one_model_error_not_a_flag(tmp_path) -> None:
    ranker = ListwiseRanker(TransformersGenerator(tmp_path / "missing"), window_size=2, step=1)
    two = [Candidate(id="a", modality="text", text="a"), Candidate(id="b", modality="text", text="b")]
    with pytest.raises(ModelError) as caught:
        ranker.warm_up()
    assert "\n" not in str(caught.value) and len(str(caught.value)) < 400
    with pytest.raises(ModelError):
        ranker.rank(Query(text="q"), two)
    with pytest.raises(ModelError):
        asyncio.run(ranker.arank(Query(text="q"), two))
    with pytest.raises(ModelError):  # also through the timeout path
        ListwiseRanker(TransformersGenerator(tmp_path / "missing"), timeout=30).rank(Query(text="q"), two)


def test_text_only_causal_lm_ranks_and_flags_unseen_images(tiny_vlm_dirs) -> None:
    generator = TransformersGenerator(tiny_vlm_dirs["causal"], max_new_tokens=4)
    assert generator.accepts_images is False
    candidates = [
        Candidate(id="i", modality="image", image=Image.new("RGB", (8, 8)), text="a caption"),
        Candidate(id="t", modality="text", text="plain text"),
    ]
    ranker = ListwiseRanker(generator, keep_raw=True)
    result = ranker.rerank(Query(text="q"), candidates)
    assert sorted(result.ids) == ["i", "t"]
    flags = {c.id: c.metadata["listwise_flag"] or "" for c in result}
    assert "image_not_shown" in flags["i"] and "image_not_shown" not in flags["t"]
    assert "generator_error" not in flags["i"] + flags["t"]  # the text-only model really answered
    with pytest.raises(ConfigError, match="text only"):
        ranker.rank(Query(image=Image.new("RGB", (8, 8))), candidates)


def test_a_timed_out_local_generation_is_told_to_stop(tiny_vlm_dirs, monkeypatch) -> None:
    import threading
    import time

    generator = TransformersGenerator(tiny_vlm_dirs["causal"], max_new_tokens=10_000)
    generator.warm_up()
    stopped = threading.Event()
    original = generator._model.generate

    def slow_generate(**kwargs: Any):
        criteria, ids = kwargs["stopping_criteria"], kwargs["input_ids"]
        for _ in range(600):  # ~60 s unless the stopping criterion fires
            if bool(criteria(ids, None).all()):
                stopped.set()
                break
            time.sleep(0.1)
        return original(**{**kwargs, "max_new_tokens": 1})

    monkeypatch.setattr(generator._model, "generate", slow_generate)
    ranker = ListwiseRanker(generator, timeout=0.3)
    two = [Candidate(id="a", modality="text", text="a"), Candidate(id="b", modality="text", text="b")]
    result = ranker.rank(Query(text="q"), two)
    assert result.flags == ["timeout", "timeout"]
    assert stopped.wait(120), "the abandoned generation never saw the stop signal"  # a hang guard
    stopped.clear()
    async_result = asyncio.run(ranker.arank(Query(text="q"), two))  # asyncio.run returns promptly
    assert async_result.flags == ["timeout", "timeout"]
    assert stopped.wait(120), "the abandoned async generation never saw the stop signal"


def test_listwise_postprocessor_round_trips_its_config() -> None:
    from llama_index.core.llms import MockLLM

    reranker = ListwiseReranker(llm=MockLLM(max_tokens=8), top_n=2, window_size=4, step=2, timeout=9.5, prompt="direct")
    data = reranker.to_dict()
    assert data["reranker"]["generator"]["llm"]["class_name"] == "MockLLM"
    rebuilt = ListwiseReranker.from_dict(data)
    assert rebuilt.to_dict() == data
    assert rebuilt.ranker.prompt.name == "direct" and rebuilt.top_n == 2 and rebuilt.ranker.timeout == 9.5
    unsaveable = ListwiseReranker(llm=RecordingLLM(answers=["x"], received=[]))
    with pytest.raises(ConfigError, match="cannot rebuild|pass llm"):
        config.from_dict(config.to_dict(unsaveable.ranker))


def test_chat_turn_conversion_keeps_order() -> None:
    generator = TransformersGenerator("unused", system_role=False)
    image = Image.new("RGB", (4, 4))
    messages = generator.to_messages([ChatTurn("system", ("be brief",)), ChatTurn("user", ("hi", image, "there"))])
    assert messages == [
        {
            "role": "user",
            "content": [
                {"type": "text", "text": "be brief"},
                {"type": "text", "text": "hi"},
                {"type": "image", "image": image},
                {"type": "text", "text": "there"},
            ],
        }
    ]
