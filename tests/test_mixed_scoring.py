"""Pointwise scoring of mixed candidates (a page: its image, then its text cut to a token budget):
the fast path (prefix KV reuse, batches, cached vision features) equals the naive per-pair forward
on the tiny Idefics3 and Qwen3-VL models, and the budget, flags and caches behave."""

from __future__ import annotations

import math

import numpy as np
import pytest
from PIL import Image

from mm_rag_components import Candidate, Query
from mm_rag_components.scoring.base import MISSING_IMAGE, TRUNCATED, UNREADABLE_IMAGE
from mm_rag_components.scoring.fast_path import shared_prefix
from mm_rag_components.scoring.page_text import page_text
from mm_rag_components.scoring.transformers_scorer import TransformersScorer
from mm_rag_components.types import MIXED

BUDGET = 48
WORDS = "the annual report shows revenue growth in the third quarter while freight costs fell and margins rose".split()


@pytest.fixture(scope="module")
def qwen3_dir(tmp_path_factory):
    from mm_rag_components.testing import build_tiny_qwen3_vl

    return build_tiny_qwen3_vl(tmp_path_factory.mktemp("qwen3") / "qwen3-vl")


@pytest.fixture(scope="module")
def pages() -> list[Image.Image]:
    """Page-like images of several sizes (Qwen grids with rows ≠ cols)."""
    rng = np.random.default_rng(1)
    return [Image.fromarray(rng.integers(0, 255, (h, w, 3), dtype=np.uint8)) for w, h in [(48, 64), (64, 96), (56, 56), (40, 72)]]


def page_texts() -> list[str]:
    rng = np.random.default_rng(2)
    return [" ".join(rng.choice(WORDS, n)) + "." for n in (6, 40, 150, 8)]  # short, over the budget, far over it, short


def mixed(pages) -> list[Candidate]:
    cands = [Candidate(id=f"p{i}", modality=MIXED, image=im, text=t) for i, (im, t) in enumerate(zip(pages, page_texts()))]
    return cands + [Candidate(id="txt", modality="text", text="a plain text beside the pages"),
                    Candidate(id="img", modality="image", image=pages[0])]


def queries(pages):
    return {"text": Query(text="revenue growth in the third quarter"), "image": Query(image=pages[2]),
            "composed": Query(text="a page like this one", image=pages[3])}


def assert_exact(scorer, pages):
    for name, query in queries(pages).items():
        fast = scorer.score(query, mixed(pages))
        naive = scorer.score_reference(query, mixed(pages))
        diffs = [abs(a.logodds - b.logodds) for a, b in zip(fast, naive)]
        assert max(diffs) <= 1e-4, (name, diffs)
        assert len({round(a.logodds, 5) for a in fast}) > 1, "scores must differ between candidates"
        assert [a.flag for a in fast] == [b.flag for b in naive] == [None, TRUNCATED, TRUNCATED, None, None, None], name


@pytest.mark.parametrize("template", ["qwen3-vl-reranker", "monoqwen2-vl"])
def test_idefics3_fast_path_equals_naive_for_pages(tiny_vlm_dirs, pages, template):
    scorer = TransformersScorer(tiny_vlm_dirs["idefics3"], template=template, batch_size=3, page_text_tokens=BUDGET)
    assert scorer.fast
    assert_exact(scorer, pages)


@pytest.mark.parametrize("template", ["qwen3-vl-reranker", "monoqwen2-vl"])
def test_qwen3_vl_fast_path_equals_naive_for_pages(qwen3_dir, pages, template):
    scorer = TransformersScorer(qwen3_dir, template=template, batch_size=3, page_text_tokens=BUDGET)
    assert scorer.fast and scorer.family.name == "qwen3_vl"
    assert_exact(scorer, pages)


