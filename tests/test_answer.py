"""The answer stage: numbered sources with images, citations, no context → no guess, history,
streaming, failures flagged; local models through the real loading path."""

from __future__ import annotations

import asyncio
import re
from typing import Any

import pytest
from PIL import Image

from mm_rag_components.answer import NO_CONTEXT, AnswerPrompt, Exchange, MultimodalAnswerer, read_citations
from mm_rag_components.errors import ConfigError, ModelError
from mm_rag_components.generation.base import ChatTurn
from mm_rag_components.types import Candidate, Query


class Scripted:
    """Answers with a fixed text and records the turns it was given."""

    def __init__(self, answer: Any = "Red circles [1] and a cat [2], also [7].") -> None:
        self.answer = answer
        self.turns: list[list[ChatTurn]] = []

    def generate(self, turns: list[ChatTurn]) -> Any:
        self.turns.append(list(turns))
        if isinstance(self.answer, BaseException):
            raise self.answer
        return self.answer


class Streaming(Scripted):
    def __init__(self, pieces: list[Any]) -> None:
        super().__init__("".join(p for p in pieces if isinstance(p, str)))
        self.pieces = pieces

    def stream(self, turns: list[ChatTurn]):
        self.turns.append(list(turns))
        for piece in self.pieces:
            if isinstance(piece, BaseException):
                raise piece
            yield piece


@pytest.fixture
def sources(tmp_path) -> list[Candidate]:
    red = tmp_path / "red.png"
    Image.new("RGB", (40, 30), (220, 30, 30)).save(red)
    return [
        Candidate(id="img", modality="image", image_path=str(red), text="a red circle", score=0.9),
        Candidate(id="txt", modality="text", text="Cats sleep most of the day.", score=0.5),
        Candidate(id="bad", modality="image", image_path=str(tmp_path / "missing.png"), score=0.1),
    ]


def test_sources_are_numbered_with_images_and_citations_are_read(sources) -> None:
    generator = Scripted()
    answer = MultimodalAnswerer(generator).answer(Query(text="what is red?"), sources)
    (turns,) = generator.turns
    assert [t.role for t in turns] == ["system", "user"]
    user = turns[-1]
    assert len(user.images) == 1 and user.images[0].getpixel((0, 0))[0] > 200
    text = user.text
    assert re.search(r"\[1\]$", user.parts[user.parts.index(user.images[0]) - 1])  # the image follows its number
    assert "[2]\nCats sleep most of the day." in text and "[3]\n(image unavailable)" in text
    assert text.index("Sources (3):") < text.index("Question:\nwhat is red?")
    assert answer.cited == [1, 2] and answer.invalid_citations == [7] and answer.flag is None
    assert [c.id for c in answer.cited_sources] == ["img", "txt"]


def test_no_kept_candidate_means_no_guess() -> None:
    generator = Scripted()
    answerer = MultimodalAnswerer(generator)
    answer = answerer.answer(Query(text="anything"), [])
    assert answer.flag == NO_CONTEXT and answer.text == AnswerPrompt().no_context and answer.sources == []
    assert generator.turns == []  # the model was not asked
    streamed = answerer.stream(Query(text="anything"), [])
    assert "".join(streamed) == AnswerPrompt().no_context and streamed.answer.flag == NO_CONTEXT


def test_history_turns_come_first_and_are_bounded(sources) -> None:
    generator = Scripted()
    history = [Exchange(f"q{i}", f"a{i}") for i in range(5)]
    MultimodalAnswerer(generator, history_turns=2).answer(Query(text="and then?"), sources[:1], history)
    roles = [t.role for t in generator.turns[0]]
    assert roles == ["system", "user", "assistant", "user", "assistant", "user"]
    assert [t.text for t in generator.turns[0][1:5]] == ["q3", "a3", "q4", "a4"]


def test_image_question_and_max_sources(sources) -> None:
    generator = Scripted("[1]")
    query_image = Image.new("RGB", (20, 20), (0, 0, 250))
    answer = MultimodalAnswerer(generator, max_sources=1).answer(Query(image=query_image), sources)
    user = generator.turns[0][-1]
    assert len(answer.sources) == 1 and len(user.images) == 2  # one source image + the question image
    assert "(the question is the image above)" in user.text


@pytest.mark.parametrize("failure", [RuntimeError("server down"), TimeoutError("slow")])
def test_generator_failures_are_flagged_not_raised(sources, failure) -> None:
    answer = MultimodalAnswerer(Scripted(failure)).answer(Query(text="q"), sources)
    assert answer.flag == "generator_error" and str(failure) in answer.error
    with pytest.raises(ModelError):
        MultimodalAnswerer(Scripted(ModelError("no weights"))).answer(Query(text="q"), sources)


def test_streaming_yields_pieces_and_keeps_what_came_before_a_failure(sources) -> None:
    stream = MultimodalAnswerer(Streaming(["Red ", "[1]", "."])).stream(Query(text="q"), sources)
    assert list(stream) == ["Red ", "[1]", "."]
    assert stream.answer.text == "Red [1]." and stream.answer.cited == [1]
    broken = MultimodalAnswerer(Streaming(["Partial [2] ", RuntimeError("connection reset")])).stream(Query(text="q"), sources)
    assert list(broken) == ["Partial [2] "]
    assert broken.answer.flag == "generator_error" and broken.answer.cited == [2]


def test_async_answer(sources) -> None:
    answer = asyncio.run(MultimodalAnswerer(Scripted("[2]")).aanswer(Query(text="q"), sources))
    assert answer.cited == [2]


@pytest.mark.parametrize(
    "build",
    [
        lambda: MultimodalAnswerer(object()),
        lambda: MultimodalAnswerer(Scripted(), max_sources=0),
        lambda: MultimodalAnswerer(Scripted(), timeout=float("nan")),
        lambda: MultimodalAnswerer(Scripted(), prompt="be nice"),
        lambda: MultimodalAnswerer.create(),
        lambda: MultimodalAnswerer.create(generator=Scripted(), max_new_tokens=3),
        lambda: MultimodalAnswerer(Scripted()).answer("not a query", []),
        lambda: MultimodalAnswerer(Scripted()).answer(Query(text="q"), ["not a candidate"]),
    ],
)
def test_bad_input_is_a_config_error(build) -> None:
    with pytest.raises(ConfigError):
        build()


def test_read_citations() -> None:
    assert read_citations("see [3], [1] and [3] again; not [0] nor [12]", 3) == ([3, 1], [0, 12])


@pytest.mark.parametrize("family", ["idefics3", "causal"])
def test_local_models_answer_and_stream_through_the_loading_path(tiny_vlm_dirs, sources, family) -> None:
    answerer = MultimodalAnswerer.create(tiny_vlm_dirs[family], max_new_tokens=6)
    answer = answerer.answer(Query(text="what is red?"), sources)
    assert answer.flag is None and isinstance(answer.text, str)
    stream = answerer.stream(Query(text="what is red?"), sources)
    pieces = list(stream)
    assert stream.answer is not None and stream.answer.flag is None
    assert "".join(pieces).strip() == stream.answer.text == answer.text  # greedy: streamed = generated
