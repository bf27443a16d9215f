"""Pointwise prompt formats as data.

A template is a system prompt, a list of user-turn parts and the answer token pair. Parts are
literal text that may contain ``{instruction}``, ``{query}`` and ``{document}``, or one of the
whole-part image slots ``{query_image}`` / ``{document_image}``. Empty parts (no query text, no
candidate image …) are dropped. Put the query parts before the document parts and the scorer
reuses the shared prefix's KV cache across candidates; templates that put the document first
(MonoQwen2-VL) still work, reusing only what precedes the document.

Most rerankers answer yes/no inside the model's chat template (``head="yes_no"``). A reranker
trained with its own scoring head (jina-reranker-m0) reads plain text instead (``chat=False``:
the parts joined, an image written as ``image_text``) followed by token ids of its own
(``suffix_ids``), and is scored by that head (``head="score_head"``, see
:mod:`~mm_rag_components.scoring.heads`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from ..errors import ConfigError

QUERY_IMAGE = "{query_image}"
DOCUMENT_IMAGE = "{document_image}"
_FIELDS = ("{instruction}", "{query}", "{document}")
HEADS = ("yes_no", "score_head")


@dataclass(frozen=True)
class PointwiseTemplate:
    """A yes/no relevance prompt: ``system``, user ``parts``, and the ``yes``/``no`` answer words."""

    name: str
    parts: tuple[str, ...]
    system: str | None = None
    yes: str = "yes"
    no: str = "no"
    instruction: str = ""
    #: Text the assistant turn starts with before the answer (e.g. an empty think block).
    answer_prefix: str = ""
    description: str = field(default="", compare=False)
    #: ``False``: a plain-text prompt (parts joined, no chat template), images written as ``image_text``.
    chat: bool = True
    image_text: str = ""
    #: Token ids appended after the prompt's own (e.g. a score token).
    suffix_ids: tuple[int, ...] = ()
    #: ``yes_no``: p = softmax over the yes/no answer logits; ``score_head``: the model's own head.
    head: str = "yes_no"

    def __post_init__(self) -> None:
        for key in ("name", "yes", "no", "instruction", "answer_prefix", "image_text", "head"):
            if not isinstance(getattr(self, key), str):
                raise ConfigError(f"template {key} must be a string, got {getattr(self, key)!r}")
        if not isinstance(self.chat, bool):
            raise ConfigError(f"template chat must be True or False, got {self.chat!r}")
        if self.head not in HEADS:
            raise ConfigError(f"template {self.name!r}: head must be one of {', '.join(HEADS)}, got {self.head!r}")
        if not isinstance(self.suffix_ids, (list, tuple)) or not all(
                isinstance(i, int) and not isinstance(i, bool) and i >= 0 for i in self.suffix_ids):
            raise ConfigError(f"template {self.name!r}: suffix_ids must be a sequence of token ids (integers >= 0)")
        object.__setattr__(self, "suffix_ids", tuple(self.suffix_ids))
        if not self.chat and not self.image_text and any(p in (QUERY_IMAGE, DOCUMENT_IMAGE) for p in self.parts):
            raise ConfigError(f"template {self.name!r}: a plain-text template (chat=False) with image parts needs image_text")
        if self.system is not None and not isinstance(self.system, str):
            raise ConfigError(f"template system must be a string or None, got {self.system!r}")
        if not isinstance(self.parts, (list, tuple)) or not all(isinstance(p, str) for p in self.parts):
            raise ConfigError(f"template {self.name!r}: parts must be a sequence of strings")
        object.__setattr__(self, "parts", tuple(self.parts))  # lists (e.g. from JSON) become tuples
        if not any("{document}" in p or p == DOCUMENT_IMAGE for p in self.parts):
            raise ConfigError(f"template {self.name!r} has no {{document}} or {DOCUMENT_IMAGE} part")
        if not any("{query}" in p or p == QUERY_IMAGE for p in self.parts):
            raise ConfigError(f"template {self.name!r} has no {{query}} or {QUERY_IMAGE} part")
        if self.yes == self.no:
            raise ConfigError(f"template {self.name!r}: yes and no answers must differ")

    @property
    def document_first(self) -> bool:
        """True when a document part comes before the last query part (no long shared prefix)."""
        doc = min(i for i, p in enumerate(self.parts) if "{document}" in p or p == DOCUMENT_IMAGE)
        query = max(i for i, p in enumerate(self.parts) if "{query}" in p or p == QUERY_IMAGE)
        return doc < query

    def _filled(self, query: str | None, document: str | None, query_image: bool, document_image: bool,
                instruction: str | None) -> list[tuple[str, str]]:
        """The parts in order, filled in: ``("text", text)`` or ``("image", "query" | "document")``;
        empty parts and unused image slots left out."""
        values = {"{instruction}": self.instruction if instruction is None else instruction,
                  "{query}": query or "", "{document}": document or ""}
        out: list[tuple[str, str]] = []
        for part in self.parts:
            if part in (QUERY_IMAGE, DOCUMENT_IMAGE):
                label = "query" if part == QUERY_IMAGE else "document"
                if query_image if label == "query" else document_image:
                    out.append(("image", label))
                continue
            for key in _FIELDS:
                part = part.replace(key, values[key])
            if part:
                out.append(("text", part))
        return out

    def messages(
        self,
        *,
        query: str | None,
        document: str | None,
        query_image: bool,
        document_image: bool,
        instruction: str | None = None,
    ) -> tuple[list[dict[str, Any]], list[str]]:
        """Chat messages (content as typed parts) and the order of images in them.

        The image order is a list of ``"query"`` / ``"document"`` labels, one per image slot used.
        """
        if not self.chat:
            raise ConfigError(f"template {self.name!r} is a plain-text prompt (chat=False), not chat messages")
        filled = self._filled(query, document, query_image, document_image, instruction)
        content = [{"type": "image"} if kind == "image" else {"type": "text", "text": value} for kind, value in filled]
        messages: list[dict[str, Any]] = []
        if self.system:
            messages.append({"role": "system", "content": [{"type": "text", "text": self.system}]})
        messages.append({"role": "user", "content": content})
        return messages, [value for kind, value in filled if kind == "image"]

    def text(
        self,
        *,
        query: str | None,
        document: str | None,
        query_image: bool,
        document_image: bool,
        instruction: str | None = None,
    ) -> tuple[str, list[str]]:
        """A plain-text template's prompt (``chat=False``) and the order of its images."""
        filled = self._filled(query, document, query_image, document_image, instruction)
        text = "".join(self.image_text if kind == "image" else value for kind, value in filled)
        return text, [value for kind, value in filled if kind == "image"]


