"""jina-reranker-m0 scores with its own MLP head on the last hidden state, not with yes/no logits.

A tiny checkpoint of the same shape (``testing.build_tiny_jina_reranker_m0``: a Qwen2-VL with
``score.0`` / ``score.2`` weights and ``architectures: ["JinaVLForRanking"]``) is scored by
:class:`TransformersScorer` with the ``jina-reranker-m0`` template, and compared with the model's
own recipe (``JinaVLForRanking.compute_score`` of its modeling code), re-implemented here
independently: the plain-text prompt document first, the score token 100 appended, the final
hidden state of the last token through ``Linear → ReLU → Linear``, ``sigmoid(· − 2.65)``.
"""

from __future__ import annotations

import json
import math
import shutil
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mm_rag_components import Candidate, Query
from mm_rag_components.errors import ConfigError, ModelError
from mm_rag_components.scoring.templates import DOCUMENT_IMAGE, JINA_RERANKER_M0, PointwiseTemplate
from mm_rag_components.scoring.transformers_scorer import TransformersScorer

IMAGE_PAD = "<|vision_start|><|image_pad|><|vision_end|>"


@pytest.fixture(scope="module")
def jina_dir(tmp_path_factory) -> Path:
    from mm_rag_components.testing import build_tiny_jina_reranker_m0

    return build_tiny_jina_reranker_m0(tmp_path_factory.mktemp("jina") / "m0")


@pytest.fixture(scope="module")
def scorer(jina_dir) -> TransformersScorer:
    scorer = TransformersScorer(jina_dir, template="jina-reranker-m0", batch_size=3)
    scorer.warm_up()
    return scorer


