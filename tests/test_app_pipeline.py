"""The QA pipeline: retrieve → rerank → filter → answer, what a turn shows, conversations."""

from __future__ import annotations

import json
import math

import pytest
from fake_models import ColourShapeEmbedder

from mm_rag_components import MultimodalIndex
from mm_rag_components.answer import MultimodalAnswerer
from mm_rag_components.app.pipeline import Conversation, QAPipeline
from mm_rag_components.errors import ConfigError
from mm_rag_components.filters import FilterPolicy
from mm_rag_components.rerank import PointwiseRanker
from mm_rag_components.scoring.base import PointScore
from mm_rag_components.types import Query


class WordScorer:
    """Log-odds +4 when the candidate's file name or text shares a word with the query, else -4."""

    name = "word-scorer"

    def score(self, query, candidates):
        words = set((query.text or "").lower().split())
        out = []
        for c in candidates:
            label = f"{c.metadata.get('file_name', '')} {c.text or ''}".lower().replace("_", " ").replace(".", " ")
            out.append(PointScore.from_logodds(4.0 if words & set(label.split()) else -4.0))
        return out


class Echo:
    """An answerer backend citing the first source and echoing the last user message's length."""

    def __init__(self) -> None:
        self.turns = []

    def generate(self, turns):
        self.turns.append(turns)
        return "It is [1]."


@pytest.fixture(scope="module")
def index(tmp_path_factory):
    from mm_rag_components.testing import write_sample_folder

    root = tmp_path_factory.mktemp("qa")
    built = MultimodalIndex(root / "db", image_embedder=ColourShapeEmbedder())
    built.ingest_folder(write_sample_folder(root / "data"))
    return built


def make(index, **kwargs) -> QAPipeline:
    return QAPipeline(
        index,
        reranker=PointwiseRanker(WordScorer()),
        relevance_filter=FilterPolicy(score_key="rerank_score", threshold=0.5, min_keep=1),
        answerer=MultimodalAnswerer(kwargs.pop("generator", Echo())),
        image_top_k=6, text_top_k=2, **kwargs,
    )


def test_a_turn_shows_every_stage(index) -> None:
    turn = make(index).ask("red circle")
    assert len(turn.retrieved) == 8 and {c.id for c in turn.ranked} == {c.id for c in turn.retrieved}
    kept_names = [c.metadata["file_name"] for c in turn.kept]
    assert "red_circle.png" in kept_names and all(c.metadata["rerank_score"] > 0.5 for c in turn.kept)
    assert {d.reason for d in turn.dropped} == {"below_threshold"}
    assert len(turn.kept) + len(turn.dropped) == len(turn.ranked)
    assert turn.answer.cited == [1] and turn.answer.sources == turn.kept
    assert set(turn.timings) == {"retrieve", "rerank", "answer"}
    data = json.loads(json.dumps(turn.to_dict()))  # JSON-ready
    assert data["answer"]["text"] == "It is [1]." and data["dropped"][0]["reason"] == "below_threshold"
    assert all(math.isfinite(k["score"]) for k in data["kept"])


def test_nothing_relevant_means_no_guess(index) -> None:
    generator = Echo()
    pipeline = make(index, generator=generator)
    pipeline.relevance_filter = FilterPolicy(score_key="rerank_score", threshold=0.99)
    turn = pipeline.ask("purple elephant")
    assert turn.kept == [] and turn.answer.flag == "no_context" and generator.turns == []


def test_streaming_fills_the_turn_and_conversations_remember(index) -> None:
    generator = Echo()
    conversation = Conversation(make(index, generator=generator), max_exchanges=2)
    turn, pieces = conversation.ask_stream("blue square")
    assert turn.answer is None
    assert "".join(pieces) == "It is [1]." and turn.answer.text == "It is [1]."
    conversation.ask("and the green one?")
    conversation.ask(image=index.image_store.get(limit=1)[0].metadata["source"])
    assert [e.question for e in conversation.history] == ["and the green one?", "(an image)"]
    roles = [t.role for t in generator.turns[-1]]
    assert roles[:5] == ["system", "user", "assistant", "user", "assistant"]  # two earlier exchanges replayed
    conversation.reset()
    assert conversation.history == []


def test_bad_configuration_is_a_config_error(index) -> None:
    with pytest.raises(ConfigError):
        QAPipeline("not an index")
    with pytest.raises(ConfigError):
        QAPipeline(index, reranker=object())
    with pytest.raises(ConfigError):
        QAPipeline(index, topk=3)
    with pytest.raises(ConfigError, match="no answerer"):
        QAPipeline(index).ask("x")
    assert QAPipeline(index).search(Query(text="red")).answer is None
