"""What every ``mm-rag`` command shares: output, one-line errors, argument types, path checks.

Every failure the user can fix is one plain line on stderr (exit status 2), never a traceback;
arguments and paths are checked here before any model loads.
"""

from __future__ import annotations

import argparse
import math
import os
import re
import sys
from pathlib import Path
from typing import Callable, NoReturn, TextIO
from urllib.parse import urlsplit

from ..errors import ConfigError

DEFAULT_MODEL = "sentence-transformers/clip-ViT-B-32"
DEFAULT_DB = ".mm-rag/chroma"
#: The collection ``MultimodalIndex`` uses by default; the CLI uses it for every model, tiny included.
DEFAULT_COLLECTION = "mm_rag"
TINY_LABEL = "[tiny random-weight test model: rankings are NOT meaningful]"
INGEST_FIRST = "run 'mm-rag ingest FOLDER' first (same --db and --collection)"

#: Chroma's rule for collection names (3–512 of [A-Za-z0-9._-], alphanumeric at both ends, no "..").
COLLECTION_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{1,505}[A-Za-z0-9]$")


# --------------------------------------------------------------------------- output


class OutputClosed(Exception):
    """The reader of our output went away (``mm-rag query … | head``): stop quietly."""


def write(stream: TextIO, message: str) -> None:
    """Print ``message``; characters the stream cannot encode (e.g. undecodable file names) are
    escaped. A reader that has gone (a broken pipe) raises :class:`OutputClosed`."""
    try:
        try:
            print(message, file=stream, flush=True)
        except UnicodeEncodeError:
            encoding = getattr(stream, "encoding", None) or "utf-8"
            print(message.encode(encoding, "backslashreplace").decode(encoding), file=stream, flush=True)
    except BrokenPipeError:
        raise OutputClosed from None


def say(message: str) -> None:
    write(sys.stdout, message)


def score_text(value: object) -> str:
    """A score for a column: ``+0.731``, or ``  none`` when there is none (never a made-up 0)."""
    if isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value):
        return f"{value:+.3f}"
    return "  none"


def fail(message: str) -> int:
    """Print ``mm-rag: error: message`` as one line on stderr; returns exit status 2."""
    one_line = " ".join(part.strip() for part in str(message).splitlines() if part.strip()) or "failed"
    write(sys.stderr, f"mm-rag: error: {one_line}")
    return 2


# --------------------------------------------------------------------------- argument types


class UsageError(Exception):
    """A bad command line, reported by :func:`~mm_rag_components.cli.main` as one line."""


class Parser(argparse.ArgumentParser):
    """argparse, but a usage error is one line (``mm-rag query: error: ... (see --help)``)."""

    def error(self, message: str) -> NoReturn:
        raise UsageError(f"{message} (see '{self.prog} --help')")


def bounded_int(low: int, high: int) -> Callable[[str], int]:
    """An argparse type: an integer in ``[low, high]``."""

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            shown = repr(text) if len(text) <= 40 else repr(text[:40]) + "…"
            raise argparse.ArgumentTypeError(f"expected an integer from {low} to {high}, got {shown}") from None
        if not low <= value <= high:
            raise argparse.ArgumentTypeError(f"expected an integer from {low} to {high}, got {shown_int(value)}")
        return value

    parse.__name__ = "integer"
    return parse


