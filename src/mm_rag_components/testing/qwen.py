"""Tiny random-weight Qwen2-VL and Qwen3-VL models (and a Qwen3-VL-2B-shaped one for benchmarks).

Each writes what a Qwen-VL hub repository holds: weights and config, a tokenizer with the real
special tokens (``<|im_start|>``, ``<|im_end|>``, ``<|vision_start|>``, ``<|image_pad|>``,
``<|vision_end|>`` …), the image processor configuration, and the model card's chat template in
``chat_template.jinja`` (where the processor keeps it). The processor classes need torchvision,
so none is saved as an object: loading one here fails, exactly as it does on a CPU-only install.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ..progress import quiet_loading
from .tokenizer import train_bpe_tokenizer

#: Qwen2-VL / Qwen2.5-VL Instruct (also MonoQwen2-VL, jina-reranker-m0): a default system
#: prompt when the conversation has none; images as ``<|vision_start|><|image_pad|><|vision_end|>``.
QWEN2_VL_CHAT_TEMPLATE = (
    "{% set image_count = namespace(value=0) %}{% set video_count = namespace(value=0) %}"
    "{% for message in messages %}{% if loop.first and message['role'] != 'system' %}"
    "<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n{% endif %}"
    "<|im_start|>{{ message['role'] }}\n{% if message['content'] is string %}{{ message['content'] }}<|im_end|>\n"
    "{% else %}{% for content in message['content'] %}"
    "{% if content['type'] == 'image' or 'image' in content or 'image_url' in content %}"
    "{% set image_count.value = image_count.value + 1 %}{% if add_vision_id %}Picture {{ image_count.value }}: {% endif %}"
    "<|vision_start|><|image_pad|><|vision_end|>"
    "{% elif content['type'] == 'video' or 'video' in content %}"
    "{% set video_count.value = video_count.value + 1 %}{% if add_vision_id %}Video {{ video_count.value }}: {% endif %}"
    "<|vision_start|><|video_pad|><|vision_end|>"
    "{% elif 'text' in content %}{{ content['text'] }}{% endif %}{% endfor %}<|im_end|>\n{% endif %}{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)

#: Qwen3-VL Instruct (also Qwen3-VL-Reranker), without the tool-calling branches: no default
#: system prompt; system content may be typed parts; the same image markers as Qwen2-VL.
QWEN3_VL_CHAT_TEMPLATE = (
    "{%- if messages[0].role == 'system' -%}"
    "{{- '<|im_start|>system\\n' -}}"
    "{%- if messages[0].content is string -%}{{- messages[0].content -}}"
    "{%- else -%}{%- for content in messages[0].content -%}{%- if 'text' in content -%}{{- content.text -}}{%- endif -%}{%- endfor -%}"
    "{%- endif -%}{{- '<|im_end|>\\n' -}}{%- endif -%}"
    "{%- set image_count = namespace(value=0) -%}{%- set video_count = namespace(value=0) -%}"
    "{%- for message in messages -%}"
    "{%- if message.role == 'user' -%}"
    "{{- '<|im_start|>' + message.role + '\\n' -}}"
    "{%- if message.content is string -%}{{- message.content -}}{%- else -%}"
    "{%- for content in message.content -%}"
    "{%- if content.type == 'image' or 'image' in content or 'image_url' in content -%}"
    "{%- set image_count.value = image_count.value + 1 -%}"
    "{%- if add_vision_id -%}{{- 'Picture ' ~ image_count.value ~ ': ' -}}{%- endif -%}"
    "{{- '<|vision_start|><|image_pad|><|vision_end|>' -}}"
    "{%- elif content.type == 'video' or 'video' in content -%}"
    "{%- set video_count.value = video_count.value + 1 -%}"
    "{%- if add_vision_id -%}{{- 'Video ' ~ video_count.value ~ ': ' -}}{%- endif -%}"
    "{{- '<|vision_start|><|video_pad|><|vision_end|>' -}}"
    "{%- elif 'text' in content -%}{{- content.text -}}{%- endif -%}"
    "{%- endfor -%}{%- endif -%}{{- '<|im_end|>\\n' -}}"
    "{%- elif message.role == 'assistant' -%}"
    "{{- '<|im_start|>assistant\\n' -}}"
    "{%- if message.content is string -%}{{- message.content -}}{%- else -%}"
    "{%- for content in message.content -%}{%- if 'text' in content -%}{{- content.text -}}{%- endif -%}{%- endfor -%}{%- endif -%}"
    "{{- '<|im_end|>\\n' -}}"
    "{%- endif -%}{%- endfor -%}"
    "{%- if add_generation_prompt -%}{{- '<|im_start|>assistant\\n' -}}{%- endif -%}"
)

QWEN_SPECIAL_TOKENS = ("<|endoftext|>", "<|im_start|>", "<|im_end|>")
QWEN_VISION_TOKENS = (
    "<|object_ref_start|>", "<|object_ref_end|>", "<|box_start|>", "<|box_end|>", "<|quad_start|>", "<|quad_end|>",
    "<|vision_start|>", "<|vision_end|>", "<|vision_pad|>", "<|image_pad|>", "<|video_pad|>",
)


def qwen_tokenizer() -> Any:
    """A small byte-level BPE tokenizer with Qwen's special tokens (ChatML and vision)."""
    return train_bpe_tokenizer(
        special_tokens=QWEN_SPECIAL_TOKENS,
        additional_special_tokens=QWEN_VISION_TOKENS,
        unk_token="<|endoftext|>",
        bos_token=None,
        eos_token="<|im_end|>",
        pad_token="<|endoftext|>",
    )


