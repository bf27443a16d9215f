"""The ``mm-rag`` command: ingest a folder, query it, or run the demo (both, on embedded Chroma).

Every failure the user can fix is printed as one plain line on stderr (exit status 2), never a
traceback; arguments and paths are checked before any model loads. ``main(argv)`` returns the
exit status (``--help`` and ``--version`` included), so it can be called in-process.
"""

from __future__ import annotations

import argparse
import logging
import os
import re
import sys
from pathlib import Path
from typing import Any, Callable, NoReturn, Sequence, TextIO

from . import __version__
from .errors import ConfigError, MMRagError, StoreError

DEFAULT_MODEL = "sentence-transformers/clip-ViT-B-32"
DEFAULT_DB = ".mm-rag/chroma"
#: The collection ``MultimodalIndex`` uses by default; the CLI uses it for every model, tiny included.
DEFAULT_COLLECTION = "mm_rag"
TINY_LABEL = "[tiny random-weight test model: rankings are NOT meaningful]"

logger = logging.getLogger(__name__)

#: Chroma's rule for collection names (3–512 of [A-Za-z0-9._-], alphanumeric at both ends, no "..").
_COLLECTION = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{1,505}[A-Za-z0-9]$")
_INGEST_FIRST = "run 'mm-rag ingest FOLDER' first (same --db and --collection)"


# --------------------------------------------------------------------------- output


def _write(stream: TextIO, message: str) -> None:
    """Print ``message``; characters the stream cannot encode (e.g. undecodable file names) are escaped."""
    try:
        print(message, file=stream, flush=True)
    except UnicodeEncodeError:
        encoding = getattr(stream, "encoding", None) or "utf-8"
        print(message.encode(encoding, "backslashreplace").decode(encoding), file=stream, flush=True)


def _say(message: str) -> None:
    _write(sys.stdout, message)


def _fail(message: str) -> int:
    """Print ``mm-rag: error: message`` as one line on stderr; returns exit status 2."""
    one_line = " ".join(part.strip() for part in str(message).splitlines() if part.strip()) or "failed"
    _write(sys.stderr, f"mm-rag: error: {one_line}")
    return 2


# --------------------------------------------------------------------------- argument types


class _UsageError(Exception):
    """A bad command line, reported by :func:`main` as one line."""


class _Parser(argparse.ArgumentParser):
    """argparse, but a usage error is one line (``mm-rag query: error: ... (see --help)``)."""

    def error(self, message: str) -> NoReturn:
        raise _UsageError(f"{message} (see '{self.prog} --help')")


def _bounded_int(low: int, high: int) -> Callable[[str], int]:
    """An argparse type: an integer in ``[low, high]``."""

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            shown = repr(text) if len(text) <= 40 else repr(text[:40]) + "…"
            raise argparse.ArgumentTypeError(f"expected an integer from {low} to {high}, got {shown}") from None
        if not low <= value <= high:
            raise argparse.ArgumentTypeError(f"expected an integer from {low} to {high}, got {_shown_int(value)}")
        return value

    parse.__name__ = "integer"
    return parse


def _shown_int(value: int) -> str:
    """A huge integer shortened for a message."""
    text = str(value)
    return text if len(text) <= 20 else f"{text[:8]}…({len(text)} digits)"


def _collection_name(text: str) -> str:
    if not _COLLECTION.match(text) or ".." in text:
        raise argparse.ArgumentTypeError(
            f"{text[:40]!r}{'…' if len(text) > 40 else ''} is not a valid collection name: use 3-507 of A-Z a-z 0-9 . _ -, "
            "starting and ending with a letter or digit, no '..'"
        )
    return text


def _non_empty(text: str) -> str:
    if not text.strip():
        raise argparse.ArgumentTypeError("must not be empty")
    return text


# --------------------------------------------------------------------------- path checks (before any model loads)


def _path(option: str | None, value: str) -> Path:
    """``value`` as a path (``~`` expanded where it can be); a NUL character is refused."""
    if "\0" in value:
        raise ConfigError(f"{option + ' ' if option else ''}{value!r}: a path cannot contain a NUL character")
    return _expand(value)


def _expand(value: str) -> Path:
    return Path(os.path.expanduser(value))  # unlike Path.expanduser, never raises for "~nosuchuser"


def _label(option: str | None, value: str) -> str:
    return f"{option} {value}" if option else value