def positive_seconds(text: str) -> float:
    """An argparse type: a finite number of seconds above 0 (at most a week)."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number of seconds, got {text[:40]!r}") from None
    if not 0.0 < value <= 7 * 24 * 3600.0:
        raise argparse.ArgumentTypeError(f"expected a number of seconds above 0 (at most a week), got {text[:40]!r}")
    return value


def shown_int(value: int) -> str:
    """A huge integer shortened for a message."""
    text = str(value)
    return text if len(text) <= 20 else f"{text[:8]}…({len(text)} digits)"


def collection_name(text: str) -> str:
    if not COLLECTION_NAME.match(text) or ".." in text:
        raise argparse.ArgumentTypeError(
            f"{text[:40]!r}{'…' if len(text) > 40 else ''} is not a valid collection name: use 3-507 of A-Z a-z 0-9 . _ -, "
            "starting and ending with a letter or digit, no '..'"
        )
    return text


def non_empty(text: str) -> str:
    if not text.strip():
        raise argparse.ArgumentTypeError("must not be empty")
    return text


def is_url(text: str) -> bool:
    """True for text that means a server (``http://…`` or ``https://…``)."""
    return text.strip().lower().startswith(("http://", "https://"))


def server_url(option: str, value: str) -> str:
    """``value`` as an ``http(s)`` base URL with a host, or a :class:`ConfigError` saying what is wrong."""
    shown = value if len(value) <= 80 else value[:80] + "…"
    try:
        parts = urlsplit(value.strip())
        parts.port  # noqa: B018 - raises ValueError for a bad port
    except ValueError as exc:
        raise ConfigError(f"{option} {shown}: not a valid URL ({exc})") from None
    if parts.scheme.lower() not in ("http", "https") or not parts.hostname or any(c.isspace() for c in value.strip()):
        raise ConfigError(f"{option} {shown}: not a valid server URL; expected http(s)://HOST[:PORT]/PATH, e.g. http://127.0.0.1:8080/v1")
    return value.strip()


# --------------------------------------------------------------------------- path checks (before any model loads)


def path_of(option: str | None, value: str) -> Path:
    """``value`` as a path (``~`` expanded where it can be); a NUL character is refused."""
    if "\0" in value:
        raise ConfigError(f"{option + ' ' if option else ''}{value!r}: a path cannot contain a NUL character")
    return expand(value)


def expand(value: str) -> Path:
    return Path(os.path.expanduser(value))  # unlike Path.expanduser, never raises for "~nosuchuser"


def _label(option: str | None, value: str) -> str:
    return f"{option} {value}" if option else value


def existing_dir(option: str | None, value: str) -> Path:
    path = path_of(option, value)
    if path.is_dir():
        return path
    if path.exists():
        raise ConfigError(f"{_label(option, value)}: is a file, not a folder")
    raise ConfigError(f"{_label(option, value)}: no such folder")


def existing_file(option: str | None, value: str) -> Path:
    path = path_of(option, value)
    if path.is_file():
        return path
    if path.is_dir():
        raise ConfigError(f"{_label(option, value)}: is a folder, not a file")
    raise ConfigError(f"{_label(option, value)}: no such file")


def creatable_dir(option: str, value: str) -> Path:
    """``value`` is a folder, or can become one: its nearest existing ancestor is a folder."""
    path = path_of(option, value)
    for candidate in (path, *path.absolute().parents):
        if candidate.exists():
            if not candidate.is_dir():
                where = "is a file" if candidate == path else f"{candidate} is a file"
                raise ConfigError(f"{option} {value}: {where}, not a folder")
            return path
    return path


def check_common(args: argparse.Namespace) -> None:
    """Checks of the shared index options (commands with their own options skip them)."""
    if getattr(args, "host", None) is None and getattr(args, "port", None) is not None:
        web = "; the web chat's own port is --http-port" if hasattr(args, "http_port") else ""
        raise ConfigError(f"--port is the Chroma server's port and needs --host HOST (without --host the index is the "
                          f"embedded one at --db){web}")
    if getattr(args, "host", None) is None and getattr(args, "db", None) is not None:
        creatable_dir("--db", args.db)


__all__ = [
    "DEFAULT_COLLECTION", "DEFAULT_DB", "DEFAULT_MODEL", "INGEST_FIRST", "TINY_LABEL", "OutputClosed", "Parser", "UsageError",
    "bounded_int", "check_common", "collection_name", "creatable_dir", "existing_dir", "existing_file", "expand",
    "fail", "is_url", "non_empty", "path_of", "positive_seconds", "say", "server_url", "write",
]
