"""Reranker and answer models named on the command line: a hub name, a local directory, or the
URL of an OpenAI-compatible server.

* pointwise ``--reranker``: a name/dir → :class:`TransformersScorer` (via :class:`PointwiseRanker`);
  a URL → :class:`~mm_rag_components.remote.chat_scorer.OpenAIChatScorer` (yes/no log-probabilities);
* listwise ``--reranker`` and ``--answer-model``: a name/dir → :class:`TransformersGenerator`;
  a URL → :class:`~mm_rag_components.remote.chat_generator.OpenAIChatGenerator`.

A URL is contacted only because the user passed it; its API key comes from ``MMRAG_API_KEY`` (or
``OPENAI_API_KEY``). With no model given, a tiny random-weight VLM stands in, and says so.
:func:`model_spec` checks a spec without loading anything; the builders load.
"""

from __future__ import annotations

import argparse
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..errors import ConfigError
from .common import TINY_LABEL, expand, is_url, server_url

TINY_MARKER = ".mm-rag-tiny-complete"
#: Answer length of a tiny model: its words are random anyway.
TINY_MAX_NEW_TOKENS = 16


@dataclass(frozen=True)
class ModelSpec:
    """A checked model choice: ``kind`` is ``url``, ``local`` (name or directory) or ``tiny``."""

    option: str
    kind: str
    value: str | None = None
    served_name: str | None = None

    def describe(self) -> str:
        if self.kind == "url":
            return f"{self.served_name} at {self.value}"
        if self.kind == "tiny":
            return f"tiny random-weight VLM {TINY_LABEL}"
        return str(self.value)

    @property
    def tiny(self) -> bool:
        return self.kind == "tiny"


def model_spec(option: str, value: str | None, served_name: str | None, name_option: str) -> ModelSpec:
    """Check ``option VALUE`` (and ``name_option NAME``, the model name a server knows) without
    loading anything: a bad URL, a missing directory or an unavailable hub model is a :class:`ConfigError`."""
    if value is None:
        if served_name is not None:
            raise ConfigError(f"{name_option} names the model of a server; give {option} URL too")
        return ModelSpec(option, "tiny")
    if not value.strip():
        raise ConfigError(f"{option}: must not be empty")
    if is_url(value) or "://" in value:
        url = server_url(option, value)
        if served_name is None or not served_name.strip():
            raise ConfigError(f"{option} {url} is a server: give {name_option} NAME, the model name it serves")
        return ModelSpec(option, "url", url, served_name.strip())
    if served_name is not None:
        raise ConfigError(f"{name_option} applies only when {option} is a server URL (http://… or https://…)")
    if "\0" in value:
        raise ConfigError(f"{option} {value!r}: a path cannot contain a NUL character")
    from ..hub import locate_model

    location = locate_model(value)
    if not location.available:
        raise ConfigError(f"{option}: {location.reason}; pass a local model directory, a cached hub name or a server URL")
    return ModelSpec(option, "local", value)


def tiny_vlm(db: str) -> str:
    """A tiny random-weight Idefics3 (scores, ranks and answers) beside the database, built once."""
    from ..testing import build_tiny_idefics3

    target = expand(db).parent / "models" / "tiny-idefics3"
    if (target / TINY_MARKER).is_file():
        return str(target)
    if target.exists() and any(target.iterdir()):
        raise ConfigError(f"{target} exists but holds no finished tiny model; delete it and try again")
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=".tiny-idefics3.", dir=target.parent))
    try:
        build_tiny_idefics3(tmp)
        (tmp / TINY_MARKER).write_text("built by mm-rag\n", encoding="utf-8")
        if target.exists():
            target.rmdir()  # empty (checked above)
        os.replace(tmp, target)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    return str(target)


def _local(spec: ModelSpec, args: argparse.Namespace) -> str:
    return tiny_vlm(args.db) if spec.tiny else str(spec.value)


def _tokens(spec: ModelSpec, args: argparse.Namespace) -> int:
    return min(args.max_new_tokens, TINY_MAX_NEW_TOKENS) if spec.tiny else args.max_new_tokens


def chat_generator(spec: ModelSpec, args: argparse.Namespace) -> Any:
    """A generator for ``spec``: a server's chat endpoint or a local transformers model."""
    if spec.kind == "url":
        from ..remote.chat_generator import OpenAIChatGenerator
        from ..remote.transport import TransportSettings

        return OpenAIChatGenerator(spec.served_name or "", base_url=spec.value, max_tokens=args.max_new_tokens,
                                   transport=TransportSettings(timeout=args.timeout), accepts_images=not args.text_only_server)
    from ..generation.transformers import TransformersGenerator

    return TransformersGenerator(_local(spec, args), max_new_tokens=_tokens(spec, args), device=args.device or "cpu")


