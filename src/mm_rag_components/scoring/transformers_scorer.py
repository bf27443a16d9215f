"""Pointwise yes/no scoring with a local Hugging Face chat VLM or causal LM.

Score = softmax([z_yes, z_no])[yes] = sigmoid(z_yes − z_no) at the answer position — never
P(yes) over the whole vocabulary.

The fast path (Idefics3/SmolVLM, LLaVA, and text-only causal LMs):

1. every candidate's prompt is tokenized exactly as the reference path would; the longest token
   prefix shared by all candidates (never past a candidate's own image) is encoded **once** and its
   KV cache reused for every candidate;
2. the remaining suffixes run in right-padded batches sorted by length; only the last real
   position's hidden state meets the two answer rows of the output layer;
3. image features (vision tower + projector) are cached by (model, image sha256) in a bounded LRU,
   so a second query over the same images skips the vision tower.

Other architectures (e.g. Qwen2-VL's multimodal rotary positions) use :meth:`score_reference`:
one full forward per pair through the processor. Both give the same numbers; a test checks it.
"""

from __future__ import annotations

import copy
import logging
import math
import threading
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..errors import ConfigError, MediaError, ModelError, one_line
from ..hub import ensure_loadable
from ..media import DEFAULT_MAX_PIXELS, LoadedImage, load_image_with_hash
from ..types import Candidate, Query
from .base import EMPTY_CANDIDATE, MISSING_IMAGE, UNREADABLE_IMAGE, PointScore
from .prompt_builder import PROMPT_TOO_LONG, PromptBuilder
from ..validate import boolean, dtype_name, integer, positive_int, text, torch_dtype
from .templates import BUILTIN_TEMPLATES, DEFAULT_TEMPLATE, PointwiseTemplate, get_template
from .vision_cache import VisionFeatureCache

logger = logging.getLogger(__name__)

#: Architectures whose image features can be computed separately and scattered into the
#: token embeddings, and whose positions are plain 1-D (so prefix reuse is exact).
FAST_VLMS = frozenset({"idefics3", "smolvlm", "llava"})
UNSUPPORTED_MODALITY = "unsupported_modality"
#: Lists longer than this show a progress bar.
PROGRESS_THRESHOLD = 64


@dataclass
class _Prepared:
    """One candidate's tokens and images, or the flag that stops it from being scored."""

    index: int
    ids: list[int] = field(default_factory=list)
    images: list[LoadedImage] = field(default_factory=list)  # in prompt order
    labels: list[str] = field(default_factory=list)  # "query" / "document", one per image
    text: str = ""
    flag: str | None = None
    skip: bool = False


