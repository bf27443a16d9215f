"""The index side of the CLI: which embedding model, which Chroma store, what it holds, retrieval.

Commands call these through the module (``store.choose_model(...)``), so tests can replace one.
"""

from __future__ import annotations

import argparse
from typing import Any, Sequence

from ..errors import ConfigError, StoreError
from .common import INGEST_FIRST, TINY_LABEL, expand, say, score_text

#: The Chroma server's port when ``--host`` is given without ``--port``.
DEFAULT_CHROMA_PORT = 8000


def tiny_model(db: str) -> str:
    """A tiny random-weight CLIP beside the database (built once)."""
    from ..testing import build_tiny_clip

    return str(build_tiny_clip(expand(db).parent / "models" / "tiny-clip"))


def choose_model(args: argparse.Namespace, *, fallback: bool) -> tuple[str, bool]:
    """(model to load, is it a tiny test model). Falls back to a tiny model only when allowed."""
    if args.tiny:
        return tiny_model(args.db), True
    from ..hub import locate_model

    location = locate_model(args.model)
    if location.available:
        return args.model, False
    if not fallback:
        raise ConfigError(f"model unavailable: {location.reason}. Pass --model DIR (a local model) or --tiny.")
    say(f"note: {location.reason}; using a tiny random-weight CLIP from mm_rag_components.testing instead "
        "(pass --model DIR for a real model).")
    return tiny_model(args.db), True


def client(args: argparse.Namespace) -> Any:
    from ..chroma_client import make_client

    return make_client(None if args.host else args.db, host=args.host, port=chroma_port(args))


def chroma_port(args: argparse.Namespace) -> int:
    return DEFAULT_CHROMA_PORT if args.port is None else int(args.port)


def where(args: argparse.Namespace) -> str:
    return f"the Chroma server at {args.host}:{chroma_port(args)}" if args.host else args.db


def record_counts(chroma: Any, collection: str) -> dict[str, int | None]:
    """Records per modality collection (``None``: it does not exist), read without creating anything."""
    from chromadb.errors import NotFoundError

    counts: dict[str, int | None] = {}
    for modality, name in (("image", collection), ("text", f"{collection}-text")):
        try:
            counts[modality] = int(chroma.get_collection(name).count())
        except NotFoundError:
            counts[modality] = None
        except Exception as exc:  # noqa: BLE001 - chromadb/httpx raise many types
            raise StoreError(f"cannot read Chroma collection {name!r}: {' '.join(str(exc).split()) or type(exc).__name__}") from exc
    return counts


def searchable_modalities(counts: dict[str, int | None], args: argparse.Namespace) -> list[str]:
    """The requested modalities whose collection holds records; refuses when none does."""
    if all(n is None for n in counts.values()):
        raise StoreError(f"no collection {args.collection!r} in {where(args)}; {INGEST_FIRST}")
    usable = [m for m in args.modalities if counts.get(m)]
    if not usable:
        asked = " and ".join(args.modalities)
        raise StoreError(f"collection {args.collection!r} in {where(args)} holds no {asked} records; {INGEST_FIRST}")
    return usable


def existing_index(args: argparse.Namespace) -> tuple[Any, list[str]]:
    """(Chroma client, searchable modalities) of an index that must already exist; creates nothing."""
    if not args.host and not expand(args.db).is_dir():  # reading creates nothing
        raise StoreError(f"no Chroma database at {args.db}; {INGEST_FIRST}")
    chroma = client(args)
    return chroma, searchable_modalities(record_counts(chroma, args.collection), args)


def index(args: argparse.Namespace, model: str, chroma: Any = None) -> Any:
    from ..embedders import ClipEmbedder
    from ..index import MultimodalIndex

    return MultimodalIndex(
        None if args.host else args.db,
        host=args.host,
        port=chroma_port(args),
        client=chroma,
        image_embedder=ClipEmbedder(model, batch_size=args.batch_size),
        collection=args.collection,
        batch_size=args.batch_size,
        **{key: value for key in ("page_dpi", "max_pages_per_file") if (value := getattr(args, key, None)) is not None},
    )


def shown(c: Any) -> str:
    """How a result is listed: a page by its document and page number (and the start of its
    text), an image by its path, a text by its start."""
    from ..answer import source_label

    text = (c.text or "").replace("\n", " ")
    if c.modality == "image":
        return str(c.image_path)
    if c.modality == "image+text":
        return f"{source_label(c) or c.image_path}: {text[:50]}"
    return text[:70]


def print_hits(candidates: Sequence[Any], tiny: bool) -> None:
    for rank, c in enumerate(candidates, start=1):
        say(f"  {rank:>2}. [{c.modality:5}] {score_text(c.score)}  {shown(c)}")
    if tiny:
        say(f"  {TINY_LABEL}")


def retrieve(idx: Any, text: str | None, image: str | None, args: argparse.Namespace,
             modalities: Sequence[str] | None = None) -> Any:
    from ..retrieval import RetrievalOptions, retrieve as run
    from ..types import Query

    options = RetrievalOptions(modalities=list(modalities or args.modalities), top_k=args.top_k, pages=args.pages)
    return run(idx, Query(text=text, image=image), options)


def add_index_options(parser: argparse.ArgumentParser) -> None:
    """The options every index command shares: store, collection, embedding model, batch size, -v."""
    from .common import DEFAULT_COLLECTION, DEFAULT_DB, DEFAULT_MODEL, bounded_int, collection_name, non_empty

    parser.add_argument("--db", default=DEFAULT_DB, metavar="DIR", help=f"embedded Chroma directory (default {DEFAULT_DB})")
    parser.add_argument("--host", type=non_empty, help="use a Chroma server at this host instead of the embedded store")
    parser.add_argument("--port", type=bounded_int(1, 65535), metavar="PORT",
                        help=f"the Chroma server's port, with --host (default {DEFAULT_CHROMA_PORT})")
    parser.add_argument(
        "--collection", type=collection_name, default=DEFAULT_COLLECTION, metavar="NAME",
        help=f"collection name; texts go to NAME-text (default {DEFAULT_COLLECTION}, as in MultimodalIndex)",
    )
    parser.add_argument("--model", default=DEFAULT_MODEL, metavar="NAME_OR_DIR",
                        help=f"CLIP-style model: hub name or local directory (default {DEFAULT_MODEL})")
    parser.add_argument("--tiny", action="store_true",
                        help="use a tiny random-weight test model (offline; scores are meaningless)")
    parser.add_argument("--batch-size", type=bounded_int(1, 4096), default=32, metavar="N",
                        help="images/texts per embedding call and files per ingest window (default 32)")
    parser.add_argument("-v", "--verbose", action="store_true",
                        help="log progress, and show library progress bars (model loading included) and warnings")


def add_retrieval_options(parser: argparse.ArgumentParser) -> None:
    """The options of the commands that search the index (``query``, ``demo``, ``chat``, ``serve``)."""
    from .common import bounded_int

    parser.add_argument("--top-k", type=bounded_int(1, 10_000), default=5, metavar="K",
                        help="results per modality (default 5)")
    parser.add_argument("--pages", action="store_true",
                        help="one result per document page: its image and its text together (records sharing a page id)")
    parser.add_argument("--modalities", nargs="+", default=["image", "text"], choices=["image", "text"],
                        help="which collections to search (default: image text)")
