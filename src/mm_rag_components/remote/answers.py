"""From a server's top log-probabilities to yes/no log-odds, and the flags of remote scoring.

``logodds = log Σ p(yes forms) − log Σ p(no forms)`` at the answer position: the local
definition (``z_yes − z_no`` = the log of the ratio of the two probabilities), with the answer
found among the ``k`` most likely tokens the server lists. Forms are either the exact answer
tokens (raw-prompt mode: the tokenizer says which) or every surface variant of the answer words
— case and surrounding white space (``yes``, `` yes``, ``Yes``, ``YES`` …; chat mode, where the
server's template decides the spacing).

When only one answer is listed, the other is less likely than the least likely listed token, so
the log-odds is bounded: ``log p(yes) − min_listed`` is a *lower* bound when only yes is listed,
``min_listed − log p(no)`` an *upper* bound when only no is. The bound is used and the score is
flagged ``partial_answer_logprobs``. When neither is listed the candidate is unscored
(``-inf``, flagged ``no_answer_logprobs``) — never a made-up 0.5.

An answer of the wrong shape (``top_logprobs`` that is not a list, an entry that is not an
object) or with a log-probability that is not one (above 0, ``+inf``, NaN) is the request's
failure (``request_failed``, with why): it never becomes a ``TypeError`` or an infinite log-odds.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from ..scoring.base import PointScore, sigmoid
from .http import RemoteError

#: The request for this candidate failed (HTTP error after retries, timeout, bad JSON …).
REQUEST_FAILED = "request_failed"
#: The answer carries no log-probabilities at all (the server ignored the request for them).
MISSING_LOGPROBS = "missing_logprobs"
#: Neither answer is among the listed top tokens: unscored.
NO_ANSWER_LOGPROBS = "no_answer_logprobs"
#: Only one answer is listed: the log-odds is a bound (see the module docstring).
PARTIAL_ANSWER_LOGPROBS = "partial_answer_logprobs"
#: A rerank endpoint returned no score for this document (or one that is not a number).
MISSING_SCORE = "missing_score"


@dataclass(frozen=True)
class RemotePointScore(PointScore):
    """A :class:`PointScore` with ``detail``: one line saying why it is flagged."""

    detail: str | None = None


def scored(logodds: float, flag: str | None = None, detail: str | None = None) -> RemotePointScore:
    return RemotePointScore(float(logodds), sigmoid(logodds), flag, detail)


def failed(flag: str, detail: str | None) -> RemotePointScore:
    """An unscored candidate: ``-inf`` log-odds (ranked last), its flag and why."""
    return RemotePointScore(-math.inf, 0.0, flag, detail)


def _logsumexp(values: Sequence[float]) -> float:
    top = max(values)
    return top + math.log(sum(math.exp(v - top) for v in values))


def normalise(token: str) -> str:
    return token.strip().casefold()


def answer_score(top: Iterable[tuple[str, float]], yes: Sequence[str], no: Sequence[str], *, exact: bool) -> RemotePointScore:
    """Log-odds from ``(token, logprob)`` pairs; ``yes``/``no``: exact token strings or answer words."""
    listed: dict[str, float] = {}  # a token listed twice (sampled and in the top list) counts once
    for token, value in top:
        logprob = as_float(value)
        if not isinstance(token, str) or logprob is None or logprob == -math.inf:
            continue  # no token, no value, or p = 0
        if not logprob <= _ROUNDING:  # above 0, +inf or NaN: not a log-probability
            return failed(REQUEST_FAILED, f"the server lists {str(value)[:40]} as the log-probability of {token[:40]!r}: not a log-probability")
        listed.setdefault(token, min(logprob, 0.0))
    pairs = list(listed.items())
    if not pairs:
        return failed(MISSING_LOGPROBS, "the answer lists no top log-probabilities")
    if exact:
        yes_set, no_set = set(yes), set(no)
        found_yes = [lp for t, lp in pairs if t in yes_set]
        found_no = [lp for t, lp in pairs if t in no_set]
    else:
        yes_set, no_set = {normalise(w) for w in yes}, {normalise(w) for w in no}
        found_yes = [lp for t, lp in pairs if normalise(t) in yes_set]
        found_no = [lp for t, lp in pairs if normalise(t) in no_set]
    if found_yes and found_no:
        return _bounded(_logsumexp(found_yes) - _logsumexp(found_no))
    floor = min(lp for _, lp in pairs)
    if found_yes:
        return _bounded(_logsumexp(found_yes) - floor, PARTIAL_ANSWER_LOGPROBS, f"no answer absent from the top {len(pairs)}: log-odds is a lower bound")
    if found_no:
        return _bounded(floor - _logsumexp(found_no), PARTIAL_ANSWER_LOGPROBS, f"yes answer absent from the top {len(pairs)}: log-odds is an upper bound")
    return failed(NO_ANSWER_LOGPROBS, f"neither answer among the top {len(pairs)} tokens; ask for more (top_logprobs) if the server allows")


#: Log-probabilities a hair above 0 are float rounding (read as 0); more is not a log-probability.
_ROUNDING = 1e-4


def as_float(value: Any) -> float | None:
    """A JSON number as a float (an integer too large for one as ±inf); ``None`` for anything else."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    try:
        return float(value)
    except OverflowError:
        return math.inf if value > 0 else -math.inf


