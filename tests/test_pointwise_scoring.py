"""The fast scoring path equals the naive one; caches, flags and bad input behave."""

import math

import pytest
from PIL import Image

from mm_rag_components import Candidate, Query
from mm_rag_components.errors import ConfigError, MediaError, ModelError
from mm_rag_components.scoring.base import TRUNCATED, UNREADABLE_IMAGE, sigmoid
from mm_rag_components.scoring.transformers_scorer import TransformersScorer

TEXTS = [
    "Cats are small domesticated animals that sleep most of the day.",
    "A freight train runs on rails.",
    "Red, green and blue.",
    "ok",
    "A long candidate about many different things " * 4,
]


def cases(images):
    text_cands = [Candidate(id=f"t{i}", modality="text", text=t) for i, t in enumerate(TEXTS)]
    image_cands = [Candidate(id=f"i{i}", modality="image", image_path=str(p)) for i, p in enumerate(images[:5])]
    mixed = image_cands[:2] + [Candidate(id="both", modality="image", image_path=str(images[6]), text="a caption")] + text_cands[:2]
    return {
        "text->text": (Query(text="which animal sleeps?"), text_cands),
        "text->image": (Query(text="a red circle"), image_cands),
        "image->text": (Query(image=images[0]), text_cands),
        "image+text->mixed": (Query(text="like this, but blue", image=images[1]), mixed),
    }


@pytest.mark.parametrize("arch", ["idefics3", "llava"])
@pytest.mark.parametrize("template", ["qwen3-vl-reranker", "monoqwen2-vl"])
def test_fast_path_equals_naive_forward(tiny_vlm_dirs, drawn_images, arch, template):
    scorer = TransformersScorer(tiny_vlm_dirs[arch], template=template, batch_size=3)
    assert scorer.fast
    for name, (query, candidates) in cases(drawn_images).items():
        fast = scorer.score(query, candidates)
        naive = scorer.score_reference(query, candidates)
        diffs = [abs(a.logodds - b.logodds) for a, b in zip(fast, naive)]
        assert max(diffs) <= 1e-4, (name, diffs)
        assert len({round(a.logodds, 6) for a in fast}) > 1, "scores must differ between candidates"
        for a in fast:
            assert a.probability == pytest.approx(sigmoid(a.logodds)) and a.flag is None


def test_text_only_causal_lm_fast_equals_naive(tiny_vlm_dirs):
    scorer = TransformersScorer(tiny_vlm_dirs["causal"], template="qwen3-vl-reranker", batch_size=2)
    query, candidates = Query(text="which animal sleeps?"), [Candidate(id=str(i), modality="text", text=t) for i, t in enumerate(TEXTS)]
    fast, naive = scorer.score(query, candidates), scorer.score_reference(query, candidates)
    assert max(abs(a.logodds - b.logodds) for a, b in zip(fast, naive)) <= 1e-4
    image_candidate = Candidate(id="img", modality="image", image=Image.new("RGB", (8, 8)))
    flagged = scorer.score(query, [image_candidate])[0]
    assert flagged.flag == "unsupported_modality" and flagged.logodds == -math.inf
    with pytest.raises(ConfigError):
        scorer.score(Query(image=Image.new("RGB", (8, 8))), candidates)


def test_score_is_yes_no_softmax_not_vocabulary_probability(tiny_vlm_dirs):
    import torch

    scorer = TransformersScorer(tiny_vlm_dirs["causal"], template="retllm")
    query, cand = Query(text="q"), Candidate(id="c", modality="text", text="doc")
    point = scorer.score(query, [cand])[0]
    text, _ = scorer.render(query, "doc", False)
    inputs = scorer.tokenizer([text], add_special_tokens=False, return_tensors="pt")
    with torch.inference_mode():
        logits = scorer._model(**inputs).logits[0, -1]
    pair = torch.softmax(logits[[scorer.yes_id, scorer.no_id]], dim=0)[0].item()
    vocab = torch.softmax(logits, dim=0)[scorer.yes_id].item()
    assert point.probability == pytest.approx(pair, abs=1e-5)
    assert abs(point.probability - vocab) > 0.1


def test_vision_cache_skips_the_tower_on_a_second_query(tiny_vlm_dirs, drawn_images):
    scorer = TransformersScorer(tiny_vlm_dirs["idefics3"], batch_size=4, vision_batch_size=4)
    scorer.warm_up()
    calls = []
    hook = scorer._model.model.vision_model.register_forward_hook(lambda *a: calls.append(1))
    try:
        candidates = [Candidate(id=str(i), modality="image", image_path=str(p)) for i, p in enumerate(drawn_images[:6])]
        first = scorer.score(Query(text="a red circle"), candidates)
        cold_calls = len(calls)
        assert cold_calls == 2  # 6 images in batches of 4
        second = scorer.score(Query(text="a blue square"), candidates)
        assert len(calls) == cold_calls
        assert [a.logodds for a in first] != [b.logodds for b in second]
        assert scorer.vision_cache.hits >= 6
    finally:
        hook.remove()


