"""Listwise prompt templates, as data.

A template is a :class:`ListwisePrompt`: plain strings with ``str.format`` fields. The prompt
builder (:func:`mm_rag_components.rerank.listwise.build_messages`) lays the user turn out as::

    intro · query header · <query image> · query text · candidate headers with <image> <text> · task

Fields: ``{n}`` (number of candidates in the window), ``{query}`` (query text or a note that the
query is an image), ``{number}`` (a candidate's 1-based number), ``{example}`` (an example
ranking such as ``[2, 1, 3]``) and ``{arrows}`` (the same as ``[2] > [1] > [3]``).
"""

from __future__ import annotations

from dataclasses import dataclass, replace


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

__all__ = ["COT_PROMPT", "DIRECT_PROMPT", "PROMPTS", "ListwisePrompt"]