def _bounded(logodds: float, flag: str | None = None, detail: str | None = None) -> RemotePointScore:
    if not math.isfinite(logodds):  # cannot happen for log-probabilities in [-max float, 0]; kept as a guard
        return failed(REQUEST_FAILED, f"the log-probabilities give log-odds {logodds!r}")
    return scored(logodds, flag, detail)


def _entries(value: Any, where: str) -> list[Any]:
    if value is None:
        return []
    if not isinstance(value, list):
        raise RemoteError(f"{where} is {type(value).__name__}, not a list: {str(value)[:80]!r}")
    return value


def chat_top_logprobs(answer: Any) -> list[tuple[str, float]] | None:
    """``(token, logprob)`` pairs at the first generated position of a chat-completions answer
    (``choices[0].logprobs.content[0]``: the sampled token and its ``top_logprobs``)."""
    try:
        first = answer["choices"][0]["logprobs"]["content"][0]
    except (KeyError, IndexError, TypeError):
        return None
    if first is None:
        return None
    if not isinstance(first, dict):
        raise RemoteError(f"logprobs.content[0] is {type(first).__name__}, not an object")
    pairs = [(first.get("token"), first.get("logprob"))]
    for entry in _entries(first.get("top_logprobs"), "top_logprobs"):
        if not isinstance(entry, dict):
            raise RemoteError(f"a top_logprobs entry is {type(entry).__name__}, not an object: {str(entry)[:80]!r}")
        pairs.append((entry.get("token"), entry.get("logprob")))
    return pairs  # type: ignore[return-value]


def completion_top_logprobs(answer: Any) -> list[tuple[str, float]] | None:
    """The same for a legacy completions answer (``choices[0].logprobs.top_logprobs[0]``, a
    ``{token: logprob}`` mapping, plus the sampled ``tokens[0]``), or one in the chat layout
    (``logprobs.content``: llama.cpp's ``llama-server`` answers ``/completions`` so)."""
    try:
        logprobs = answer["choices"][0]["logprobs"]
        if "top_logprobs" not in logprobs and "content" in logprobs:
            return chat_top_logprobs(answer)
        top = logprobs["top_logprobs"][0]
    except (KeyError, IndexError, TypeError):
        return None
    if top is None:
        return None
    if not isinstance(top, dict):
        raise RemoteError(f"top_logprobs[0] is {type(top).__name__}, not a {{token: logprob}} object: {str(top)[:80]!r}")
    pairs = list(top.items())
    try:
        pairs.append((logprobs["tokens"][0], logprobs["token_logprobs"][0]))
    except (KeyError, IndexError, TypeError):
        pass
    return pairs


_CAP_PATTERNS = (
    re.compile(r"(?:max(?:imum)?(?: allowed)?|<=|at most|less than or equal to|up to|cannot exceed|limit(?: is)?)\D{0,40}?(\d+)", re.I),
)


def logprobs_cap(message: str, requested: int) -> int | None:
    """The top-k cap a server names in its refusal of ``requested`` log-probabilities, if any.

    vLLM: "… greater than max allowed: 20"; OpenAI: "Expected a value <= 20, but got 50";
    only a number below ``requested`` found after words like "max" / "<=" counts.
    """
    if "logprob" not in message.lower():
        return None
    for pattern in _CAP_PATTERNS:
        for match in pattern.finditer(message):
            value = int(match.group(1))
            if 0 < value < requested:
                return value
    return None


__all__ = [
    "MISSING_LOGPROBS",
    "MISSING_SCORE",
    "NO_ANSWER_LOGPROBS",
    "PARTIAL_ANSWER_LOGPROBS",
    "REQUEST_FAILED",
    "RemotePointScore",
    "answer_score",
    "as_float",
    "chat_top_logprobs",
    "completion_top_logprobs",
    "failed",
    "scored",
    "logprobs_cap",
]
