"""Pairs from an evaluation task: its relevant entries as positives, hard negatives mined with the
project's own retriever (a :class:`~mm_rag_components.index.MultimodalIndex` over the task's
corpus, the same first stage the evaluation harness uses)."""

from __future__ import annotations

import random
import shutil
import tempfile
from collections.abc import Iterable
from dataclasses import replace
from typing import Any

from ..errors import ConfigError
from ..datasets.candidates import ingest_task, open_index, retrieve_candidates
from ..datasets.task import EvalDoc, EvalQuery, EvalTask, split_groups
from ..validate import integer, positive_int
from .data import Example


def restrict(task: EvalTask, groups: Iterable[str]) -> EvalTask:
    """The task limited to the items ``groups``: their queries, their corpus entries, their qrels."""
    keep = set(groups)
    corpus = [d for d in task.corpus if d.group in keep]
    ids = {d.id for d in corpus}
    queries = [q for q in task.queries if q.group in keep and any(r > 0 and d in ids for d, r in task.qrels.get(q.id, {}).items())]
    if not queries:
        raise ConfigError(f"{task.name}: no query left among {len(keep)} item(s)")
    qrels = {q.id: {d: r for d, r in task.qrels[q.id].items() if d in ids} for q in queries}
    return replace(task, queries=queries, corpus=corpus, qrels=qrels, notes=list(task.notes))


def split_task(task: EvalTask, held_out_fraction: float, seed: int) -> tuple[EvalTask, EvalTask | None]:
    """(train, held-out) sub-tasks, split by item (seeded); held-out is ``None`` for fraction 0."""
    groups = [q.group for q in task.queries]
    held, train = split_groups(groups, held_out_fraction, seed)
    if not train:
        raise ConfigError(f"{task.name}: no item left for training")
    return restrict(task, train), (restrict(task, held) if held else None)


def mine_pairs(
    task: EvalTask,
    embedder: Any = None,
    *,
    positives: int = 4,
    negatives: int = 4,
    pool: int = 20,
    seed: int = 0,
    text_embedder: Any = None,
) -> list[Example]:
    """Up to ``positives`` relevant and ``negatives`` irrelevant pairs per query of ``task``.

    With an ``embedder``, negatives are the highest-ranked irrelevant entries among the top
    ``pool`` the retriever returns (hard negatives), topped up at random; without one they are
    drawn at random from the corpus. Every pair's ``group`` is its query's item."""
    positives = integer("positives", positives, minimum=1)
    negatives = integer("negatives", negatives, minimum=1)
    pool = positive_int("pool", pool)
    rng = random.Random(seed)
    ranked = _retrieve(task, embedder, pool, text_embedder) if embedder is not None else {}
    docs = {d.id: d for d in task.corpus}
    examples: list[Example] = []
    for query in task.queries:
        relevant = {d for d, r in task.qrels.get(query.id, {}).items() if r > 0 and d in docs and d not in query.exclude}
        chosen_pos = sorted(relevant)
        rng.shuffle(chosen_pos)
        hard = [d for d in ranked.get(query.id, []) if d not in relevant and d not in query.exclude][:negatives]
        if len(hard) < negatives:
            rest = sorted(d for d in docs if d not in relevant and d not in query.exclude and d not in hard)
            hard += rng.sample(rest, min(len(rest), negatives - len(hard)))
        examples += [_example(query, docs[d], 1) for d in chosen_pos[:positives]]
        examples += [_example(query, docs[d], 0) for d in hard]
    if not examples:
        raise ConfigError(f"{task.name}: no training pairs could be formed")
    return examples


def _example(query: EvalQuery, doc: EvalDoc, label: int) -> Example:
    return Example(query.text, query.image, doc.text, doc.image, label, query.group)


def _retrieve(task: EvalTask, embedder: Any, pool: int, text_embedder: Any) -> dict[str, list[str]]:
    """Corpus ids per query, best first, from a scratch Chroma index of the task's corpus."""
    from ..chroma_client import make_client

    scratch = tempfile.mkdtemp(prefix="mm-rag-train-")
    client = make_client(scratch)
    try:
        index = open_index(task, embedder, client=client, text_embedder=text_embedder)
        ingest_task(index, task)
        retrieved, _ = retrieve_candidates(index, task, task.queries, pool)
    finally:
        try:
            client.close()
        except Exception:  # noqa: BLE001 - closing is a courtesy
            pass
        shutil.rmtree(scratch, ignore_errors=True)
    return {qid: [c.id for c in r.candidates] for qid, r in retrieved.items()}


__all__ = ["mine_pairs", "restrict", "split_task"]
