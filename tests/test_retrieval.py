"""Query routing, composed queries, modality selection, score scales and filters.

Ranking is checked with the fake colour/shape embedder (where "red circle" means something);
the plumbing also with a tiny random-weight CLIP, using exact-match queries.
"""

import logging

import numpy as np
import pytest
from fake_models import ColourShapeEmbedder, WordHashEmbedder
from PIL import Image

from mm_rag_components import Item, MultimodalIndex, Query
from mm_rag_components.errors import ConfigError, MediaError
from mm_rag_components.retrieval import RetrievalOptions, RetrievalResult, query_vector, retrieve


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    from mm_rag_components.testing import write_sample_folder

    return write_sample_folder(tmp_path_factory.mktemp("sample"))


@pytest.fixture(scope="module")
def index(tmp_path_factory, folder):
    idx = MultimodalIndex(tmp_path_factory.mktemp("db") / "chroma", image_embedder=ColourShapeEmbedder())
    idx.ingest_folder(folder, metadata={"set": "sample"})
    idx.ingest([Item(text="Boats float on blue water.", source="memo://boats", metadata={"set": "extra"})])
    return idx


@pytest.fixture(scope="module")
def split_index(tmp_path_factory, folder):
    idx = MultimodalIndex(
        tmp_path_factory.mktemp("db2") / "chroma", image_embedder=ColourShapeEmbedder(), text_embedder=WordHashEmbedder()
    )
    idx.ingest_folder(folder)
    return idx


def names(candidates):
    return [(c.image_path or c.metadata.get("source", "")).rsplit("/", 1)[-1] for c in candidates]


def test_text_query_ranks_the_described_image_first(index):
    result = retrieve(index, Query(text="a red circle"), RetrievalOptions(modalities=["image"], top_k=3))
    assert isinstance(result, list) and isinstance(result, RetrievalResult)
    assert names(result)[0] == "red_circle.png"
    assert set(names(result)[1:]) <= {"red_square.png", "red_triangle.png", "green_circle.png", "blue_circle.png", "yellow_circle.png"}
    assert [c.modality for c in result] == ["image"] * 3
    assert [c.metadata["rank"] for c in result] == [1, 2, 3]


def test_image_query_finds_itself_first(index, folder):
    result = retrieve(index, Query(image=folder / "yellow_triangle.png"), RetrievalOptions(modalities=["image"], top_k=2))
    assert result[0].image_path == str(folder / "yellow_triangle.png")
    assert result[0].score == pytest.approx(1.0, abs=1e-4)
    assert result[0].metadata["source"] == result[0].image_path and result[0].text is None


def test_composed_query_weight_moves_the_ranking(index, folder):
    query = Query(text="square", image=folder / "red_circle.png")
    balanced = retrieve(index, query, RetrievalOptions(modalities=["image"], top_k=1, image_weight=0.5))
    image_heavy = retrieve(index, query, RetrievalOptions(modalities=["image"], top_k=1, image_weight=0.9))
    text_only = retrieve(index, query, RetrievalOptions(modalities=["image"], top_k=3, image_weight=0.0))
    assert names(balanced) == ["red_square.png"]  # red from the image, square from the text
    assert names(image_heavy) == ["red_circle.png"]
    assert all(n.endswith("square.png") for n in names(text_only))


def test_composed_query_vector_is_the_documented_fusion(index, folder):
    e = index.image_embedder
    image = folder / "green_circle.png"
    expected = 0.7 * e.embed_images([image])[0] + 0.3 * e.embed_texts(["something green"])[0]
    expected /= np.linalg.norm(expected)
    got = query_vector(index, Query(text="something green", image=image), image_weight=0.7)
    np.testing.assert_allclose(got, expected, atol=1e-6)
    blank_text = query_vector(index, Query(text="   ", image=image))
    np.testing.assert_allclose(blank_text, e.embed_images([image])[0], atol=1e-6)


def test_per_modality_top_k_and_one_cosine_scale_in_a_shared_space(index):
    result = retrieve(index, Query(text="blue"), RetrievalOptions(image_top_k=4, text_top_k=2))
    modalities = [c.modality for c in result]
    assert modalities.count("image") == 4 and modalities.count("text") == 2
    scores = [c.score for c in result]
    assert scores == sorted(scores, reverse=True)
    assert all(c.metadata["score_scale"] == "cosine" and c.score == c.metadata["cosine"] for c in result)
    images = names([c for c in result if c.modality == "image"])
    assert set(images[:3]) == {"blue_circle.png", "blue_square.png", "blue_triangle.png"}
    texts = [c for c in result if c.modality == "text"]
    assert texts[0].text in {"Boats float on blue water.", "Red, green and blue are the primary colours of light. Mixing them gives white."}
    assert texts[0].image_path is None


def test_text_only_modality(index):
    result = retrieve(index, Query(text="Boats float on blue water."), RetrievalOptions(modalities="text", top_k=2))
    assert [c.modality for c in result] == ["text", "text"]
    assert result[0].text == "Boats float on blue water." and result[0].score == pytest.approx(1.0, abs=1e-5)