def test_unreadable_candidate_is_flagged_and_the_rest_scored(tiny_vlm_dirs, drawn_images, tmp_path):
    broken = tmp_path / "broken.png"
    broken.write_bytes(b"not an image")
    scorer = TransformersScorer(tiny_vlm_dirs["llava"])
    candidates = [
        Candidate(id="ok", modality="image", image_path=str(drawn_images[0])),
        Candidate(id="bad", modality="image", image_path=str(broken)),
        Candidate(id="text", modality="text", text="a red circle"),
    ]
    scores = scorer.score(Query(text="red"), candidates)
    assert scores[1].flag == UNREADABLE_IMAGE and scores[1].logodds == -math.inf and scores[1].probability == 0.0
    assert math.isfinite(scores[0].logodds) and math.isfinite(scores[2].logodds)


def _prompt_length(scorer, query, document):
    return len(scorer.prompts.tokenize(scorer.render(query, document, False)[0]))


def test_oversized_prompt_truncates_the_candidate_not_the_instruction(tiny_vlm_dirs):
    query = Query(text="find the important passage")
    base = _prompt_length(TransformersScorer(tiny_vlm_dirs["idefics3"]), query, "")
    limit = base + 20
    scorer = TransformersScorer(tiny_vlm_dirs["idefics3"], max_length=limit)
    long_doc = "word " * 400
    scores = scorer.score(query, [Candidate(id="long", modality="text", text=long_doc), Candidate(id="short", modality="text", text="tiny")])
    assert scores[0].flag == TRUNCATED and math.isfinite(scores[0].logodds)
    assert scores[1].flag is None
    prompt = scorer.prompts.build(query.text, False, long_doc, False)
    assert prompt.flag == TRUNCATED and limit - 5 <= len(prompt.ids) <= limit
    assert "Given a search query" in prompt.text and "find the important passage" in prompt.text


def test_bad_input(tiny_vlm_dirs, tmp_path):
    scorer = TransformersScorer(tiny_vlm_dirs["idefics3"])
    assert scorer.score(Query(text="x"), []) == []
    with pytest.raises(ConfigError):
        scorer.score("just a string", [Candidate(id="a", modality="text", text="b")])
    with pytest.raises(MediaError, match="query image"):
        scorer.score(Query(image=b"garbage"), [Candidate(id="a", modality="text", text="b")])
    missing = TransformersScorer(tmp_path / "missing-model")  # construction reads nothing
    with pytest.raises(ModelError):
        missing.warm_up()
    with pytest.raises(ModelError):  # not half-loaded: the next use fails the same way
        missing.score(Query(text="x"), [Candidate(id="a", modality="text", text="b")])
    with pytest.raises(ConfigError):
        TransformersScorer(tiny_vlm_dirs["idefics3"], batch_size=0)


def test_prompt_that_cannot_fit_is_flagged_not_cut_in_the_instruction(tiny_vlm_dirs):
    query = Query(text="find the important passage")
    limit = _prompt_length(TransformersScorer(tiny_vlm_dirs["idefics3"]), query, "") - 5
    scorer = TransformersScorer(tiny_vlm_dirs["idefics3"], max_length=limit)
    scores = scorer.score(query, [Candidate(id="a", modality="text", text="anything at all")])
    assert scores[0].flag == "prompt_too_long" and scores[0].logodds == -math.inf


def test_vision_calls_on_cpu_are_grouped_by_feature_rows(tiny_vlm_dirs, drawn_images, monkeypatch):
    from mm_rag_components.scoring import features

    candidates = [Candidate(id=str(i), modality="image", image_path=str(p)) for i, p in enumerate(drawn_images[:3])]

    def vision_calls(**options) -> tuple[int, list[float]]:
        scorer = TransformersScorer(tiny_vlm_dirs["llava"], batch_size=8, device="cpu", **options)
        scorer.warm_up()
        calls = []
        hook = scorer._model.model.vision_tower.register_forward_hook(lambda *a: calls.append(1))
        try:
            scores = scorer.score(Query(text="x"), candidates)
        finally:
            hook.remove()
        return len(calls), [p.logodds for p in scores]

    rows = TransformersScorer(tiny_vlm_dirs["llava"]).family.layout(None).slots
    assert 3 * rows <= features.VISION_ROWS_PER_CALL
    grouped, reference = vision_calls()
    assert grouped == 1  # small images share one call by default
    assert vision_calls(vision_batch_size=1)[0] == 3  # an explicit batch size wins
    monkeypatch.setattr(features, "VISION_ROWS_PER_CALL", 2 * rows)
    split, logodds = vision_calls()
    assert split == 2 and logodds == pytest.approx(reference, abs=1e-4)  # two fit a call, the third runs alone
