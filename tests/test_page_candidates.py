"""Retrieval with ``pages=True``: records sharing a ``page_id`` come back as one mixed candidate
(page image + page text) on the documented rank-fusion scale; plain records keep working."""

from __future__ import annotations

import hashlib
import math

import pytest
from fake_models import ColourShapeEmbedder, WordHashEmbedder
from hypothesis import given, settings
from hypothesis import strategies as st

from mm_rag_components import Item, MultimodalIndex, Query
from mm_rag_components.chunking import PlainSplitter
from mm_rag_components.errors import ConfigError
from mm_rag_components.page_candidates import group_hits, join_chunks, page_of
from mm_rag_components.retrieval import RetrievalOptions, retrieve
from mm_rag_components.store import Hit
from mm_rag_components.types import MIXED

RRF_K = 60
#: Page texts: distinct sentences, long enough to be split into several overlapping chunks.
PAGES = {
    1: ("red_circle.png", "Quarterly revenue grew in every region. Our red circle logo was redesigned this spring. "
        "Margins improved because freight costs fell. The board approved a new dividend policy for shareholders."),
    2: ("blue_square.png", "Blue square tiles cover the lobby floor. A blue square fountain stands in the garden. "
        "Every blue square window was replaced. The blue square stage hosts the annual meeting."),
    3: ("green_triangle.png", "Warehouse staffing plans for the winter season. Forklift training happens on Mondays. "
        "Safety audits are scheduled twice a year."),
}


def page_items(folder, *, page_id=lambda n: f"report-{n}"):
    items = []
    for n, (image, text) in PAGES.items():
        meta = {"page_id": page_id(n), "page": n, "page_count": len(PAGES), "title": "Annual report"}
        items.append(Item(image=str(folder / image), metadata=meta))
        items.append(Item(text=text, source=f"mem://report/{n}", metadata=meta))
    items.append(Item(image=str(folder / "yellow_circle.png")))  # a plain photo
    items.append(Item(text="A lone red note about circles.", source="mem://note"))  # a plain text
    return items


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    from mm_rag_components.testing import write_sample_folder

    return write_sample_folder(tmp_path_factory.mktemp("pages-data"))


@pytest.fixture(scope="module")
def index(tmp_path_factory, folder):
    built = MultimodalIndex(tmp_path_factory.mktemp("pages") / "db", image_embedder=ColourShapeEmbedder(), chunk_size=20, chunk_overlap=8)
    report = built.ingest(page_items(folder))
    assert not report.skipped
    assert built.text_store.count() > len(PAGES) + 1  # pages are split into several chunks
    return built


@pytest.fixture(scope="module")
def split_index(tmp_path_factory, folder):
    built = MultimodalIndex(tmp_path_factory.mktemp("pages-split") / "db", image_embedder=ColourShapeEmbedder(),
                            text_embedder=WordHashEmbedder(), chunk_size=20, chunk_overlap=8)
    built.ingest(page_items(folder))
    return built


def by_id(result):
    return {c.id: c for c in result}


def test_a_page_is_one_mixed_candidate_with_its_image_and_whole_text(index, folder):
    result = retrieve(index, Query(text="a red circle"), RetrievalOptions(top_k=3, pages=True))
    top = result[0]
    assert top.id == "report-1" and top.modality == MIXED
    assert top.image_path == str(folder / "red_circle.png")
    assert top.text == PAGES[1][1]  # every chunk, in order, the splitter's overlap removed
    meta = top.metadata
    assert (meta["page"], meta["page_count"], meta["title"], meta["page_id"]) == (1, 3, "Annual report", "report-1")
    assert meta["image_rank"] == 1 and meta["score_scale"] == "rrf" and meta["modality"] == MIXED
    expected = sum(1.0 / (RRF_K + meta[key]) for key in ("image_rank", "text_rank") if key in meta)
    assert top.score == pytest.approx(expected)
    assert "chunk" not in meta  # per-record keys stay with the records, but for the page image's sha256 (web /media checks it)
    assert meta["sha256"] == hashlib.sha256((folder / "red_circle.png").read_bytes()).hexdigest()
    assert len({c.id for c in result}) == len(result)  # a page never comes twice
    assert [c.score for c in result] == sorted((c.score for c in result), reverse=True)


