"""``mm-rag parity --server URL --model LOCAL_DIR [--gguf FILE]``: the same pairs scored by a server
and by the local :class:`TransformersScorer`; prints max/mean |Δp| and rank agreement.

Exit status: 0 within ``--tolerance``, 1 outside it, 2 on a usage or configuration error.
``--gguf``: the GGUF the server serves (a path, or a file name inside ``--model``); the local model
is then that file dequantised (:func:`~mm_rag_components.remote.gguf.dequantised_model_dir`).
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from ..errors import ConfigError
from ..remote.parity import DEFAULT_TOLERANCE, parity

#: Used when no ``--pairs`` file is given: three queries, five short documents each.
SAMPLE_PAIRS: list[tuple[str, list[str]]] = [
    ("a red circle", ["A red circle on a white background.", "A blue square.", "Quarterly stock prices fell sharply.", "A small red ball on grass.", "A recipe for sourdough bread."]),
    ("how do I bake bread", ["Mix flour, water and yeast, let it rise, then bake at 230 °C.", "The bakery opens at eight.", "A red circle.", "Bread is a staple food.", "Train timetables for Monday."]),
    ("python list sorting", ["Use sorted(items) or items.sort() in Python.", "Pythons are large snakes.", "Sorting algorithms compared: quicksort and mergesort.", "A list of European capitals.", "How to bake bread."]),
]


def add_parity_arguments(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    """The options of ``mm-rag parity`` (for wiring into the main CLI)."""
    parser.add_argument("--server", metavar="URL", help="OpenAI-compatible base URL, e.g. http://127.0.0.1:8080/v1 (default: $MMRAG_BASE_URL)")
    parser.add_argument("--model", metavar="LOCAL_DIR", help="local transformers model (directory or name) to compare with")
    parser.add_argument("--gguf", metavar="FILE", help="the GGUF the server serves: the local model is it, dequantised")
    parser.add_argument("--server-model", metavar="NAME", help="model name to send to the server (default: --model or the GGUF's name)")
    parser.add_argument("--mode", choices=["raw", "chat"], default="raw", help="raw: /completions with the local prompt text (default); chat: /chat/completions")
    parser.add_argument("--template", default=None, help="pointwise template name (default: qwen3-vl-reranker)")
    parser.add_argument("--instruction", default=None, help="instruction for the template")
    parser.add_argument("--top-logprobs", type=int, default=20, metavar="K", help="top log-probabilities to ask for (default 20; llama.cpp allows thousands)")
    parser.add_argument("--pairs", metavar="FILE", help='JSON lines {"query": …, "documents": […]} (default: a small built-in set)')
    parser.add_argument("--tolerance", type=float, default=DEFAULT_TOLERANCE, help=f"largest |Δp| accepted (default {DEFAULT_TOLERANCE})")
    parser.add_argument("--timeout", type=float, default=60.0, help="seconds per request (default 60)")
    parser.add_argument("--json", action="store_true", help="print the report as JSON")
    return parser


def _pairs(path: str | None) -> list[tuple[str, list[str]]]:
    if path is None:
        return SAMPLE_PAIRS
    groups = []
    for n, line in enumerate(Path(path).read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
            query, documents = row["query"], row["documents"]
        except (ValueError, KeyError, TypeError) as exc:
            raise ConfigError(f"{path}:{n}: expected {{\"query\": …, \"documents\": […]}}: {exc}") from exc
        if not isinstance(query, str) or not isinstance(documents, list) or not all(isinstance(d, str) for d in documents):
            raise ConfigError(f"{path}:{n}: query must be a string and documents a list of strings")
        groups.append((query, documents))
    if not groups:
        raise ConfigError(f"{path}: no pairs")
    return groups


def _local_dir(args: argparse.Namespace) -> str:
    if args.gguf:
        from ..remote.gguf import dequantised_model_dir

        gguf = Path(args.gguf)
        if not gguf.is_file() and args.model:
            gguf = Path(args.model) / args.gguf
        return str(dequantised_model_dir(gguf))
    if not args.model:
        raise ConfigError("give --model LOCAL_DIR (or --gguf FILE)")
    return str(args.model)


def cmd_parity(args: argparse.Namespace) -> int:
    """Run the parity check for parsed ``args``; prints the report; returns the exit status."""
    from ..scoring.transformers_scorer import TransformersScorer
    from ..remote.chat_scorer import OpenAIChatScorer
    from ..remote.transport import TransportSettings

    pairs = _pairs(args.pairs)  # a bad file fails before any model loads
    local_dir = _local_dir(args)
    options: dict[str, Any] = {"instruction": args.instruction}
    if args.template:
        options["template"] = args.template
    local = TransformersScorer(local_dir, **options)
    served = args.server_model or args.model or (Path(args.gguf).name if args.gguf else "default")
    remote = OpenAIChatScorer(
        served, base_url=args.server, mode=args.mode, tokenizer=local_dir if args.mode == "raw" else None,
        top_logprobs=args.top_logprobs, transport=TransportSettings(timeout=args.timeout), **options,
    )
    try:
        report = parity(remote, local, pairs)
    finally:
        remote.close()
    if args.json:
        print(json.dumps({**report.to_dict(), "tolerance": args.tolerance, "within": report.within(args.tolerance)}, indent=2))
    else:
        print(f"server {remote.base_url} ({args.mode}) vs local {local_dir}")
        print(report.format(args.tolerance))
        if report.compared == 0:
            print("no pair was scored cleanly by both; if the server flags no_answer_logprobs, raise --top-logprobs")
    return 0 if report.within(args.tolerance) else 1


def run(argv: Sequence[str] | None = None) -> int:
    """``mm-rag parity ARGS``; errors are one line on stderr with exit status 2."""
    from . import main

    return main(["parity", *(sys.argv[1:] if argv is None else argv)])


__all__ = ["SAMPLE_PAIRS", "add_parity_arguments", "cmd_parity", "run"]
