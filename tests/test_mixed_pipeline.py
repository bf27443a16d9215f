"""Mixed (page) candidates through the rest of the pipeline: listwise windows show each page's image
and text, filters and calibration work unchanged, the answer stage cites pages as
"[2] report.pdf, p. 7", and the terminal chat names each source's document and page."""

from __future__ import annotations

import io
import json
import math

import numpy as np
import pytest
from fake_models import ColourShapeEmbedder
from PIL import Image

from mm_rag_components import Item, MultimodalIndex, Query
from mm_rag_components.answer import MultimodalAnswerer, source_label
from mm_rag_components.calibration import fit_calibration
from mm_rag_components.filters import FilterPolicy
from mm_rag_components.generation.base import ChatTurn
from mm_rag_components.rerank import PointwiseRanker
from mm_rag_components.rerank.listwise import ListwiseRanker
from mm_rag_components.scoring.base import PointScore
from mm_rag_components.types import CALIBRATED_SCORE, FILTER_REASON, MIXED, Candidate

COLOURS = [(220, 30, 30), (30, 60, 220), (30, 170, 60), (235, 210, 40), (120, 120, 120)]


def page_image(colour) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (60, 80), colour).save(buffer, format="PNG")
    return buffer.getvalue()


def pages(n: int = 5) -> list[Candidate]:
    return [Candidate(id=f"report-{k}", modality=MIXED, image=page_image(COLOURS[k % 5]), text=f"Page {k} text: item-{k}.",
                      score=1.0 / (60 + k), metadata={"file_name": "report.pdf", "page": k, "page_count": n, "page_id": f"report-{k}"})
            for k in range(1, n + 1)]


class Recorder:
    """A generator that records its turns and answers with a scripted text."""

    def __init__(self, answer: str) -> None:
        self.answer = answer
        self.turns: list[list[ChatTurn]] = []

    def generate(self, turns: list[ChatTurn]) -> str:
        self.turns.append(list(turns))
        return self.answer


class WordScorer:
    """p(relevant) from how many query words the candidate's text holds (images ignored)."""

    name = "word-scorer"

    def score(self, query, candidates):
        words = set(query.text.lower().split())
        return [PointScore.from_logodds(2.0 * len(words & set((c.text or "").lower().replace(".", "").split())) - 3.0) for c in candidates]


def test_listwise_windows_show_each_pages_image_then_its_text() -> None:
    generator = Recorder(json.dumps({"ranking": [2, 1, 3]}))
    ranked = ListwiseRanker(generator, window_size=3, step=2).rerank(Query(text="which page?"), pages(3))
    (turns,) = generator.turns
    user = turns[-1]
    assert len(user.images) == 3
    for k, image in enumerate(user.images, start=1):
        at = user.parts.index(image)
        assert user.parts[at - 1].endswith(f"Candidate [{k}]:") and user.parts[at + 1].startswith(f"Page {k} text")
        assert image.getpixel((0, 0)) == COLOURS[k % 5]
    assert [c.id for c in ranked] == ["report-2", "report-1", "report-3"] and all(c.modality == MIXED for c in ranked)


def test_filters_and_calibration_treat_pages_as_any_candidate() -> None:
    """The same scores give the same calibrated probabilities, order and drops, pages or texts."""
    query = Query(text="page 2 text item-2 item-4")
    mixed = pages()
    plain = [Candidate(id=c.id, modality="text", text=c.text, score=c.score, metadata=dict(c.metadata)) for c in mixed]
    raw = [p.logodds for p in WordScorer().score(query, mixed)]
    calibration = fit_calibration(raw + [-4.0, 4.0], [0, 1, 0, 1, 0] + [0, 1], "platt")  # pages 2 and 4 are relevant
    policy = FilterPolicy(score_key=CALIBRATED_SCORE, threshold=0.5, min_keep=1)
    runs = []
    for candidates in (mixed, plain):
        ranker = PointwiseRanker(WordScorer(), calibration=calibration, fusion_weight=0.5)
        ranked = ranker.rerank(query, candidates)
        kept = policy.apply(ranked.candidates)
        runs.append(([c.id for c in ranked], [c.score for c in ranked], [c.metadata[CALIBRATED_SCORE] for c in ranked],
                     [c.id for c in kept], dict(kept.report.reasons)))
        assert all(c.modality == candidates[0].modality for c in ranked)
    assert runs[0] == runs[1]
    ids, scores, calibrated, kept_ids, reasons = runs[0]
    assert calibrated == pytest.approx(calibration.apply(np.array(sorted(raw, reverse=True))).tolist())
    assert 0 < len(kept_ids) < len(ids) and sum(reasons.values()) == len(ids) - len(kept_ids)
    assert all(math.isfinite(s) for s in scores)