def test_plain_records_stay_plain_candidates_on_the_same_scale(index, folder):
    result = by_id(retrieve(index, Query(text="a red circle"), RetrievalOptions(top_k=5, pages=True)))
    plain = [c for c in result.values() if "page_id" not in c.metadata]
    assert {c.modality for c in plain} == {"image", "text"}
    for c in plain:
        assert c.metadata["score_scale"] == "rrf" and c.score == pytest.approx(1.0 / (RRF_K + c.metadata["rank"]))
    photo = next(c for c in plain if c.modality == "image")
    assert photo.image_path == str(folder / "yellow_circle.png")


def test_pages_off_returns_records_exactly_as_before(index):
    assert RetrievalOptions().pages is False
    default = retrieve(index, Query(text="a red circle"), RetrievalOptions(top_k=4))
    off = retrieve(index, Query(text="a red circle"), RetrievalOptions(top_k=4, pages=False))
    assert [(c.id, c.modality, c.score) for c in default] == [(c.id, c.modality, c.score) for c in off]
    assert all(c.modality in ("image", "text") and c.metadata["score_scale"] == "cosine" for c in default)
    assert sum(c.metadata.get("page_id") == "report-1" for c in default) >= 2  # its image and chunks, apart


def test_a_page_found_by_its_text_alone_still_shows_its_image(index, folder):
    result = retrieve(index, Query(text="forklift training warehouse staffing"), RetrievalOptions(modalities=["text"], top_k=1, pages=True))
    (page,) = result
    assert page.id == "report-3" and page.modality == MIXED and page.image_path == str(folder / "green_triangle.png")
    assert "image_rank" not in page.metadata and page.metadata["text_rank"] == 1
    assert page.score == pytest.approx(1.0 / (RRF_K + 1)) and page.text == PAGES[3][1]


def test_top_k_counts_pages_not_chunks(index):
    # every chunk of page 2 says "blue square": without a deeper search they would fill the top-k
    hits = index.text_store.query(index.image_embedder.embed_texts(["blue square"])[0], 2)
    assert {h.metadata.get("page_id") for h in hits} == {"report-2"}
    result = retrieve(index, Query(text="blue square"), RetrievalOptions(modalities=["text"], top_k=2, pages=True))
    assert [c.metadata["text_rank"] if "text_rank" in c.metadata else c.metadata["rank"] for c in result] == [1, 2]
    assert result[0].id == "report-2" and len(result) == 2


def test_a_separate_text_embedder_fuses_pages_by_rank(split_index):
    result = retrieve(split_index, Query(text="red circle logo"), RetrievalOptions(top_k=3, pages=True))
    for c in result:
        ranks = [c.metadata[k] for k in ("image_rank", "text_rank") if k in c.metadata] if c.modality == MIXED else [c.metadata["rank"]]
        assert c.score == pytest.approx(sum(1.0 / (RRF_K + r) for r in ranks))
    assert result[0].id == "report-1" and {"image_rank", "text_rank"} <= set(result[0].metadata)


def test_integer_page_ids_group_the_same_way(tmp_path, folder):
    built = MultimodalIndex(tmp_path / "db", image_embedder=ColourShapeEmbedder(), chunk_size=20, chunk_overlap=8)
    built.ingest(page_items(folder, page_id=lambda n: 100 + n))
    top = retrieve(built, Query(text="a red circle"), RetrievalOptions(top_k=2, pages=True))[0]
    assert top.id == "101" and top.modality == MIXED and top.metadata["page_id"] == 101 and top.text == PAGES[1][1]


