"""The embedder protocol and the shared machinery of our sentence-transformers embedders."""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

import numpy as np

from ..errors import ConfigError, MediaError, ModelError
from ..hub import ensure_loadable
from ..media import DEFAULT_MAX_PIXELS, load_image
from ..progress import progress_bar, quiet_loading
from ..validate import DTYPES, boolean, dtype_name, positive_int, torch_dtype  # DTYPES: re-exported

if TYPE_CHECKING:  # pragma: no cover
    from ..types import ImageSource

logger = logging.getLogger(__name__)

#: Inputs longer than this show a progress bar (as :mod:`mm_rag_components.progress` says) unless ``show_progress=False``.
PROGRESS_THRESHOLD = 256


@runtime_checkable
class Embedder(Protocol):
    """Turns texts (and, for dual encoders, images) into L2-normalised float32 vectors.

    ``embed_texts`` / ``embed_images`` return shape ``(n, dimension)``; an empty input gives
    ``(0, dimension)``. A text-only embedder's ``embed_images`` raises ``ConfigError``.
    """

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


def _batches(items: Sequence[Any], size: int) -> Iterator[tuple[int, Sequence[Any]]]:
    for start in range(0, len(items), size):
        yield start, items[start : start + size]


def _normalise(vectors: np.ndarray) -> np.ndarray:
    vectors = np.asarray(vectors, dtype=np.float32)
    norms = np.linalg.norm(vectors, axis=1, keepdims=True)
    return vectors / np.maximum(norms, 1e-12)