def test_page_text_is_cut_to_the_token_budget_after_the_image(tiny_vlm_dirs, pages):
    scorer = TransformersScorer(tiny_vlm_dirs["idefics3"], page_text_tokens=BUDGET)
    scorer.warm_up()
    long_page = Candidate(id="p", modality=MIXED, image=pages[0], text=page_texts()[2])
    cut, flag = page_text(long_page, BUDGET, scorer.tokenizer)
    assert flag == TRUNCATED and long_page.text.startswith(cut)
    assert len(scorer.tokenizer(cut, add_special_tokens=False)["input_ids"]) == BUDGET
    item = scorer._prepare(Query(text="q"), [], [long_page])[0]
    assert item.labels == ["document"] and cut in item.text and long_page.text not in item.text
    image_at, text_at = item.text.index(scorer.family.image_token), item.text.index(cut)
    assert image_at < text_at  # the image, then the page text
    # a text candidate and an image caption of the same length are never cut here
    for candidate in (Candidate(id="t", modality="text", text=long_page.text), Candidate(id="i", modality="image", image=pages[0], text=long_page.text)):
        assert page_text(candidate, BUDGET, scorer.tokenizer) == (long_page.text, None)
    assert page_text(long_page, None, scorer.tokenizer) == (long_page.text, None)
    whole = TransformersScorer(tiny_vlm_dirs["idefics3"], page_text_tokens=None).score(Query(text="q"), [long_page])[0]
    assert whole.flag is None


def test_budget_without_a_tokenizer_is_four_characters_a_token():
    text = "word " * 100
    cut, flag = page_text(Candidate(id="p", modality=MIXED, image_path="x.png", text=text), 10)
    assert flag == TRUNCATED and len(cut) <= 40 and text.startswith(cut) and not cut.endswith(" ")
    assert page_text(Candidate(id="p", modality=MIXED, image_path="x.png", text="short"), 10) == ("short", None)


def test_pages_reuse_the_query_prefix_and_cached_vision_features(tiny_vlm_dirs, pages):
    scorer = TransformersScorer(tiny_vlm_dirs["idefics3"], batch_size=4, page_text_tokens=BUDGET)
    scorer.warm_up()
    candidates = mixed(pages)[:4]
    items = scorer._prepare(Query(text="q"), [], candidates)
    shared = shared_prefix(items, scorer.image_token_id)
    first_image = min(p.ids.index(scorer.image_token_id) for p in items)
    assert 0 < shared <= first_image and shared >= first_image - 4  # the whole instruction and query, up to the page image
    calls = []
    hook = scorer._model.model.vision_model.register_forward_hook(lambda *a: calls.append(1))
    try:
        first = scorer.score(Query(text="revenue growth"), candidates)
        cold = len(calls)
        assert cold >= 1
        second = scorer.score(Query(text="freight costs"), candidates)
        assert len(calls) == cold  # the page images' features came from the cache
        assert [a.logodds for a in first] != [b.logodds for b in second]
    finally:
        hook.remove()


def test_a_page_without_its_image_is_judged_on_its_text_and_flagged(tiny_vlm_dirs, pages, tmp_path):
    broken = tmp_path / "page.png"
    broken.write_bytes(b"not an image")
    scorer = TransformersScorer(tiny_vlm_dirs["idefics3"], page_text_tokens=BUDGET)
    long_text = page_texts()[2]
    scores = scorer.score(Query(text="revenue"), [
        Candidate(id="lost", modality=MIXED, text=long_text),
        Candidate(id="broken", modality=MIXED, image_path=str(broken), text="text"),
        Candidate(id="empty", modality=MIXED),
        Candidate(id="ok", modality=MIXED, image=pages[0], text="text"),
    ])
    assert scores[0].flag == f"{MISSING_IMAGE},{TRUNCATED}" and math.isfinite(scores[0].logodds)
    assert scores[1].flag == UNREADABLE_IMAGE and scores[1].logodds == -math.inf
    assert scores[2].flag == "empty_candidate" and scores[2].logodds == -math.inf
    assert scores[3].flag is None and math.isfinite(scores[3].logodds)


@pytest.mark.parametrize("value", [0, -1, 2.5, "many", True])
def test_a_bad_budget_is_refused(tiny_vlm_dirs, value):
    from mm_rag_components.errors import ConfigError

    with pytest.raises(ConfigError, match="page_text_tokens"):
        TransformersScorer(tiny_vlm_dirs["idefics3"], page_text_tokens=value)
