"""Training and held-out pairs from a data path: a captioned folder (mined) or a JSONL of pairs."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..errors import ConfigError
from ..validate import number
from .data import Example, read_pairs, split_examples


@dataclass
class PairSet:
    """Pairs on both sides of the split and a description for the model card."""

    train: list[Example]
    held_out: list[Example]
    source: dict[str, Any] = field(default_factory=dict)


def load_pairs(
    path: str | Path,
    *,
    task: str | None = None,
    embedder: Any = None,
    held_out_fraction: float = 0.2,
    seed: int = 0,
    positives: int = 4,
    negatives: int = 4,
    pool: int = 20,
) -> PairSet:
    """Pairs from ``path``: a captioned folder (task default ``caption2caption``; negatives mined
    with ``embedder``, random without one; each side mined within its own items) or a ``.jsonl``
    file of pairs. Split by item: ``held_out_fraction`` of the items (seeded) are held out."""
    from ..datasets.loading import load_dataset

    held_out_fraction = number("held_out_fraction", held_out_fraction, minimum=0.0, maximum=0.9)
    source = Path(path).expanduser()
    if source.is_file():
        if task is not None:
            raise ConfigError("--task applies to a captioned folder, not to a JSONL of pairs")
        train, held = split_examples(read_pairs(source), held_out_fraction, seed)
        return PairSet(train, held, {"description": f"pairs from {source.name}", "path": str(source),
                                     "split": _split_text(train, held, held_out_fraction, seed)})
    if not source.exists():
        raise ConfigError(f"{source}: no such file or folder")
    return pairs_from_task(load_dataset(source, task), embedder, held_out_fraction=held_out_fraction, seed=seed,
                           positives=positives, negatives=negatives, pool=pool)


def pairs_from_task(
    task: Any, embedder: Any = None, *, held_out_fraction: float = 0.2, seed: int = 0,
    positives: int = 4, negatives: int = 4, pool: int = 20,
) -> PairSet:
    """Pairs from an :class:`~mm_rag_components.datasets.task.EvalTask`, split by item, each side
    mined within its own items (see :func:`load_pairs`)."""
    from .mining import mine_pairs, split_task

    held_out_fraction = number("held_out_fraction", held_out_fraction, minimum=0.0, maximum=0.9)
    train_task, held_task = split_task(task, held_out_fraction, seed)
    options = {"positives": positives, "negatives": negatives, "pool": pool, "seed": seed}
    train = mine_pairs(train_task, embedder, **options)
    held = mine_pairs(held_task, embedder, **options) if held_task is not None else []
    how = f"hard negatives: the top-{pool} of {getattr(embedder, 'name', 'the retriever')}" if embedder is not None else "random negatives"
    description = (f"{task.task} pairs from {task.name} ({len(task.corpus)} corpus entries): up to {positives} relevant "
                   f"and {negatives} irrelevant candidates per query ({how}, mined within each side's own items)")
    return PairSet(train, held, {"description": description, "path": str(task.root) if task.root else None, "task": task.task,
                                 "split": _split_text(train, held, held_out_fraction, seed),
                                 "held_out_items": sorted({e.group for e in held})})


def _split_text(train: list[Example], held: list[Example], fraction: float, seed: int) -> str:
    return (f"by item, seed {seed}, {fraction:g} held out: {len({e.group for e in train})} training items, "
            f"{len({e.group for e in held})} held-out items")


__all__ = ["PairSet", "load_pairs", "pairs_from_task"]
