"""``evaluate``: one run comparing retriever, pointwise, fusion, listwise and filters on the same
candidates, tuned on one split of the items and reported on the other."""

from __future__ import annotations

import logging
import shutil
import tempfile
import time
import warnings
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from ..errors import ConfigError
from ..filters import FilterPolicy
from ..rerank.listwise import ListwiseRanker
from ..rerank.pointwise import PointwiseRanker
from ..validate import number, positive_int
from ..datasets.candidates import Retrieved, ingest_task, open_index, retrieve_candidates
from ..datasets.task import EvalQuery, EvalTask
from .metrics import DEFAULT_METRICS, kept_context, latency_stats, ranking_metrics
from .report import HELD_OUT, TUNE, EvalReport, SystemResult
from .systems import SystemRun, filter_run, listwise_run, policy_settings, reranked_run, retriever_run, score_pointwise
from .tuning import DEFAULT_FUSION_GRID, tune_fusion, tune_threshold

logger = logging.getLogger(__name__)


def evaluate(
    task: EvalTask,
    index_or_embedder: Any,
    *,
    pointwise: PointwiseRanker | Mapping[str, PointwiseRanker] | None = None,
    listwise: ListwiseRanker | None = None,
    depth: int = 20,
    tune_fraction: float = 0.5,
    seed: int = 0,
    fusion: bool | float = True,
    fusion_grid: Sequence[float] = DEFAULT_FUSION_GRID,
    filtering: bool | FilterPolicy | Mapping[str, Any] = True,
    tune_metric: str = "ndcg@10",
    metrics: Sequence[str] = DEFAULT_METRICS,
    text_embedder: Any = None,
    db_path: str | Path | None = None,
    progress: bool = False,
    top_n: int | None = None,
) -> EvalReport:
    """Evaluate the systems on ``task`` and return an :class:`EvalReport`.

    ``index_or_embedder``: an embedder (the corpus is ingested into a temporary Chroma directory,
    or into ``db_path``, where a second run re-embeds nothing) or a ready ``MultimodalIndex``
    holding the corpus (see :func:`~mm_rag_components.datasets.candidates.ingest_task`).
    ``pointwise``: a ranker, or ``{label: ranker}`` to compare several (e.g. templates); each adds
    ``pointwise``, ``fusion`` and filtered systems. ``fusion``: ``True`` tunes ``w`` over
    ``fusion_grid`` for ``tune_metric`` (a ranker's own ``fusion_weight`` is used as given), a
    number fixes it, ``False`` drops fusion. ``filtering``: ``True`` tunes a threshold (kept-context
    F1) on every base system, a mapping gives :class:`FilterPolicy` options (threshold tuned unless
    given), a policy is used as is, ``False`` drops filters. ``listwise`` runs on held-out queries.
    ``depth``: candidates retrieved per query, the same for every system (``top_n`` is its former
    name, deprecated: in rerankers ``top_n`` means how many to keep).
    """
    started = time.perf_counter()
    rankers = _rankers(pointwise)
    if listwise is not None:
        listwise = ListwiseRanker.create(reranker=listwise)
    if top_n is not None:
        warnings.warn("evaluate(top_n=...) is now depth=... (the old name goes in 0.3)", DeprecationWarning, stacklevel=2)
        depth = top_n
    depth = positive_int("depth", depth)
    fixed_fusion = None if isinstance(fusion, bool) else number("fusion", fusion, minimum=0.0)
    policy_options = _filter_options(filtering)
    metrics = list(dict.fromkeys([*metrics]))
    if tune_metric not in metrics:
        metrics.append(tune_metric)
    ranking_metrics({"q": {"d": 1}}, {"q": ["d"]}, metrics)  # a misspelt metric fails now, before any model runs
    tune, held_out = task.split(tune_fraction, seed)
    if not held_out:
        raise ConfigError("the held-out split is empty; lower tune_fraction or use a larger data set")
    tunes_fusion = fusion is True and any(r.fusion_weight is None for r in rankers.values())
    tunes_filter = isinstance(policy_options, dict) and policy_options.get("threshold") is None
    if not tune and (tunes_fusion or tunes_filter):
        what = "the fusion weight" if tunes_fusion else "the filter threshold"
        raise ConfigError(f"the tune split is empty, so {what} cannot be tuned; raise tune_fraction or fix it "
                          "(fusion=<weight>, filtering={'threshold': ...}) or leave it out (False)")
    queries = [*tune, *held_out]
    timing: dict[str, float] = {}
    notes = list(task.notes)

    retrieved, retriever_name = _candidates(
        task, index_or_embedder, queries, depth, text_embedder=text_embedder, db_path=db_path, progress=progress,
        timing=timing, notes=notes,
    )

    runs: list[SystemRun] = [retriever_run(retrieved)]
    bases: list[SystemRun] = [runs[0]]
    sweeps = []
    models = {"retriever": retriever_name}
    for label, ranker in rankers.items():
        suffix = "" if label is None else f"[{label}]"
        models[f"pointwise{suffix}"] = _describe(ranker)
        step = time.perf_counter()
        scores = score_pointwise(ranker, queries, retrieved, progress=progress)
        timing[f"pointwise{suffix}_s"] = time.perf_counter() - step
        if scores.flags:
            notes.append(f"pointwise{suffix}: candidates flagged " + ", ".join(f"{k} ×{v}" for k, v in scores.flags.items()))
        plain = reranked_run(f"pointwise{suffix}", "pointwise", scores, queries, retrieved)
        runs.append(plain)
        bases.append(plain)
        weight = fixed_fusion if fixed_fusion is not None else ranker.fusion_weight
        if weight is not None:
            fused = reranked_run(f"fusion{suffix}", "fusion", scores, queries, retrieved, fusion_weight=weight)
        elif fusion is True:
            fused, sweep = tune_fusion(f"fusion{suffix}", scores, tune, held_out, retrieved, task.qrels, tune_metric, fusion_grid)
            sweeps.append(sweep.to_dict())
        else:
            continue
        runs.append(fused)
        bases.append(fused)
    if listwise is not None:
        models["listwise"] = listwise.name
        step = time.perf_counter()
        runs.append(listwise_run("listwise", listwise, held_out, retrieved, progress=progress))
        timing["listwise_s"] = time.perf_counter() - step
        details = runs[-1].details
        statuses = ", ".join(f"{k} ×{v}" for k, v in details["parse_status"].items()) or "none"
        notes.append(f"listwise: {details['windows']} windows on held-out queries; parse status {statuses}")
    if policy_options is not None:
        for base in bases:
            filtered, sweep_dict = _filtered(base, policy_options, tune, held_out, queries, task)
            runs.append(filtered)
            if sweep_dict is not None:
                sweeps.append(sweep_dict)
    results = [_result(run, tune, held_out, task, retrieved, metrics) for run in runs]
    timing["total_s"] = time.perf_counter() - started
    dataset = {
        "name": task.name, "task": task.task, "path": str(task.root) if task.root else None,
        "queries": {HELD_OUT: len(held_out), TUNE: len(tune)},
        "items": {HELD_OUT: len({q.group for q in held_out}), TUNE: len({q.group for q in tune})},
        "corpus": len(task.corpus), "modalities": list(task.modalities),
    }
    settings = {
        "depth": depth, "seed": seed, "tune_fraction": tune_fraction, "tune_metric": tune_metric, "metrics": metrics,
        "fusion_grid": list(fusion_grid), "filter": _describe_filter(filtering), "models": models,
    }
    return EvalReport(dataset, settings, results, sweeps, notes, timing)


