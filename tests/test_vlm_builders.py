"""The tiny VLM / causal-LM builders write directories that load back through the Auto classes."""

import pytest
import torch
from PIL import Image

from mm_rag_components.testing import build_tiny_idefics3, build_tiny_llava


@pytest.mark.parametrize("arch", ["idefics3", "llava"])
def test_vlm_loads_back_and_runs_with_an_image(tiny_vlm_dirs, arch):
    from transformers import AutoModelForImageTextToText, AutoProcessor

    path = tiny_vlm_dirs[arch]
    model = AutoModelForImageTextToText.from_pretrained(path).eval()
    processor = AutoProcessor.from_pretrained(path)
    assert type(model).__name__.lower().startswith(arch)
    assert "Pil" in type(processor.image_processor).__name__  # no torchvision needed
    messages = [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": "a red circle"}]}]
    prompt = processor.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
    assert processor.image_token in prompt
    inputs = processor(text=[prompt], images=[[Image.new("RGB", (40, 30), (200, 10, 10))]], return_tensors="pt")
    image_token_id = processor.tokenizer.convert_tokens_to_ids(processor.image_token)
    n_image_tokens = int((inputs["input_ids"] == image_token_id).sum())
    assert n_image_tokens > 1  # the placeholder was expanded to the model's image sequence
    with torch.inference_mode():
        logits = model(**inputs, logits_to_keep=1).logits
    assert logits.shape == (1, 1, model.config.get_text_config().vocab_size)
    assert torch.isfinite(logits).all()


def test_causal_lm_loads_back_with_chatml(tiny_vlm_dirs):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    model = AutoModelForCausalLM.from_pretrained(tiny_vlm_dirs["causal"]).eval()
    tok = AutoTokenizer.from_pretrained(tiny_vlm_dirs["causal"])
    text = tok.apply_chat_template([{"role": "user", "content": "hi"}], add_generation_prompt=True, tokenize=False)
    assert text == "<|im_start|>user\nhi<|im_end|>\n<|im_start|>assistant\n"
    ids = tok(text, return_tensors="pt")
    with torch.inference_mode():
        assert model(**ids, logits_to_keep=1).logits.shape[-1] == model.config.vocab_size
    for word in ("yes", "no", "True", "False"):  # answer words are single tokens
        assert len(tok(word, add_special_tokens=False)["input_ids"]) == 1


def test_seed_and_overrides(tmp_path):
    from transformers import AutoModelForImageTextToText

    a = AutoModelForImageTextToText.from_pretrained(build_tiny_llava(tmp_path / "a", seed=1))
    b = AutoModelForImageTextToText.from_pretrained(build_tiny_llava(tmp_path / "b", seed=1))
    c = AutoModelForImageTextToText.from_pretrained(build_tiny_llava(tmp_path / "c", seed=2))
    weight = lambda m: m.get_input_embeddings().weight  # noqa: E731
    assert torch.equal(weight(a), weight(b)) and not torch.equal(weight(a), weight(c))
    deeper = AutoModelForImageTextToText.from_pretrained(
        build_tiny_idefics3(tmp_path / "d", text_config={"num_hidden_layers": 3})
    )
    assert deeper.config.text_config.num_hidden_layers == 3
    assert deeper.config.text_config.hidden_size == 64  # the rest of the text config is kept
