"""A multimodal RAG pipeline in LlamaIndex: retrieve → pointwise MLLM rerank → relevance filter → answer.

    python examples/multimodal_rag_pipeline.py --folder photos/ --query "a red bus"
        [--clip sentence-transformers/clip-ViT-B-32] [--vlm HuggingFaceTB/SmolVLM-256M-Instruct]
    python examples/multimodal_rag_pipeline.py --tiny      # offline: tiny random models, drawn images

With --tiny every model is a random-weight test model from mm_rag_components.testing, so the
plumbing runs anywhere but the rankings mean nothing. The answering LLM here is LlamaIndex's
MockLLM as a chat model (it echoes its prompt); pass your own multimodal LLM in real use.
``multimodal=True`` makes the query engine send the kept images to the LLM as image blocks
(without it LlamaIndex sends only the nodes' text).
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

from llama_index.core.llms import MockLLM
from llama_index.core.query_engine import RetrieverQueryEngine

from mm_rag_components import ClipEmbedder, MultimodalIndex, MultimodalRetriever, PointwiseReranker, RelevanceFilter


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--folder", type=Path, help="images and .txt/.md files to index")
    parser.add_argument("--query", default="a red circle")
    parser.add_argument("--clip", default="sentence-transformers/clip-ViT-B-32")
    parser.add_argument("--vlm", default="HuggingFaceTB/SmolVLM-256M-Instruct")
    parser.add_argument("--db", default=".mm-rag/example-chroma")
    parser.add_argument("--tiny", action="store_true", help="offline tiny random-weight models")
    args = parser.parse_args()

    clip, vlm, folder, collection = args.clip, args.vlm, args.folder, "example"
    if args.tiny:
        from mm_rag_components.testing import build_tiny_clip, build_tiny_idefics3, write_sample_folder

        work = Path(tempfile.mkdtemp(prefix="mm-rag-example-"))
        clip, vlm = build_tiny_clip(work / "clip"), build_tiny_idefics3(work / "vlm")
        folder, collection = folder or write_sample_folder(work / "data"), "example-tiny"
    if folder is None:
        parser.error("--folder is required unless --tiny")

    index = MultimodalIndex(args.db, image_embedder=ClipEmbedder(clip), collection=collection)
    print(index.ingest_folder(folder).summary())
    retriever = MultimodalRetriever(index, image_top_k=6, text_top_k=2)
    reranker = PointwiseReranker(vlm, template="qwen3-vl-reranker", batch_size=8)
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
    main()