def pointwise_ranker(spec: ModelSpec, args: argparse.Namespace) -> Any:
    """A :class:`PointwiseRanker` scoring with a server's log-probabilities or a local model, its
    scores cached (in memory, or in ``--score-cache`` FILE): a question asked again over the same
    candidates is not scored again."""
    from ..rerank.pointwise import PointwiseRanker
    from ..scoring.cache import CachedScorer

    if spec.kind == "url":
        from ..remote.chat_scorer import OpenAIChatScorer
        from ..remote.transport import TransportSettings

        scorer: Any = OpenAIChatScorer(spec.served_name or "", base_url=spec.value, mode="chat",
                                       transport=TransportSettings(timeout=args.timeout),
                                       accepts_images=not args.text_only_server)
    else:
        from ..scoring.transformers_scorer import TransformersScorer

        scorer = TransformersScorer(_local(spec, args), **({"device": args.device} if args.device else {}))
    return PointwiseRanker(CachedScorer(scorer, getattr(args, "score_cache", None)))


def listwise_ranker(spec: ModelSpec, args: argparse.Namespace) -> Any:
    """A :class:`ListwiseRanker` over a server's chat endpoint or a local chat model."""
    from ..rerank.listwise import ListwiseRanker

    return ListwiseRanker.create(generator=chat_generator(spec, args), window_size=args.window, step=max(1, args.window // 2))


def answerer(spec: ModelSpec, args: argparse.Namespace) -> Any:
    """A :class:`MultimodalAnswerer` over a server's chat endpoint or a local chat model (streams)."""
    from ..answer import MultimodalAnswerer

    return MultimodalAnswerer(chat_generator(spec, args), timeout=None)


def add_model_options(parser: argparse.ArgumentParser, *, answer: bool) -> None:
    """Options naming the reranker (and, with ``answer``, the answer model)."""
    from .common import bounded_int, positive_seconds

    group = parser.add_argument_group(
        "models", "each model is a hub name, a local directory, or the base URL of an OpenAI-compatible server "
        "(http(s)://HOST:PORT/v1; its API key from $MMRAG_API_KEY or $OPENAI_API_KEY; a server is contacted only when "
        "named here). A reranker or answer model not named is a tiny random-weight test model: it runs offline, and its "
        "output is NOT meaningful")
    group.add_argument("--rerank", choices=["none", "pointwise", "listwise"], default="none",
                       help="rerank retrieved candidates: pointwise (each scored as p(relevant) by a VLM judge) or "
                            "listwise (a chat model orders a window of candidates); default none")
    group.add_argument("--reranker", metavar="NAME_DIR_OR_URL",
                       help="the reranking model (needs --rerank): pointwise, a reranker VLM/LM such as "
                            "HuggingFaceTB/SmolVLM-256M-Instruct, or a server that returns log-probabilities; listwise, a chat model")
    group.add_argument("--reranker-model", metavar="NAME",
                       help="with a URL --reranker: the model name the server serves")
    group.add_argument("--score-cache", metavar="FILE",
                       help="pointwise: keep scores in this SQLite file, shared across runs and processes (default: in "
                            "memory for this run); the same question over the same candidates is not scored again")
    group.add_argument("--window", type=bounded_int(2, 100), default=10, metavar="N",
                       help="listwise: candidates shown to the model at once (default 10; windows overlap by half)")
    if answer:
        group.add_argument("--answer-model", metavar="NAME_DIR_OR_URL",
                           help="the chat model (ideally a VLM) that answers from the kept sources, citing them as [n]")
        group.add_argument("--answer-model-name", metavar="NAME",
                           help="with a URL --answer-model: the model name the server serves")
    group.add_argument("--max-new-tokens", type=bounded_int(1, 32_768), default=512, metavar="N",
                       help="longest generated text of a chat model, listwise or answer (default 512; 16 for a tiny model)")
    group.add_argument("--device", metavar="DEVICE", help="torch device for local models, e.g. cuda (default cpu)")
    group.add_argument("--timeout", type=positive_seconds, default=60.0, metavar="SECONDS",
                       help="seconds per server request (default 60)")
    group.add_argument("--text-only-server", action="store_true",
                       help="the server's model reads text only: images are described (answers, listwise) or left out "
                            "(pointwise: a candidate is judged on its text) instead of sent")


__all__ = ["ModelSpec", "add_model_options", "answerer", "chat_generator", "listwise_ranker", "model_spec",
           "pointwise_ranker", "tiny_vlm"]
