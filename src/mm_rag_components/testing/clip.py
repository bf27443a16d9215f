"""Tiny random-weight CLIP and text-embedding models for offline tests, demos and benchmarks."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ..errors import ConfigError
from .data import shared_dir
from .tokenizer import train_bpe_tokenizer

_DONE = "mm_rag_builder.txt"  # marker: the directory holds a finished build of this recipe


def _finished(path: Path, recipe: str) -> bool:
    marker = path / _DONE
    return marker.is_file() and marker.read_text() == recipe


def _mark(path: Path, recipe: str) -> Path:
    (path / _DONE).write_text(recipe)
    return path


def _real_clip_processor_dir(real_tokenizer: str | Path | bool) -> Path | None:
    if real_tokenizer is False or real_tokenizer is None:
        return None
    if real_tokenizer is True:
        root = shared_dir()
        found = root / "models/clip-vit-base-patch32-processor" if root else None
        if found is None or not found.is_dir():
            raise ConfigError(
                "real_tokenizer=True needs shared/models/clip-vit-base-patch32-processor "
                "(set MMRAG_SHARED_DIR or pass the directory)"
            )
        return found
    found = Path(real_tokenizer)
    if not (found / "tokenizer_config.json").is_file():
        raise ConfigError(f"{found} does not hold a CLIP tokenizer (no tokenizer_config.json)")
    return found


def _clip_tokenizer(max_length: int) -> Any:
    """A locally trained BPE tokenizer that wraps every text in ``<s> … </s>`` like CLIP's."""
    from tokenizers import processors

    tok = train_bpe_tokenizer()
    bos, eos = tok.bos_token, tok.eos_token
    tok.backend_tokenizer.post_processor = processors.TemplateProcessing(
        single=f"{bos} $A {eos}",
        pair=f"{bos} $A {eos} $B {eos}",
        special_tokens=[(bos, tok.bos_token_id), (eos, tok.eos_token_id)],
    )
    tok.model_max_length = max_length
    return tok


def _build_clip(
    path: str | Path,
    *,
    text: dict[str, int],
    vision: dict[str, int],
    projection_dim: int,
    real_tokenizer: str | Path | bool,
    seed: int,
) -> Path:
    path = Path(path)
    processor_dir = _real_clip_processor_dir(real_tokenizer)
    recipe = repr((text, vision, projection_dim, str(processor_dir), seed))
    if _finished(path, recipe):
        return path

    import torch
    from transformers import CLIPConfig, CLIPModel, CLIPProcessor, CLIPTokenizer
    from transformers.models.clip.image_processing_pil_clip import CLIPImageProcessorPil

    image_size = vision["image_size"]
    if processor_dir is not None:
        tokenizer = CLIPTokenizer.from_pretrained(processor_dir)
    else:
        tokenizer = _clip_tokenizer(text["max_position_embeddings"])
    image_processor = CLIPImageProcessorPil(
        size={"shortest_edge": image_size}, crop_size={"height": image_size, "width": image_size}
    )
    config = CLIPConfig(
        text_config={
            **text,
            "vocab_size": len(tokenizer),
            "bos_token_id": tokenizer.bos_token_id,
            "eos_token_id": tokenizer.eos_token_id,
            "pad_token_id": tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id,
        },
        vision_config=vision,
        projection_dim=projection_dim,
    )
    torch.manual_seed(seed)
    model = CLIPModel(config).eval()
    path.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(path)
    CLIPProcessor(image_processor=image_processor, tokenizer=tokenizer).save_pretrained(path)
    return _mark(path, recipe)


def build_tiny_clip(
    path: str | Path,
    *,
    real_tokenizer: str | Path | bool = False,
    projection_dim: int = 32,
    image_size: int = 32,
    seed: int = 0,
) -> Path:
    """A tiny random-weight ``CLIPModel`` + ``CLIPProcessor`` saved at ``path``.

    Loads with ``transformers.CLIPModel.from_pretrained`` and ``SentenceTransformer(path)``.
    ``real_tokenizer=True`` uses the real CLIP tokenizer from ``shared/`` (or pass its directory);
    otherwise a BPE tokenizer is trained locally. Re-running with the same arguments is a no-op.
    """
    return _build_clip(
        path,
        text={"hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 2, "num_attention_heads": 2, "max_position_embeddings": 77},
        vision={"hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 2, "num_attention_heads": 2, "image_size": image_size, "patch_size": 8},
        projection_dim=projection_dim,
        real_tokenizer=real_tokenizer,
        seed=seed,
    )


def build_clip_vit_b32_random(path: str | Path, *, seed: int = 0) -> Path:
    """CLIP ViT-B/32 with its real dimensions and random weights (for speed benchmarks).

    Uses the real tokenizer and preprocessing from ``shared/`` when present.
    """
    root = shared_dir()
    real = root is not None and (root / "models/clip-vit-base-patch32-processor").is_dir()
    return _build_clip(
        path,
        text={"hidden_size": 512, "intermediate_size": 2048, "num_hidden_layers": 12, "num_attention_heads": 8, "max_position_embeddings": 77},
        vision={"hidden_size": 768, "intermediate_size": 3072, "num_hidden_layers": 12, "num_attention_heads": 12, "image_size": 224, "patch_size": 32},
        projection_dim=512,
        real_tokenizer=real,
        seed=seed,
    )


def build_tiny_text_embedder(path: str | Path, *, dim: int = 32, seed: int = 0) -> Path:
    """A tiny sentence-transformers text model (BERT + mean pooling + normalise) saved at ``path``."""
    path = Path(path)
    recipe = repr(("text", dim, seed))
    if _finished(path, recipe):
        return path

    import torch
    from sentence_transformers import SentenceTransformer
    from sentence_transformers.sentence_transformer.modules import Normalize, Pooling, Transformer
    from transformers import BertConfig, BertModel

    tokenizer = train_bpe_tokenizer()
    tokenizer.model_max_length = 128
    torch.manual_seed(seed)
    bert = BertModel(
        BertConfig(
            vocab_size=len(tokenizer),
            hidden_size=dim,
            intermediate_size=2 * dim,
            num_hidden_layers=2,
            num_attention_heads=2,
            max_position_embeddings=128,
            pad_token_id=tokenizer.pad_token_id,
        )
    )
    raw = path / "_bert"
    bert.save_pretrained(raw)
    tokenizer.save_pretrained(raw)
    module = Transformer(str(raw), max_seq_length=128)
    model = SentenceTransformer(modules=[module, Pooling(dim, "mean"), Normalize()], device="cpu")
    model.save(str(path))
    return _mark(path, recipe)


__all__ = ["build_clip_vit_b32_random", "build_tiny_clip", "build_tiny_text_embedder"]
