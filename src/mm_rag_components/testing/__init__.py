"""Builders for tiny, random-weight models that load through the normal ``from_pretrained`` path.

They let tests, examples and benchmarks run offline: each builder writes a model directory
(weights, config, a tokenizer trained locally, a PIL image processor) and returns its path.
Random weights give meaningless scores but real shapes, real code paths and real speed.
:mod:`~mm_rag_components.testing.servers` finds and starts local model servers (llama.cpp on the
SmolLM2 GGUF) for tests and benchmarks.
"""

from __future__ import annotations

from .._lazy import lazy_attributes

_LAZY: dict[str, str] = {
    "ANSWER_WORDS": "tokenizer",
    "train_bpe_tokenizer": "tokenizer",
    "build_tiny_clip": "clip",
    "build_clip_vit_b32_random": "clip",
    "build_tiny_text_embedder": "clip",
    "build_tiny_siglip": "clip",
    "build_tiny_st_clip": "clip",
    "shared_clip_processor_dir": "clip",
    "build_tiny_idefics3": "vlm",
    "build_tiny_llava": "vlm",
    "build_tiny_causal_lm": "vlm",
    "build_smolvlm_256m_random": "vlm",
    "build_tiny_qwen2_vl": "qwen",
    "build_tiny_jina_reranker_m0": "qwen",
    "build_tiny_qwen3_vl": "qwen",
    "build_qwen3_vl_2b_random": "qwen",
    "write_captioned_folder": "captions",
    "write_pdf": "pdfs",
    "write_page_collection": "pdfs",
    "sample_photos": "pdfs",
    "seed_hub_cache": "hub_cache",
    "seed_tiny_hub_cache": "hub_cache",
    "use_hub_cache": "hub_cache",
    "hub_cache_env": "hub_cache",
    "TINY_STANDINS": "hub_cache",
    "write_sample_folder": "data",
    "coco_sample": "data",
    "shared_dir": "data",
    "SMOLLM2_GGUF": "servers",
    "smollm2_gguf": "servers",
    "llama_server_binary": "servers",
    "free_port": "servers",
    "start_server": "servers",
}


__getattr__, __dir__ = lazy_attributes(__name__, _LAZY)

__all__ = list(_LAZY)