def jina_reference(model_dir: Path, query: str | Path, doc: str | Path, query_type: str, doc_type: str) -> float:
    """The model card's recipe, step by step, with plain transformers (no code of ours)."""
    import torch
    from PIL import Image
    from safetensors.torch import load_file
    from transformers import AutoImageProcessor, AutoTokenizer, Qwen2VLForConditionalGeneration

    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    image_processor = AutoImageProcessor.from_pretrained(model_dir)
    model = Qwen2VLForConditionalGeneration.from_pretrained(model_dir).eval()
    weights = load_file(str(model_dir / "model.safetensors"))
    query_part = f"**Query**:\n{IMAGE_PAD}" if query_type == "image" else f"**Query**:\n{query}"
    doc_part = f"**Document**:\n{IMAGE_PAD}" if doc_type == "image" else f"**Document**:\n{doc}"
    prompt = doc_part + "\n" + query_part
    images = [Image.open(p).convert("RGB") for p, kind in ((doc, doc_type), (query, query_type)) if kind == "image"]
    extra = {}
    if images:
        pixels = image_processor(images, return_tensors="pt")
        counts = [int(g.prod()) // 4 for g in pixels["image_grid_thw"]]  # merge size 2
        pieces = prompt.split("<|image_pad|>")
        prompt = pieces[0] + "".join("<|image_pad|>" * n + piece for n, piece in zip(counts, pieces[1:]))
        extra = {"pixel_values": pixels["pixel_values"], "image_grid_thw": pixels["image_grid_thw"]}
    ids = tokenizer([prompt], return_tensors="pt")["input_ids"]
    ids = torch.cat([ids, torch.tensor([[100]])], dim=1)  # the score token
    image_pad = tokenizer.convert_tokens_to_ids("<|image_pad|>")
    with torch.no_grad():
        out = model(input_ids=ids, attention_mask=torch.ones_like(ids), mm_token_type_ids=(ids == image_pad).int(),
                    output_hidden_states=True, **extra)
        last = out.hidden_states[-1][:, -1]
        hidden = torch.relu(last @ weights["score.0.weight"].T + weights["score.0.bias"])
        logit = (hidden @ weights["score.2.weight"].T + weights["score.2.bias"]).item()
    return 1.0 / (1.0 + math.exp(-(logit - 2.65)))


def test_scores_equal_the_model_cards_recipe(scorer, jina_dir, drawn_images):
    red, blue = drawn_images[0], drawn_images[1]
    candidates = [Candidate(id="a", modality="image", image_path=str(red)),
                  Candidate(id="b", modality="text", text="a small blue square on white"),
                  Candidate(id="c", modality="image", image_path=str(blue)),
                  Candidate(id="d", modality="text", text="trains run on rails")]
    query = Query(text="a red circle")
    expected = [jina_reference(jina_dir, "a red circle", red, "text", "image"),
                jina_reference(jina_dir, "a red circle", "a small blue square on white", "text", "text"),
                jina_reference(jina_dir, "a red circle", blue, "text", "image"),
                jina_reference(jina_dir, "a red circle", "trains run on rails", "text", "text")]
    fast = [s.probability for s in scorer.score(query, candidates)]
    naive = [s.probability for s in scorer.score_reference(query, candidates)]
    assert fast == pytest.approx(expected, abs=1e-4) and naive == pytest.approx(expected, abs=1e-4)
    assert len({round(p, 6) for p in expected}) == 4  # the head tells the candidates apart


def test_an_image_query_scores_text_documents_the_same_way(scorer, jina_dir, drawn_images):
    query_image = drawn_images[2]
    candidates = [Candidate(id="x", modality="text", text="a green shape"), Candidate(id="y", modality="text", text="a dog")]
    got = [s.probability for s in scorer.score(Query(image=str(query_image)), candidates)]
    expected = [jina_reference(jina_dir, query_image, c.text, "image", "text") for c in candidates]
    assert got == pytest.approx(expected, abs=1e-4)


def test_the_prompt_is_plain_text_document_first_with_the_score_token(scorer):
    prompt = scorer.prompts.build("a red circle", False, "cats sleep", False)
    assert prompt.text == "**Document**:\ncats sleep\n**Query**:\na red circle"
    assert prompt.ids[-1] == 100 and "<|im_start|>" not in prompt.text
    image_prompt = scorer.prompts.render("q", False, None, True)
    assert image_prompt == (f"**Document**:\n{IMAGE_PAD}\n**Query**:\nq", ["document"])
    assert scorer.yes_id is None and scorer.head_bias == 2.65


def test_the_hub_name_loads_offline_from_a_cache_and_finds_the_head(jina_dir, tmp_path, drawn_images):
    from mm_rag_components.testing import seed_hub_cache, use_hub_cache

    cache = seed_hub_cache(tmp_path / "hub", {"jinaai/jina-reranker-m0": jina_dir})
    candidates = [Candidate(id="a", modality="image", image_path=str(drawn_images[0]))]
    by_dir = TransformersScorer(jina_dir, template="jina-reranker-m0").score(Query(text="a red circle"), candidates)
    with use_hub_cache(cache):
        by_name = TransformersScorer("jinaai/jina-reranker-m0", template="jina-reranker-m0").score(Query(text="a red circle"), candidates)
    assert by_name[0].probability == pytest.approx(by_dir[0].probability, abs=1e-6)


def test_a_yes_no_template_on_the_score_head_model_is_refused_with_the_right_one(jina_dir):
    with pytest.raises(ModelError, match="scores with its own head, not yes/no answers: use template='jina-reranker-m0'"):
        TransformersScorer(jina_dir).warm_up()  # default template: qwen3-vl-reranker


def test_the_score_head_template_on_a_yes_no_model_is_refused(tmp_path):
    from mm_rag_components.testing import build_tiny_qwen2_vl

    plain = build_tiny_qwen2_vl(tmp_path / "qwen2-vl")
    with pytest.raises(ModelError, match="needs a model with its own score head .*JinaVLForRanking"):
        TransformersScorer(plain, template="jina-reranker-m0").warm_up()


def test_a_checkpoint_without_the_head_weights_is_one_model_error(jina_dir, tmp_path):
    from safetensors.torch import load_file, save_file

    broken = tmp_path / "no-head"
    shutil.copytree(jina_dir, broken)
    weights = {k: v for k, v in load_file(str(broken / "model.safetensors")).items() if not k.startswith("score.2")}
    save_file(weights, str(broken / "model.safetensors"), metadata={"format": "pt"})
    with pytest.raises(ModelError, match="weights lack score.2.weight, score.2.bias"):
        TransformersScorer(broken, template="jina-reranker-m0").warm_up()


def test_no_remote_code_runs(jina_dir):
    config = json.loads((jina_dir / "config.json").read_text())
    assert config["auto_map"] == {"AutoModel": "modeling.JinaVLForRanking"}
    assert not (jina_dir / "modeling.py").exists()  # the scorer above loaded without it
    assert TransformersScorer(jina_dir, template="jina-reranker-m0").trust_remote_code is False


def test_yes_no_consumers_refuse_the_score_head_template(scorer):
    with pytest.raises(ModelError, match="scored by the model's own head; it has no yes/no answer tokens"):
        scorer.prompts.answer_ids()  # what the raw-prompt remote scorer and training ask for
    with pytest.raises(ConfigError, match="plain-text prompt"):
        JINA_RERANKER_M0.messages(query="q", document="d", query_image=False, document_image=False)


def test_a_lora_adapter_is_refused_with_how_to_merge_it(tmp_path):
    adapter = tmp_path / "mono-adapter"
    adapter.mkdir()
    (adapter / "adapter_config.json").write_text(json.dumps({"base_model_name_or_path": "Qwen/Qwen2-VL-2B-Instruct",
                                                             "peft_type": "LORA"}))
    (adapter / "adapter_model.safetensors").write_bytes(b"")
    with pytest.raises(ModelError, match="LoRA adapter of Qwen/Qwen2-VL-2B-Instruct, not a model: merge it first"):
        TransformersScorer(adapter, template="monoqwen2-vl").warm_up()


@settings(max_examples=40, deadline=None)
@given(suffix=st.one_of(st.lists(st.integers(max_value=-1), min_size=1, max_size=3),
                        st.lists(st.text(max_size=3), min_size=1, max_size=2),
                        st.lists(st.booleans(), min_size=1, max_size=2)),
       head=st.text(max_size=12).filter(lambda h: h not in ("yes_no", "score_head")))
def test_bad_template_settings_are_config_errors(suffix, head):
    with pytest.raises(ConfigError, match="suffix_ids"):
        PointwiseTemplate("t", parts=("{query}", "{document}"), suffix_ids=tuple(suffix))
    with pytest.raises(ConfigError, match="head must be one of"):
        PointwiseTemplate("t", parts=("{query}", "{document}"), head=head)
    with pytest.raises(ConfigError, match="needs image_text"):
        PointwiseTemplate("t", parts=("{query}", DOCUMENT_IMAGE), chat=False)


def test_only_the_expected_head_keys_are_kept_out_of_the_load_report(jina_dir, caplog):
    import logging

    from mm_rag_components.scoring.heads import _HeadKeysReport

    with caplog.at_level(logging.WARNING):
        TransformersScorer(jina_dir, template="jina-reranker-m0").warm_up()
    assert "LOAD REPORT" not in caplog.text

    def report(*rows: str) -> logging.LogRecord:
        table = "\n".join(["Key | Status | |", "----+---+--+-", *rows])
        return logging.LogRecord("transformers.modeling_utils", logging.WARNING, __file__, 1, "M LOAD REPORT from: x\n" + table, None, None)

    quiet = _HeadKeysReport()
    assert not quiet.filter(report("score.{0, 2}.bias   | UNEXPECTED |  |", "score.{0, 2}.weight | UNEXPECTED |  |"))
    assert quiet.filter(report("score.0.bias | UNEXPECTED | |", "model.norm.weight | MISSING | |"))  # real news stays
    assert quiet.filter(report("lm_head.weight | UNEXPECTED | |"))


def test_training_refuses_a_score_head_model(scorer):
    from mm_rag_components.training.objective import PairEncoder

    with pytest.raises(ConfigError, match="training learns yes/no answers"):
        PairEncoder(scorer)