class SentenceTransformerEmbedder:
    """Shared base: a lazily loaded ``SentenceTransformer`` and batched, normalised encoding.

    Subclasses set ``default_model`` and ``required_modalities``. ``name`` identifies the model
    (the hub name as given, or the resolved local directory), so an index can tell when it was
    built with another model.
    """

    default_model: str = ""
    required_modalities: frozenset[str] = frozenset({"text"})

    def __init__(
        self,
        model_name_or_path: str | Path | None = None,
        *,
        device: str | None = None,
        dtype: Any = None,
        batch_size: int = 32,
        max_pixels: int | None = DEFAULT_MAX_PIXELS,
        local_files_only: bool | None = None,
        trust_remote_code: bool = False,
    ) -> None:
        self.batch_size = positive_int("batch_size", batch_size)
        self.dtype = dtype_name(dtype)
        source = str(model_name_or_path or self.default_model)
        path = Path(os.path.expanduser(source))  # Path.expanduser raises for '~nosuchuser'
        self.model_name_or_path = str(path.resolve()) if path.exists() else source
        self.name = self.model_name_or_path
        self.device = device
        self.max_pixels = max_pixels
        self.local_files_only = None if local_files_only is None else boolean("local_files_only", local_files_only)
        self.trust_remote_code = boolean("trust_remote_code", trust_remote_code)
        self._model: Any = None
        self._dimension: int | None = None
        self._encode_options: dict[str, Any] = {}
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.name!r})"

    def config(self) -> dict[str, Any]:
        """Constructor arguments (see :mod:`mm_rag_components.config`)."""
        return {
            "model_name_or_path": self.model_name_or_path, "device": self.device, "dtype": self.dtype,
            "batch_size": self.batch_size, "max_pixels": self.max_pixels,
            "local_files_only": self.local_files_only, "trust_remote_code": self.trust_remote_code,
        }

    # loading -------------------------------------------------------------------------------
    def warm_up(self) -> None:
        """Load the model now (otherwise it loads on first use)."""
        self._load()

    def _load(self) -> Any:
        if self._model is not None:
            return self._model
        with self._lock:
            if self._model is None:
                model = self._check_modalities(self._load_from(self.model_name_or_path))
                self._encode_options = self._options_for(model)
                self._model = model
        return self._model

    def _options_for(self, model: Any) -> dict[str, Any]:
        """Extra keyword arguments for ``model.encode`` (a hook for model families that need them)."""
        return {}

    def _load_from(self, source: str) -> Any:
        """Build the ``SentenceTransformer``; every failure becomes one plain :class:`ModelError`.

        :func:`~mm_rag_components.hub.ensure_loadable` runs first, so a model that is neither
        local, cached nor downloadable fails at once instead of after the hub's retries, and a
        cached one loads without touching an unreachable hub.
        """
        location = ensure_loadable(source, what="embedding model", local_files_only=bool(self.local_files_only))
        import torch
        from sentence_transformers import SentenceTransformer

        device = self.device or ("cuda" if torch.cuda.is_available() else "cpu")
        dtype = torch_dtype(self.dtype)
        offline = bool(self.local_files_only) or location.load_offline
        # every part is told, not just the top level: with peft installed, transformers' optional
        # adapter lookup (adapter_kwargs) does not inherit local_files_only, asks the hub and retries
        parts = {"local_files_only": True} if offline else {}
        model_kwargs = {**parts, **({"adapter_kwargs": dict(parts)} if offline else {}), **({"dtype": dtype} if dtype is not None else {})} or None
        try:
            with quiet_loading():
                return SentenceTransformer(
                    source,
                    device=device,
                    model_kwargs=model_kwargs,
                    config_kwargs=parts or None,
                    processor_kwargs=parts or None,
                    local_files_only=offline,
                    trust_remote_code=self.trust_remote_code,
                )
        except Exception as exc:  # noqa: BLE001 - every loading failure becomes one plain ModelError
            detail = str(exc).strip().splitlines()[0] if str(exc).strip() else "no detail"
            raise ModelError(
                f"cannot load embedding model {source!r} ({type(exc).__name__}: {detail}); pass a local "
                "model directory, or make sure the Hugging Face hub is reachable (HF_HUB_OFFLINE unset)"
            ) from exc

    def _check_modalities(self, model: Any) -> Any:
        have = frozenset(getattr(model, "modalities", ["text"]))
        missing = self.required_modalities - have
        if missing:
            raise ModelError(
                f"{self.model_name_or_path!r} cannot embed {sorted(missing)} (it supports {sorted(have)}); "
                f"{type(self).__name__} needs a model with {sorted(self.required_modalities)}"
            )
        return model

    @property
    def dimension(self) -> int:
        """Length of each embedding (loads the model on first access)."""
        if self._dimension is None:
            dim = self._load().get_embedding_dimension()
            if dim is None:
                dim = self._encode(["dimension probe"], 1).shape[1]
            self._dimension = int(dim)
        return self._dimension

    # encoding ------------------------------------------------------------------------------
    def _encode(self, inputs: list[Any], batch_size: int) -> np.ndarray:
        """One batch through ``SentenceTransformer.encode`` → normalised float32 rows."""
        model = self._load()
        vectors = model.encode(
            inputs,
            batch_size=batch_size,
            convert_to_numpy=True,
            normalize_embeddings=True,
            show_progress_bar=False,
            **self._encode_options,
        )
        return _normalise(vectors)

    def _run(
        self,
        items: Sequence[Any],
        prepare: Callable[[Sequence[Any], int], list[Any]],
        batch_size: int | None,
        show_progress: bool | None,
        unit: str,
    ) -> np.ndarray:
        size = self.batch_size if batch_size is None else positive_int("batch_size", batch_size)
        if len(items) == 0:
            return np.zeros((0, self.dimension), dtype=np.float32)
        parts: list[np.ndarray] = []
        progress = None
        if show_progress or (show_progress is None and len(items) > PROGRESS_THRESHOLD):
            progress = progress_bar(show_progress, total=len(items), desc=f"embedding {unit}", unit=unit)
        try:
            for offset, chunk in _batches(items, size):
                parts.append(self._encode(prepare(chunk, offset), size))
                if progress is not None:
                    progress.update(len(chunk))
        finally:
            if progress is not None:
                progress.close()
        out = np.concatenate(parts, axis=0)
        self._dimension = int(out.shape[1])
        return out

    def embed_texts(
        self, texts: Sequence[str], *, batch_size: int | None = None, show_progress: bool | None = None
    ) -> np.ndarray:
        """Embed ``texts`` → float32 array of shape (n, d) with unit-norm rows."""
        if isinstance(texts, (str, bytes)):
            raise ConfigError("embed_texts takes a sequence of strings, not a single string")
        texts = list(texts)
        bad = [i for i, t in enumerate(texts) if not isinstance(t, str)]
        if bad:
            raise ConfigError(f"embed_texts: items {bad[:5]} are not strings")
        return self._run(texts, lambda chunk, _: list(chunk), batch_size, show_progress, "texts")

    def embed_images(
        self, images: Sequence[ImageSource], *, batch_size: int | None = None, show_progress: bool | None = None
    ) -> np.ndarray:
        """Decode and embed ``images`` → float32 array (n, d) with unit-norm rows.

        Images are decoded one batch at a time, so memory stays bounded for long inputs; an
        undecodable one raises :class:`MediaError` naming its position.
        """
        if "image" not in self.required_modalities:
            raise ConfigError(f"{type(self).__name__} embeds text only; use ClipEmbedder for images")
        if isinstance(images, (str, bytes, bytearray, Path)) or hasattr(images, "getpixel"):
            raise ConfigError("embed_images takes a sequence of images, not a single image")

        def decode(chunk: Sequence[ImageSource], offset: int) -> list[Any]:
            decoded = []
            for i, source in enumerate(chunk):
                try:
                    decoded.append(load_image(source, max_pixels=self.max_pixels))
                except MediaError as exc:
                    raise MediaError(f"image #{offset + i}: {exc}") from exc
            return decoded

        return self._run(list(images), decode, batch_size, show_progress, "images")


__all__ = ["DTYPES", "Embedder", "PROGRESS_THRESHOLD", "SentenceTransformerEmbedder"]
