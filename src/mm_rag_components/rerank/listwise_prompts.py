"""Listwise prompts: the templates, as data, and the builder that turns a window into chat turns.

A template is a :class:`ListwisePrompt`: plain strings with ``str.format`` fields. The prompt
builder (:func:`build_messages`) lays the user turn out as::

    intro · query header · <query image> · query text · candidate headers with <image> <text> · task

Fields: ``{n}`` (number of candidates in the window), ``{query}`` (query text or a note that the
query is an image), ``{number}`` (a candidate's 1-based number), ``{example}`` (an example
ranking such as ``[2, 1, 3]``) and ``{arrows}`` (the same as ``[2] > [1] > [3]``).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING

from ..generation.base import ChatTurn, Part
from ..generation.context import (  # noqa: F401 - re-exported: the listwise reranker's names for them
    DEFAULT_MAX_IMAGE_PIXELS, FLAG_IMAGE_ERROR, FLAG_IMAGE_NOT_SHOWN, PreparedPrompt, PromptEntry, clip_text, merge_text,
    prepare_entries, resize_to_budget,
)

if TYPE_CHECKING:  # pragma: no cover
    from PIL import Image


@dataclass(frozen=True)
class ListwisePrompt:
    """The strings of a listwise ranking prompt (see the module docstring for the fields)."""

    name: str
    system: str | None
    intro: str
    query_header: str
    candidate_header: str
    task: str
    image_query_text: str = "(the query is the image above)"
    missing_image_text: str = "(image unavailable)"
    unseen_image_text: str = "(an image, not shown: this model reads text only)"
    empty_text: str = "(no text)"

    def with_(self, **changes: str | None) -> "ListwisePrompt":
        """A copy with some strings replaced."""
        return replace(self, **changes)


#: Chain-of-thought ranking in the CoTRR manner: decompose the query, check every candidate
#: against each element, then rank; the answer ends with one line of JSON.
COT_PROMPT = ListwisePrompt(
    name="cot",
    system=(
        "You are a careful relevance judge for a multimodal search engine. You compare images and "
        "texts against a search query and rank them by how well they satisfy it."
    ),
    intro="I will give you a search query and {n} numbered candidates. Each candidate is an image, a text, or both.",
    query_header="Query:",
    candidate_header="Candidate [{number}]:",
    task=(
        "Rank all {n} candidates by relevance to the query. Think step by step:\n"
        "1. Break the query into the elements a relevant result must show or say "
        "(objects, attributes, actions, relations, text).\n"
        "2. For each candidate, check which elements it satisfies and which it misses.\n"
        "3. Rank the candidates from most to least relevant, using those checks.\n"
        "Keep the reasoning short. End your answer with one line of JSON that lists every "
        "candidate number exactly once, most relevant first, for example:\n"
        '{{"ranking": {example}}}'
    ),
)

#: Direct ranking without reasoning, answered in RankGPT's arrow format (cheaper, weaker).
DIRECT_PROMPT = ListwisePrompt(
    name="direct",
    system="You are an intelligent assistant that ranks search results by their relevance to a query.",
    intro="I will give you a search query and {n} numbered candidates. Each candidate is an image, a text, or both.",
    query_header="Query:",
    candidate_header="Candidate [{number}]:",
    task=(
        "Rank all {n} candidates by relevance to the query. Answer only with the ranking, most "
        "relevant first, using the candidate numbers, for example: {arrows}"
    ),
)

PROMPTS: dict[str, ListwisePrompt] = {p.name: p for p in (COT_PROMPT, DIRECT_PROMPT)}


def get_prompt(prompt: str | ListwisePrompt) -> ListwisePrompt:
    """A built-in prompt by name (``cot``, ``direct``), or the user's own prompt unchanged."""
    if isinstance(prompt, ListwisePrompt):
        return prompt
    if isinstance(prompt, str) and prompt in PROMPTS:
        return PROMPTS[prompt]
    from ..errors import ConfigError

    raise ConfigError(f"unknown listwise prompt {prompt!r}; built-ins: {sorted(PROMPTS)}")


def build_messages(
    query_text: str | None,
    query_image: "Image.Image | None",
    entries: Sequence[PromptEntry],
    prompt: ListwisePrompt = COT_PROMPT,
    *,
    max_text_chars: int | None = 1000,
) -> list[ChatTurn]:
    """The chat turns for one window: system (if any) and one interleaved user turn."""
    n = len(entries)
    example = "[<best number>, ..., <worst number>]"
    arrows = "[<best number>] > ... > [<worst number>]"
    notes = {"missing": prompt.missing_image_text, "unseen": prompt.unseen_image_text}
    parts: list[Part] = [prompt.intro.format(n=n), prompt.query_header]
    if query_image is not None:
        parts.append(query_image)
    parts.append(clip_text(query_text, max_text_chars) if query_text else prompt.image_query_text)
    for number, entry in enumerate(entries, start=1):
        parts.append(prompt.candidate_header.format(number=number))
        if entry.image is not None:
            parts.append(entry.image)
        elif entry.image_note is not None:
            parts.append(notes[entry.image_note])
        if entry.text:
            parts.append(clip_text(entry.text, max_text_chars))
        elif entry.image is None:
            parts.append(prompt.empty_text)
    parts.append(prompt.task.format(n=n, example=example, arrows=arrows))
    turns = [ChatTurn("system", (prompt.system,))] if prompt.system else []
    turns.append(ChatTurn("user", tuple(merge_text(parts))))
    return turns


__all__ = [
    "FLAG_IMAGE_ERROR",
    "FLAG_IMAGE_NOT_SHOWN",
    "PreparedPrompt",
    "prepare_entries",
    "merge_text",
    "COT_PROMPT",
    "DEFAULT_MAX_IMAGE_PIXELS",
    "DIRECT_PROMPT",
    "PROMPTS",
    "ListwisePrompt",
    "PromptEntry",
    "build_messages",
    "clip_text",
    "get_prompt",
    "resize_to_budget",
]
