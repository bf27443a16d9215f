"""A total parser for listwise rankings written by a language model.

Whatever the model writes — a JSON answer after a chain of thought, RankGPT's ``[3] > [1] > [2]``,
a bare list of numbers, truncated JSON, garbage, nothing — :func:`parse_ranking` returns a
permutation of all ``n`` candidates and says how it got there:

``json``
    a ``"ranking": [...]`` list (JSON, a Python dict or ``ranking: [...]``), or a bare JSON list
    of at least two integers;
``arrows``
    a chain of ids joined by ``>`` (RankGPT style), brackets optional;
``digits``
    integers read from the final answer (after the last ``ranking``/``answer`` marker, or on the
    last non-empty line) — this also salvages truncated JSON;
``fallback``
    nothing usable: the input order is returned unchanged.

Ids are deduplicated (first mention wins), ids out of range are dropped, 0- or 1-based numbering
is detected, and candidates the model did not mention are appended in input order.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Literal

from ..errors import ConfigError
from ..validate import integer

ParseStatus = Literal["json", "arrows", "digits", "fallback"]
PARSE_STATUSES: tuple[ParseStatus, ...] = ("json", "arrows", "digits", "fallback")

#: Only the tail of very long outputs is searched for the answer (the answer comes last).
MAX_SCAN_CHARS = 20_000
#: Integers with more digits than this cannot be candidate ids (and are not converted).
_MAX_ID_DIGITS = 6

_KEY_LIST = re.compile(
    r"""["']?\b(?:final[_ ]?)?(?:ranking|ranked|rankings|order|rank)\b["']?\s*[:=]\s*\[""",
    re.IGNORECASE,
)
_ID = r"(?:\[\s*\d{1,6}\s*\]|\b\d{1,6}\b)"
_ARROWS = re.compile(rf"{_ID}(?:\s*(?:>|≻|»)\s*{_ID})+")
_BARE_LIST = re.compile(r"\[\s*-?\d{1,6}(?:\s*,\s*-?\d{1,6})+\s*,?\s*\]")
_MARKER = re.compile(r"\b(?:final\s+ranking|ranking|ranked|final\s+answer|answer|order)\b", re.IGNORECASE)
_INT = re.compile(r"-?\d+")
# what precedes an answer and is not reasoning: an opening brace, a code fence, a label
_TRAILING_JUNK = re.compile(r"(?:```(?:json)?|[{\s*:]|\b(?:final\s+)?answer\b)+$", re.IGNORECASE)

_Found = tuple[list[int], int, ParseStatus]


@dataclass(frozen=True)
class ParsedRanking:
    """The result of :func:`parse_ranking`.

    ``order`` is a 0-based permutation of ``range(n)``, best first. ``mentioned`` counts the
    valid, distinct ids the model gave; ``dropped`` the duplicates and out-of-range ids ignored.
    ``index_base`` is the numbering the ids were read in (``None`` for a fallback).
    ``rationale`` is the text before the answer (the reasoning), stripped.
    """

    order: list[int]
    status: ParseStatus
    rationale: str
    mentioned: int = 0
    dropped: int = 0
    index_base: int | None = None

    @property
    def complete(self) -> bool:
        """True when the model itself ranked every candidate (nothing was appended)."""
        return self.status != "fallback" and self.mentioned == len(self.order)


def parse_ranking(text: object, n: int, *, index_base: int | None = None) -> ParsedRanking:
    """Read a ranking of ``n`` candidates from ``text``; never raises for any ``text``.

    ``index_base`` forces 0- or 1-based ids; ``None`` detects it (1-based, the numbering our
    prompts use, unless the ids contain 0 and not ``n``).
    """
    integer("n", n, minimum=0)
    if index_base not in (None, 0, 1):
        raise ConfigError(f"index_base must be 0, 1 or None, got {index_base!r}")
    if not isinstance(text, str):
        try:
            text = "" if text is None else str(text)
        except Exception:  # noqa: BLE001 - an unprintable object is no answer at all
            text = ""
    scan_offset = max(0, len(text) - MAX_SCAN_CHARS)
    tail = text[scan_offset:]
    for finder in (_find_key_list, _find_arrows, _find_bare_list, _find_digits):
        found = finder(tail)
        if found is None:
            continue
        raw_ids, start, status = found
        parsed = _to_permutation(raw_ids, n, index_base)
        if parsed is None:
            continue
        order, mentioned, dropped, base = parsed
        rationale = _clean_rationale(text[: scan_offset + start])
        return ParsedRanking(order, status, rationale, mentioned, dropped, base)
    return ParsedRanking(list(range(n)), "fallback", text.strip(), 0, 0, None)