def _existing_dir(option: str | None, value: str) -> Path:
    path = _path(option, value)
    if path.is_dir():
        return path
    if path.exists():
        raise ConfigError(f"{_label(option, value)}: is a file, not a folder")
    raise ConfigError(f"{_label(option, value)}: no such folder")


def _existing_file(option: str | None, value: str) -> Path:
    path = _path(option, value)
    if path.is_file():
        return path
    if path.is_dir():
        raise ConfigError(f"{_label(option, value)}: is a folder, not a file")
    raise ConfigError(f"{_label(option, value)}: no such file")


def _creatable_dir(option: str, value: str) -> Path:
    """``value`` is a folder, or can become one: its nearest existing ancestor is a folder."""
    path = _path(option, value)
    for candidate in (path, *path.absolute().parents):
        if candidate.exists():
            if not candidate.is_dir():
                where = "is a file" if candidate == path else f"{candidate} is a file"
                raise ConfigError(f"{option} {value}: {where}, not a folder")
            return path
    return path


def _check_common(args: argparse.Namespace) -> None:
    if args.host is None:
        _creatable_dir("--db", args.db)


# --------------------------------------------------------------------------- models and stores


def _quiet_libraries(verbose: bool) -> None:
    """Weight-loading progress bars and library chatter only with ``--verbose``."""
    from transformers.utils import logging as hf_logging

    if not verbose:
        hf_logging.disable_progress_bar()
    elif os.environ.get("HF_HUB_DISABLE_PROGRESS_BARS", "").strip().lower() not in {"1", "true", "yes", "on"}:
        hf_logging.enable_progress_bar()  # unless the user switched them off for good


def _tiny_model(db: str) -> str:
    from .testing import build_tiny_clip

    return str(build_tiny_clip(_expand(db).parent / "models" / "tiny-clip"))


def _choose_model(args: argparse.Namespace, *, fallback: bool) -> tuple[str, bool]:
    """(model to load, is it a tiny test model). Falls back to a tiny model only when allowed."""
    _quiet_libraries(args.verbose)
    if args.tiny:
        return _tiny_model(args.db), True
    from .hub import locate_model

    location = locate_model(args.model)
    if location.available:
        return args.model, False
    if not fallback:
        raise ConfigError(f"model unavailable: {location.reason}. Pass --model DIR (a local model) or --tiny.")
    _say(f"note: {location.reason}; using a tiny random-weight CLIP from mm_rag_components.testing instead "
         "(pass --model DIR for a real model).")
    return _tiny_model(args.db), True


def _client(args: argparse.Namespace) -> Any:
    from .store import make_client

    return make_client(None if args.host else args.db, host=args.host, port=args.port)


def _where(args: argparse.Namespace) -> str:
    return f"the Chroma server at {args.host}:{args.port}" if args.host else args.db


def _record_counts(client: Any, collection: str) -> dict[str, int | None]:
    """Records per modality collection (``None``: it does not exist), read without creating anything."""
    from chromadb.errors import NotFoundError

    counts: dict[str, int | None] = {}
    for modality, name in (("image", collection), ("text", f"{collection}-text")):
        try:
            counts[modality] = int(client.get_collection(name).count())
        except NotFoundError:
            counts[modality] = None
        except Exception as exc:  # noqa: BLE001 - chromadb/httpx raise many types
            raise StoreError(f"cannot read Chroma collection {name!r}: {' '.join(str(exc).split()) or type(exc).__name__}") from exc
    return counts


def _searchable_modalities(counts: dict[str, int | None], args: argparse.Namespace) -> list[str]:
    """The requested modalities whose collection holds records; refuses when none does."""
    hint = _INGEST_FIRST
    if all(n is None for n in counts.values()):
        raise StoreError(f"no collection {args.collection!r} in {_where(args)}; {hint}")
    usable = [m for m in args.modalities if counts.get(m)]
    if not usable:
        asked = " and ".join(args.modalities)
        raise StoreError(f"collection {args.collection!r} in {_where(args)} holds no {asked} records; {hint}")
    return usable


def _index(args: argparse.Namespace, model: str, client: Any = None) -> Any:
    from .embedders import ClipEmbedder
    from .index import MultimodalIndex

    return MultimodalIndex(
        None if args.host else args.db,
        host=args.host,
        port=args.port,
        client=client,
        image_embedder=ClipEmbedder(model, batch_size=args.batch_size),
        collection=args.collection,
        batch_size=args.batch_size,
    )


