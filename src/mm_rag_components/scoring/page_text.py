"""The text a scorer shows for a mixed (page) candidate: its page text cut to a token budget.

A page's image already costs hundreds to thousands of tokens, and its text layer can be long
(a dense page is 600–900 tokens), so a mixed candidate's text is cut to ``page_text_tokens``
(default :data:`PAGE_TEXT_TOKENS`) — the first tokens of the page, which hold its title and
opening. With a tokenizer (local scorers, raw-prompt servers) the cut is exact in that
tokenizer's tokens; without one (chat and rerank servers) it is estimated at
:data:`CHARS_PER_TOKEN` characters per token, at a word boundary. A cut candidate is flagged
``truncated``. Texts of plain text and image candidates are never cut here.
"""

from __future__ import annotations

from typing import Any

from ..types import MIXED, Candidate
from ..validate import positive_int
from .base import TRUNCATED

#: Default budget (tokens) for a mixed candidate's page text.
PAGE_TEXT_TOKENS = 1024
#: Characters per token when no tokenizer is at hand (English prose averages about four).
CHARS_PER_TOKEN = 4


def check_budget(value: Any) -> int | None:
    """``page_text_tokens`` checked: a positive integer, or ``None`` (no cut)."""
    return positive_int("page_text_tokens", value, optional=True)


def page_text(candidate: Candidate, budget: int | None, tokenizer: Any = None) -> tuple[str | None, str | None]:
    """``candidate``'s text as a scorer shows it, and ``"truncated"`` when it was cut.

    Only mixed candidates are cut, to ``budget`` tokens of ``tokenizer`` (or its estimate in
    characters without one); other candidates' text is returned unchanged."""
    text = candidate.text
    if candidate.modality != MIXED or not text or budget is None:
        return text, None
    cut = _cut_tokens(text, budget, tokenizer) if tokenizer is not None else _cut_chars(text, budget * CHARS_PER_TOKEN)
    return (text, None) if cut is None else (cut, TRUNCATED)


def _cut_tokens(text: str, budget: int, tokenizer: Any) -> str | None:
    """The first ``budget`` tokens of ``text`` (the original characters when the tokenizer gives
    offsets), or ``None`` when it fits."""
    if len(text) <= budget:  # no tokenizer makes more tokens than characters
        return None
    fast = bool(getattr(tokenizer, "is_fast", False))
    encoded = tokenizer(text, add_special_tokens=False, return_offsets_mapping=fast)
    ids = encoded["input_ids"]
    if len(ids) <= budget:
        return None
    if fast:
        return text[: encoded["offset_mapping"][budget - 1][1]]
    return str(tokenizer.decode(ids[:budget]))


def _cut_chars(text: str, limit: int) -> str | None:
    """``text`` cut to at most ``limit`` characters at a word boundary, or ``None`` when it fits."""
    if len(text) <= limit:
        return None
    head = text[:limit]
    space = head.rfind(" ")
    return head[:space] if space > limit // 2 else head


__all__ = ["CHARS_PER_TOKEN", "PAGE_TEXT_TOKENS", "check_budget", "page_text"]
