"""Offline CLIP and text-embedding models with random weights, for tests and benchmarks.

Every builder writes a directory that loads through the ordinary paths —
``transformers.CLIPModel.from_pretrained`` / ``AutoProcessor.from_pretrained`` and
``sentence_transformers.SentenceTransformer`` — and returns it. Builds are deterministic for a
seed and idempotent: a directory that already holds the same build is returned untouched.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..errors import ConfigError, ModelError
from ..progress import quiet_loading
from .data import shared_dir
from .tokenizer import train_bpe_tokenizer

if TYPE_CHECKING:  # pragma: no cover
    from transformers import PreTrainedTokenizerBase

#: Where, inside the optional ``shared/`` folder, CLIP ViT-B/32's tokenizer and preprocessor live.
CLIP_PROCESSOR_SUBDIR = "models/clip-vit-base-patch32-processor"

#: File written into each built directory; it records the build parameters (idempotence).
BUILD_MARKER = "mm_rag_build.json"
_OLD_MARKER = "mm_rag_builder.txt"  # written by the first version of these builders

_CLIP_BOS = "<|startoftext|>"
_CLIP_EOS = "<|endoftext|>"
_CLIP_MEAN = [0.48145466, 0.4578275, 0.40821073]
_CLIP_STD = [0.26862954, 0.26130258, 0.27577711]

_TINY = {"hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 2, "num_attention_heads": 4}


# --------------------------------------------------------------------------- tokenizers


def train_clip_tokenizer(*, vocab_size: int = 512, model_max_length: int = 77) -> "PreTrainedTokenizerBase":
    """A locally trained byte-level BPE tokenizer laid out like CLIP's.

    Each text becomes ``<|startoftext|> ... <|endoftext|>`` and padding uses ``<|endoftext|>``,
    so CLIP's text pooling (first end-of-text token) sees the whole text.
    """
    tok = train_bpe_tokenizer(
        vocab_size=vocab_size,
        special_tokens=(_CLIP_BOS, _CLIP_EOS),
        unk_token=_CLIP_EOS,
        bos_token=_CLIP_BOS,
        eos_token=_CLIP_EOS,
        pad_token=_CLIP_EOS,
    )
    _add_template(tok, _CLIP_BOS, _CLIP_EOS)
    tok.model_max_length = model_max_length
    return tok


def _add_template(tok: "PreTrainedTokenizerBase", bos: str, eos: str) -> None:
    from tokenizers.processors import TemplateProcessing

    bos_id, eos_id = tok.convert_tokens_to_ids(bos), tok.convert_tokens_to_ids(eos)
    tok.backend_tokenizer.post_processor = TemplateProcessing(
        single=f"{bos} $A {eos}",
        pair=f"{bos} $A {eos} $B {eos}",
        special_tokens=[(bos, bos_id), (eos, eos_id)],
    )


def _clip_image_processor(image_size: int) -> Any:
    """CLIP preprocessing (resize shortest edge, centre crop, CLIP mean/std), PIL backend."""
    try:
        from transformers.models.clip.image_processing_pil_clip import CLIPImageProcessorPil as Processor
    except ImportError:  # pragma: no cover - older transformers without the PIL/torchvision split
        from transformers import CLIPImageProcessor as Processor
    return Processor(
        do_resize=True,
        size={"shortest_edge": image_size},
        resample=3,
        do_center_crop=True,
        crop_size={"height": image_size, "width": image_size},
        do_rescale=True,
        rescale_factor=1 / 255,
        do_normalize=True,
        image_mean=_CLIP_MEAN,
        image_std=_CLIP_STD,
        do_convert_rgb=True,
    )


def _real_clip_tokenizer(source: Path) -> "PreTrainedTokenizerBase":
    from transformers import AutoTokenizer

    try:
        return AutoTokenizer.from_pretrained(str(source), local_files_only=True)
    except Exception as exc:  # noqa: BLE001 - any loader failure becomes one clear error
        raise ModelError(f"cannot load a CLIP tokenizer from {source}: {exc}") from exc


def shared_clip_processor_dir() -> Path | None:
    """CLIP ViT-B/32's real tokenizer/preprocessor folder (no weights) when ``shared/`` has it."""
    root = shared_dir()
    found = root / CLIP_PROCESSOR_SUBDIR if root is not None else None
    return found if found is not None and (found / "tokenizer_config.json").is_file() else None