def _print_hits(candidates: Sequence[Any], tiny: bool) -> None:
    for rank, c in enumerate(candidates, start=1):
        where = c.image_path if c.modality == "image" else (c.text or "").replace("\n", " ")[:70]
        _say(f"  {rank:>2}. [{c.modality:5}] {c.score:+.3f}  {where}")
    if tiny:
        _say(f"  {TINY_LABEL}")


def _retrieve(index: Any, text: str | None, image: str | None, args: argparse.Namespace,
              modalities: Sequence[str] | None = None) -> Any:
    from .retrieval import RetrievalOptions, retrieve
    from .types import Query

    options = RetrievalOptions(modalities=list(modalities or args.modalities), top_k=args.top_k)
    return retrieve(index, Query(text=text, image=image), options)


# --------------------------------------------------------------------------- commands


def cmd_ingest(args: argparse.Namespace) -> int:
    folder = _existing_dir(None, args.folder)
    model, tiny = _choose_model(args, fallback=False)
    index = _index(args, model)
    report = index.ingest_folder(folder, delete_missing=args.delete_missing)
    _say(report.summary())
    return 0


def cmd_query(args: argparse.Namespace) -> int:
    from .types import Query

    if not args.text and not args.image:
        raise ConfigError("give query text, --image PATH, or both")
    image = str(_existing_file("--image", args.image)) if args.image else None
    Query(text=args.text or None, image=image)  # refuses blank text before anything loads
    if not args.host and not _expand(args.db).is_dir():  # reading creates nothing
        raise StoreError(f"no Chroma database at {args.db}; {_INGEST_FIRST}")
    client = _client(args)
    modalities = _searchable_modalities(_record_counts(client, args.collection), args)
    model, tiny = _choose_model(args, fallback=False)
    result = _retrieve(_index(args, model, client), args.text or None, image, args, modalities)
    for note in result.notes:
        _say(f"note: {note}")
    _print_hits(result.candidates, tiny)
    if not result.candidates:
        _say("no matches")
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    """Index a folder (the COCO sample when present, else drawn shapes) and run example queries."""
    from .testing.data import coco_sample, write_sample_folder

    data = _existing_dir("--data", args.data) if args.data else None
    model, tiny = _choose_model(args, fallback=True)
    coco = None if data else coco_sample()
    if data:
        folder = data
    elif coco:
        folder = coco[0].path.parent
    else:
        folder = write_sample_folder(_expand(args.db).parent / "sample-data")
    _say(f"model: {model}{' ' + TINY_LABEL if tiny else ''}")
    _say(f"store: {'Chroma server ' + args.host if args.host else 'embedded Chroma at ' + args.db} "
         f"(collection {args.collection!r})")
    _say(f"ingesting {folder} …")
    client = _client(args)
    index = _index(args, model, client)
    _say(index.ingest_folder(folder).summary())
    modalities = _searchable_modalities(_record_counts(client, args.collection), args)
    if coco:
        queries = [(item.captions[0], item.path.name) for item in coco[: args.queries]]
    else:
        queries = [(q, None) for q in ("a red circle", "a blue square", "trains on rails")[: args.queries]]
    found = 0
    for text, expected in queries:
        result = _retrieve(index, text, None, args, modalities)
        _say(f"\nquery: {text!r}" + (f"  (its photo: {expected})" if expected else ""))
        _print_hits(result.candidates, tiny)
        found += bool(expected and any(c.image_path and c.image_path.endswith(expected) for c in result.candidates))
    if coco:
        _say(f"\ncaption → photo recall@{args.top_k}: {found}/{len(queries)}" + (f"  {TINY_LABEL}" if tiny else ""))
    first_image = next(iter(sorted(folder.glob("*.jpg")) + sorted(folder.glob("*.png"))), None)
    if first_image is not None:
        result = _retrieve(index, None, str(first_image), args, modalities)
        _say(f"\nimage query: {first_image.name}")
        _print_hits(result.candidates[:3], tiny)
    return 0


# --------------------------------------------------------------------------- parser and entry point


