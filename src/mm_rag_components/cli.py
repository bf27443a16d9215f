"""The ``mm-rag`` command: ingest a folder, query it, or run the demo (both, on embedded Chroma).

Every failure the user can fix is printed as one plain line (exit status 2), never a traceback.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from pathlib import Path
from typing import Sequence

from .errors import MMRagError

DEFAULT_MODEL = "sentence-transformers/clip-ViT-B-32"
DEFAULT_DB = ".mm-rag/chroma"
TINY_LABEL = "[tiny random-weight test model: rankings are NOT meaningful]"


def _say(message: str) -> None:
    print(message, flush=True)


def _tiny_model(db: str) -> str:
    from .testing import build_tiny_clip

    return str(build_tiny_clip(Path(db).parent / "models" / "tiny-clip"))


def _choose_model(args: argparse.Namespace, *, fallback: bool) -> tuple[str, bool]:
    """(model to load, is it a tiny test model). Falls back to a tiny model only when allowed."""
    if args.tiny:
        return _tiny_model(args.db), True
    from .hub import locate_model

    location = locate_model(args.model)
    if location.available:
        return args.model, False
    if not fallback:
        raise SystemExit(_fail(f"model unavailable: {location.reason}. Pass --model DIR (a local model) or --tiny."))
    _say(f"note: {location.reason}; using a tiny random-weight CLIP from mm_rag_components.testing instead "
         "(pass --model DIR for a real model).")
    return _tiny_model(args.db), True


def _fail(message: str) -> int:
    print(f"mm-rag: error: {message}", file=sys.stderr, flush=True)
    return 2


def _index(args: argparse.Namespace, model: str, tiny: bool):
    from .embedders import ClipEmbedder
    from .index import MultimodalIndex

    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()
    collection = args.collection + ("-tiny" if tiny else "")
    return MultimodalIndex(
        None if args.host else args.db,
        host=args.host,
        port=args.port,
        image_embedder=ClipEmbedder(model, batch_size=args.batch_size),
        collection=collection,
        batch_size=args.batch_size,
    )


def _print_hits(candidates, tiny: bool) -> None:
    for rank, c in enumerate(candidates, start=1):
        where = c.image_path if c.modality == "image" else (c.text or "").replace("\n", " ")[:70]
        _say(f"  {rank:>2}. [{c.modality:5}] {c.score:+.3f}  {where}")
    if tiny:
        _say(f"  {TINY_LABEL}")


def _retrieve(index, text: str | None, image: str | None, args: argparse.Namespace):
    from .retrieval import RetrievalOptions, retrieve
    from .types import Query

    options = RetrievalOptions(modalities=args.modalities, top_k=args.top_k)
    return retrieve(index, Query(text=text, image=image), options)


def cmd_ingest(args: argparse.Namespace) -> int:
    model, tiny = _choose_model(args, fallback=False)
    index = _index(args, model, tiny)
    report = index.ingest_folder(args.folder, delete_missing=args.delete_missing)
    _say(report.summary())
    return 0


def cmd_query(args: argparse.Namespace) -> int:
    if not args.text and not args.image:
        return _fail("give query text, --image PATH, or both")
    model, tiny = _choose_model(args, fallback=False)
    result = _retrieve(_index(args, model, tiny), args.text, args.image, args)
    for note in result.notes:
        _say(f"note: {note}")
    _print_hits(result.candidates, tiny)
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    """Index a folder (the COCO sample when present, else drawn shapes) and run example queries."""
    from .testing.data import coco_sample, write_sample_folder

    model, tiny = _choose_model(args, fallback=True)
    coco = None if args.data else coco_sample()
    if args.data:
        folder = Path(args.data)
    elif coco:
        folder = coco[0].path.parent
    else:
        folder = write_sample_folder(Path(args.db).parent / "sample-data")
    _say(f"model: {model}{' ' + TINY_LABEL if tiny else ''}")
    _say(f"store: {'Chroma server ' + args.host if args.host else 'embedded Chroma at ' + args.db}")
    _say(f"ingesting {folder} …")
    index = _index(args, model, tiny)
    _say(index.ingest_folder(folder).summary())
    if coco:
        queries = [(item.captions[0], item.path.name) for item in coco[: args.queries]]
    else:
        queries = [(q, None) for q in ("a red circle", "a blue square", "trains on rails")[: args.queries]]
    found = 0
    for text, expected in queries:
        result = _retrieve(index, text, None, args)
        _say(f"\nquery: {text!r}" + (f"  (its photo: {expected})" if expected else ""))
        _print_hits(result.candidates, tiny)
        found += bool(expected and any(c.image_path and c.image_path.endswith(expected) for c in result.candidates))
    if coco:
        _say(f"\ncaption → photo recall@{args.top_k}: {found}/{len(queries)}" + (f"  {TINY_LABEL}" if tiny else ""))
    first_image = next(iter(sorted(folder.glob("*.jpg")) + sorted(folder.glob("*.png"))), None)
    if first_image is not None:
        result = _retrieve(index, None, str(first_image), args)
        _say(f"\nimage query: {first_image.name}")
        _print_hits(result.candidates[:3], tiny)
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="mm-rag", description=__doc__.splitlines()[0])
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--db", default=DEFAULT_DB, help=f"embedded Chroma directory (default {DEFAULT_DB})")
    common.add_argument("--host", help="use a Chroma server at this host instead of the embedded store")
    common.add_argument("--port", type=int, default=8000, help="Chroma server port (default 8000)")
    common.add_argument("--collection", default="mm_rag")
    common.add_argument("--model", default=DEFAULT_MODEL, help=f"CLIP-style model name or directory (default {DEFAULT_MODEL})")
    common.add_argument("--tiny", action="store_true", help="use a tiny random-weight test model (offline, meaningless scores)")
    common.add_argument("--batch-size", type=int, default=32)
    common.add_argument("--top-k", type=int, default=5)
    common.add_argument("--modalities", nargs="+", default=["image", "text"], choices=["image", "text"])
    common.add_argument("-v", "--verbose", action="store_true")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("ingest", parents=[common], help="ingest a folder of images and texts")
    p.add_argument("folder")
    p.add_argument("--delete-missing", action="store_true", help="remove records whose files are gone")
    p.set_defaults(func=cmd_ingest)

    p = sub.add_parser("query", parents=[common], help="query the index with text and/or an image")
    p.add_argument("text", nargs="?")
    p.add_argument("--image")
    p.set_defaults(func=cmd_query)

    p = sub.add_parser("demo", parents=[common], help="ingest a sample folder and run example queries")
    p.add_argument("--data", help="folder to ingest (default: shared COCO sample if present, else drawn shapes)")
    p.add_argument("--queries", type=int, default=5)
    p.set_defaults(func=cmd_demo)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    os.environ.setdefault("ANONYMIZED_TELEMETRY", "False")
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    for noisy in ("transformers", "sentence_transformers", "httpx", "chromadb"):
        logging.getLogger(noisy).setLevel(logging.ERROR)
    try:
        return args.func(args)
    except MMRagError as exc:
        return _fail(str(exc))
    except KeyboardInterrupt:
        return _fail("interrupted")


if __name__ == "__main__":
    sys.exit(main())