def _candidates(
    task: EvalTask, index_or_embedder: Any, queries: list[EvalQuery], depth: int, *, text_embedder: Any,
    db_path: str | Path | None, progress: bool, timing: dict[str, float], notes: list[str],
) -> tuple[dict[str, Retrieved], str]:
    """Every query's candidates, from a ready index or one built now (scratch directory removed)."""
    scratch, client = None, None
    if callable(getattr(index_or_embedder, "embed_texts", None)):
        from ..chroma_client import make_client

        scratch = None if db_path is not None else tempfile.mkdtemp(prefix="mm-rag-eval-")
        client = make_client(db_path or scratch)
        index = open_index(
            task, index_or_embedder, client=client, text_embedder=text_embedder, page_dir=Path(db_path or scratch) / "page-images",
        )
        name = str(index_or_embedder.name)
    elif hasattr(index_or_embedder, "text_store") and hasattr(index_or_embedder, "image_store"):
        index = index_or_embedder
        embedder = index.image_embedder if "image" in task.modalities else index.text_space_embedder
        name = str(getattr(embedder, "name", "index"))
    else:
        raise ConfigError(f"index_or_embedder must be an Embedder or a MultimodalIndex, got {type(index_or_embedder).__name__}")
    try:
        if client is not None:
            step = time.perf_counter()
            ingested = ingest_task(index, task)
            timing["index_s"] = time.perf_counter() - step
            if ingested.skipped:
                notes.append(f"{len(ingested.skipped)} corpus entries could not be ingested: {ingested.skipped[0].reason}")
        step = time.perf_counter()
        retrieved, retrieval_notes = retrieve_candidates(index, task, queries, depth, progress=progress)
        timing["retrieval_s"] = time.perf_counter() - step
    finally:
        _close(client, scratch)
    notes += retrieval_notes
    return retrieved, name