def _clean_rationale(prefix: str) -> str:
    """The reasoning before an answer, without the fence/brace/label that opens the answer."""
    prefix = prefix.rstrip()
    head, end = prefix[:-200], prefix[-200:]  # bounded regex work on adversarial input
    return (head + _TRAILING_JUNK.sub("", end)).strip()


def _find_key_list(text: str) -> _Found | None:
    """Ids of the last ``ranking: [...]`` list with ids; an unclosed (truncated) one is ``digits``."""
    matches = list(_KEY_LIST.finditer(text))
    for match in reversed(matches[-20:]):  # the answer is among the last few
        if _ARROWS.match(text, match.end() - 1):  # "Ranking: [2] > [1]" is RankGPT's format
            continue
        body, closed = _list_body(text, match.end())
        ids = _ints(body)
        if ids:
            return ids, match.start(), "json" if closed else "digits"
    return None


def _list_body(text: str, start: int, limit: int = 4000) -> tuple[str, bool]:
    """Text of a list opened just before ``start``, up to its matching ``]`` (or the cut-off)."""
    depth = 1
    end = min(len(text), start + limit)
    for pos in range(start, end):
        char = text[pos]
        if char == "[":
            depth += 1
        elif char == "]":
            depth -= 1
            if depth == 0:
                return text[start:pos], True
    return text[start:end], False


def _find_arrows(text: str) -> _Found | None:
    match = None
    for match in _ARROWS.finditer(text):
        pass
    if match is None:
        return None
    return _ints(match.group(0)), match.start(), "arrows"


def _find_bare_list(text: str) -> _Found | None:
    match = None
    for match in _BARE_LIST.finditer(text):
        pass
    if match is None:
        return None
    return _ints(match.group(0)), match.start(), "json"


def _find_digits(text: str) -> _Found | None:
    marker = None
    for marker in _MARKER.finditer(text):
        pass
    if marker is not None:
        ids = _ints(text[marker.end() :])
        if ids:
            return ids, marker.start(), "digits"
    stripped = text.rstrip()
    start = stripped.rfind("\n") + 1
    ids = _ints(stripped[start:])
    return (ids, start, "digits") if ids else None


def _ints(text: str) -> list[int]:
    """Integers in ``text`` (signed; absurdly long digit runs become ``-1``, i.e. invalid)."""
    out: list[int] = []
    for token in _INT.findall(text):
        digits = token.lstrip("-")
        if len(digits) > _MAX_ID_DIGITS:
            out.append(-1)
        else:
            out.append(int(token))
    return out


def _to_permutation(
    raw_ids: list[int], n: int, index_base: int | None
) -> tuple[list[int], int, int, int] | None:
    """Map raw ids to a full permutation, or ``None`` when no id is valid."""
    if not raw_ids:
        return None
    base = index_base
    if base is None:
        base = 0 if (0 in raw_ids and n not in raw_ids) else 1
    seen: set[int] = set()
    order: list[int] = []
    dropped = 0
    for raw in raw_ids:
        idx = raw - base
        if 0 <= idx < n and idx not in seen:
            seen.add(idx)
            order.append(idx)
        else:
            dropped += 1
    if not order:
        return None
    mentioned = len(order)
    order.extend(i for i in range(n) if i not in seen)
    return order, mentioned, dropped, base


__all__ = ["PARSE_STATUSES", "ParseStatus", "ParsedRanking", "parse_ranking"]
