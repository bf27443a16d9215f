"""Multimodal QA as a LlamaIndex Workflow: retrieve → pointwise MLLM rerank → relevance filter → answer.

Each stage is a workflow step that hands the next one a typed event (and streams it, so the
caller sees the pipeline progress); the answer cites its sources by number.

    python examples/llamaindex_workflow.py --folder photos/ --query "a red bus"
        [--clip sentence-transformers/clip-ViT-B-32] [--vlm HuggingFaceTB/SmolVLM-256M-Instruct]
        [--answer-model HuggingFaceTB/SmolVLM-256M-Instruct | --llm-url http://localhost:8000/v1 --llm-model NAME]
    python examples/llamaindex_workflow.py --tiny      # offline: tiny random models, drawn images; the output is NOT meaningful
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

from _common import add_server_flags, build_index, parse, parser, print_answer, run
from _llama_index_llm import make_llm
from llama_index.core.schema import NodeWithScore
from llama_index.core.workflow import Context, Event, StartEvent, StopEvent, Workflow, step

from mm_rag_components.answer import Answer, MultimodalAnswerer
from mm_rag_components.integrations.llama_index import (
    MultimodalRetriever,
    PointwiseReranker,
    RelevanceFilter,
    node_to_candidate,
)
from mm_rag_components.integrations.llama_index.generator import LlamaIndexGenerator
from mm_rag_components.types import Query


class Retrieved(Event):
    query: str
    nodes: list[NodeWithScore]


class Reranked(Event):
    query: str
    nodes: list[NodeWithScore]


class Filtered(Event):
    query: str
    nodes: list[NodeWithScore]
    summary: str


class MultimodalQA(Workflow):
    """retrieve → rerank → filter → answer; the result is an :class:`~mm_rag_components.answer.Answer`."""

    def __init__(self, retriever: MultimodalRetriever, reranker: PointwiseReranker, keep: RelevanceFilter,
                 answerer: MultimodalAnswerer, timeout: float | None = 600.0) -> None:
        super().__init__(timeout=timeout)
        self.retriever, self.reranker, self.keep, self.answerer = retriever, reranker, keep, answerer

    @step
    async def retrieve(self, ctx: Context, ev: StartEvent) -> Retrieved:
        out = Retrieved(query=ev.query, nodes=await self.retriever.aretrieve(ev.query))
        ctx.write_event_to_stream(out)
        return out

    @step
    async def rerank(self, ctx: Context, ev: Retrieved) -> Reranked:
        out = Reranked(query=ev.query, nodes=await self.reranker.apostprocess_nodes(ev.nodes, query_str=ev.query))
        ctx.write_event_to_stream(out)
        return out

    @step
    async def filter(self, ctx: Context, ev: Reranked) -> Filtered:
        kept, report = self.keep.filter_with_report(ev.nodes)  # safe with concurrent runs
        out = Filtered(query=ev.query, nodes=kept, summary=report.summary())
        ctx.write_event_to_stream(out)
        return out

    @step
    async def answer(self, ev: Filtered) -> StopEvent:
        sources = [node_to_candidate(n) for n in ev.nodes]
        return StopEvent(result=await self.answerer.aanswer(Query(text=ev.query), sources))


async def ask(flow: MultimodalQA, query: str) -> Answer:
    """Run the workflow, printing each stage's event as it streams by."""
    handler = flow.run(query=query)
    async for ev in handler.stream_events():
        if isinstance(ev, (Retrieved, Reranked, Filtered)):
            print(f"event {type(ev).__name__}: {len(ev.nodes)} nodes" + (f" ({ev.summary})" if isinstance(ev, Filtered) else ""))
    return await handler


def main(argv: Sequence[str] | None = None) -> Answer:
    p = parser(__doc__.splitlines()[0], db=".mm-rag/example-workflow")
    add_server_flags(p)
    args = parse(p, argv)
    flow = MultimodalQA(
        MultimodalRetriever(build_index(args), image_top_k=6, text_top_k=2),
        PointwiseReranker(args.vlm, template="qwen3-vl-reranker", batch_size=8),
        RelevanceFilter(score_key="rerank_score", max_k=3, min_keep=1),
        MultimodalAnswerer(LlamaIndexGenerator(make_llm(args)), max_sources=3),
    )
    answer = asyncio.run(ask(flow, args.query))
    print_answer(answer)
    return answer


if __name__ == "__main__":
    run(main)