def test_metadata_filters_pass_through(index):
    extra = retrieve(index, Query(text="water"), RetrievalOptions(modalities=["text"], top_k=10, where={"set": "extra"}))
    assert [c.text for c in extra] == ["Boats float on blue water."]
    squares = retrieve(index, Query(text="red"), RetrievalOptions(modalities=["image"], top_k=10, where={"file_name": {"$in": ["red_square.png", "blue_square.png"]}}))
    assert names(squares) == ["red_square.png", "blue_square.png"]
    nothing = retrieve(index, Query(text="red"), RetrievalOptions(where={"set": "no such set"}))
    assert nothing == [] and nothing.notes == []


def test_separate_text_embedder_merges_by_reciprocal_rank(split_index, folder):
    result = retrieve(split_index, Query(text="trains", image=folder / "red_square.png"), RetrievalOptions(top_k=2))
    assert {c.metadata["score_scale"] for c in result} == {"rrf"}
    assert [c.score for c in result] == pytest.approx([1 / 61, 1 / 61, 1 / 62, 1 / 62])
    assert [(c.modality, c.metadata["rank"]) for c in result] == [("text", 1), ("image", 1), ("text", 2), ("image", 2)]
    assert names(result)[:2] == ["trains.md", "red_square.png"]  # the text side searched with the text alone
    image_first = retrieve(split_index, Query(text="trains", image=folder / "red_square.png"), RetrievalOptions(modalities=("image", "text"), top_k=1))
    assert [c.modality for c in image_first] == ["image", "text"]  # ties keep the modalities order
    assert all(-1.0 <= c.metadata["cosine"] <= 1.0 for c in result)
    custom = retrieve(split_index, Query(text="trains"), RetrievalOptions(top_k=1, rrf_k=10))
    assert sorted(c.score for c in custom) == pytest.approx([1 / 11, 1 / 11])


def test_image_only_query_skips_a_separate_text_collection_with_a_note(split_index, folder, caplog):
    with caplog.at_level(logging.WARNING, logger="mm_rag_components.retrieval"):
        result = retrieve(split_index, Query(image=folder / "red_square.png"))
    assert result and all(c.modality == "image" for c in result)
    assert all(c.metadata["score_scale"] == "cosine" for c in result)
    assert len(result.notes) == 1 and "text collection skipped" in result.notes[0]
    assert "text collection skipped" in caplog.text
    text_only = retrieve(split_index, Query(image=folder / "red_square.png"), RetrievalOptions(modalities=["text"]))
    assert text_only == [] and text_only.notes


def test_a_separate_text_collection_is_searched_with_its_own_model(split_index):
    words = split_index.text_embedder
    words.calls.clear()
    result = retrieve(split_index, Query(text="Trains run on rails"), RetrievalOptions(modalities=["text"], top_k=1))
    assert names(result) == ["trains.md"] and result[0].metadata["score_scale"] == "cosine"
    assert words.calls == [("text", 1)]


def test_retrieve_takes_text_and_option_keywords(index):
    assert names(retrieve(index, "green triangle", modalities=["image"], top_k=1)) == ["green_triangle.png"]
    with pytest.raises(ConfigError, match="unknown option"):
        retrieve(index, "green", topk=3)
    with pytest.raises(ConfigError, match="not both"):
        retrieve(index, "green", RetrievalOptions(), top_k=3)


def test_bad_inputs_are_clear_errors(index):
    for bad in (dict(modalities=["audio"]), dict(modalities=[]), dict(top_k=0), dict(text_top_k=-1),
                dict(image_weight=1.5), dict(rrf_k=0), dict(where="set=x")):
        with pytest.raises(ConfigError):
            RetrievalOptions(**bad)
    with pytest.raises(ConfigError):
        retrieve(index, b"bytes are not a query")
    with pytest.raises(MediaError):
        retrieve(index, Query(image=b"not an image"))
    with pytest.raises(MediaError, match="allow_urls"):
        retrieve(index, Query(image="https://example.invalid/cat.png"))


# --- plumbing with a real tiny CLIP (random weights: only exact matches are meaningful) -------

@pytest.fixture(scope="module")
def clip_index(tmp_path_factory, clip_embedder, folder):
    idx = MultimodalIndex(tmp_path_factory.mktemp("clipdb") / "chroma", image_embedder=clip_embedder)
    idx.ingest_folder(folder)
    return idx


def test_tiny_clip_exact_matches_come_first(clip_index, folder):
    by_image = retrieve(clip_index, Query(image=folder / "green_square.png"), RetrievalOptions(modalities=["image"], top_k=3))
    assert by_image[0].image_path == str(folder / "green_square.png") and by_image[0].score == pytest.approx(1.0, abs=1e-4)
    by_pil = retrieve(clip_index, Query(image=Image.open(folder / "green_square.png")), RetrievalOptions(modalities=["image"], top_k=1))
    assert by_pil[0].id == by_image[0].id
    text = "Red, green and blue are the primary colours of light. Mixing them gives white."
    by_text = retrieve(clip_index, Query(text=text), RetrievalOptions(modalities=["text"], top_k=2))
    assert by_text[0].text == text and by_text[0].score == pytest.approx(1.0, abs=1e-4)
    mixed = retrieve(clip_index, Query(text="anything", image=folder / "red_circle.png"), RetrievalOptions(image_top_k=2, text_top_k=2))
    assert sorted(c.modality for c in mixed) == ["image", "image", "text", "text"]
    assert all(c.metadata["score_scale"] == "cosine" for c in mixed)