def _resolve_tokenizer_source(real_tokenizer: str | Path | None | bool) -> Path | None:
    if real_tokenizer is None or real_tokenizer is False:
        return None
    if real_tokenizer is True:
        found = shared_clip_processor_dir()
        if found is None:
            raise ConfigError(
                f"real_tokenizer=True needs shared/{CLIP_PROCESSOR_SUBDIR} (set MMRAG_SHARED_DIR to the "
                "shared folder), which is absent; pass real_tokenizer=False or that directory's path"
            )
        return found
    if isinstance(real_tokenizer, (str, Path)):
        found = Path(real_tokenizer).expanduser()
        if not (found / "tokenizer_config.json").is_file():
            raise ConfigError(f"{found} does not hold a tokenizer (no tokenizer_config.json)")
        return found.resolve()
    raise ConfigError(f"real_tokenizer must be a bool, a path or None, got {type(real_tokenizer).__name__}")


# --------------------------------------------------------------------------- build plumbing


def _build_once(path: str | Path, params: dict[str, Any], write: Callable[[Path], None]) -> Path:
    """Run ``write(tmp_dir)`` and move the result to ``path``, unless ``path`` already holds it.

    A directory holding another build of ours is replaced; any other non-empty directory is
    refused (we never overwrite files we did not write). The move is atomic, so an
    interrupted build never leaves a half-written model behind.
    """
    target = Path(path).expanduser()
    marker = target / BUILD_MARKER
    ours = marker.is_file() or (target / _OLD_MARKER).is_file()
    if ours:
        try:
            if json.loads(marker.read_text(encoding="utf-8")) == params:
                return target
        except (OSError, ValueError):
            pass
    elif target.exists() and (not target.is_dir() or any(target.iterdir())):
        raise ConfigError(f"{target} exists and is not an empty directory; choose another directory")
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.", dir=target.parent))
    try:
        with quiet_loading():
            write(tmp)
        (tmp / BUILD_MARKER).write_text(json.dumps(params, indent=2, sort_keys=True), encoding="utf-8")
        if ours:
            shutil.rmtree(target)
        elif target.exists():
            target.rmdir()
        os.replace(tmp, target)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return target


def _seeded_init(seed: int, factory: Callable[[], Any]) -> Any:
    """Build a module with torch's RNG seeded, without disturbing the caller's RNG state."""
    import torch

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return factory()


def _save_clip(tmp: Path, config_kwargs: dict[str, Any], tokenizer: Any, image_processor: Any, seed: int) -> None:
    from transformers import CLIPConfig, CLIPModel, CLIPProcessor

    text_config = dict(config_kwargs["text_config"])
    text_config.update(
        vocab_size=max(text_config.get("vocab_size", 0), len(tokenizer)),
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
    )
    config = CLIPConfig(
        text_config=text_config,
        vision_config=config_kwargs["vision_config"],
        projection_dim=config_kwargs["projection_dim"],
    )
    model = _seeded_init(seed, lambda: CLIPModel(config)).eval()
    model.save_pretrained(str(tmp))
    CLIPProcessor(image_processor=image_processor, tokenizer=tokenizer).save_pretrained(str(tmp))


# --------------------------------------------------------------------------- public builders