def test_the_answer_sees_page_image_and_text_and_cites_pages() -> None:
    generator = Recorder("Revenue grew [2], see also [1].")
    sources = pages(2) + [Candidate(id="note", modality="text", text="A plain note.")]
    answer = MultimodalAnswerer(generator).answer(Query(text="how did revenue do?"), sources)
    user = generator.turns[0][-1]
    assert len(user.images) == 2
    text = user.text
    assert "[1] report.pdf, p. 1" in text and "[2] report.pdf, p. 2" in text and "[3]\nA plain note." in text
    at = user.parts.index(user.images[1])
    assert user.parts[at - 1].endswith("[2] report.pdf, p. 2") and user.parts[at + 1].startswith("Page 2 text")
    assert answer.cited == [2, 1]
    assert answer.references == ["[2] report.pdf, p. 2", "[1] report.pdf, p. 1"]


@pytest.mark.parametrize(("metadata", "label"), [
    ({"file_name": "report.pdf", "page": 7}, "report.pdf, p. 7"),
    ({"source": "/data/docs/manual.pdf", "page": 2}, "manual.pdf, p. 2"),
    ({"title": "Annual report", "page": 3}, "Annual report, p. 3"),
    ({"file_name": "photo.jpg"}, "photo.jpg"),
    ({"file_name": "report.pdf", "page": 0}, "report.pdf"),
    ({"file_name": "report.pdf", "page": "7"}, "report.pdf"),
    ({"file_name": "report.pdf", "page": True}, "report.pdf"),
    ({"page": 4}, None),
    ({}, None),
])
def test_source_labels(metadata, label) -> None:
    assert source_label(Candidate(id="x", modality=MIXED, text="t", metadata=metadata)) == label


def test_the_terminal_chat_names_each_pages_document_and_number(tmp_path) -> None:
    from mm_rag_components.app.pipeline import Conversation, QAPipeline
    from mm_rag_components.app.terminal import run_chat

    index = MultimodalIndex(tmp_path / "db", image_embedder=ColourShapeEmbedder())
    items = []
    for k, (colour, words) in enumerate([("red", "a red circle chart"), ("blue", "a blue square table")], start=1):
        image = tmp_path / f"{colour}_circle.png"
        Image.new("RGB", (40, 40), COLOURS[k - 1]).save(image)
        meta = {"page_id": f"doc-{k}", "page": k, "page_count": 2, "title": "Shapes"}
        items += [Item(image=str(image), metadata=meta), Item(text=f"Page {k} shows {words}.", metadata=meta)]
    index.ingest(items)
    generator = Recorder("The red one [1].")
    pipeline = QAPipeline(index, top_k=2, pages=True, answerer=MultimodalAnswerer(generator))
    out = io.StringIO()
    run_chat(Conversation(pipeline), io.StringIO("a red circle\n/quit\n"), out)
    printed = out.getvalue()
    assert "*[1] image+text" in printed and "red_circle.png, p. 1" in printed
    assert "[1] red_circle.png, p. 1" in generator.turns[0][-1].text  # the model saw the page's name too
    assert len(generator.turns[0][-1].images) >= 1


def test_the_query_command_lists_pages_by_document_and_number(tmp_path, sample_folder, capsys) -> None:
    from mm_rag_components import ClipEmbedder
    from mm_rag_components.cli import main

    db = tmp_path / "state" / "chroma"
    assert main(["ingest", str(sample_folder), "--tiny", "--db", str(db)]) == 0  # builds the tiny CLIP it queries with
    index = MultimodalIndex(db, image_embedder=ClipEmbedder(str(tmp_path / "state" / "models" / "tiny-clip")))
    meta = {"page_id": "deck-3", "page": 3, "page_count": 9, "title": "Deck"}
    slide = tmp_path / "slide-3.png"
    slide.write_bytes((sample_folder / "red_circle.png").read_bytes())
    report = index.ingest([Item(image=str(slide), metadata=meta), Item(text="a red circle", metadata=meta)])
    assert report.added == 2
    capsys.readouterr()
    assert main(["query", "a red circle", "--tiny", "--db", str(db), "--pages", "--top-k", "20"]) == 0
    lines = [line for line in capsys.readouterr().out.splitlines() if "[image+text]" in line]
    assert len(lines) == 1 and "slide-3.png, p. 3: a red circle" in lines[0]
    assert main(["query", "a red circle", "--tiny", "--db", str(db), "--top-k", "20"]) == 0
    assert "[image+text]" not in capsys.readouterr().out  # without --pages, records as before
