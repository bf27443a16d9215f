"""Multimodal QA with a LlamaIndex RetrieverQueryEngine: our reranker and filter as node postprocessors.

Our retriever feeds the engine; our pointwise MLLM reranker and relevance filter are its node
postprocessors; LlamaIndex's own response synthesizer answers with the LLM.

``multimodal=True`` makes the synthesizer send the kept images to the LLM as image blocks; the
LLM is any LlamaIndex LLM (here a server through ``OpenAILike``, or a local VLM).

    python examples/llamaindex_query_engine.py --folder photos/ --query "a red bus"
        [--clip sentence-transformers/clip-ViT-B-32] [--vlm HuggingFaceTB/SmolVLM-256M-Instruct]
        [--answer-model HuggingFaceTB/SmolVLM-256M-Instruct | --llm-url http://localhost:8000/v1 --llm-model NAME]
    python examples/llamaindex_query_engine.py --tiny      # offline: tiny random models, drawn images; the output is NOT meaningful
"""

from __future__ import annotations

from collections.abc import Sequence

from _common import add_server_flags, build_index, parse, parser, run
from _llama_index_llm import make_llm
from llama_index.core.base.response.schema import Response
from llama_index.core.query_engine import RetrieverQueryEngine

from mm_rag_components.integrations.llama_index import MultimodalRetriever, PointwiseReranker, RelevanceFilter


def main(argv: Sequence[str] | None = None) -> Response:
    p = parser(__doc__.splitlines()[0], db=".mm-rag/example-query-engine")
    add_server_flags(p)
    args = parse(p, argv)
    retriever = MultimodalRetriever(build_index(args), image_top_k=6, text_top_k=2)
    reranker = PointwiseReranker(args.vlm, template="qwen3-vl-reranker", batch_size=8)
    keep = RelevanceFilter(score_key="rerank_score", max_k=3, min_keep=1)
    engine = RetrieverQueryEngine.from_args(
        retriever, llm=make_llm(args), multimodal=True, node_postprocessors=[reranker, keep]
    )
    response = engine.query(args.query)
    print(keep.last_report.summary())
    print(f"answer: {str(response)!r}")
    for n in response.source_nodes:
        meta = n.node.metadata
        label = meta.get("file_name") or n.node.get_content()[:60]
        print(f"  {n.score:.3f}  p={meta['rerank_score']:.3f}  retrieval={meta['retrieval_score']:+.3f}  {label}")
    return response


if __name__ == "__main__":
    run(main)