def build_tiny_clip(
    path: str | Path,
    *,
    real_tokenizer: str | Path | None | bool = False,
    projection_dim: int = 32,
    image_size: int = 32,
    seed: int = 0,
) -> Path:
    """Write a tiny random-weight ``CLIPModel`` + ``CLIPProcessor`` to ``path`` and return it.

    Loads with ``CLIPModel.from_pretrained(path)`` and ``SentenceTransformer(path)`` (text and
    image modalities). ``real_tokenizer``: ``False``/``None`` trains a small BPE tokenizer locally;
    ``True`` uses CLIP's real tokenizer from ``shared/models/clip-vit-base-patch32-processor``; a path uses the
    tokenizer in that directory.
    """
    if projection_dim < 1:
        raise ConfigError(f"projection_dim must be positive, got {projection_dim}")
    if image_size < 4 or image_size % 4:
        raise ConfigError(f"image_size must be a multiple of 4 (>= 4), got {image_size}")
    source = _resolve_tokenizer_source(real_tokenizer)
    params = {
        "builder": "tiny_clip",
        "version": 1,
        "tokenizer": str(source) if source else "local-bpe",
        "projection_dim": projection_dim,
        "image_size": image_size,
        "seed": seed,
    }

    def write(tmp: Path) -> None:
        tokenizer = _real_clip_tokenizer(source) if source else train_clip_tokenizer()
        vision = dict(_TINY, image_size=image_size, patch_size=image_size // 4)
        text = dict(_TINY, max_position_embeddings=77, vocab_size=len(tokenizer))
        kwargs = {"text_config": text, "vision_config": vision, "projection_dim": projection_dim}
        _save_clip(tmp, kwargs, tokenizer, _clip_image_processor(image_size), seed)

    return _build_once(path, params, write)


def build_tiny_st_clip(path: str | Path, *, seed: int = 0) -> Path:
    """A tiny CLIP in the layout of the hub's ``sentence-transformers/clip-ViT-*`` repositories.

    ``modules.json`` names one ``sentence_transformers.models.CLIPModel`` module whose folder,
    ``0_CLIPModel``, holds a :func:`build_tiny_clip` model. Loads with ``SentenceTransformer(path)``.
    """
    params = {"builder": "tiny_st_clip", "version": 1, "seed": seed}

    def write(tmp: Path) -> None:
        with tempfile.TemporaryDirectory(prefix="clip.", dir=tmp.parent) as raw:
            built = build_tiny_clip(Path(raw) / "clip", seed=seed)
            shutil.copytree(built, tmp / "0_CLIPModel", ignore=shutil.ignore_patterns(BUILD_MARKER))
        modules = [{"idx": 0, "name": "0", "path": "0_CLIPModel", "type": "sentence_transformers.models.CLIPModel"}]
        (tmp / "modules.json").write_text(json.dumps(modules, indent=2), encoding="utf-8")

    return _build_once(path, params, write)


def build_clip_vit_b32_random(path: str | Path, *, seed: int = 0) -> Path:
    """Write a random-weight CLIP with the real ViT-B/32 dimensions (about 151M parameters).

    Uses CLIP's real tokenizer when ``shared/models/clip-vit-base-patch32-processor`` exists,
    else a locally trained one; preprocessing is CLIP's (224 pixels, CLIP mean/std) either way. Speed is the real
    model's speed; similarities are meaningless. For benchmarks.
    """
    real = shared_clip_processor_dir()
    params = {
        "builder": "clip_vit_b32_random",
        "version": 1,
        "tokenizer": str(real) if real else "local-bpe",
        "seed": seed,
    }

    def write(tmp: Path) -> None:
        tokenizer = _real_clip_tokenizer(real) if real else train_clip_tokenizer()
        text = {
            "vocab_size": 49408,
            "hidden_size": 512,
            "intermediate_size": 2048,
            "num_hidden_layers": 12,
            "num_attention_heads": 8,
            "max_position_embeddings": 77,
            "hidden_act": "quick_gelu",
        }
        vision = {
            "hidden_size": 768,
            "intermediate_size": 3072,
            "num_hidden_layers": 12,
            "num_attention_heads": 12,
            "image_size": 224,
            "patch_size": 32,
            "hidden_act": "quick_gelu",
        }
        kwargs = {"text_config": text, "vision_config": vision, "projection_dim": 512}
        _save_clip(tmp, kwargs, tokenizer, _clip_image_processor(224), seed)

    return _build_once(path, params, write)


def build_tiny_siglip(path: str | Path, *, image_size: int = 32, seed: int = 0) -> Path:
    """Write a tiny random-weight ``SiglipModel`` + ``SiglipProcessor`` to ``path`` and return it.

    Like real SigLIP, the text tower pools the last position and texts are meant to be padded
    to 64 tokens. Loads with ``SentenceTransformer(path)`` (text and image modalities).
    """
    if image_size < 4 or image_size % 4:
        raise ConfigError(f"image_size must be a multiple of 4 (>= 4), got {image_size}")
    params = {"builder": "tiny_siglip", "version": 1, "image_size": image_size, "seed": seed}

    def write(tmp: Path) -> None:
        from transformers import SiglipConfig, SiglipModel, SiglipProcessor

        try:
            from transformers.models.siglip.image_processing_pil_siglip import SiglipImageProcessorPil as Processor
        except ImportError:  # pragma: no cover - older transformers
            from transformers import SiglipImageProcessor as Processor

        tokenizer = train_clip_tokenizer(model_max_length=64)
        ids = {
            "bos_token_id": tokenizer.bos_token_id,
            "eos_token_id": tokenizer.eos_token_id,
            "pad_token_id": tokenizer.pad_token_id,
        }
        config = SiglipConfig(
            text_config=dict(_TINY, vocab_size=len(tokenizer), max_position_embeddings=64, **ids),
            vision_config=dict(_TINY, image_size=image_size, patch_size=image_size // 4),
        )
        model = _seeded_init(seed, lambda: SiglipModel(config)).eval()
        model.save_pretrained(str(tmp))
        image_processor = Processor(size={"height": image_size, "width": image_size})
        SiglipProcessor(image_processor=image_processor, tokenizer=tokenizer).save_pretrained(str(tmp))

    return _build_once(path, params, write)


def build_tiny_text_embedder(path: str | Path, *, dim: int = 32, seed: int = 0) -> Path:
    """Write a tiny sentence-transformers text model (BERT → mean pooling → Normalize).

    Saved with ``SentenceTransformer.save``; loads with ``SentenceTransformer(path)``.
    """
    if dim < 4 or dim % 4:
        raise ConfigError(f"dim must be a multiple of 4 (>= 4), got {dim}")
    params = {"builder": "tiny_text_embedder", "version": 1, "dim": dim, "seed": seed}

    def write(tmp: Path) -> None:
        from sentence_transformers import SentenceTransformer
        from sentence_transformers.sentence_transformer.modules import Normalize, Pooling, Transformer
        from transformers import BertConfig, BertModel

        tokenizer = train_bpe_tokenizer(vocab_size=512)
        _add_template(tokenizer, "<s>", "</s>")
        tokenizer.model_max_length = 128
        config = BertConfig(
            vocab_size=len(tokenizer),
            hidden_size=dim,
            intermediate_size=2 * dim,
            num_hidden_layers=2,
            num_attention_heads=4,
            max_position_embeddings=128,
            pad_token_id=tokenizer.pad_token_id,
        )
        with tempfile.TemporaryDirectory(prefix="bert.", dir=tmp.parent) as raw:
            _seeded_init(seed, lambda: BertModel(config)).eval().save_pretrained(raw)
            tokenizer.save_pretrained(raw)
            transformer = Transformer(raw)
            modules = [transformer, Pooling(dim, pooling_mode="mean"), Normalize()]
            SentenceTransformer(modules=modules, device="cpu").save(str(tmp))

    return _build_once(path, params, write)


__all__ = [
    "BUILD_MARKER",
    "CLIP_PROCESSOR_SUBDIR",
    "build_clip_vit_b32_random",
    "build_tiny_clip",
    "build_tiny_siglip",
    "build_tiny_st_clip",
    "build_tiny_text_embedder",
    "shared_clip_processor_dir",
    "train_clip_tokenizer",
]
