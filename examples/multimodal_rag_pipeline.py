"""A multimodal RAG pipeline in LlamaIndex: retrieve → pointwise MLLM rerank → relevance filter → answer.

    python examples/multimodal_rag_pipeline.py --folder photos/ --query "a red bus"
        [--clip sentence-transformers/clip-ViT-B-32] [--vlm HuggingFaceTB/SmolVLM-256M-Instruct]
    python examples/multimodal_rag_pipeline.py --tiny      # offline: tiny random models, drawn images; the output is NOT meaningful

With --tiny every model is a random-weight test model from mm_rag_components.testing, so the
plumbing runs anywhere but the rankings mean nothing. The answering LLM here is LlamaIndex's
MockLLM as a chat model (it echoes its prompt); pass your own multimodal LLM in real use.
``multimodal=True`` makes the query engine send the kept images to the LLM as image blocks
(without it LlamaIndex sends only the nodes' text).
"""

from __future__ import annotations

from collections.abc import Sequence

from _common import build_index, parse, parser, run
from llama_index.core.llms import MockLLM
from llama_index.core.query_engine import RetrieverQueryEngine

from mm_rag_components.integrations.llama_index import MultimodalRetriever, PointwiseReranker, RelevanceFilter


def main(argv: Sequence[str] | None = None) -> None:
    args = parse(parser(__doc__.splitlines()[0], db=".mm-rag/example-chroma", answers=False), argv)
    index = build_index(args)
    retriever = MultimodalRetriever(index, image_top_k=6, text_top_k=2)
    reranker = PointwiseReranker(args.vlm, template="qwen3-vl-reranker", batch_size=8)
    keep = RelevanceFilter(score_key="rerank_score", max_k=3, min_keep=1)
    llm = MockLLM(max_tokens=32, is_chat_model=True)
    engine = RetrieverQueryEngine.from_args(retriever, llm=llm, multimodal=True, node_postprocessors=[reranker, keep])
    response = engine.query(args.query)
    print(f"query: {args.query!r}")
    for n in response.source_nodes:
        meta = n.node.metadata
        label = meta.get("file_name") or n.node.get_content()[:60]
        print(f"  {n.score:.3f}  p={meta['rerank_score']:.3f}  retrieval={meta['retrieval_score']:+.3f}  {label}")
    print(keep.last_report.summary())


if __name__ == "__main__":
    run(main)