def _token_ids(tokenizer: Any) -> dict[str, int]:
    ids = tokenizer.convert_tokens_to_ids
    return {
        "image_token_id": ids("<|image_pad|>"), "video_token_id": ids("<|video_pad|>"),
        "vision_start_token_id": ids("<|vision_start|>"), "vision_end_token_id": ids("<|vision_end|>"),
    }


def _save(path: Path, model: Any, tokenizer: Any, image_processor: Any, chat_template: str) -> Path:
    path.mkdir(parents=True, exist_ok=True)
    with quiet_loading():
        model.save_pretrained(path)
        tokenizer.save_pretrained(path)
        image_processor.save_pretrained(path)
    (path / "chat_template.jinja").write_text(chat_template, encoding="utf-8")
    return path


def _image_processor(patch: int, min_pixels: int, max_pixels: int, mean: Any = None, std: Any = None) -> Any:
    from transformers.models.qwen2_vl.image_processing_pil_qwen2_vl import Qwen2VLImageProcessorPil

    extra = {"image_mean": mean, "image_std": std} if mean is not None else {}
    return Qwen2VLImageProcessorPil(size={"shortest_edge": min_pixels, "longest_edge": max_pixels},
                                    patch_size=patch, merge_size=2, temporal_patch_size=2, **extra)


def build_tiny_qwen2_vl(path: str | Path, *, seed: int = 0, max_pixels: int = 84 * 84) -> Path:
    """A tiny Qwen2-VL: 14-px patches merged 2×2 (28-px cells, 1–9 image tokens for ≤ 84×84 px),
    a 2-layer vision tower and a 2-layer text model with M-RoPE sections (2, 3, 3)."""
    import torch
    from transformers import Qwen2VLConfig, Qwen2VLForConditionalGeneration

    tokenizer = qwen_tokenizer()
    ids = tokenizer.convert_tokens_to_ids
    config = Qwen2VLConfig(
        text_config={"vocab_size": len(tokenizer), "hidden_size": 64, "intermediate_size": 128, "num_hidden_layers": 2,
                     "num_attention_heads": 4, "num_key_value_heads": 2, "max_position_embeddings": 1024,
                     "rope_parameters": {"rope_type": "default", "mrope_section": [2, 3, 3], "rope_theta": 10000.0},
                     "pad_token_id": ids("<|endoftext|>"), "eos_token_id": ids("<|im_end|>"), "bos_token_id": None,
                     "initializer_range": 0.1},
        vision_config={"depth": 2, "embed_dim": 32, "hidden_size": 64, "num_heads": 4, "mlp_ratio": 2,
                       "patch_size": 14, "spatial_merge_size": 2, "temporal_patch_size": 2},
        **_token_ids(tokenizer),
    )
    torch.manual_seed(seed)
    model = Qwen2VLForConditionalGeneration(config).eval()
    return _save(Path(path), model, tokenizer, _image_processor(14, 28 * 28, max_pixels), QWEN2_VL_CHAT_TEMPLATE)


def build_tiny_jina_reranker_m0(path: str | Path, *, seed: int = 0, max_pixels: int = 84 * 84) -> Path:
    """A tiny checkpoint shaped like jinaai/jina-reranker-m0: the tiny Qwen2-VL plus a seeded score
    head in its weights (``score.0``: hidden → hidden, ``score.2``: hidden → 1, as
    ``JinaVLForRanking`` saves them), ``architectures: ["JinaVLForRanking"]`` and an ``auto_map`` to
    remote code that is deliberately absent (loading it must never need that code)."""
    import json

    import torch
    from safetensors.torch import load_file, save_file

    target = build_tiny_qwen2_vl(path, seed=seed, max_pixels=max_pixels)
    config = json.loads((target / "config.json").read_text(encoding="utf-8"))
    hidden = int(config.get("text_config", config).get("hidden_size") or config["hidden_size"])
    weights = load_file(str(target / "model.safetensors"))
    generator = torch.Generator().manual_seed(seed + 1)
    weights.update({
        "score.0.weight": torch.randn(hidden, hidden, generator=generator) * 0.2,
        "score.0.bias": torch.randn(hidden, generator=generator) * 0.1,
        "score.2.weight": torch.randn(1, hidden, generator=generator) * 0.5,
        "score.2.bias": torch.tensor([2.5]),
    })
    save_file(weights, str(target / "model.safetensors"), metadata={"format": "pt"})
    config.update(architectures=["JinaVLForRanking"], auto_map={"AutoModel": "modeling.JinaVLForRanking"})
    (target / "config.json").write_text(json.dumps(config, indent=2), encoding="utf-8")
    return target


