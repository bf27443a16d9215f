"""The terminal chat: ask questions over an index, see the answer stream in, then its sources.

Commands: ``/image PATH`` attaches an image to the next question,
``/reset`` starts a new conversation, ``/quit`` (or end of input) leaves. A failing question prints
one line and the chat goes on.
"""

from __future__ import annotations

import os
import shlex
from pathlib import Path
from typing import IO

from ..answer import source_label
from ..errors import MMRagError
from .pipeline import Conversation, QATurn

HELP = "commands: /image PATH (attach an image to the next question), /reset, /quit"


def describe_sources(turn: QATurn) -> list[str]:
    """Lines listing the kept sources (numbered, cited ones starred; a document page by its
    document name and page number) and the drops by reason."""
    cited = set(turn.answer.cited) if turn.answer is not None else set()
    lines = []
    for number, source in enumerate(turn.kept, start=1):
        meta = source.metadata
        where = source_label(source) or (source.text or "").replace("\n", " ")[:60]  # "report.pdf, p. 7" for a page
        rerank = meta.get("rerank_score")
        scores = f"retrieval {_num(meta.get('retrieval_score', source.score))}" + (f"  rerank {_num(rerank)}" if rerank is not None else "")
        lines.append(f"  {'*' if number in cited else ' '}[{number}] {source.modality:5} {scores}  {where}")
    if turn.dropped:
        reasons: dict[str, int] = {}
        for dropped in turn.dropped:
            reasons[dropped.reason] = reasons.get(dropped.reason, 0) + 1
        lines.append("  filtered out: " + ", ".join(f"{reason}={count}" for reason, count in reasons.items()))
    return lines


def _num(value: object) -> str:
    return f"{value:.3f}" if isinstance(value, (int, float)) else "–"


def run_chat(conversation: Conversation, stdin: IO[str], stdout: IO[str], *, prompt: str = "you> ") -> int:
    """Chat until ``/quit`` or end of input; returns the number of questions answered."""
    image: str | None = None
    answered = 0
    print(HELP, file=stdout, flush=True)
    while True:
        print(prompt, end="", file=stdout, flush=True)
        line = stdin.readline()
        if not line:
            print(file=stdout)
            return answered
        text = line.strip()
        if not text:
            continue
        if text in ("/quit", "/exit"):
            return answered
        if text == "/reset":
            conversation.reset()
            image = None
            print("(new conversation)", file=stdout, flush=True)
            continue
        if text.startswith("/image"):
            image = _image_path(text, stdout)
            continue
        if text.startswith("/"):
            print(f"unknown command {text.split()[0]!r}; {HELP}", file=stdout, flush=True)
            continue
        answered += _ask(conversation, text, image, stdout)
        image = None


def _image_path(command: str, stdout: IO[str]) -> str | None:
    try:
        parts = shlex.split(command)
    except ValueError as exc:
        print(f"error: {exc}", file=stdout, flush=True)
        return None
    if len(parts) != 2:
        print("error: /image needs the path of one image file (quote a path with spaces)", file=stdout, flush=True)
        return None
    path = Path(os.path.expanduser(parts[1]))  # unlike Path.expanduser, never raises for "~nosuchuser"
    problem = None if path.is_file() else "is a folder, not a file" if path.is_dir() else "no such file"
    if problem:
        print(f"error: /image {parts[1]}: {problem}; nothing attached", file=stdout, flush=True)
        return None
    print(f"(image attached: {parts[1]})", file=stdout, flush=True)
    return str(path)


def _ask(conversation: Conversation, text: str, image: str | None, stdout: IO[str]) -> int:
    try:
        turn, pieces = conversation.ask_stream(text, image)
        print("assistant> ", end="", file=stdout, flush=True)
        for piece in pieces:
            print(piece, end="", file=stdout, flush=True)
        print(file=stdout)
    except MMRagError as exc:
        print(f"\nerror: {exc}", file=stdout, flush=True)
        return 0
    for line in describe_sources(turn):
        print(line, file=stdout)
    if turn.answer is not None and turn.answer.flag not in (None, "no_context"):
        print(f"  ({turn.answer.flag}: {turn.answer.error})", file=stdout)
    stdout.flush()
    return 1


__all__ = ["HELP", "describe_sources", "run_chat"]
