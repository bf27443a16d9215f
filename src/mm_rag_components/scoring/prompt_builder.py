"""Pointwise prompts as a model sees them: template → chat messages → chat template text → ids
(a plain-text template, ``chat=False``, skips the chat template; its ``suffix_ids`` end the ids).

One builder serves every consumer of a pointwise prompt — the local scorer, the raw-prompt remote
scorer and training — so they see exactly the same tokens. It also

* neutralises user text: special-token strings (``<image>``, ``<|im_start|>`` …) and the chat
  template's plain-text role markers (LLaVA's ``USER:`` / ``ASSISTANT:``, Idefics3's ``User:``)
  get a zero-width space, so a candidate cannot change the prompt's structure;
* resolves the answer tokens as the chat template really emits them (case, leading space);
* cuts an over-long prompt on the candidate's (neutralised) text, never on the instruction.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from ..errors import ModelError
from .base import TRUNCATED
from .templates import PointwiseTemplate

PROMPT_TOO_LONG = "prompt_too_long"
_ZWSP = "\u200b"
_SENTINEL = "\u2063"  # invisible separator: stands for message content when probing the template
_ROLE_MARKER = re.compile(r"[A-Za-z][A-Za-z_-]{0,24}:")


@dataclass
class Prompt:
    """One (query, candidate) prompt: its text, token ids (image slots expanded), the order of its
    images (``"query"`` / ``"document"``) and a flag (``truncated``, ``prompt_too_long``)."""

    text: str
    ids: list[int]
    images: list[str] = field(default_factory=list)
    flag: str | None = None


class PromptBuilder:
    """Render ``template`` prompts with a tokenizer (and, for VLMs, its processor's chat template).

    ``image_token`` / ``image_expansion``: the placeholder a VLM's processor writes for an image and
    the token ids it expands to by default (``None`` for text-only models). Families whose
    expansion depends on the image (Qwen-VL grids, Idefics3 splitting) pass the ids per image to
    :meth:`tokenize` / :meth:`build` as ``expansions``.
    """

    def __init__(
        self,
        tokenizer: Any,
        template: PointwiseTemplate,
        *,
        processor: Any = None,
        instruction: str | None = None,
        max_length: int | None = None,
        image_token: str | None = None,
        image_expansion: list[int] | None = None,
    ) -> None:
        self.tokenizer = tokenizer
        self.template = template
        self.processor = processor
        self.instruction = instruction
        self.max_length = max_length
        self.image_token = image_token
        self.image_token_id = tokenizer.convert_tokens_to_ids(image_token) if image_token else None
        #: Without a known expansion an image placeholder stays one token (its ids depend on the image).
        self.image_expansion = image_expansion or ([self.image_token_id] if self.image_token_id is not None else [])
        self.multimodal = processor is not None
        if template.chat and self._chat_template() is None:
            raise ModelError("the model has no chat template; pointwise prompts need one")
        specials = set(tokenizer.all_special_tokens) | set(getattr(tokenizer, "additional_special_tokens", None) or [])
        added = getattr(tokenizer, "added_tokens_decoder", None) or {}
        specials |= {str(getattr(t, "content", t)) for t in added.values() if getattr(t, "special", False)}
        if image_token:
            specials.add(image_token)
        self.specials = sorted((s for s in specials if s), key=len, reverse=True)
        self.role_markers = self._find_role_markers() if template.chat else []

    def _chat_template(self) -> Any:
        return getattr(self.processor, "chat_template", None) or getattr(self.tokenizer, "chat_template", None)

    def apply_chat_template(self, messages: list[dict[str, Any]]) -> str:
        """The chat template's text for typed-part messages, generation prompt included."""
        if self.multimodal:
            return self.processor.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
        flat = [{"role": m["role"], "content": "".join(p.get("text", "") for p in m["content"])} for m in messages]
        return self.tokenizer.apply_chat_template(flat, tokenize=False, add_generation_prompt=True)

    def _find_role_markers(self) -> list[str]:
        """Plain-text role labels the chat template writes around content (``USER:`` …)."""
        text = self.apply_chat_template([{"role": "user", "content": [{"type": "text", "text": _SENTINEL}]}])
        for special in self.specials:
            text = text.replace(special, "\n")
        markers = {m.strip() for m in _ROLE_MARKER.findall(text.replace(_SENTINEL, "\n"))}
        return sorted(markers, key=len, reverse=True)

    # text ------------------------------------------------------------------------------------
    def clean(self, text: str | None) -> str | None:
        """Neutralise special-token strings and role markers (idempotent)."""
        if not text:
            return text
        for special in self.specials:
            if special in text:
                text = text.replace(special, special[0] + _ZWSP + special[1:])
        for marker in self.role_markers:
            if marker in text:
                text = text.replace(marker, marker[:-1] + _ZWSP + ":")
        return text

    def render(
        self, query_text: str | None, query_image: bool, document: str | None, document_image: bool
    ) -> tuple[str, list[str]]:
        """The full prompt text for one pair and the order of its images (``query``/``document``)."""
        fields = {"query": self.clean(query_text), "document": self.clean(document), "query_image": query_image,
                  "document_image": document_image, "instruction": self.instruction}
        if not self.template.chat:
            text, order = self.template.text(**fields)
            return text + self.template.answer_prefix, order
        messages, order = self.template.messages(**fields)
        return self.apply_chat_template(messages) + self.template.answer_prefix, order

    def tokenize(self, text: str, expansions: Sequence[Sequence[int]] | None = None) -> list[int]:
        """Token ids of ``text``, each image placeholder expanded to its image slots: the k-th to
        ``expansions[k]`` when given, else to ``image_expansion``."""
        ids = self.tokenizer(text, add_special_tokens=False)["input_ids"]
        if self.image_token_id is None:
            return list(ids)
        out: list[int] = []
        k = 0
        for token in ids:
            if token != self.image_token_id:
                out.append(token)
                continue
            out.extend(expansions[k] if expansions is not None and k < len(expansions) else self.image_expansion)
            k += 1
        return out

    def answer_ids(self) -> tuple[int, int]:
        """The yes/no answer tokens as the model would emit them after this template's prompt."""
        if self.template.head != "yes_no":
            raise ModelError(f"template {self.template.name!r} is scored by the model's own head; it has no yes/no "
                             "answer tokens (a yes/no scorer, a server's log-probabilities or training cannot use it)")
        prompt, _ = self.render("query", False, "document", False)
        base = self.tokenizer(prompt, add_special_tokens=False)["input_ids"]
        prefer_space = not prompt[-1:].isspace()
        resolved = []
        for word in (self.template.yes, self.template.no):
            variants = [" " + word, word] if prefer_space else [word, " " + word]
            found = None
            for variant in variants:
                ids = self.tokenizer(prompt + variant, add_special_tokens=False)["input_ids"]
                if ids[: len(base)] == base and len(ids) == len(base) + 1:
                    found = ids[-1]
                    break
            if found is None:
                raise ModelError(
                    f"the tokenizer has no single token for the answer {word!r} after the prompt of template "
                    f"{self.template.name!r}; choose a template whose answers it has"
                )
            resolved.append(found)
        if resolved[0] == resolved[1]:
            raise ModelError(f"{self.template.yes!r} and {self.template.no!r} map to the same token")
        return resolved[0], resolved[1]

    # prompts ---------------------------------------------------------------------------------
    def build(
        self, query_text: str | None, query_image: bool, document: str | None, document_image: bool,
        *, expansions: Mapping[str, Sequence[int]] | None = None,
    ) -> Prompt:
        """The prompt for one pair, cut on the candidate's text when over ``max_length``.

        ``expansions``: the ids of the ``"query"`` / ``"document"`` image, when they depend on it."""
        text, order = self.render(query_text, query_image, document, document_image)
        ids = self._ids(text, order, expansions)
        if self.max_length is None or len(ids) <= self.max_length:
            return Prompt(text, ids, order)
        return self._truncate(query_text, query_image, self.clean(document) or "", document_image, len(ids), expansions)

    def _ids(self, text: str, order: list[str], expansions: Mapping[str, Sequence[int]] | None) -> list[int]:
        """The prompt's ids: ``text`` tokenized with its images expanded, then the template's suffix ids."""
        labels = None if expansions is None else [expansions[label] for label in order]
        return self.tokenize(text, labels) + list(self.template.suffix_ids)

    def _truncate(
        self, query_text: str | None, query_image: bool, document: str, document_image: bool, length: int,
        expansions: Mapping[str, Sequence[int]] | None = None,
    ) -> Prompt:
        """Shorten the (already neutralised) candidate text until the prompt fits."""
        assert self.max_length is not None
        doc_ids = self.tokenizer(document, add_special_tokens=False)["input_ids"]
        keep = len(doc_ids) - (length - self.max_length) - 2  # margin for re-tokenisation at the cut
        while keep >= 0:
            text, order = self.render(query_text, query_image, self.tokenizer.decode(doc_ids[:keep]), document_image)
            ids = self._ids(text, order, expansions)
            if len(ids) <= self.max_length:
                return Prompt(text, ids, order, TRUNCATED)
            keep -= max(1, len(ids) - self.max_length)
        return Prompt("", [], [], PROMPT_TOO_LONG)


__all__ = ["PROMPT_TOO_LONG", "Prompt", "PromptBuilder"]
