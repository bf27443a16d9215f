"""Tiny random-weight chat VLMs and causal LMs that load through the normal ``from_pretrained`` path.

Each builder writes a model directory (safetensors weights, config, a locally trained BPE tokenizer
with the architecture's special image tokens, a PIL image processor, a chat template) and returns
its path. The tiny ones use small images (32 px) so tests run in seconds on a CPU.
``build_smolvlm_256m_random`` has the real SmolVLM-256M shapes (for benchmarks, not tests).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ..progress import quiet_loading
from .tokenizer import train_bpe_tokenizer

#: SmolVLM's chat template (Idefics3): ``<|im_start|>User:<image>text<end_of_utterance>\nAssistant:``.
IDEFICS3_CHAT_TEMPLATE = (
    "<|im_start|>{% for message in messages %}{{ message['role'] | capitalize }}"
    "{% if message['content'][0]['type'] == 'image' %}{{ ':' }}{% else %}{{ ': ' }}{% endif %}"
    "{% for line in message['content'] %}{% if line['type'] == 'text' %}{{ line['text'] }}"
    "{% elif line['type'] == 'image' %}{{ '<image>' }}{% endif %}{% endfor %}<end_of_utterance>\n"
    "{% endfor %}{% if add_generation_prompt %}{{ 'Assistant:' }}{% endif %}"
)

#: A LLaVA-style template that keeps images where they occur (as llava-interleave does).
LLAVA_CHAT_TEMPLATE = (
    "{% for message in messages %}{{ message['role'].upper() + ': ' }}"
    "{% for part in message['content'] %}{% if part['type'] == 'image' %}{{ '<image>\n' }}"
    "{% else %}{{ part['text'] }}{% endif %}{% endfor %}{{ '\n' }}{% endfor %}"
    "{% if add_generation_prompt %}{{ 'ASSISTANT:' }}{% endif %}"
)

#: ChatML, as Qwen2/Qwen2.5/Qwen3 use it (string contents).
CHATML_CHAT_TEMPLATE = (
    "{% for message in messages %}{{ '<|im_start|>' + message['role'] + '\n' + message['content'] "
    "+ '<|im_end|>' + '\n' }}{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)

_IDEFICS3_SPECIALS = (
    "<|im_start|>",
    "<end_of_utterance>",
    "<fake_token_around_image>",
    "<image>",
    "<global-img>",
    *(f"<row_{i}_col_{j}>" for i in range(1, 7) for j in range(1, 7)),
)


def _merge(base: dict[str, Any], overrides: dict[str, Any]) -> dict[str, Any]:
    merged = dict(base)
    for key, value in overrides.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = {**merged[key], **value}
        else:
            merged[key] = value
    return merged


def _save(model: Any, processor: Any, path: Path) -> Path:
    path.mkdir(parents=True, exist_ok=True)
    with quiet_loading():
        model.save_pretrained(path)
        processor.save_pretrained(path)
    return path


def _idefics3(path: str | Path, *, seed: int, text: dict, vision: dict, image_px: int, scale_factor: int,
              vocab_size: int | None, overrides: dict[str, Any], split: int = 0, tokenizer: Any = None) -> Path:
    import torch
    from transformers import Idefics3Config, Idefics3ForConditionalGeneration, Idefics3Processor
    from transformers.models.idefics3.image_processing_pil_idefics3 import Idefics3ImageProcessorPil

    tokenizer = tokenizer or train_bpe_tokenizer(additional_special_tokens=_IDEFICS3_SPECIALS)
    tokenizer.chat_template = IDEFICS3_CHAT_TEMPLATE
    ids = tokenizer.convert_tokens_to_ids
    spec = _merge({"text_config": text, "vision_config": vision, "scale_factor": scale_factor}, overrides)
    spec["text_config"] = {
        "model_type": "llama",
        "vocab_size": max(vocab_size or 0, len(tokenizer)),
        "pad_token_id": tokenizer.pad_token_id,
        "bos_token_id": ids("<|im_start|>"),
        "eos_token_id": ids("<end_of_utterance>"),
        **spec["text_config"],
    }
    config = Idefics3Config(image_token_id=ids("<image>"), **spec)
    torch.manual_seed(seed)
    model = Idefics3ForConditionalGeneration(config).eval()
    # SmolVLM's processor: images resized to `split` × the encoder's size on the long edge, then
    # cut into encoder-sized tiles plus a global view (split=0: one view per image).
    image_processor = Idefics3ImageProcessorPil(
        do_image_splitting=split > 0,
        size={"longest_edge": image_px * max(split, 1)},
        max_image_size={"longest_edge": image_px},
    )
    patches = config.vision_config.image_size // config.vision_config.patch_size
    processor = Idefics3Processor(
        image_processor=image_processor,
        tokenizer=tokenizer,
        image_seq_len=patches * patches // (config.scale_factor**2),
        chat_template=IDEFICS3_CHAT_TEMPLATE,
    )
    return _save(model, processor, Path(path))


def build_tiny_idefics3(path: str | Path, *, seed: int = 0, split: int = 0, **overrides: Any) -> Path:
    """A tiny Idefics3 (SmolVLM-style): 32-px images, 4 image tokens, a 2-layer Llama text model.
    ``split=2`` splits images as SmolVLM does (64-px long edge: up to 2×2 tiles + a global view)."""
    return _idefics3(
        path,
        split=split,
        seed=seed,
        text={"hidden_size": 64, "intermediate_size": 128, "num_hidden_layers": 2,
              "num_attention_heads": 4, "num_key_value_heads": 2, "max_position_embeddings": 1024,
              "tie_word_embeddings": False},
        vision={"hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 2,
                "num_attention_heads": 4, "image_size": 32, "patch_size": 8},
        image_px=32,
        scale_factor=2,
        vocab_size=None,
        overrides=overrides,
    )


def build_smolvlm_256m_random(path: str | Path, *, seed: int = 0, image_size: int = 512, text_layers: int = 30,
                              split: int = 4, tokenizer: Any = None, vision_layers: int = 12) -> Path:
    """SmolVLM-256M's shapes with random weights: SmolLM2-135M text, SigLIP-B/16-512 vision, and
    its processor configuration: images resized to ``split`` × ``image_size`` on the long edge and
    split into tiles plus a global view (``split=0``: one view).

    ``image_size`` / ``text_layers`` / ``vision_layers`` shrink it for quick benchmark runs
    (defaults: the real shapes). ``tokenizer``: use this one (e.g. SmolLM2's real tokenizer with SmolVLM's image tokens)
    instead of a small trained one. Re-running with the same arguments reuses a finished directory.
    """
    marker = Path(path) / "mm_rag_builder.txt"
    recipe = repr(("smolvlm-256m", seed, image_size, text_layers, split, tokenizer is None, len(tokenizer or ()), vision_layers))
    if marker.is_file() and marker.read_text() == recipe:
        return Path(path)
    built = _idefics3(
        path,
        seed=seed,
        text={"hidden_size": 576, "intermediate_size": 1536, "num_hidden_layers": text_layers,
              "num_attention_heads": 9, "num_key_value_heads": 3, "max_position_embeddings": 8192,
              "rope_theta": 100000.0, "rms_norm_eps": 1e-5, "tie_word_embeddings": True,
              "head_dim": 64},
        vision={"hidden_size": 768, "intermediate_size": 3072, "num_hidden_layers": vision_layers,
                "num_attention_heads": 12, "image_size": image_size, "patch_size": 16},
        image_px=image_size,
        scale_factor=4,
        vocab_size=49280,
        overrides={},
        split=split,
        tokenizer=tokenizer,
    )
    marker.write_text(recipe)
    return built


def build_tiny_llava(path: str | Path, *, seed: int = 0, **overrides: Any) -> Path:
    """A tiny LLaVA: CLIP vision (32-px images, 16 patches + CLS), MLP projector, 2-layer Llama."""
    import torch
    from transformers import LlavaConfig, LlavaForConditionalGeneration, LlavaProcessor
    from transformers.models.llava.image_processing_pil_llava import LlavaImageProcessorPil

    tokenizer = train_bpe_tokenizer(additional_special_tokens=("<image>",))
    tokenizer.chat_template = LLAVA_CHAT_TEMPLATE
    ids = tokenizer.convert_tokens_to_ids
    spec = _merge(
        {
            "text_config": {"model_type": "llama", "hidden_size": 64, "intermediate_size": 128,
                            "num_hidden_layers": 2, "num_attention_heads": 4, "num_key_value_heads": 2,
                            "max_position_embeddings": 1024, "vocab_size": len(tokenizer),
                            "pad_token_id": ids("<pad>"), "bos_token_id": ids("<s>"),
                            "eos_token_id": ids("</s>")},
            "vision_config": {"model_type": "clip_vision_model", "hidden_size": 32, "intermediate_size": 64,
                              "num_hidden_layers": 2, "num_attention_heads": 4, "image_size": 32,
                              "patch_size": 8, "projection_dim": 32},
            "vision_feature_layer": -2,
            "vision_feature_select_strategy": "default",
        },
        overrides,
    )
    config = LlavaConfig(image_token_index=ids("<image>"), **spec)
    torch.manual_seed(seed)
    model = LlavaForConditionalGeneration(config).eval()
    px = config.vision_config.image_size
    image_processor = LlavaImageProcessorPil(size={"shortest_edge": px}, crop_size={"height": px, "width": px})
    processor = LlavaProcessor(
        image_processor=image_processor,
        tokenizer=tokenizer,
        patch_size=config.vision_config.patch_size,
        vision_feature_select_strategy=config.vision_feature_select_strategy,
        num_additional_image_tokens=1,
        chat_template=LLAVA_CHAT_TEMPLATE,
    )
    return _save(model, processor, Path(path))


def build_tiny_causal_lm(path: str | Path, *, seed: int = 0, **overrides: Any) -> Path:
    """A tiny Qwen2 causal LM with a ChatML chat template (text-only reranking)."""
    import torch
    from transformers import Qwen2Config, Qwen2ForCausalLM

    tokenizer = train_bpe_tokenizer(
        special_tokens=("<|endoftext|>", "<|im_start|>", "<|im_end|>"),
        unk_token="<|endoftext|>",
        bos_token=None,
        eos_token="<|im_end|>",
        pad_token="<|endoftext|>",
    )
    tokenizer.chat_template = CHATML_CHAT_TEMPLATE
    ids = tokenizer.convert_tokens_to_ids
    spec = _merge(
        {"hidden_size": 64, "intermediate_size": 128, "num_hidden_layers": 2, "num_attention_heads": 4,
         "num_key_value_heads": 2, "max_position_embeddings": 1024, "vocab_size": len(tokenizer),
         "pad_token_id": ids("<|endoftext|>"), "eos_token_id": ids("<|im_end|>"),
         "tie_word_embeddings": False},
        overrides,
    )
    torch.manual_seed(seed)
    model = Qwen2ForCausalLM(Qwen2Config(**spec)).eval()
    return _save(model, tokenizer, Path(path))


__all__ = [
    "CHATML_CHAT_TEMPLATE",
    "IDEFICS3_CHAT_TEMPLATE",
    "LLAVA_CHAT_TEMPLATE",
    "build_smolvlm_256m_random",
    "build_tiny_causal_lm",
    "build_tiny_idefics3",
    "build_tiny_llava",
]
