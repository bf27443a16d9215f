"""``mm-rag eval DATASET``: compare retriever, pointwise, fusion, listwise and filters on a data set
and write ``report.json``, ``report.md`` and ``report.png``.

DATASET is a captioned folder (``captions.jsonl`` + images, e.g. coco-cc-51; ``--task`` picks
text2image, image2text or caption2caption) or a qrels folder (queries.jsonl, corpus.jsonl,
qrels.jsonl or TREC qrels.txt). Every model is a hub name or a local directory; the pointwise
reranker may also be a GGUF file (``--gguf``, dequantised once through transformers). ``--tiny``
uses tiny random-weight models (offline smoke test; without DATASET it draws a small one).
Exit status 0 on success, 2 on a usage, data or model error (one plain line on stderr).
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from ..errors import ConfigError, MMRagError

TINY_NOTE = "tiny random-weight test models: rankings are NOT meaningful"
DEFAULT_OUT = ".mm-rag/eval"
DEFAULT_CLIP = "sentence-transformers/clip-ViT-B-32"


def add_eval_arguments(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    """The options of ``mm-rag eval`` (for wiring into the main CLI)."""
    parser.add_argument("dataset", nargs="?", metavar="DATASET", help="captioned folder or qrels folder (optional with --tiny)")
    parser.add_argument("--task", choices=["caption2caption", "text2image", "image2text", "qrels"],
                        help="task of a captioned folder (default caption2caption); qrels folders have one task")
    models = parser.add_argument_group("models (hub name or local directory)")
    models.add_argument("--embedder", metavar="NAME_OR_DIR",
                        help=f"retriever embedder (default: all-MiniLM-L6-v2 for text tasks, {DEFAULT_CLIP} with images)")
    rerank = models.add_mutually_exclusive_group()
    rerank.add_argument("--reranker", metavar="MODEL_OR_DIR", help="pointwise reranker: a chat VLM or causal LM")
    rerank.add_argument("--gguf", metavar="FILE", help="pointwise reranker from a GGUF file (dequantised through transformers)")
    models.add_argument("--template", action="append", metavar="NAME",
                        help="pointwise template (repeat to compare several; default qwen3-vl-reranker)")
    models.add_argument("--listwise", metavar="MODEL_DIR_OR_GGUF", help="also run a listwise reranker (slow; held-out queries only)")
    models.add_argument("--listwise-max-new-tokens", type=int, default=256, metavar="N", help="listwise answer length (default 256)")
    models.add_argument("--listwise-window", type=int, default=10, metavar="N", help="listwise window size (default 10, step half of it)")
    models.add_argument("--device", default=None, help="torch device for the rerankers (default: cpu / the scorer's choice)")
    models.add_argument("--batch-size", type=int, default=8, metavar="N", help="pointwise candidates per forward pass (default 8)")
    run = parser.add_argument_group("run")
    run.add_argument("--depth", "--top-n", dest="depth", type=int, default=20, metavar="N",
                     help="candidates retrieved per query, shared by all systems (default 20; --top-n is its former name)")
    run.add_argument("--tune-fraction", type=float, default=0.5, metavar="F", help="share of items used to tune (default 0.5)")
    run.add_argument("--seed", type=int, default=0, help="seed of the item split (default 0)")
    run.add_argument("--max-items", type=int, metavar="N", help="use the queries of at most N items (seeded)")
    run.add_argument("--tune-metric", default="ndcg@10", metavar="METRIC", help="metric the fusion weight is tuned for (default ndcg@10)")
    run.add_argument("--fusion-weight", type=float, metavar="W", help="fixed fusion weight instead of tuning it")
    run.add_argument("--no-fusion", action="store_true", help="leave the fusion system out")
    run.add_argument("--filter-threshold", type=float, metavar="T", help="fixed filter threshold instead of tuning it")
    run.add_argument("--filter-min-keep", type=int, default=0, metavar="K", help="filters always keep the best K (default 0)")
    run.add_argument("--no-filter", action="store_true", help="leave the filter systems out")
    run.add_argument("--db", metavar="DIR", help="keep the evaluation index in this Chroma folder (default: a temporary one)")
    run.add_argument("--out", default=DEFAULT_OUT, metavar="DIR", help=f"where report.json/.md/.png go (default {DEFAULT_OUT})")
    run.add_argument("--tiny", action="store_true", help="tiny random-weight models for every role (offline smoke test)")
    run.add_argument("--json", action="store_true", help="print the JSON report instead of the Markdown table")
    run.add_argument("-v", "--verbose", action="store_true", help="progress bars and library logs")
    return parser


def cmd_eval(args: argparse.Namespace) -> int:
    """Run ``mm-rag eval`` for parsed ``args``; returns the exit status (errors: one line, 2)."""
    try:
        return _run(args)
    except (MMRagError, OSError) as exc:
        where = f"{exc.filename}: " if isinstance(exc, OSError) and exc.filename else ""
        detail = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
        print(f"mm-rag: error: {where}{' '.join(detail.split()) or type(exc).__name__}", file=sys.stderr)
        return 2


def _run(args: argparse.Namespace) -> int:
    from ..datasets.loading import load_dataset
    from ..eval.harness import evaluate

    _check(args)
    out = Path(args.out).expanduser()
    if args.dataset is None:
        if not args.tiny:
            raise ConfigError("give DATASET (a captioned or qrels folder), or --tiny for a drawn sample")
        from ..testing.captions import write_captioned_folder

        dataset: Path = write_captioned_folder(out / "tiny-data", colours=2, captions_per_image=2)
    else:
        dataset = Path(args.dataset).expanduser()
    task = load_dataset(dataset, args.task).limited(args.max_items, args.seed)
    embedder, pointwise, listwise = _models(args, task, out)
    filtering: Any = False if args.no_filter else {"min_keep": args.filter_min_keep}
    if filtering and args.filter_threshold is not None:
        filtering["threshold"] = args.filter_threshold
    report = evaluate(
        task, embedder, pointwise=pointwise, listwise=listwise, depth=args.depth,
        tune_fraction=args.tune_fraction, seed=args.seed,
        fusion=False if args.no_fusion else (args.fusion_weight if args.fusion_weight is not None else True),
        filtering=filtering, tune_metric=args.tune_metric, db_path=args.db, progress=args.verbose,
    )
    if args.tiny:
        report.notes.insert(0, TINY_NOTE)
    paths = report.save(out)
    print(report.to_json() if args.json else report.to_markdown())
    print(f"wrote {paths['json']}, {paths['markdown']}, {paths['png']}", file=sys.stderr)
    return 0


def _check(args: argparse.Namespace) -> None:
    """Argument checks that need no model."""
    from ..scoring.templates import get_template

    for name, value, low in (("--depth", args.depth, 1), ("--batch-size", args.batch_size, 1),
                             ("--listwise-max-new-tokens", args.listwise_max_new_tokens, 1),
                             ("--listwise-window", args.listwise_window, 2), ("--filter-min-keep", args.filter_min_keep, 0)):
        if value < low:
            raise ConfigError(f"{name} must be >= {low}, got {value}")
    if args.max_items is not None and args.max_items < 1:
        raise ConfigError(f"--max-items must be >= 1, got {args.max_items}")
    if args.fusion_weight is not None and not args.fusion_weight >= 0:
        raise ConfigError(f"--fusion-weight must be >= 0, got {args.fusion_weight}")
    for template in args.template or []:
        get_template(template)
    if args.template and not (args.reranker or args.gguf or args.tiny):
        raise ConfigError("--template needs a pointwise reranker: --reranker MODEL_OR_DIR, --gguf FILE or --tiny")
    for option, value in (("--gguf", args.gguf), ("--listwise", args.listwise if args.listwise and args.listwise.endswith(".gguf") else None)):
        if value and not Path(value).expanduser().is_file():
            raise ConfigError(f"{option} {value}: no such file")
    out = Path(args.out).expanduser()
    for parent in (out, *out.absolute().parents):
        if parent.exists():
            if not parent.is_dir():
                raise ConfigError(f"--out {args.out}: {parent} is a file, not a folder")
            break


def _models(args: argparse.Namespace, task: Any, out: Path) -> tuple[Any, Any, Any]:
    """(embedder, a PointwiseRanker / ``{template: PointwiseRanker}`` / None, a ListwiseRanker or None)."""
    from ..embedders import ClipEmbedder, TextEmbedder
    from ..rerank.listwise import ListwiseRanker
    from ..rerank.pointwise import PointwiseRanker

    _quiet(args.verbose)
    images = task.needs_images
    if args.tiny:
        from ..testing import build_tiny_causal_lm, build_tiny_clip, build_tiny_idefics3, build_tiny_text_embedder

        root = out / "tiny-models"
        embedder: Any = ClipEmbedder(build_tiny_clip(root / "clip")) if images else TextEmbedder(build_tiny_text_embedder(root / "text"))
        reranker = str(build_tiny_idefics3(root / "idefics3") if images else build_tiny_causal_lm(root / "causal"))
        listwise_model: str | None = reranker
    else:
        cls = ClipEmbedder if images else TextEmbedder
        embedder = cls(args.embedder) if args.embedder else (ClipEmbedder(DEFAULT_CLIP) if images else TextEmbedder())
        reranker = _model_dir(args.gguf) if args.gguf else args.reranker
        listwise_model = _model_dir(args.listwise) if args.listwise and args.listwise.endswith(".gguf") else args.listwise
    rankers: dict[str, Any] = {}
    if reranker:
        options: dict[str, Any] = {"batch_size": args.batch_size, **({"device": args.device} if args.device else {})}
        for template in args.template or [None]:
            rankers[template or "default"] = PointwiseRanker.create(reranker, **options, **({"template": template} if template else {}))
    pointwise = next(iter(rankers.values())) if len(rankers) == 1 else rankers or None
    listwise = None
    if listwise_model:
        tokens = min(args.listwise_max_new_tokens, 16) if args.tiny else args.listwise_max_new_tokens
        listwise = ListwiseRanker.create(
            listwise_model, max_new_tokens=tokens, window_size=args.listwise_window,
            step=max(1, args.listwise_window // 2), device=args.device or "cpu",
        )
    return embedder, pointwise, listwise


def _model_dir(gguf: str) -> str:
    from ..remote.gguf import dequantised_model_dir

    return str(dequantised_model_dir(Path(gguf).expanduser()))


def _quiet(verbose: bool) -> None:
    level = logging.INFO if verbose else logging.ERROR
    # per-window listwise warnings are summed up in the report's notes
    for noisy in ("transformers", "sentence_transformers", "huggingface_hub", "httpx", "chromadb", "mm_rag_components.rerank.listwise"):
        logging.getLogger(noisy).setLevel(level)
    # model loading is quiet already (progress.quiet_loading); transformers' own switch is left alone,
    # so a later command in the same process (-v) still shows what it asks for


def run(argv: Sequence[str] | None = None) -> int:
    """``mm-rag eval ARGS`` (``python -m mm_rag_components.cli.eval_commands``); usage errors exit 2."""
    from . import main

    return main(["eval", *(sys.argv[1:] if argv is None else argv)])


if __name__ == "__main__":
    sys.exit(run())


__all__ = ["add_eval_arguments", "cmd_eval", "run"]
