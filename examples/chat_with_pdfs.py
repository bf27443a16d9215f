"""Chat with your PDFs: ingest a folder of PDFs page by page, ask questions, get answers that cite pages.

    python examples/chat_with_pdfs.py --folder my-pdfs/                         # the terminal chat
    python examples/chat_with_pdfs.py --folder my-pdfs/ --question "What does figure 2 show?"
    python examples/chat_with_pdfs.py --folder my-pdfs/ --serve                 # the web chat, http://127.0.0.1:8765/
    python examples/chat_with_pdfs.py --tiny --question "a red circle"          # offline: tiny random models; NOT meaningful

Each PDF page is stored as its rendered image (embedded by CLIP) and its text (chunked), sharing one
page id; retrieval returns one candidate per page holding both, the pointwise VLM reranker judges the
page image and its text together, and the answer cites pages ("[2] report.pdf, p. 7"). For real use
point --clip at a CLIP (or VLM) embedder and --vlm / --answer-model at real VLMs, or answer through
a server with --llm-url. PDFs need the ``pdf`` extra (pypdfium2).
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from pathlib import Path

from _common import add_server_flags, build_index, parse, parser, run

from mm_rag_components.answer import MultimodalAnswerer
from mm_rag_components.app.pipeline import Conversation, QAPipeline, QATurn
from mm_rag_components.app.terminal import describe_sources, run_chat
from mm_rag_components.filters import FilterPolicy
from mm_rag_components.rerank import PointwiseRanker
from mm_rag_components.retrieval import RetrievalOptions


def pipeline(args) -> QAPipeline:
    """Retrieve pages (image + text), rerank them with the VLM, keep the relevant ones, answer."""
    if args.llm_url:
        from mm_rag_components.remote import OpenAIChatGenerator

        answerer = MultimodalAnswerer(OpenAIChatGenerator(args.llm_model, base_url=args.llm_url, max_tokens=args.max_new_tokens))
    else:
        answerer = MultimodalAnswerer.create(args.answer_model, max_new_tokens=args.max_new_tokens)
    return QAPipeline(
        build_index(args),
        retrieval=RetrievalOptions(pages=True, top_k=args.top_k),
        reranker=PointwiseRanker.create(args.vlm, template="qwen3-vl-reranker", top_n=args.top_k, batch_size=4),
        relevance_filter=FilterPolicy(score_key="rerank_score", max_k=3, min_keep=1),
        answerer=answerer,
    )


def main(argv: Sequence[str] | None = None) -> QATurn | None:
    p = parser(__doc__.splitlines()[0], db=".mm-rag/pdf-chat-chroma")
    add_server_flags(p)
    p.add_argument("--question", help="ask one question and exit (default: the terminal chat)")
    p.add_argument("--serve", action="store_true", help="serve the web chat instead of the terminal chat")
    p.add_argument("--top-k", type=int, default=5, help="pages retrieved and reranked per question")
    args = parse(p, argv)
    if args.tiny and not any(Path(args.folder).glob("*.pdf")):  # drawn shapes as PDF pages, a paragraph each
        from mm_rag_components.testing import sample_photos, write_page_collection

        args.folder = write_page_collection(Path(args.folder).parent / "pdfs", sample_photos(coco=False))
    qa = pipeline(args)
    if args.serve:
        from mm_rag_components.app.web import serve

        serve(qa, on_ready=lambda url: print(f"web chat: {url} (Ctrl-C stops it)"))
    elif args.question:
        turn = Conversation(qa).ask(args.question)
        print(f"question: {args.question!r}")
        print(f"answer: {turn.answer.text}" + (f"  (flag {turn.answer.flag})" if turn.answer.flag else ""))
        print("\n".join(describe_sources(turn)))
        print("references: " + "; ".join(turn.answer.references))
        return turn
    else:
        run_chat(Conversation(qa), sys.stdin, sys.stdout)  # until /quit or the end of input
    return None


if __name__ == "__main__":
    run(main)