class TransformersScorer:
    """Relevance p(yes) from a local chat VLM (``AutoModelForImageTextToText``) or causal LM.

    The processor/tokenizer loads at construction (the answer tokens are checked then); the model
    loads once, on first use or in :meth:`warm_up`. ``trust_remote_code`` stays off unless asked.
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
        vision_cache_size: int = 512,
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
        #: Images per vision-tower call; ``None``: 1 on CPU (batching only adds padding and memory
        #: traffic there, measured ~20% slower at 8), ``batch_size`` on accelerators.
        self.vision_batch_size = positive_int("vision_batch_size", vision_batch_size, optional=True)
        self.max_length = integer("max_length", max_length, minimum=8, optional=True)
        self.max_pixels = positive_int("max_pixels", max_pixels, optional=True)
        self.vision_cache = VisionFeatureCache(integer("vision_cache_size", vision_cache_size, minimum=0))
        self.fast_requested = boolean("fast", fast)
        self.local_files_only = local_files_only
        self.trust_remote_code = boolean("trust_remote_code", trust_remote_code)
        self._load_kwargs = {"local_files_only": bool(local_files_only), "trust_remote_code": trust_remote_code}
        self._model: Any = None
        self._lock = threading.Lock()
        self._load_processor()
        self.fast = fast and (not self.multimodal or self.model_type in FAST_VLMS)

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
            "vision_cache_size": self.vision_cache.max_items,
            "max_pixels": self.max_pixels,
            "fast": self.fast_requested,
            "local_files_only": self.local_files_only,
            "trust_remote_code": self.trust_remote_code,
        }

    # loading ---------------------------------------------------------------------------------
    def _load_processor(self) -> None:
        from transformers import AutoConfig, AutoProcessor, AutoTokenizer

        location = ensure_loadable(self.model_name_or_path, what="scorer model", local_files_only=bool(self.local_files_only))
        self._load_kwargs["local_files_only"] = bool(self.local_files_only) or location.load_offline
        try:
            config = AutoConfig.from_pretrained(self.model_name_or_path, **self._load_kwargs)
            self.multimodal = hasattr(config, "vision_config")
            loader = AutoProcessor if self.multimodal else AutoTokenizer
            self.processor = loader.from_pretrained(self.model_name_or_path, **self._load_kwargs)
        except Exception as exc:  # noqa: BLE001 - one plain error for any loading failure
            raise ModelError(f"cannot load {self.model_name_or_path!r}: {one_line(exc)}") from exc
        self.hf_config = config
        self.model_type = getattr(config, "model_type", "")
        self.tokenizer = getattr(self.processor, "tokenizer", self.processor)
        self.image_token_id: int | None = None
        image_token, expansion = None, None
        if self.multimodal:
            image_processor = self.processor.image_processor
            if getattr(image_processor, "do_image_splitting", False):
                logger.info("%s: image splitting disabled for scoring (one view per image)", self.name)
                image_processor.do_image_splitting = False
            token = getattr(self.processor, "image_token", None)
            self.image_token_id = self.tokenizer.convert_tokens_to_ids(str(token)) if token is not None else None
            if self.image_token_id is None:
                raise ModelError(f"{self.model_name_or_path!r}: cannot find the processor's image token")
            image_token, expansion = str(token), self._probe_image_expansion()
        try:
            self.prompts = PromptBuilder(
                self.tokenizer,
                self.template,
                processor=self.processor if self.multimodal else None,
                instruction=self.instruction,
                max_length=self.max_length,
                image_token=image_token,
                image_expansion=expansion,
            )
            self.yes_id, self.no_id = self.prompts.answer_ids()
        except ModelError as exc:
            raise ModelError(f"{self.name}: {exc}") from exc

    def _probe_image_expansion(self) -> list[int]:
        """Token ids the processor puts in place of one image placeholder."""
        from PIL import Image

        token = str(self.processor.image_token)
        images = [[Image.new("RGB", (64, 64))]] if self.model_type in ("idefics3", "smolvlm") else [Image.new("RGB", (64, 64))]
        probe = self.processor(text=[token], images=images, add_special_tokens=False)["input_ids"][0]
        plain = self.tokenizer(token, add_special_tokens=False)["input_ids"]
        if plain != [self.image_token_id]:
            raise ModelError(f"{self.name}: the image token {token!r} is not a single token")
        return list(probe)

    def warm_up(self) -> None:
        """Load the model now (otherwise it loads on first use)."""
        self._ensure_model()

    def _ensure_model(self) -> Any:
        if self._model is not None:
            return self._model
        with self._lock:
            if self._model is None:
                self._model = self._load_model()
        return self._model

    def _load_model(self) -> Any:
        import torch
        from transformers import AutoModelForCausalLM, AutoModelForImageTextToText

        device = self.device or ("cuda" if torch.cuda.is_available() else "cpu")
        dtype = torch_dtype(self.dtype)
        loader = AutoModelForImageTextToText if self.multimodal else AutoModelForCausalLM
        try:
            model = loader.from_pretrained(self.model_name_or_path, dtype=dtype, **self._load_kwargs)
        except Exception as exc:  # noqa: BLE001
            raise ModelError(f"cannot load model {self.model_name_or_path!r}: {one_line(exc)}") from exc
        model.to(device).eval()
        self._device = torch.device(device)
        head = model.get_output_embeddings()
        rows = torch.tensor([self.yes_id, self.no_id], device=head.weight.device)
        self._answer_weight = head.weight.index_select(0, rows)
        bias = getattr(head, "bias", None)
        self._answer_bias = bias.index_select(0, rows) if bias is not None else None
        self._softcap = getattr(getattr(model.config, "text_config", model.config), "final_logit_softcapping", None)
        return model

    # prompts ---------------------------------------------------------------------------------
    def render(self, query: Query, document: str | None, document_image: bool, *, query_image: bool | None = None) -> tuple[str, list[str]]:
        """The full prompt text for one pair and the order of its images (``query``/``document``)."""
        has_query_image = query.image is not None if query_image is None else query_image
        return self.prompts.render(query.text, has_query_image, document, document_image)

    def _prepare(self, query: Query, query_images: list[LoadedImage], candidates: Sequence[Candidate]) -> list[_Prepared]:
        prepared = []
        for i, candidate in enumerate(candidates):
            item = _Prepared(i)
            prepared.append(item)
            image = None
            source = candidate.image_source
            if source is None and not candidate.text:
                item.flag, item.skip = EMPTY_CANDIDATE, True
                logger.warning("candidate %s has neither an image nor text; ranked last", candidate.id)
                continue
            if source is None and candidate.modality == "image":
                item.flag = MISSING_IMAGE
                logger.warning("image candidate %s has no image source; scored on its text", candidate.id)
            if source is not None:
                if not self.multimodal:
                    item.flag, item.skip = UNSUPPORTED_MODALITY, True
                    logger.warning("candidate %s has an image; %s is text-only", candidate.id, self.name)
                    continue
                try:
                    image = load_image_with_hash(source, max_pixels=self.max_pixels)
                except MediaError as exc:
                    item.flag, item.skip = UNREADABLE_IMAGE, True
                    logger.warning("candidate %s: unreadable image, ranked last: %s", candidate.id, exc)
                    continue
            prompt = self.prompts.build(query.text, query.image is not None, candidate.text, image is not None)
            if prompt.flag is not None:
                item.flag = prompt.flag
                item.skip = prompt.flag == PROMPT_TOO_LONG
            order = prompt.images
            item.text, item.ids = prompt.text, prompt.ids
            item.images = [query_images[order[:k].count("query")] if label == "query" else image for k, label in enumerate(order)]
            item.labels = order
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
        try:
            query_images = [load_image_with_hash(query.image, max_pixels=self.max_pixels)] if query.image is not None else []
        except MediaError as exc:
            raise MediaError(f"query image: {exc}") from exc
        self._ensure_model()
        prepared = self._prepare(query, query_images, candidates)
        logodds = self._fast_logodds(prepared) if fast else self._reference_logodds(prepared)
        return [PointScore.from_logodds(logodds.get(p.index, -math.inf), p.flag) for p in prepared]

    def _reference_logodds(self, prepared: list[_Prepared]) -> dict[int, float]:
        import torch

        model, out = self._model, {}
        for item in (p for p in prepared if not p.skip):
            images = [im.image for im in item.images]
            if self.multimodal:
                kwargs: dict[str, Any] = {}
                if images:
                    kwargs["images"] = [images] if self.model_type in ("idefics3", "smolvlm") else images
                inputs = self.processor(text=[item.text], add_special_tokens=False, return_tensors="pt", **kwargs)
            else:
                inputs = self.tokenizer([item.text], add_special_tokens=False, return_tensors="pt")
            inputs = {k: v.to(self._device) for k, v in inputs.items()}
            with torch.inference_mode():
                logits = model(**inputs, logits_to_keep=1).logits[0, -1].float()
            out[item.index] = float(logits[self.yes_id] - logits[self.no_id])
        return out

    def _image_features(self, images: list[LoadedImage]) -> dict[str, Any]:
        """Features per image sha256, from the LRU or the vision tower (batched)."""
        import torch

        found: dict[str, Any] = {}
        missing: dict[str, LoadedImage] = {}
        for image in images:
            if image.sha256 in found or image.sha256 in missing:
                continue
            cached = self.vision_cache.get((self.name, image.sha256))
            if cached is None:
                missing[image.sha256] = image
            else:
                found[image.sha256] = cached
        todo = list(missing.values())
        model = self._model
        step = self.vision_batch_size or (1 if self._device.type == "cpu" else self.batch_size)
        for start in range(0, len(todo), step):
            chunk = todo[start : start + step]
            pil = [im.image for im in chunk]
            if self.model_type in ("idefics3", "smolvlm"):
                pixels = self.processor.image_processor([[p] for p in pil], return_tensors="pt")
                kwargs = {"pixel_values": pixels["pixel_values"], "pixel_attention_mask": pixels.get("pixel_attention_mask")}
            else:
                pixels = self.processor.image_processor(pil, return_tensors="pt")
                kwargs = {
                    "pixel_values": pixels["pixel_values"],
                    "vision_feature_layer": model.config.vision_feature_layer,
                    "vision_feature_select_strategy": model.config.vision_feature_select_strategy,
                }
            kwargs = {k: (v.to(self._device, dtype=model.dtype) if k == "pixel_values" else v.to(self._device) if hasattr(v, "to") else v) for k, v in kwargs.items() if v is not None}
            with torch.inference_mode():
                features = model.get_image_features(**kwargs).pooler_output
            for image, feature in zip(chunk, features):
                feature = feature.reshape(-1, feature.shape[-1])
                self.vision_cache.put((self.name, image.sha256), feature)
                found[image.sha256] = feature
        return found

    def _embed(self, rows: list[list[int]], row_images: list[list[LoadedImage]], features: dict[str, Any], pad_to: int) -> Any:
        """Token embeddings for right-padded rows, image features scattered into image slots."""
        import torch

        model = self._model
        pad = self.tokenizer.pad_token_id if self.tokenizer.pad_token_id is not None else 0
        ids = torch.full((len(rows), pad_to), pad, dtype=torch.long)
        for r, row in enumerate(rows):
            ids[r, : len(row)] = torch.tensor(row, dtype=torch.long)
        ids = ids.to(self._device)
        embeds = model.get_input_embeddings()(ids)
        if self.image_token_id is not None:
            for r, images in enumerate(row_images):
                if not images:
                    continue
                slots = (ids[r] == self.image_token_id).nonzero().squeeze(-1)
                slots = slots[slots < len(rows[r])]
                values = torch.cat([features[im.sha256] for im in images]).to(embeds.dtype)
                if values.shape[0] != slots.shape[0]:
                    raise ModelError(f"{self.name}: {slots.shape[0]} image slots but {values.shape[0]} image features")
                embeds[r, slots] = values
        return embeds

    def _answer_logodds(self, hidden: Any) -> Any:
        import torch

        logits = hidden.to(self._answer_weight.dtype) @ self._answer_weight.T
        if self._answer_bias is not None:
            logits = logits + self._answer_bias
        if self._softcap:
            logits = torch.tanh(logits / self._softcap) * self._softcap
        logits = logits.float()
        return logits[:, 0] - logits[:, 1]

    def _shared_prefix(self, items: list[_Prepared], features: dict[str, Any]) -> int:
        """Length of the token prefix all candidates share, stopping before any candidate image
        (its ids equal other candidates' but its pixels differ) and never splitting an image."""
        first = items[0]
        shared = min(len(p.ids) for p in items) - 1  # every candidate keeps >= 1 token to score
        for p in items[1:]:
            n = 0
            while n < shared and p.ids[n] == first.ids[n]:
                n += 1
            shared = n
        if self.image_token_id is None:
            return shared
        for p in items:
            slots = [k for k, t in enumerate(p.ids) if t == self.image_token_id]
            used = 0
            for label, image in zip(p.labels, p.images):
                size = features[image.sha256].shape[0]
                if label == "document" or slots[used + size - 1] >= shared:
                    shared = min(shared, slots[used])
                    break
                used += size
        return shared

    def _fast_logodds(self, prepared: list[_Prepared]) -> dict[int, float]:
        import torch

        items = [p for p in prepared if not p.skip]
        if not items:
            return {}
        decoder = self._model.get_decoder()
        features = self._image_features([im for p in items for im in p.images]) if self.multimodal else {}
        shared = self._shared_prefix(items, features)
        prefix_ids = items[0].ids[:shared]
        out: dict[int, float] = {}
        # The prefix holds the same (query) images for every candidate: the first n of each list.
        prefix_images = self._images_within(prefix_ids, items[0].images, features)
        with torch.inference_mode():
            cache = None
            if shared > 0:
                embeds = self._embed([prefix_ids], [prefix_images], features, shared)
                cache = decoder(inputs_embeds=embeds, use_cache=True).past_key_values
            order = sorted(items, key=lambda p: len(p.ids))
            progress = self._progress(len(order))
            for start in range(0, len(order), self.batch_size):
                batch = order[start : start + self.batch_size]
                suffixes = [p.ids[shared:] for p in batch]
                suffix_images = [p.images[len(prefix_images) :] for p in batch]
                width = max(len(s) for s in suffixes)
                embeds = self._embed(suffixes, suffix_images, features, width)
                mask = torch.zeros((len(batch), shared + width), dtype=torch.long, device=self._device)
                mask[:, :shared] = 1
                for r, s in enumerate(suffixes):
                    mask[r, shared : shared + len(s)] = 1
                kwargs: dict[str, Any] = {"inputs_embeds": embeds, "attention_mask": mask, "use_cache": cache is not None}
                if cache is not None:
                    batch_cache = copy.deepcopy(cache)
                    batch_cache.batch_repeat_interleave(len(batch))
                    kwargs["past_key_values"] = batch_cache
                hidden = decoder(**kwargs).last_hidden_state
                last = torch.tensor([len(s) - 1 for s in suffixes], device=self._device)
                values = self._answer_logodds(hidden[torch.arange(len(batch), device=self._device), last])
                for p, value in zip(batch, values.tolist()):
                    out[p.index] = value
                if progress is not None:
                    progress.update(len(batch))
            if progress is not None:
                progress.close()
        return out

    def _images_within(self, ids: list[int], images: list[LoadedImage], features: dict[str, Any]) -> list[LoadedImage]:
        """The leading images whose slots all fall inside ``ids``."""
        if self.image_token_id is None:
            return []
        slots = sum(1 for t in ids if t == self.image_token_id)
        inside = []
        for image in images:
            need = features[image.sha256].shape[0]
            if need > slots:
                break
            inside.append(image)
            slots -= need
        return inside

    @staticmethod
    def _progress(total: int) -> Any:
        if total <= PROGRESS_THRESHOLD:
            return None
        from tqdm.auto import tqdm

        return tqdm(total=total, desc="scoring", unit="candidate")


__all__ = ["FAST_VLMS", "PROMPT_TOO_LONG", "TransformersScorer", "UNSUPPORTED_MODALITY"]
