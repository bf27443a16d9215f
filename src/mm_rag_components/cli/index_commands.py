"""``ingest`` a folder, ``query`` the index, run the ``demo`` (both, on embedded Chroma)."""

from __future__ import annotations

import argparse

from ..errors import ConfigError
from . import store
from .common import TINY_LABEL, bounded_int, existing_dir, existing_file, expand, non_empty, path_of, say


def cmd_ingest(args: argparse.Namespace) -> int:
    folder = existing_dir(None, args.folder)
    model, tiny = store.choose_model(args, fallback=False)
    reranker = None
    if args.feature_cache and not args.precompute_reranker:
        raise ConfigError("--feature-cache needs --precompute-reranker MODEL")
    if args.precompute_reranker:
        from ..scoring.transformers_scorer import TransformersScorer

        cache = str(path_of("--feature-cache", args.feature_cache) if args.feature_cache else expand(args.db).parent / "reranker-features")
        reranker = TransformersScorer(args.precompute_reranker, vision_cache_dir=cache)
    index = store.index(args, model)
    report = index.ingest_folder(folder, delete_missing=args.delete_missing, precompute=reranker)
    say(report.summary())
    if reranker is not None:
        say(f"reranker image features: {reranker.features.computed} computed, cached in {cache}; a scorer reads them with "
            f"TransformersScorer({args.precompute_reranker!r}, vision_cache_dir={cache!r})")
    return 0


def _wants_qa(args: argparse.Namespace) -> bool:
    """True when ``query`` reranks, filters or prints JSON (the QA pipeline's path)."""
    return bool(args.rerank != "none" or args.filter or args.json or args.reranker is not None or args.reranker_model is not None)


def cmd_query(args: argparse.Namespace) -> int:
    from ..types import Query

    if not args.text and not args.image:
        raise ConfigError("give query text, --image PATH, or both")
    image = str(existing_file("--image", args.image)) if args.image else None
    Query(text=args.text or None, image=image)  # refuses blank text before anything loads
    if _wants_qa(args):
        from .qa_commands import search_query

        return search_query(args, args.text or None, image)
    chroma, modalities = store.existing_index(args)
    model, tiny = store.choose_model(args, fallback=False)
    result = store.retrieve(store.index(args, model, chroma), args.text or None, image, args, modalities)
    for note in result.notes:
        say(f"note: {note}")
    store.print_hits(result.candidates, tiny)
    if not result.candidates:
        say("no matches")
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    """Index a folder (the COCO sample when present, else drawn shapes) and run example queries."""
    from ..testing.data import coco_sample, write_sample_folder

    data = existing_dir("--data", args.data) if args.data else None
    model, tiny = store.choose_model(args, fallback=True)
    coco = None if data else coco_sample()
    if data:
        folder = data
    elif coco:
        folder = coco[0].path.parent
    else:
        folder = write_sample_folder(expand(args.db).parent / "sample-data")
    say(f"model: {model}{' ' + TINY_LABEL if tiny else ''}")
    say(f"store: {'Chroma server ' + args.host if args.host else 'embedded Chroma at ' + args.db} "
        f"(collection {args.collection!r})")
    say(f"ingesting {folder} …")
    chroma = store.client(args)
    index = store.index(args, model, chroma)
    say(index.ingest_folder(folder).summary())
    modalities = store.searchable_modalities(store.record_counts(chroma, args.collection), args)
    if coco:
        queries = [(item.captions[0], item.path.name) for item in coco[: args.queries]]
    else:
        queries = [(q, None) for q in ("a red circle", "a blue square", "trains on rails")[: args.queries]]
    found = 0
    for text, expected in queries:
        result = store.retrieve(index, text, None, args, modalities)
        say(f"\nquery: {text!r}" + (f"  (its photo: {expected})" if expected else ""))
        store.print_hits(result.candidates, tiny)
        found += bool(expected and any(c.image_path and c.image_path.endswith(expected) for c in result.candidates))
    if coco:
        say(f"\ncaption → photo recall@{args.top_k}: {found}/{len(queries)}" + (f"  {TINY_LABEL}" if tiny else ""))
    first_image = next(iter(sorted(folder.glob("*.jpg")) + sorted(folder.glob("*.png"))), None)
    if first_image is not None:
        result = store.retrieve(index, None, str(first_image), args, modalities)
        say(f"\nimage query: {first_image.name}")
        store.print_hits(result.candidates[:3], tiny)
    return 0


# --------------------------------------------------------------------------- options


def add_ingest_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("folder", help="folder to ingest (images, .txt/.md files and PDFs, recursively)")
    p.add_argument("--page-dpi", type=float, default=None, metavar="DPI",
                   help="resolution of PDF page images (default 100; lowered to stay within the pixel limit)")
    p.add_argument("--max-pages-per-file", type=bounded_int(1, 10_000_000), default=None, metavar="N",
                   help="read at most N pages of one PDF (default 10,000; noted when cut)")
    p.add_argument("--delete-missing", action="store_true", help="remove records whose files are gone")
    p.add_argument("--precompute-reranker", metavar="MODEL", type=non_empty,
                   help="also compute this pointwise reranker's image features (a VLM name or directory), so its "
                        "first query after a restart is warm")
    p.add_argument("--feature-cache", metavar="DIR",
                   help="where --precompute-reranker keeps the features (default: reranker-features beside --db)")


def add_query_arguments(p: argparse.ArgumentParser) -> None:
    from .qa_commands import add_query_options

    p.add_argument("text", nargs="?", help="query text (optional with --image)")
    p.add_argument("--image", metavar="PATH", help="query image file; with text, a composed query")
    store.add_retrieval_options(p)
    add_query_options(p)


def add_demo_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--data", metavar="DIR",
                   help="folder to ingest (default: shared COCO sample if present, else drawn shapes)")
    p.add_argument("--queries", type=bounded_int(1, 1000), default=5, metavar="N",
                   help="how many example queries to run (default 5)")
    store.add_retrieval_options(p)


__all__ = ["add_demo_arguments", "add_ingest_arguments", "add_query_arguments", "cmd_demo", "cmd_ingest", "cmd_query"]
