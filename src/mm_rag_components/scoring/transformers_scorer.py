"""Pointwise yes/no scoring with a local Hugging Face chat VLM or causal LM.

Score = softmax([z_yes, z_no])[yes] = sigmoid(z_yes − z_no) at the answer position — never
P(yes) over the whole vocabulary. A reranker trained with its own scoring head instead
(jina-reranker-m0) is scored by that head, read from its checkpoint (:mod:`.heads`).

What differs between architectures (how an image enters the sequence, positions, the processor,
the vision features) lives in one adapter per family (:mod:`.families`: Idefics3/SmolVLM, LLaVA,
Qwen2-VL/Qwen2.5-VL/Qwen3-VL, text-only causal LMs). The fast path (:mod:`.fast_path`) reuses
the shared prompt prefix's KV cache and caches image features by (model, settings, image
sha256) — in memory, and on disk with ``vision_cache_dir`` (shared by processes, kept across
restarts; :meth:`TransformersScorer.precompute` fills it, e.g. at ingest). :meth:`score_reference`
is the naive computation (one full forward per pair through the processor); a test checks both
agree. Another VLM architecture is scored by the reference path.

Nothing is read at construction: the processor/tokenizer loads on first use (or
:meth:`TransformersScorer.warm_up`), once, thread-safely; so does the model.
"""

from __future__ import annotations

import contextlib
import logging
import math
import threading
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from ..errors import ConfigError, MediaError, ModelError, one_line
from ..media import DEFAULT_MAX_PIXELS, LoadedImage, load_image_with_hash
from ..progress import quiet_loading
from ..types import MIXED, Candidate, Query, join_flags
from ..validate import boolean, dtype_name, integer, positive_int, text, torch_dtype
from .base import EMPTY_CANDIDATE, MISSING_IMAGE, UNREADABLE_IMAGE, PointScore
from .fast_path import FastPath, Prepared
from .features import FeatureStore
from .heads import ScoreHead, YesNoHead, check_head, head_keys_expected
from .page_text import PAGE_TEXT_TOKENS, check_budget, page_text
from .prompt_builder import PROMPT_TOO_LONG, PromptBuilder
from .templates import BUILTIN_TEMPLATES, DEFAULT_TEMPLATE, PointwiseTemplate, get_template

logger = logging.getLogger(__name__)

#: Architectures (``model_type``) whose images the fast path handles.
FAST_VLMS = frozenset({"idefics3", "smolvlm", "llava", "qwen2_vl", "qwen2_5_vl", "qwen3_vl"})
UNSUPPORTED_MODALITY = "unsupported_modality"
#: Lists longer than this show a progress bar.
PROGRESS_THRESHOLD = 64
_LAZY = ("family", "tokenizer", "processor", "prompts", "yes_id", "no_id", "hf_config", "head_bias")