def test_several_images_on_one_page_show_the_best_hit_and_say_so(tmp_path, folder):
    built = MultimodalIndex(tmp_path / "db", image_embedder=ColourShapeEmbedder())
    meta = {"page_id": "p", "page": 1}
    built.ingest([Item(image=str(folder / "red_circle.png"), metadata=meta), Item(image=str(folder / "blue_square.png"), metadata=meta),
                  Item(text="A page about shapes.", metadata=meta)])
    result = retrieve(built, Query(text="a blue square"), RetrievalOptions(top_k=2, pages=True))
    assert [c.id for c in result] == ["p"] and result[0].image_path == str(folder / "blue_square.png")
    assert any("2 image records" in note for note in result.notes)


@pytest.mark.parametrize("value", [3.5, True, "", "   ", ["a", "b"]])
def test_odd_page_ids_leave_records_plain_and_kept(tmp_path, folder, value):
    built = MultimodalIndex(tmp_path / "db", image_embedder=ColourShapeEmbedder())
    built.ingest([Item(image=str(folder / "red_circle.png"), metadata={"page_id": value}),
                  Item(text="a red circle drawn twice", metadata={"page_id": value})])
    result = retrieve(built, Query(text="a red circle"), RetrievalOptions(top_k=5, pages=True))
    assert sorted(c.modality for c in result) == ["image", "text"]


@pytest.mark.parametrize("value", ["yes", 1, None, 0.0])
def test_pages_must_be_a_boolean(value):
    with pytest.raises(ConfigError, match="pages"):
        RetrievalOptions(pages=value)


def test_pages_option_round_trips(index):
    options = RetrievalOptions.from_kwargs(**RetrievalOptions(pages=True, top_k=2).to_dict())
    assert options.pages is True and options.top_k == 2


# generated -------------------------------------------------------------------------------------
PAGE_IDS = st.one_of(st.none(), st.sampled_from(["a", "b", "c"]), st.integers(0, 2), st.floats(allow_nan=True),
                     st.booleans(), st.just(""), st.lists(st.integers(), max_size=2))


@settings(deadline=None, max_examples=200)
@given(lists=st.dictionaries(st.sampled_from(["image", "text"]), st.lists(PAGE_IDS, max_size=12), max_size=2), k=st.integers(1, 6))
def test_grouping_ranks_each_page_once_per_list(lists, k):
    per_modality = {m: [Hit(f"{m}{i}", 1.0 - i / 100, {"page_id": p} if p is not None else {}) for i, p in enumerate(ids)]
                    for m, ids in lists.items()}
    groups = group_hits(per_modality, lambda _m: k)
    pages = [g.page_id for g in groups if g.page_id is not None]
    assert len(pages) == len({(type(p), p) for p in pages})  # a page is one group
    for modality, hits in per_modality.items():
        ranks = sorted(g.ranks[modality] for g in groups if modality in g.ranks)
        assert ranks == list(range(1, len(ranks) + 1)) and len(ranks) <= k
        distinct = {(type(p), p) if (p := page_of(h.metadata)) is not None else h.id for h in hits}
        assert len(ranks) == min(k, len(distinct))  # nothing dropped within the top k
        for g in groups:
            if modality in g.ranks:
                assert page_of(g.hits[modality].metadata) == g.page_id
    for g in groups:
        assert g.score(RRF_K) == pytest.approx(sum(1.0 / (RRF_K + r) for r in g.ranks.values())) and math.isfinite(g.score(RRF_K))


@settings(deadline=None, max_examples=60)
@given(n_words=st.integers(1, 400), size=st.integers(24, 80), overlap=st.integers(16, 40))
def test_chunks_join_back_into_the_page_text(n_words, size, overlap):
    text = " ".join(f"w{i}" + ("." if i % 9 == 8 else "") for i in range(n_words))
    chunks = PlainSplitter(size, overlap).split_text(text)
    assert join_chunks(chunks).split() == text.split()
