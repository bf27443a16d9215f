"""The ``mm-rag`` command: ingest a folder, query it, chat over it (terminal or web), evaluate rerankers.

Every failure the user can fix is printed as one plain line on stderr (exit status 2), never a
traceback; arguments and paths are checked before any model loads. ``main(argv)`` returns the
exit status (``--help`` and ``--version`` included), so it can be called in-process. When the
reader of the output goes away (``mm-rag query … --json | head``) the command stops quietly
with status 141, as a tool stopped by SIGPIPE does (128 + 13): the output was cut short, and a
script with ``set -o pipefail`` can tell.

Commands are listed in :data:`COMMANDS`: each names the module holding its ``add_arguments`` and
``cmd`` functions, imported only when that command runs (or when :func:`build_parser` is asked for
every command), so ``mm-rag query`` never imports the evaluation harness. Adding a command is one
:class:`Command` line.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib
import logging
import os
import sys
from collections.abc import Collection
from dataclasses import dataclass
from typing import Sequence

from .. import __version__
from ..errors import MMRagError
from .common import (
    DEFAULT_COLLECTION, DEFAULT_DB, DEFAULT_MODEL, TINY_LABEL, OutputClosed, Parser, UsageError, check_common, fail, write,
)

logger = logging.getLogger(__name__)

#: What ``mm-rag --help`` says first (plain text: help output shows no reStructuredText markup).
DESCRIPTION = ("mm-rag: ingest a folder of images and texts, query it, chat over it (terminal or web), and evaluate or "
               "train rerankers")
#: Exit status when the reader of our output went away: 128 + SIGPIPE, as the shell reports a tool stopped by it.
READER_GONE = 141


@dataclass(frozen=True)
class Command:
    """One subcommand: ``module`` (absolute, or relative to ``mm_rag_components``) holds
    ``add(parser)`` and ``run(args) -> exit status``; ``index_options`` adds (and checks) the shared
    index options (--db, --host, --port, --collection, --model, --tiny, --batch-size, -v); a command
    that searches the index adds the retrieval options (--top-k, --pages, --modalities) itself."""

    name: str
    help: str
    module: str
    add: str
    run: str
    index_options: bool = False

    def load(self) -> tuple:
        module = importlib.import_module(self.module, package="mm_rag_components")
        return getattr(module, self.add), getattr(module, self.run)


COMMANDS: tuple[Command, ...] = (
    Command("ingest", "ingest a folder of images, texts and PDFs", ".cli.index_commands", "add_ingest_arguments", "cmd_ingest", True),
    Command("query", "query the index with text and/or an image; optionally rerank, filter, print JSON",
            ".cli.index_commands", "add_query_arguments", "cmd_query", True),
    Command("demo", "ingest a sample folder and run example queries", ".cli.index_commands", "add_demo_arguments", "cmd_demo", True),
    Command("chat", "ask questions about the index in the terminal: streamed answers citing their sources",
            ".cli.qa_commands", "add_chat_options", "cmd_chat", True),
    Command("serve", "serve the web chat over the index (127.0.0.1 only by default)",
            ".cli.qa_commands", "add_serve_options", "cmd_serve", True),
    Command("eval", "compare retriever, rerankers, fusion and filters on a data set; write a report",
            ".cli.eval_commands", "add_eval_arguments", "cmd_eval"),
    Command("parity", "compare a model server's pointwise scores with the local model's",
            ".cli.parity_commands", "add_parity_arguments", "cmd_parity"),
    Command("train", "train your own yes/no reranker on your pairs or a captioned folder",
            ".cli.train_commands", "add_train_arguments", "cmd_train"),
)


def _index_options() -> argparse.ArgumentParser:
    from .store import add_index_options

    common = Parser(add_help=False)
    add_index_options(common)
    return common


def build_parser(commands: Collection[str] | None = None) -> argparse.ArgumentParser:
    """The ``mm-rag`` parser; only the ``commands`` named get their options (default: all)."""
    parser = Parser(prog="mm-rag", description=DESCRIPTION)
    parser.add_argument("--version", action="version", version=f"mm-rag {__version__}",
                        help="print the version and exit")
    names = ",".join(c.name for c in COMMANDS)
    sub = parser.add_subparsers(dest="command", required=True, metavar=f"{{{names}}}",
                                help="what to do; '%(prog)s COMMAND --help' lists its options")
    common = None
    for command in COMMANDS:
        wanted = commands is None or command.name in commands
        parents = []
        if wanted and command.index_options:
            common = common or _index_options()
            parents = [common]
        p = sub.add_parser(command.name, parents=parents, help=command.help, description=command.help)
        if wanted:
            add, run = command.load()
            add(p)
            p.set_defaults(func=run, _command=command)
    return parser


def _configure_logging(verbose: bool) -> None:
    logging.basicConfig(level=logging.INFO if verbose else logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    os.environ.setdefault("ANONYMIZED_TELEMETRY", "False")
    for noisy in ("transformers", "sentence_transformers", "huggingface_hub", "httpx", "chromadb"):
        logging.getLogger(noisy).setLevel(logging.WARNING if verbose else logging.ERROR)
    # the commands print the ingest report, which lists every skipped input with its reason
    logging.getLogger("mm_rag_components.ingest").setLevel(logging.INFO if verbose else logging.ERROR)


def _progress(verbose: bool) -> contextlib.AbstractContextManager:
    """``-v`` shows every progress bar, model loading included, unless ``MMRAG_PROGRESS=0`` says never."""
    from ..progress import progress_enabled, progress_setting

    return progress_setting(True) if verbose and progress_enabled() is not False else contextlib.nullcontext()


def _stop_writing_stdout() -> None:
    """Point the standard output at the null device, so the interpreter's final flush of what
    could not be written cannot fail again (and print a traceback) at exit."""
    try:
        fd = sys.stdout.fileno()
    except (AttributeError, OSError, ValueError):  # not a real file (e.g. called in-process with a buffer)
        return
    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(devnull, fd)
    finally:
        os.close(devnull)


def main(argv: Sequence[str] | None = None) -> int:
    """Run ``mm-rag`` with ``argv`` (default ``sys.argv[1:]``); returns the exit status."""
    try:
        return _main(argv)
    except (OutputClosed, BrokenPipeError):  # the reader left (`mm-rag query … | head`): stop quietly
        _stop_writing_stdout()
        return READER_GONE


def _main(argv: Sequence[str] | None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    chosen = next((a for a in argv if not a.startswith("-")), None)  # the top level takes no option values
    try:
        args = build_parser({chosen} if chosen is not None else ()).parse_args(argv)
    except UsageError as exc:
        write(sys.stderr, f"mm-rag: error: {' '.join(str(exc).split())}")
        return 2
    except SystemExit as exc:  # --help / --version
        sys.stdout.flush()  # argparse ignores a failed write; what is left in the buffer says whether the reader left
        return exc.code if isinstance(exc.code, int) else 0
    args._argv = argv  # what `mm-rag serve --workers N` hands its workers
    verbose = bool(getattr(args, "verbose", False))
    _configure_logging(verbose)
    try:
        if args._command.index_options:
            check_common(args)
        with _progress(verbose):
            return args.func(args)
    except (OutputClosed, BrokenPipeError):
        raise
    except MMRagError as exc:
        return fail(str(exc))
    except OSError as exc:
        where = f"{exc.filename}: " if exc.filename else ""
        return fail(f"{where}{exc.strerror or exc}")
    except KeyboardInterrupt:
        fail("interrupted")
        return 130
    except Exception as exc:  # noqa: BLE001 - a bug: say so in one line; --verbose shows the traceback
        if verbose:
            logger.exception("unexpected error")
        fail(f"unexpected {type(exc).__name__}: {exc} (a bug in mm-rag; rerun with --verbose for the traceback)")
        return 1


__all__ = ["COMMANDS", "Command", "DEFAULT_COLLECTION", "DEFAULT_DB", "DEFAULT_MODEL", "DESCRIPTION", "READER_GONE", "TINY_LABEL",
           "build_parser", "main"]
