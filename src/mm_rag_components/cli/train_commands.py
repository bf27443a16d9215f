"""``mm-rag train DATA --model M --out DIR``: fine-tune a yes/no reranker on your data.

DATA is a captioned folder (``captions.jsonl`` + images; hard negatives mined with the retriever)
or a JSONL of pairs (``query``/``query_image``, ``candidate``/``candidate_image``, ``label``,
``group``). The result loads with ``TransformersScorer(DIR)`` / ``PointwiseRanker.create(DIR)``.
Exit status 0 on success, 2 on a usage, data or model error (one plain line on stderr).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from ..errors import ConfigError, MMRagError


def add_train_arguments(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    """The options of ``mm-rag train`` (for wiring into the main CLI)."""
    parser.add_argument("data", metavar="DATA", help="captioned folder (captions.jsonl) or a .jsonl of pairs")
    parser.add_argument("--out", required=True, metavar="DIR", help="where the trained model goes (not inside a repository)")
    model = parser.add_mutually_exclusive_group(required=True)
    model.add_argument("--model", metavar="MODEL_OR_DIR", help="base chat LM / VLM (hub name or directory)")
    model.add_argument("--gguf", metavar="FILE", help="base model from a GGUF file (dequantised through transformers)")
    data = parser.add_argument_group("data")
    data.add_argument("--task", choices=["caption2caption", "text2image", "image2text"], help="task of a captioned folder (default caption2caption)")
    data.add_argument("--embedder", metavar="NAME_OR_DIR", help="retriever for hard negatives (default all-MiniLM-L6-v2; CLIP ViT-B/32 with images)")
    data.add_argument("--random-negatives", action="store_true", help="draw negatives at random instead of mining them")
    data.add_argument("--positives", type=int, default=4, metavar="N", help="relevant pairs per query (default 4)")
    data.add_argument("--negatives", type=int, default=4, metavar="N", help="hard negatives per query (default 4)")
    data.add_argument("--pool", type=int, default=20, metavar="N", help="retrieved candidates negatives come from (default 20)")
    data.add_argument("--held-out-fraction", type=float, default=0.2, metavar="F", help="share of items held out (default 0.2)")
    train = parser.add_argument_group("training")
    train.add_argument("--template", default=None, metavar="NAME", help="pointwise template (default qwen3-vl-reranker)")
    train.add_argument("--instruction", default=None, help="instruction for the template")
    train.add_argument("--method", choices=["full", "lora"], default="full", help="full fine-tuning or LoRA (merged when saved)")
    train.add_argument("--learning-rate", type=float, default=None, metavar="LR", help="default 2e-5 (full) / 2e-4 (lora)")
    train.add_argument("--epochs", type=int, default=1, metavar="N", help="passes over the training pairs (default 1)")
    train.add_argument("--max-steps", type=int, default=None, metavar="N", help="stop after N optimizer steps (default: all epochs)")
    train.add_argument("--batch-size", type=int, default=8, metavar="N", help="pairs per optimizer step (default 8)")
    train.add_argument("--micro-batch-size", type=int, default=4, metavar="N", help="pairs per forward (default 4)")
    train.add_argument("--max-length", type=int, default=512, metavar="N", help="longest prompt in tokens; longer candidates are truncated as the scorer truncates them (default 512)")
    train.add_argument("--train-vision", action="store_true", help="also train the vision tower (frozen by default)")
    train.add_argument("--train-layers", type=int, default=None, metavar="K", help="train only the last K decoder layers (faster)")
    train.add_argument("--lora-r", type=int, default=8, metavar="R", help="LoRA rank (default 8)")
    train.add_argument("--lora-alpha", type=int, default=16, metavar="A", help="LoRA scaling alpha (default 16)")
    train.add_argument("--seed", type=int, default=0, help="seed of the split, the negatives and the training order (default 0)")
    train.add_argument("--checkpoint-every", type=int, default=0, metavar="STEPS", help="checkpoint interval (default: at the end only)")
    train.add_argument("--resume", action="store_true", help="continue from DIR/checkpoint")
    train.add_argument("--time-budget", type=float, default=None, metavar="SECONDS", help="stop (and save) after this long")
    train.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    train.add_argument("--device", default=None, help="torch device (default cpu)")
    train.add_argument("--evaluate-base", action="store_true", help="also score the held-out pairs with the untrained model")
    train.add_argument("--quiet", action="store_true", help="no progress bar")
    return parser


def cmd_train(args: argparse.Namespace) -> int:
    """Run ``mm-rag train`` for parsed ``args``; returns the exit status (errors: one line, 2)."""
    try:
        return _run(args)
    except (MMRagError, OSError) as exc:
        detail = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
        where = f"{exc.filename}: " if isinstance(exc, OSError) and exc.filename else ""
        print(f"mm-rag: error: {where}{' '.join(detail.split()) or type(exc).__name__}", file=sys.stderr)
        return 2


def config_from_args(args: argparse.Namespace) -> Any:
    from ..training.config import TrainConfig

    options: dict[str, Any] = {
        "method": args.method, "epochs": args.epochs, "max_steps": args.max_steps, "batch_size": args.batch_size,
        "micro_batch_size": min(args.micro_batch_size, args.batch_size) if args.micro_batch_size > 0 else args.micro_batch_size,
        "max_length": args.max_length, "freeze_vision": not args.train_vision, "train_layers": args.train_layers, "lora_r": args.lora_r,
        "lora_alpha": args.lora_alpha, "seed": args.seed, "checkpoint_every": args.checkpoint_every, "resume": args.resume,
        "time_budget_s": args.time_budget, "threads": args.threads, "device": args.device, "progress": not args.quiet,
        "instruction": args.instruction,
        "learning_rate": args.learning_rate if args.learning_rate is not None else (2e-4 if args.method == "lora" else 2e-5),
    }
    if args.template is not None:
        options["template"] = args.template
    return TrainConfig(**options)


def _run(args: argparse.Namespace) -> int:
    from ..scoring.templates import get_template
    from ..training.sources import load_pairs
    from ..training.trainer import train_reranker

    config = config_from_args(args)
    get_template(config.template)
    out = Path(args.out).expanduser()
    if out.exists() and not out.is_dir():
        raise ConfigError(f"--out {args.out} is a file, not a folder")
    for name in ("positives", "negatives", "pool"):
        if getattr(args, name) < 1:
            raise ConfigError(f"--{name} must be >= 1, got {getattr(args, name)}")
    if args.gguf and not Path(args.gguf).expanduser().is_file():
        raise ConfigError(f"--gguf {args.gguf}: no such file")
    data = Path(args.data).expanduser()
    if not data.exists():
        raise ConfigError(f"{data}: no such file or folder")
    embedder = None if args.random_negatives or data.is_file() else _embedder(args, data)
    pairs = load_pairs(data, task=args.task, embedder=embedder, held_out_fraction=args.held_out_fraction, seed=args.seed,
                       positives=args.positives, negatives=args.negatives, pool=args.pool)
    model = args.model
    if args.gguf:
        from ..remote.gguf import dequantised_model_dir

        model = str(dequantised_model_dir(Path(args.gguf).expanduser()))
    result = train_reranker(model, pairs.train, out, held_out=pairs.held_out, config=config, source=pairs.source,
                            evaluate_base=args.evaluate_base)
    held = result.metrics.get("held_out") or {}
    print(f"trained {result.steps} steps in {result.seconds:.0f} s; loss {result.metrics.get('first_loss')} → "
          f"{result.metrics.get('last_loss')}; held-out AUC {held.get('auc')}, accuracy {held.get('accuracy')}")
    print(f"wrote {result.output_dir} (README.md, training.json{', calibration.json' if result.calibration else ''})")
    return 0


def _embedder(args: argparse.Namespace, data: Path) -> Any:
    from ..embedders import ClipEmbedder, TextEmbedder
    from ..datasets.loading import load_dataset

    images = load_dataset(data, args.task).needs_images
    if images:
        return ClipEmbedder(args.embedder or "sentence-transformers/clip-ViT-B-32")
    return TextEmbedder(args.embedder) if args.embedder else TextEmbedder()


__all__ = ["add_train_arguments", "cmd_train", "config_from_args"]