def _common_options() -> argparse.ArgumentParser:
    common = _Parser(add_help=False)
    common.add_argument("--db", default=DEFAULT_DB, metavar="DIR", help=f"embedded Chroma directory (default {DEFAULT_DB})")
    common.add_argument("--host", type=_non_empty, help="use a Chroma server at this host instead of the embedded store")
    common.add_argument("--port", type=_bounded_int(1, 65535), default=8000, help="Chroma server port (default 8000)")
    common.add_argument(
        "--collection", type=_collection_name, default=DEFAULT_COLLECTION, metavar="NAME",
        help=f"collection name; texts go to NAME-text (default {DEFAULT_COLLECTION}, as in MultimodalIndex)",
    )
    common.add_argument("--model", default=DEFAULT_MODEL, metavar="NAME_OR_DIR",
                        help=f"CLIP-style model: hub name or local directory (default {DEFAULT_MODEL})")
    common.add_argument("--tiny", action="store_true",
                        help="use a tiny random-weight test model (offline; scores are meaningless)")
    common.add_argument("--batch-size", type=_bounded_int(1, 4096), default=32, metavar="N",
                        help="images/texts per embedding call and files per ingest window (default 32)")
    common.add_argument("--top-k", type=_bounded_int(1, 10_000), default=5, metavar="K",
                        help="results per modality (default 5)")
    common.add_argument("--modalities", nargs="+", default=["image", "text"], choices=["image", "text"],
                        help="which collections to search (default: image text)")
    common.add_argument("-v", "--verbose", action="store_true",
                        help="log progress, and show library progress bars and warnings")
    return common


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="mm-rag", description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--version", action="version", version=f"mm-rag {__version__}",
                        help="print the version and exit")
    common = _common_options()
    sub = parser.add_subparsers(dest="command", required=True, metavar="{ingest,query,demo}",
                                help="what to do; '%(prog)s COMMAND --help' lists its options")

    p = sub.add_parser("ingest", parents=[common], help="ingest a folder of images and texts")
    p.add_argument("folder", help="folder to ingest (images and .txt/.md files, recursively)")
    p.add_argument("--delete-missing", action="store_true", help="remove records whose files are gone")
    p.set_defaults(func=cmd_ingest)

    p = sub.add_parser("query", parents=[common], help="query the index with text and/or an image")
    p.add_argument("text", nargs="?", help="query text (optional with --image)")
    p.add_argument("--image", metavar="PATH", help="query image file; with text, a composed query")
    p.set_defaults(func=cmd_query)

    p = sub.add_parser("demo", parents=[common], help="ingest a sample folder and run example queries")
    p.add_argument("--data", metavar="DIR",
                   help="folder to ingest (default: shared COCO sample if present, else drawn shapes)")
    p.add_argument("--queries", type=_bounded_int(1, 1000), default=5, metavar="N",
                   help="how many example queries to run (default 5)")
    p.set_defaults(func=cmd_demo)
    return parser


def _configure_logging(verbose: bool) -> None:
    logging.basicConfig(level=logging.INFO if verbose else logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    os.environ.setdefault("ANONYMIZED_TELEMETRY", "False")
    for noisy in ("transformers", "sentence_transformers", "huggingface_hub", "httpx", "chromadb"):
        logging.getLogger(noisy).setLevel(logging.WARNING if verbose else logging.ERROR)


def main(argv: Sequence[str] | None = None) -> int:
    """Run ``mm-rag`` with ``argv`` (default ``sys.argv[1:]``); returns the exit status."""
    try:
        args = build_parser().parse_args(argv)
    except _UsageError as exc:
        _write(sys.stderr, f"mm-rag: error: {' '.join(str(exc).split())}")
        return 2
    except SystemExit as exc:  # --help / --version
        return exc.code if isinstance(exc.code, int) else 0
    _configure_logging(args.verbose)
    try:
        _check_common(args)
        return args.func(args)
    except MMRagError as exc:
        return _fail(str(exc))
    except OSError as exc:
        where = f"{exc.filename}: " if exc.filename else ""
        return _fail(f"{where}{exc.strerror or exc}")
    except KeyboardInterrupt:
        _fail("interrupted")
        return 130
    except Exception as exc:  # noqa: BLE001 - a bug: say so in one line; --verbose shows the traceback
        if args.verbose:
            logger.exception("unexpected error")
        _fail(f"unexpected {type(exc).__name__}: {exc} (a bug in mm-rag; rerun with --verbose for the traceback)")
        return 1


if __name__ == "__main__":
    sys.exit(main())
