"""What the examples share: their command-line flags, the ``--tiny`` offline set-up, the index,
and :func:`run`, which turns a library error into one line.

``--tiny`` swaps every model for a tiny random-weight one from :mod:`mm_rag_components.testing`
(built into ``--tiny-dir``, reused when already there) and indexes drawn sample images, so the
plumbing runs offline anywhere; the rankings and answers then mean nothing, and the example's
first line says so.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

REAL_CLIP = "sentence-transformers/clip-ViT-B-32"
REAL_VLM = "HuggingFaceTB/SmolVLM-256M-Instruct"
#: The first line of a ``--tiny`` run.
TINY_NOTE = ("note: --tiny: every model is a tiny random-weight test model and the images are drawn shapes, so the "
             "rankings and answers below are NOT meaningful (this checks the plumbing, offline)")


def parser(description: str, db: str, *, answers: bool = True) -> argparse.ArgumentParser:
    """The flags every example takes (``db``: the example's default Chroma folder; ``answers``:
    with the answering model's flags)."""
    p = argparse.ArgumentParser(description=description)
    p.add_argument("--folder", type=Path, help="images and .txt/.md files to index")
    p.add_argument("--query", default="a red circle")
    p.add_argument("--clip", default=REAL_CLIP, help="CLIP embedder (hub name or directory)")
    p.add_argument("--vlm", default=REAL_VLM, help="pointwise reranker VLM (hub name or directory)")
    if answers:
        p.add_argument("--answer-model", default=REAL_VLM, help="local VLM/LLM that answers (hub name or directory)")
        p.add_argument("--max-new-tokens", type=int, default=256)
    p.add_argument("--db", default=db, help="Chroma folder")
    p.add_argument("--tiny", action="store_true", help="offline tiny random-weight models and drawn images")
    p.add_argument("--tiny-dir", type=Path, help="where --tiny builds (and reuses) its models; default: a temp dir")
    return p


def add_server_flags(p: argparse.ArgumentParser) -> None:
    """``--llm-url`` / ``--llm-model``: answer through an OpenAI-compatible server instead."""
    p.add_argument("--llm-url", help="OpenAI-compatible server (e.g. http://localhost:8000/v1); default: local --answer-model")
    p.add_argument("--llm-model", default=REAL_VLM, help="the model name the server serves")


def build_tiny(root: str | Path) -> dict[str, Path]:
    """Tiny CLIP, tiny Idefics3 (SmolVLM-style) VLM and a drawn sample folder under ``root``;
    what is already there is reused."""
    from mm_rag_components.testing import build_tiny_clip, build_tiny_idefics3, write_sample_folder

    root = Path(root)
    built = {"clip": root / "clip", "vlm": root / "vlm", "data": root / "data"}
    if not (built["clip"] / "config.json").is_file():
        build_tiny_clip(built["clip"])
    if not (built["vlm"] / "config.json").is_file():
        build_tiny_idefics3(built["vlm"])
    if not (built["data"] / "red_circle.png").is_file():
        write_sample_folder(built["data"])
    return built


def parse(p: argparse.ArgumentParser, argv: Sequence[str] | None = None) -> argparse.Namespace:
    """Parse ``argv``; with ``--tiny``, go offline and point every model flag at a tiny model."""
    args = p.parse_args(argv)
    args.collection = "example"
    if args.tiny:
        os.environ["HF_HUB_OFFLINE"] = os.environ["TRANSFORMERS_OFFLINE"] = "1"
        if "huggingface_hub.constants" in sys.modules:  # it read the environment at import
            sys.modules["huggingface_hub.constants"].HF_HUB_OFFLINE = True
        tiny = build_tiny(args.tiny_dir or tempfile.mkdtemp(prefix="mm-rag-example-"))
        args.clip, args.vlm, args.answer_model = tiny["clip"], tiny["vlm"], tiny["vlm"]
        args.folder, args.collection = args.folder or tiny["data"], "example-tiny"
        args.max_new_tokens = min(getattr(args, "max_new_tokens", 16), 16)
        print(TINY_NOTE)
    if args.folder is None:
        p.error("--folder is required unless --tiny")
    return args


def run(main: Callable[[], Any]) -> None:
    """Run an example's ``main()`` as a script: an error of the library (a model that cannot be
    loaded offline, an unreadable folder) ends the run as one line on stderr, exit status 1 —
    not a traceback. Any other exception is a bug and keeps its traceback."""
    from mm_rag_components.errors import MMRagError, ModelError

    try:
        main()
    except Exception as exc:  # noqa: BLE001 - looked through for the library's own error, else re-raised
        cause: BaseException | None = exc
        while cause is not None and not isinstance(cause, MMRagError):  # frameworks may wrap it
            cause = cause.__cause__ or cause.__context__
        if cause is None:
            raise
        hint = " (to try this example offline, pass --tiny)" if isinstance(cause, ModelError) else ""
        message = " ".join(str(cause).split())
        sys.exit(f"error: {message}{hint}")


def build_index(args: argparse.Namespace) -> Any:
    """A :class:`~mm_rag_components.MultimodalIndex` over ``args.folder`` (ingested; prints the summary)."""
    from mm_rag_components import ClipEmbedder, MultimodalIndex

    index = MultimodalIndex(args.db, image_embedder=ClipEmbedder(args.clip), collection=args.collection)
    print(index.ingest_folder(args.folder).summary())
    return index


def print_answer(answer: Any) -> None:
    """An :class:`~mm_rag_components.answer.Answer`: its text, its numbered sources, what it cites."""
    print(f"answer: {answer.text!r}" + (f" (flag {answer.flag})" if answer.flag else ""))
    for number, source in enumerate(answer.sources, start=1):
        label = source.metadata.get("file_name") or (source.text or "")[:60]
        print(f"  [{number}] p={source.metadata.get('rerank_score', float('nan')):.3f}  {label}")
    print(f"cited: {answer.cited}")
