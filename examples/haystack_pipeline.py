"""Multimodal QA as a Haystack Pipeline: retriever → pointwise MLLM reranker → relevance filter → answer.

The answer component wraps our ``MultimodalAnswerer`` (numbered sources, images shown to a VLM,
citations read back). It answers with a local transformers VLM, or with any Haystack chat
generator through ``HaystackChatGenerator`` — here ``OpenAIChatGenerator`` on an
OpenAI-compatible server (``--llm-url``).

    python examples/haystack_pipeline.py --folder photos/ --query "a red bus"
        [--clip sentence-transformers/clip-ViT-B-32] [--vlm HuggingFaceTB/SmolVLM-256M-Instruct]
        [--answer-model HuggingFaceTB/SmolVLM-256M-Instruct | --llm-url http://localhost:8000/v1 --llm-model NAME]
    python examples/haystack_pipeline.py --tiny      # offline: tiny random models, drawn images; the output is NOT meaningful
"""

from __future__ import annotations

import argparse
import os
from collections.abc import Sequence
from typing import Any

os.environ.setdefault("HAYSTACK_TELEMETRY_ENABLED", "False")  # before haystack loads: no calls home

from _common import add_server_flags, build_index, parse, parser, print_answer, run  # noqa: E402
from haystack import Document, Pipeline, component  # noqa: E402

from mm_rag_components.answer import Answer, MultimodalAnswerer  # noqa: E402
from mm_rag_components.integrations.haystack import (  # noqa: E402
    HaystackChatGenerator,
    MultimodalRetriever,
    PointwiseReranker,
    RelevanceFilter,
    document_to_candidate,
)
from mm_rag_components.types import Query  # noqa: E402


@component
class Answerer:
    """Question + kept documents (best first) → an :class:`Answer` citing them by number."""

    def __init__(self, answerer: MultimodalAnswerer) -> None:
        self.answerer = answerer

    def warm_up(self) -> None:
        self.answerer.warm_up()

    @component.output_types(answer=Answer, replies=list[str])
    def run(self, query: str, documents: list[Document]) -> dict[str, Any]:
        answer = self.answerer.answer(Query(text=query), [document_to_candidate(d) for d in documents])
        return {"answer": answer, "replies": [answer.text]}


def make_answerer(args: argparse.Namespace) -> MultimodalAnswerer:
    if args.llm_url:
        from haystack.components.generators.chat import OpenAIChatGenerator
        from haystack.utils import Secret

        chat = OpenAIChatGenerator(api_key=Secret.from_token("none"), model=args.llm_model, api_base_url=args.llm_url,
                                   generation_kwargs={"max_tokens": args.max_new_tokens, "temperature": 0.0})
        return MultimodalAnswerer(HaystackChatGenerator(chat), max_sources=3)
    return MultimodalAnswerer.create(args.answer_model, max_new_tokens=args.max_new_tokens, max_sources=3)


def main(argv: Sequence[str] | None = None) -> Answer:
    p = parser(__doc__.splitlines()[0], db=".mm-rag/example-haystack")
    add_server_flags(p)
    args = parse(p, argv)
    pipe = Pipeline()
    pipe.add_component("retriever", MultimodalRetriever(build_index(args), image_top_k=6, text_top_k=2))
    pipe.add_component("reranker", PointwiseReranker(args.vlm, template="qwen3-vl-reranker", batch_size=8))
    pipe.add_component("filter", RelevanceFilter(score_key="rerank_score", max_k=3, min_keep=1))
    pipe.add_component("answer", Answerer(make_answerer(args)))
    pipe.connect("retriever.documents", "reranker.documents")
    pipe.connect("reranker.documents", "filter.documents")
    pipe.connect("filter.documents", "answer.documents")
    question = {"query": args.query}
    out = pipe.run({"retriever": question, "reranker": question, "answer": question}, include_outputs_from={"filter"})
    print(out["filter"]["report"].summary())
    answer: Answer = out["answer"]["answer"]
    print_answer(answer)
    return answer


if __name__ == "__main__":
    run(main)