def _qwen3_vl_config(tokenizer: Any, text: dict[str, Any], vision: dict[str, Any], vocab_size: int | None) -> Any:
    from transformers import Qwen3VLConfig

    ids = tokenizer.convert_tokens_to_ids
    pad = ids("<|endoftext|>")
    return Qwen3VLConfig(
        text_config={"vocab_size": max(vocab_size or 0, len(tokenizer)), "pad_token_id": pad,
                     "eos_token_id": ids("<|im_end|>"), **text},
        vision_config={"patch_size": 16, "spatial_merge_size": 2, "temporal_patch_size": 2, **vision},
        tie_word_embeddings=text.get("tie_word_embeddings", False),
        **_token_ids(tokenizer),
    )


def build_tiny_qwen3_vl(path: str | Path, *, seed: int = 0, max_pixels: int = 96 * 96) -> Path:
    """A tiny Qwen3-VL: 16-px patches merged 2×2, a 2-layer vision tower whose both layers feed
    DeepStack, a 2-layer text model with interleaved M-RoPE sections (2, 3, 3)."""
    import torch
    from transformers import Qwen3VLForConditionalGeneration

    tokenizer = qwen_tokenizer()
    config = _qwen3_vl_config(
        tokenizer,
        {"hidden_size": 64, "intermediate_size": 128, "num_hidden_layers": 2, "num_attention_heads": 4,
         "num_key_value_heads": 2, "head_dim": 16, "max_position_embeddings": 1024, "initializer_range": 0.1,
         "rope_parameters": {"rope_type": "default", "mrope_section": [2, 3, 3], "mrope_interleaved": True, "rope_theta": 10000.0}},
        {"depth": 2, "hidden_size": 32, "intermediate_size": 64, "num_heads": 4, "out_hidden_size": 64,
         "num_position_embeddings": 16, "deepstack_visual_indexes": [0, 1]},
        None,
    )
    torch.manual_seed(seed)
    model = Qwen3VLForConditionalGeneration(config).eval()
    processor = _image_processor(16, 32 * 32, max_pixels, [0.5] * 3, [0.5] * 3)
    return _save(Path(path), model, tokenizer, processor, QWEN3_VL_CHAT_TEMPLATE)


def build_qwen3_vl_2b_random(path: str | Path, *, seed: int = 0, text_layers: int = 28, vision_depth: int = 24,
                             tokenizer: Any = None, max_pixels: int = 16777216, dtype: str = "bfloat16") -> Path:
    """Qwen3-VL-2B's shapes with random weights (text: hidden 2048, 16 heads / 8 KV heads of 128,
    MLP 6144, vocabulary 151,936; vision: 24 blocks of 1024, DeepStack from blocks 5, 11, 17).
    ``text_layers`` / ``vision_depth`` shrink it for quick runs; ``tokenizer`` (with Qwen's
    special tokens) replaces the small trained one. A finished directory is reused."""
    import torch
    from transformers import Qwen3VLForConditionalGeneration

    marker = Path(path) / "mm_rag_builder.txt"
    recipe = repr(("qwen3-vl-2b", seed, text_layers, vision_depth, max_pixels, dtype, tokenizer is None))
    if marker.is_file() and marker.read_text() == recipe:
        return Path(path)
    tokenizer = tokenizer or qwen_tokenizer()
    deepstack = [i for i in (5, 11, 17) if i < vision_depth] or [vision_depth - 1]
    config = _qwen3_vl_config(
        tokenizer,
        {"hidden_size": 2048, "intermediate_size": 6144, "num_hidden_layers": text_layers, "num_attention_heads": 16,
         "num_key_value_heads": 8, "head_dim": 128, "max_position_embeddings": 262144, "rms_norm_eps": 1e-6,
         "tie_word_embeddings": True,
         "rope_parameters": {"rope_type": "default", "mrope_section": [24, 20, 20], "mrope_interleaved": True, "rope_theta": 5000000.0}},
        {"depth": vision_depth, "hidden_size": 1024, "intermediate_size": 4096, "num_heads": 16, "out_hidden_size": 2048,
         "num_position_embeddings": 2304, "deepstack_visual_indexes": deepstack, "hidden_act": "gelu_pytorch_tanh"},
        151936,
    )
    torch.manual_seed(seed)
    with torch.device("cpu"):
        model = Qwen3VLForConditionalGeneration(config).to(getattr(torch, dtype)).eval()
    processor = _image_processor(16, 65536, max_pixels, [0.5] * 3, [0.5] * 3)
    _save(Path(path), model, tokenizer, processor, QWEN3_VL_CHAT_TEMPLATE)
    marker.write_text(recipe)
    return Path(path)


__all__ = [
    "QWEN2_VL_CHAT_TEMPLATE",
    "QWEN3_VL_CHAT_TEMPLATE",
    "QWEN_SPECIAL_TOKENS",
    "QWEN_VISION_TOKENS",
    "build_qwen3_vl_2b_random",
    "build_tiny_qwen2_vl",
    "build_tiny_qwen3_vl",
    "qwen_tokenizer",
]
