"""What every reranking postprocessor does around the core call: convert, and emit rerank events."""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from llama_index.core.instrumentation import get_dispatcher
from llama_index.core.instrumentation.events.rerank import ReRankEndEvent, ReRankStartEvent
from llama_index.core.schema import NodeWithScore, QueryBundle

from ...errors import ConfigError
from ...types import Candidate, Query
from .nodes import node_to_candidate, query_from_bundle, reorder_nodes

dispatcher = get_dispatcher(__name__)


def begin_rerank(
    nodes: list[NodeWithScore], query_bundle: QueryBundle | None, *, top_n: int | None, model_name: str, who: str
) -> tuple[Query, list[Candidate]]:
    """Check the query, emit ``ReRankStartEvent``, and convert the nodes to candidates."""
    if query_bundle is None:
        raise ConfigError(f"{who} needs a query (text, image, or both)")
    dispatcher.event(ReRankStartEvent(query=query_bundle, nodes=nodes, top_n=top_n or len(nodes), model_name=model_name))
    return query_from_bundle(query_bundle), [node_to_candidate(n) for n in nodes]


def end_rerank(
    nodes: Sequence[NodeWithScore], candidates: Sequence[Candidate], ranked: Iterable[tuple[Candidate, float]]
) -> list[NodeWithScore]:
    """Nodes in ranked order with scores and provenance, then ``ReRankEndEvent``."""
    out = reorder_nodes(nodes, candidates, ranked)
    dispatcher.event(ReRankEndEvent(nodes=out))
    return out
