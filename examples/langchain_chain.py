"""Multimodal QA as a LangChain (LCEL) chain: retrieve → rerank + filter (a compressor) → answer.

Our retriever sits inside a ContextualCompressionRetriever whose compressor reranks with a
pointwise MLLM and filters; our answerer answers from what it kept.

The answer step is our ``MultimodalAnswerer`` (numbered sources, images shown to a VLM, citations
read back) on a local transformers VLM; to answer with any LangChain chat model instead, build
it as ``MultimodalAnswerer(LangChainGenerator(chat_model))``.

    python examples/langchain_chain.py --folder photos/ --query "a red bus"
        [--clip sentence-transformers/clip-ViT-B-32] [--vlm HuggingFaceTB/SmolVLM-256M-Instruct]
        [--answer-model HuggingFaceTB/SmolVLM-256M-Instruct]
    python examples/langchain_chain.py --tiny      # offline: tiny random models, drawn images; the output is NOT meaningful
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from _common import build_index, parse, parser, print_answer, run
from langchain_classic.retrievers import ContextualCompressionRetriever
from langchain_core.runnables import Runnable, RunnableLambda, RunnableParallel, RunnablePassthrough

from mm_rag_components.answer import Answer, MultimodalAnswerer
from mm_rag_components.integrations.langchain import MultimodalRetriever, PointwiseReranker, document_to_candidate
from mm_rag_components.types import Query


def qa_chain(retriever: ContextualCompressionRetriever, answerer: MultimodalAnswerer) -> Runnable[str, Answer]:
    """question → {question, kept documents} → an :class:`Answer` citing the documents by number."""

    def answer(inputs: dict[str, Any]) -> Answer:
        sources = [document_to_candidate(d, i) for i, d in enumerate(inputs["documents"])]
        return answerer.answer(Query(text=inputs["question"]), sources)

    return RunnableParallel(question=RunnablePassthrough(), documents=retriever) | RunnableLambda(answer)


def main(argv: Sequence[str] | None = None) -> Answer:
    args = parse(parser(__doc__.splitlines()[0], db=".mm-rag/example-langchain"), argv)
    compressor = PointwiseReranker(
        args.vlm, template="qwen3-vl-reranker", batch_size=8,
        relevance_filter={"score_key": "rerank_score", "max_k": 3, "min_keep": 1},
    )
    retriever = ContextualCompressionRetriever(
        base_compressor=compressor, base_retriever=MultimodalRetriever(build_index(args), image_top_k=6, text_top_k=2)
    )
    answerer = MultimodalAnswerer.create(args.answer_model, max_new_tokens=args.max_new_tokens, max_sources=3)
    answer = qa_chain(retriever, answerer).invoke(args.query)
    print(compressor.last_report.summary())
    print_answer(answer)
    return answer


if __name__ == "__main__":
    run(main)