def _close(client: Any, scratch: str | None) -> None:
    """Release our Chroma client (best effort) and remove the scratch directory."""
    if client is not None:
        try:
            client.close()
        except Exception as exc:  # noqa: BLE001 - closing is a courtesy; a failure only leaks a little memory
            logger.debug("closing the evaluation Chroma client failed: %s", exc)
    if scratch is not None:
        shutil.rmtree(scratch, ignore_errors=True)


def _rankers(pointwise: Any) -> dict[str | None, PointwiseRanker]:
    if pointwise is None:
        return {}
    if isinstance(pointwise, Mapping):
        if not pointwise:
            raise ConfigError("pointwise={} names no ranker; pass None to leave pointwise out")
        return {str(label): PointwiseRanker.create(reranker=r) for label, r in pointwise.items()}
    return {None: PointwiseRanker.create(reranker=pointwise)}


def _filter_options(filtering: Any) -> dict[str, Any] | FilterPolicy | None:
    if filtering is False or filtering is None:
        return None
    if filtering is True:
        return {}
    if isinstance(filtering, FilterPolicy):
        return filtering
    if isinstance(filtering, Mapping):
        FilterPolicy.from_kwargs(**filtering)  # a misspelt option fails now, before any model runs
        return dict(filtering)
    raise ConfigError(f"filtering must be True, False, a FilterPolicy or a dict of its options, got {type(filtering).__name__}")


def _describe_filter(filtering: Any) -> Any:
    if isinstance(filtering, FilterPolicy):
        return policy_settings(filtering)
    return dict(filtering) if isinstance(filtering, Mapping) else filtering


def _describe(ranker: PointwiseRanker) -> str:
    template = getattr(getattr(ranker.scorer, "template", None), "name", None)
    return f"{ranker.name}" + (f" (template {template})" if template else "")


def _filtered(
    base: SystemRun, options: dict[str, Any] | FilterPolicy, tune: list[EvalQuery], held_out: list[EvalQuery],
    queries: list[EvalQuery], task: EvalTask,
) -> tuple[SystemRun, dict[str, Any] | None]:
    name = f"{base.name}+filter"
    if isinstance(options, FilterPolicy):
        return filter_run(name, options, base, queries), None
    if options.get("threshold") is not None:
        return filter_run(name, FilterPolicy.from_kwargs(**options), base, queries), None
    policy, sweep = tune_threshold(name, options, base, tune, held_out, task.qrels)
    run = filter_run(name, policy, base, queries)
    run.params["tuned"] = True
    return run, sweep.to_dict()


def _result(
    run: SystemRun, tune: list[EvalQuery], held_out: list[EvalQuery], task: EvalTask,
    retrieved: Mapping[str, Retrieved], metrics: list[str],
) -> SystemResult:
    values: dict[str, dict[str, float | None]] = {}
    for split, queries in ((HELD_OUT, held_out), (TUNE, tune)):
        present = [q for q in queries if q.id in run.rankings]
        if not present:
            continue
        qrels = {q.id: task.qrels[q.id] for q in present}
        split_values: dict[str, float | None] = dict(ranking_metrics(qrels, {q.id: run.rankings[q.id].ids for q in present}, metrics))
        if run.kind == "filter":
            kept = {q.id: run.rankings[q.id].kept or [] for q in present}
            context = kept_context(qrels, kept, {q.id: [c.id for c in retrieved[q.id].candidates] for q in present})
            split_values.update({f"kept_{k}" if not k.startswith("mean") else k: v for k, v in context.to_dict().items()})
        values[split] = split_values
    latency = latency_stats([run.rankings[q.id].seconds for q in held_out if q.id in run.rankings])
    return SystemResult(run.name, run.kind, values, latency, run.base, dict(run.params), dict(run.details))


__all__ = ["evaluate"]