class TransformersScorer:
    """Relevance p(yes) from a local chat VLM (``AutoModelForImageTextToText``) or causal LM.

    ``image_splitting``: ``None`` follows the model's processor configuration (SmolVLM splits
    large images into tiles plus a global view); ``False`` gives one view per image — several
    times fewer image tokens and vision-tower runs, a documented speed option that changes
    scores. ``vision_cache_dir``: keep image features on disk (bounded by
    ``vision_cache_max_bytes``), shared by processes and kept across restarts.
    ``page_text_tokens``: a mixed (``"image+text"``, a document page) candidate is judged on
    its image, then its page text cut to this many tokens (flagged ``truncated`` when cut; see
    :mod:`~mm_rag_components.scoring.page_text`); ``None`` keeps the whole text.
    ``trust_remote_code`` stays off unless asked.
    """

    def __init__(
        self,
        model_name_or_path: str | Path,
        *,
        template: str | PointwiseTemplate = DEFAULT_TEMPLATE,
        instruction: str | None = None,
        device: str | None = None,
        dtype: Any = None,
        batch_size: int = 8,
        vision_batch_size: int | None = None,
        max_length: int | None = None,
        page_text_tokens: int | None = PAGE_TEXT_TOKENS,
        vision_cache_size: int = 512,
        vision_cache_dir: str | Path | None = None,
        vision_cache_max_bytes: int = 2 << 30,
        image_splitting: bool | None = None,
        max_pixels: int | None = DEFAULT_MAX_PIXELS,
        fast: bool = True,
        local_files_only: bool | None = None,
        trust_remote_code: bool = False,
    ) -> None:
        if not isinstance(model_name_or_path, (str, Path)) or not str(model_name_or_path).strip():
            raise ConfigError(f"model must be a hub name or a directory, got {model_name_or_path!r}")
        self.model_name_or_path = str(model_name_or_path)
        self.name = self.model_name_or_path
        self.template = get_template(template)
        self.instruction = text("instruction", instruction, optional=True, non_empty=False)
        self.device = text("device", device, optional=True)
        self.dtype = dtype_name(dtype)
        self.batch_size = positive_int("batch_size", batch_size)
        #: Images per vision-tower call; ``None``: on CPU as many as fit ``VISION_ROWS_PER_CALL``
        #: feature rows (small single-view images share a call, tiled or large ones run alone;
        #: :mod:`.features`), ``batch_size`` on accelerators.
        self.vision_batch_size = positive_int("vision_batch_size", vision_batch_size, optional=True)
        self.max_length = integer("max_length", max_length, minimum=8, optional=True)
        self.page_text_tokens = check_budget(page_text_tokens)
        self.max_pixels = positive_int("max_pixels", max_pixels, optional=True)
        self.image_splitting = None if image_splitting is None else boolean("image_splitting", image_splitting)
        self.features = FeatureStore(integer("vision_cache_size", vision_cache_size, minimum=0), vision_cache_dir, vision_cache_max_bytes)
        self.vision_cache = self.features.cache
        self.fast_requested = boolean("fast", fast)
        self.local_files_only = local_files_only
        self.trust_remote_code = boolean("trust_remote_code", trust_remote_code)
        self._load_kwargs = {"local_files_only": bool(local_files_only), "trust_remote_code": self.trust_remote_code}
        self._state: dict[str, Any] | None = None
        self._model: Any = None
        self._lock = threading.RLock()

    def config(self) -> dict[str, Any]:
        """Constructor arguments (see :mod:`mm_rag_components.config`)."""
        builtin = BUILTIN_TEMPLATES.get(self.template.name) == self.template
        return {
            "model_name_or_path": self.model_name_or_path,
            "template": self.template.name if builtin else self.template,
            "instruction": self.instruction,
            "device": self.device,
            "dtype": self.dtype,
            "batch_size": self.batch_size,
            "vision_batch_size": self.vision_batch_size,
            "max_length": self.max_length,
            "page_text_tokens": self.page_text_tokens,
            "vision_cache_size": self.vision_cache.max_items,
            "vision_cache_dir": self.features.directory,
            "vision_cache_max_bytes": self.features.max_bytes,
            "image_splitting": self.image_splitting,
            "max_pixels": self.max_pixels,
            "fast": self.fast_requested,
            "local_files_only": self.local_files_only,
            "trust_remote_code": self.trust_remote_code,
        }

    def weights_fingerprint(self) -> str | None:
        """What the score cache knows this model by: its weights, not its path (see
        :func:`~mm_rag_components.hub.weights_fingerprint`)."""
        from ..hub import weights_fingerprint

        return weights_fingerprint(self.model_name_or_path)

    # lazy loading ----------------------------------------------------------------------------
    def __getattr__(self, name: str) -> Any:
        if name in _LAZY:  # the tokenizer/processor load on first access
            return self._loaded()[name]
        raise AttributeError(f"{type(self).__name__!r} object has no attribute {name!r}")

    @property
    def multimodal(self) -> bool:
        return bool(self.family.multimodal)

    @property
    def model_type(self) -> str:
        return str(self.family.model_type)

    @property
    def image_token_id(self) -> int | None:
        return self.family.image_token_id

    @property
    def fast(self) -> bool:
        """Whether :meth:`score` takes the fast path (asked for, and the family supports it)."""
        return self.fast_requested and bool(self.family.fast)

    def _loaded(self) -> dict[str, Any]:
        if self._state is None:
            with self._lock:
                if self._state is None:
                    self._state = self._load_processor()
        return self._state

    @property
    def load_options(self) -> dict[str, Any]:
        """The ``from_pretrained`` keywords this scorer loads with (offline, remote code), so other
        code loads the same model the same way (e.g. :mod:`mm_rag_components.training`)."""
        return dict(self._load_kwargs)

    def _load_processor(self) -> dict[str, Any]:
        from transformers import AutoConfig

        from ..hub import adapter_hint, ensure_loadable
        from .families import family_for

        location = ensure_loadable(self.model_name_or_path, what="scorer model", local_files_only=bool(self.local_files_only))
        kwargs = {**self._load_kwargs, "local_files_only": bool(self.local_files_only) or location.load_offline}
        self._load_kwargs = kwargs
        try:
            with quiet_loading():
                config = AutoConfig.from_pretrained(self.model_name_or_path, **kwargs)
                family = family_for(config)
                family.load(self.model_name_or_path, kwargs, config, self.image_splitting)
        except Exception as exc:  # noqa: BLE001 - one plain error for any loading failure
            hint = adapter_hint(self.model_name_or_path, local_files_only=kwargs["local_files_only"])
            raise ModelError(f"cannot load {self.model_name_or_path!r}: {hint or one_line(exc)}") from exc
        head_bias = check_head(self.name, self.template, config)
        try:
            prompts = PromptBuilder(
                family.tokenizer,
                self.template,
                processor=family.chat if family.multimodal else None,
                instruction=self.instruction,
                max_length=self.max_length,
                image_token=family.image_token,
                image_expansion=family.default_expansion(),
            )
            yes_id, no_id = prompts.answer_ids() if head_bias is None else (None, None)
        except ModelError as exc:
            raise ModelError(f"{self.name}: {exc}") from exc
        processor = getattr(family, "processor", None) or family.tokenizer
        return {"family": family, "tokenizer": family.tokenizer, "processor": processor, "prompts": prompts,
                "yes_id": yes_id, "no_id": no_id, "hf_config": config, "head_bias": head_bias}

    def warm_up(self) -> None:
        """Load the processor and the model now (otherwise they load on first use)."""
        self._ensure_model()

    def _ensure_model(self) -> Any:
        if self._model is None:
            state = self._loaded()
            with self._lock:
                if self._model is None:
                    self._model = self._load_model(state)
        return self._model

    def _load_model(self, state: dict[str, Any]) -> Any:
        import torch
        import transformers

        from ..hub import model_kwargs

        family = state["family"]
        device = self.device or ("cuda" if torch.cuda.is_available() else "cpu")
        loader = getattr(transformers, family.model_class)
        try:
            with quiet_loading(), head_keys_expected() if state["head_bias"] is not None else contextlib.nullcontext():
                model = loader.from_pretrained(self.model_name_or_path, dtype=torch_dtype(self.dtype), **model_kwargs(self._load_kwargs))
        except Exception as exc:  # noqa: BLE001
            raise ModelError(f"cannot load model {self.model_name_or_path!r}: {one_line(exc)}") from exc
        model.to(device).eval()
        self._device = torch.device(device)
        if state["head_bias"] is None:
            self._head: Any = YesNoHead(model, state["yes_id"], state["no_id"])
        else:
            hidden_size = getattr(getattr(model.config, "text_config", model.config), "hidden_size")
            self._head = ScoreHead.from_checkpoint(self.model_name_or_path, state["head_bias"], hidden_size).to(self._device, model.dtype)
        self.features.bind(self.model_name_or_path, family, model, self._device)
        return model

    # prompts ---------------------------------------------------------------------------------
    def render(self, query: Query, document: str | None, document_image: bool, *, query_image: bool | None = None) -> tuple[str, list[str]]:
        """The full prompt text for one pair and the order of its images (``query``/``document``)."""
        has_query_image = query.image is not None if query_image is None else query_image
        return self.prompts.render(query.text, has_query_image, document, document_image)

    def _prepare(self, query: Query, query_images: list[LoadedImage], candidates: Sequence[Candidate]) -> list[Prepared]:
        family = self.family
        query_layout = family.layout(query_images[0].image) if query_images else None
        prepared = []
        for i, candidate in enumerate(candidates):
            item = Prepared(i)
            prepared.append(item)
            image = None
            source = candidate.image_source
            if source is None and not candidate.text:
                item.flag, item.skip = EMPTY_CANDIDATE, True
                logger.warning("candidate %s has neither an image nor text; ranked last", candidate.id)
                continue
            if source is None and candidate.modality in ("image", MIXED):
                item.flag = MISSING_IMAGE
                logger.warning("image candidate %s has no image source; scored on its text", candidate.id)
            if source is not None:
                if not family.multimodal:
                    item.flag, item.skip = UNSUPPORTED_MODALITY, True
                    logger.warning("candidate %s has an image; %s is text-only", candidate.id, self.name)
                    continue
                try:
                    image = load_image_with_hash(source, max_pixels=self.max_pixels)
                except MediaError as exc:
                    item.flag, item.skip = UNREADABLE_IMAGE, True
                    logger.warning("candidate %s: unreadable image, ranked last: %s", candidate.id, exc)
                    continue
            layouts = {"query": query_layout, "document": family.layout(image.image) if image is not None else None}
            expansions = {k: v.ids for k, v in layouts.items() if v is not None} if family.multimodal else None
            document, cut = page_text(candidate, self.page_text_tokens, self.tokenizer)
            prompt = self.prompts.build(query.text, query.image is not None, document, image is not None, expansions=expansions)
            item.flag = join_flags(item.flag, cut, prompt.flag)
            item.skip = prompt.flag == PROMPT_TOO_LONG
            item.text, item.ids, item.labels = prompt.text, prompt.ids, prompt.images
            item.images = [query_images[0] if label == "query" else image for label in prompt.images]
            item.layouts = [layouts[label] for label in prompt.images]
        return prepared

    # scoring ---------------------------------------------------------------------------------
    def score(self, query: Query, candidates: Sequence[Candidate]) -> list[PointScore]:
        """p(relevant) for every candidate; unreadable ones get ``-inf`` log-odds and a flag."""
        return self._score(query, candidates, fast=self.fast)

    def score_reference(self, query: Query, candidates: Sequence[Candidate]) -> list[PointScore]:
        """The naive computation: one full forward per (query, candidate), batch 1, via the processor."""
        return self._score(query, candidates, fast=False)

    def _score(self, query: Query, candidates: Sequence[Candidate], *, fast: bool) -> list[PointScore]:
        if not isinstance(query, Query):
            raise ConfigError(f"query must be a Query, got {type(query).__name__}")
        if not candidates:
            return []
        if query.image is not None and not self.multimodal:
            raise ConfigError(f"{self.name} is a text-only model; it cannot take an image query")
        query_images = self._query_images(query)
        model = self._ensure_model()
        prepared = self._prepare(query, query_images, candidates)
        items = [p for p in prepared if not p.skip]
        logodds: dict[int, float] = {}
        if items and fast:
            features = self.features.get([im for p in items for im in p.images], self._vision_step(), layouts=_layouts(items))
            pad = self.tokenizer.pad_token_id if self.tokenizer.pad_token_id is not None else 0
            progress = _progress(len(items))
            logodds = FastPath(model, self.family, self._device, self._answer_logodds, pad).logodds(items, features, self.batch_size, progress)
            if progress is not None:
                progress.close()
        elif items:
            logodds = self._reference_logodds(items)
        return [PointScore.from_logodds(logodds.get(p.index, -math.inf), p.flag) for p in prepared]

    def _query_images(self, query: Query) -> list[LoadedImage]:
        try:
            return [load_image_with_hash(query.image, max_pixels=self.max_pixels)] if query.image is not None else []
        except MediaError as exc:
            raise MediaError(f"query image: {exc}") from exc

    def _vision_step(self) -> int | None:
        """Images per vision call; ``None``: grouped by feature rows (the CPU default)."""
        if self.vision_batch_size is not None:
            return self.vision_batch_size
        return None if self._device.type == "cpu" else self.batch_size

    def _reference_logodds(self, items: list[Prepared]) -> dict[int, float]:
        import torch

        from .families.base import to_device

        out = {}
        suffix = self.template.suffix_ids
        for item in items:
            inputs = _with_suffix(self.family.reference_inputs(item.text, [im.image for im in item.images]), suffix)
            inputs = to_device(inputs, self._device, self._model.dtype)
            with torch.inference_mode():
                if self.yes_id is None:  # the model's own head on the final hidden state
                    hidden = self._model(**inputs, output_hidden_states=True).hidden_states[-1][:, -1]
                    out[item.index] = float(self._head(hidden)[0])
                    continue
                logits = self._model(**inputs, logits_to_keep=1).logits[0, -1].float()
            out[item.index] = float(logits[self.yes_id] - logits[self.no_id])
        return out

    def _answer_logodds(self, hidden: Any) -> Any:
        return self._head(hidden)

    # image features ahead of time ------------------------------------------------------------
    def precompute(self, images: Iterable[Any], *, show_progress: bool | None = None, progress: Any = None) -> int:
        """Compute and cache the features of ``images`` (image sources, PIL images, or
        ``(sha256, bytes-or-PIL)`` pairs as ingest has them) that are not cached yet; with
        ``vision_cache_dir`` they outlive this process. Unreadable images are skipped (logged).
        ``progress``: a tqdm bar to advance instead of a new one. Returns how many were computed."""
        self._ensure_model()
        if not self.multimodal:
            return 0
        return self.features.precompute(images, self._vision_step(), max_pixels=self.max_pixels, show_progress=show_progress, progress=progress)


def _with_suffix(inputs: dict[str, Any], suffix: tuple[int, ...]) -> dict[str, Any]:
    """Processor inputs for one sequence with ``suffix`` token ids appended (a template's score token)."""
    if not suffix:
        return inputs
    import torch

    out = dict(inputs)
    ids = torch.tensor([list(suffix)], dtype=inputs["input_ids"].dtype)
    out["input_ids"] = torch.cat([inputs["input_ids"], ids], dim=1)
    for key, fill in (("attention_mask", 1), ("mm_token_type_ids", 0)):
        if key in inputs:
            out[key] = torch.cat([inputs[key], torch.full((1, len(suffix)), fill, dtype=inputs[key].dtype)], dim=1)
    return out


def _layouts(items: list[Prepared]) -> dict[str, Any]:
    return {im.sha256: lay for p in items for im, lay in zip(p.images, p.layouts)}


def _progress(total: int) -> Any:
    if total <= PROGRESS_THRESHOLD:
        return None
    from ..progress import progress_bar

    return progress_bar(total=total, desc="scoring", unit="candidate")


__all__ = ["FAST_VLMS", "PROMPT_TOO_LONG", "TransformersScorer", "UNSUPPORTED_MODALITY"]
