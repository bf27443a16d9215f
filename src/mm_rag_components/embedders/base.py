"""The embedder protocol and the shared machinery of our sentence-transformers embedders."""

from __future__ import annotations

import logging
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

import numpy as np

from ..errors import ConfigError, MediaError, ModelError
from ..media import DEFAULT_MAX_PIXELS, load_image

if TYPE_CHECKING:  # pragma: no cover
    from ..types import ImageSource

logger = logging.getLogger(__name__)

#: Inputs longer than this show a progress bar unless ``show_progress=False``.
PROGRESS_THRESHOLD = 256


@runtime_checkable
class Embedder(Protocol):
    """Turns texts (and, for dual encoders, images) into L2-normalised float32 vectors."""

    name: str
    modalities: frozenset[str]

    @property
    def dimension(self) -> int: ...

    def embed_texts(
        self, texts: Sequence[str], *, batch_size: int | None = None, show_progress: bool | None = None
    ) -> np.ndarray: ...

    def embed_images(
        self, images: Sequence[ImageSource], *, batch_size: int | None = None, show_progress: bool | None = None
    ) -> np.ndarray: ...


def _batches(items: Sequence[Any], size: int) -> Iterator[Sequence[Any]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


def _normalise(vectors: np.ndarray) -> np.ndarray:
    vectors = np.asarray(vectors, dtype=np.float32)
    norms = np.linalg.norm(vectors, axis=1, keepdims=True)
    return vectors / np.maximum(norms, 1e-12)


class SentenceTransformerEmbedder:
    """Shared base: a lazily loaded ``SentenceTransformer`` and batched, normalised encoding."""

    default_model: str = ""
    required_modalities: frozenset[str] = frozenset({"text"})

    def __init__(
        self,
        model_name_or_path: str | Path | None = None,
        *,
        device: str | None = None,
        dtype: str | None = None,
        batch_size: int = 32,
        max_pixels: int | None = DEFAULT_MAX_PIXELS,
        local_files_only: bool | None = None,
        trust_remote_code: bool = False,
    ) -> None:
        if batch_size < 1:
            raise ConfigError(f"batch_size must be >= 1, got {batch_size}")
        source = str(model_name_or_path or self.default_model)
        path = Path(source).expanduser()
        self.model_name_or_path = str(path.resolve()) if path.exists() else source
        self.name = self.model_name_or_path
        self.device = device
        self.dtype = dtype
        self.batch_size = batch_size
        self.max_pixels = max_pixels
        self.local_files_only = local_files_only
        self.trust_remote_code = trust_remote_code
        self._model: Any = None

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.name!r})"

    # loading -------------------------------------------------------------------------------
    def warm_up(self) -> None:
        """Load the model now (otherwise it loads on first use)."""
        self._load()

    def _load(self) -> Any:
        if self._model is not None:
            return self._model
        import torch
        from sentence_transformers import SentenceTransformer

        device = self.device or ("cuda" if torch.cuda.is_available() else "cpu")
        dtype = getattr(torch, self.dtype) if isinstance(self.dtype, str) else self.dtype
        model_kwargs = {"dtype": dtype} if dtype is not None else None
        try:
            model = SentenceTransformer(
                self.model_name_or_path,
                device=device,
                model_kwargs=model_kwargs,
                local_files_only=bool(self.local_files_only),
                trust_remote_code=self.trust_remote_code,
            )
        except Exception as exc:  # noqa: BLE001 - every loading failure becomes one plain ModelError
            raise ModelError(
                f"cannot load embedding model {self.model_name_or_path!r} ({type(exc).__name__}: "
                f"{str(exc).splitlines()[0] if str(exc) else 'no detail'}); pass a local model directory "
                "or make sure the Hugging Face hub is reachable"
            ) from exc
        have = frozenset(getattr(model, "modalities", ["text"]))
        missing = self.required_modalities - have
        if missing:
            raise ModelError(
                f"{self.model_name_or_path!r} cannot embed {sorted(missing)} (it supports {sorted(have)}); "
                f"{type(self).__name__} needs a model with {sorted(self.required_modalities)}"
            )
        self._model = model
        return model

    @property
    def dimension(self) -> int:
        model = self._load()
        dim = model.get_embedding_dimension()
        if dim is None:
            dim = int(self.embed_texts(["dimension probe"]).shape[1])
        return int(dim)

    # encoding ------------------------------------------------------------------------------
    def _encode(self, inputs: list[Any], batch_size: int) -> np.ndarray:
        model = self._load()
        vectors = model.encode(
            inputs, batch_size=batch_size, convert_to_numpy=True, normalize_embeddings=True, show_progress_bar=False
        )
        return _normalise(vectors)

    def _run(self, items: Sequence[Any], prepare, batch_size: int | None, show_progress: bool | None, unit: str) -> np.ndarray:
        size = batch_size or self.batch_size
        if size < 1:
            raise ConfigError(f"batch_size must be >= 1, got {size}")
        if len(items) == 0:
            return np.zeros((0, self.dimension), dtype=np.float32)
        show = len(items) > PROGRESS_THRESHOLD if show_progress is None else show_progress
        parts: list[np.ndarray] = []
        progress = None
        if show:
            from tqdm.auto import tqdm

            progress = tqdm(total=len(items), desc=f"embedding {unit}", unit=unit)
        try:
            for offset, chunk in zip(range(0, len(items), size), _batches(items, size)):
                parts.append(self._encode(prepare(chunk, offset), size))
                if progress is not None:
                    progress.update(len(chunk))
        finally:
            if progress is not None:
                progress.close()
        return np.concatenate(parts, axis=0)

    def embed_texts(
        self, texts: Sequence[str], *, batch_size: int | None = None, show_progress: bool | None = None
    ) -> np.ndarray:
        """Embed ``texts`` → float32 array of shape (n, d) with unit-norm rows."""
        if isinstance(texts, str):
            raise ConfigError("embed_texts takes a sequence of strings, not a single string")
        bad = [i for i, t in enumerate(texts) if not isinstance(t, str)]
        if bad:
            raise ConfigError(f"embed_texts: items {bad[:5]} are not strings")
        return self._run(list(texts), lambda chunk, _: list(chunk), batch_size, show_progress, "texts")

    def embed_images(
        self, images: Sequence[ImageSource], *, batch_size: int | None = None, show_progress: bool | None = None
    ) -> np.ndarray:
        """Decode and embed ``images`` → float32 array (n, d) with unit-norm rows.

        Images are decoded one batch at a time, so memory stays bounded for long inputs.
        """
        if "image" not in self.required_modalities:
            raise ConfigError(f"{type(self).__name__} embeds text only; use ClipEmbedder for images")

        def decode(chunk: Sequence[ImageSource], offset: int) -> list[Any]:
            decoded = []
            for i, source in enumerate(chunk):
                try:
                    decoded.append(load_image(source, max_pixels=self.max_pixels))
                except MediaError as exc:
                    raise MediaError(f"image #{offset + i}: {exc}") from exc
            return decoded

        return self._run(list(images), decode, batch_size, show_progress, "images")


__all__ = ["Embedder", "PROGRESS_THRESHOLD", "SentenceTransformerEmbedder"]