_QWEN3_JUDGE = (
    'Judge whether the Document meets the requirements based on the Query and the Instruct provided. '
    'Note that the answer can only be "yes" or "no".'
)

QWEN3_VL_RERANKER = PointwiseTemplate(
    name="qwen3-vl-reranker",
    system=_QWEN3_JUDGE,
    parts=("<Instruct>: {instruction}", "<Query>:", QUERY_IMAGE, "{query}", "\n<Document>:", DOCUMENT_IMAGE, "{document}"),
    instruction="Given a search query, retrieve relevant candidates that answer the query.",
    description=(
        "Qwen3-VL-Reranker (also lychee-rerank-mm style): the judge system prompt, then "
        "'<Instruct>: …<Query>:[image]text\\n<Document>:[image]text' as its model card's script builds it; yes/no."
    ),
)

QWEN3_RERANKER = PointwiseTemplate(
    name="qwen3-reranker",
    system=_QWEN3_JUDGE,
    parts=("<Instruct>: {instruction}", "\n<Query>: ", QUERY_IMAGE, "{query}", "\n<Document>: ", DOCUMENT_IMAGE, "{document}"),
    instruction="Given a web search query, retrieve relevant passages that answer the query",
    answer_prefix="<think>\n\n</think>\n\n",
    description="Qwen3-Reranker (text): '<Instruct>: …\\n<Query>: …\\n<Document>: …', an empty think block, yes/no.",
)

MONOQWEN2_VL = PointwiseTemplate(
    name="monoqwen2-vl",
    parts=(
        DOCUMENT_IMAGE,
        "{document}",
        "Assert the relevance of the previous image document to the following query, answer True or False. "
        "The query is: {query}",
    ),
    yes="True",
    no="False",
    description="MonoQwen2-VL: image document first, then the query; True/False.",
)

JINA_RERANKER_M0 = PointwiseTemplate(
    name="jina-reranker-m0",
    parts=("**Document**:\n", DOCUMENT_IMAGE, "{document}", "\n**Query**:\n", QUERY_IMAGE, "{query}"),
    chat=False,
    image_text="<|vision_start|><|image_pad|><|vision_end|>",
    suffix_ids=(100,),
    head="score_head",
    description=(
        "jina-reranker-m0 (JinaVLForRanking): '**Document**:\n[image]text\n**Query**:\n[image]text' as plain text "
        "(no chat template), then its score token (id 100); scored by its own MLP head on the last hidden state."
    ),
)

RETLLM = PointwiseTemplate(
    name="retllm",
    parts=(
        "Query: ",
        QUERY_IMAGE,
        "{query}",
        "\nCandidate: ",
        DOCUMENT_IMAGE,
        "{document}",
        "\nDoes the candidate match the query? Answer True or False.",
    ),
    yes="True",
    no="False",
    description="RetLLM-style: query, candidate, a True/False question.",
)

BUILTIN_TEMPLATES: dict[str, PointwiseTemplate] = {
    t.name: t for t in (QWEN3_VL_RERANKER, QWEN3_RERANKER, MONOQWEN2_VL, JINA_RERANKER_M0, RETLLM)
}
DEFAULT_TEMPLATE = QWEN3_VL_RERANKER.name


def get_template(template: str | PointwiseTemplate) -> PointwiseTemplate:
    """A built-in template by name, or the user's own template unchanged."""
    if isinstance(template, PointwiseTemplate):
        return template
    try:
        return BUILTIN_TEMPLATES[template]
    except KeyError:
        raise ConfigError(f"unknown template {template!r}; built-ins: {sorted(BUILTIN_TEMPLATES)}") from None


__all__ = [
    "BUILTIN_TEMPLATES",
    "DEFAULT_TEMPLATE",
    "DOCUMENT_IMAGE",
    "HEADS",
    "JINA_RERANKER_M0",
    "MONOQWEN2_VL",
    "PointwiseTemplate",
    "QUERY_IMAGE",
    "QWEN3_RERANKER",
    "QWEN3_VL_RERANKER",
    "RETLLM",
    "get_template",
]
