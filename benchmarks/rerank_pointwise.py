"""Pointwise reranking speed: our fast path vs the naive per-pair loop and sentence-transformers.

Model: SmolVLM-256M shapes (Idefics3: SmolLM2-135M text — hidden 576, 30 layers, 9 heads, 3 KV
heads; SigLIP base-patch16-512 vision; scale factor 4; no image splitting), random weights.
1 query × N candidates (32; 8 with --quick, which also shrinks images to 256 px and the text model
to 8 layers). Scenarios: text query × image candidates (cold, and warm vision cache), image query ×
text candidates, text × text. Baselines in the same run on the same model:
(a) the naive loop — one full forward per pair, batch 1, through the processor
    (``TransformersScorer.score_reference``); the speedup and max |Δscore| are against it;
(b) sentence-transformers ``CrossEncoder`` with a ``LogitScore`` module on the same model
    (its own default prompt, so only its time is comparable).

Usage: python benchmarks/rerank_pointwise.py [--quick] [--out results.json] [--candidates N]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


def candidates_data(n: int, tmp: Path):
    """(query caption, image paths, texts): COCO photos/captions when present, else synthetic."""
    import numpy as np
    from PIL import Image

    from mm_rag_components.testing import coco_sample

    coco = coco_sample()
    if coco and len(coco) > n:
        return coco[0].captions[0], [c.path for c in coco[1 : n + 1]], [c.captions[1] for c in coco[1 : n + 1]]
    rng = np.random.default_rng(0)
    paths = []
    for i in range(n):
        path = tmp / f"img{i}.jpg"
        Image.fromarray(rng.integers(0, 255, (480, 640, 3), dtype=np.uint8)).save(path)
        paths.append(path)
    texts = [f"A photo showing object number {i} next to a {['tree', 'car', 'dog', 'table'][i % 4]} in a busy street." for i in range(n)]
    return "a dog playing on a beach", paths, texts


def timed(fn, repeats: int = 1, before=None):
    """Best wall time of ``repeats`` runs (``before`` runs untimed ahead of each) and the last value."""
    best, value = float("inf"), None
    for _ in range(repeats):
        if before is not None:
            before()
        start = time.perf_counter()
        value = fn()
        best = min(best, time.perf_counter() - start)
    return best, value


def crossencoder(model_dir: Path, yes_id: int, no_id: int, batch_size: int):
    """sentence-transformers' CrossEncoder driving the same VLM, or (None, reason)."""
    try:
        from sentence_transformers import CrossEncoder
        from sentence_transformers.base.modules import Transformer
        from sentence_transformers.cross_encoder.modules.logit_score import LogitScore

        module = Transformer(str(model_dir), transformer_task="any-to-any")
        return CrossEncoder(modules=[module, LogitScore(yes_id, no_id)], device="cpu"), None
    except Exception as exc:  # noqa: BLE001 - report why it cannot drive the model
        return None, f"{type(exc).__name__}: {exc}".splitlines()[0]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--out", type=Path)
    parser.add_argument("--candidates", type=int)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--repeats", type=int, default=None, help="timed runs per measurement, best kept (default 2; 1 for the full run)")
    parser.add_argument("--model-dir", type=Path, help="where to build/reuse the random SmolVLM (default: a cache dir)")
    args = parser.parse_args()

    import torch
    from PIL import Image
    from transformers.utils import logging as hf_logging

    from mm_rag_components import Candidate, Query
    from mm_rag_components.scoring.transformers_scorer import TransformersScorer
    from mm_rag_components.testing import build_smolvlm_256m_random

    hf_logging.disable_progress_bar()
    torch.manual_seed(0)
    n = args.candidates or (8 if args.quick else 32)
    args.repeats = args.repeats or (2 if args.quick else 1)
    shape = {"image_size": 256, "text_layers": 8} if args.quick else {"image_size": 512, "text_layers": 30}
    cache = args.model_dir or Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "mm-rag-components" / (
        "smolvlm-256m-random-quick" if args.quick else "smolvlm-256m-random")
    model_dir = build_smolvlm_256m_random(cache, **shape)
    scorer = TransformersScorer(model_dir, template="qwen3-vl-reranker", batch_size=args.batch_size, device="cpu", dtype=torch.float32)
    scorer.warm_up()
    ce, ce_reason = crossencoder(model_dir, scorer.yes_id, scorer.no_id, args.batch_size)
    print(f"model: SmolVLM-256M shapes ({shape}), random weights; {n} candidates; batch {args.batch_size}; "
          f"threads {torch.get_num_threads()}")
    if ce is None:
        print(f"sentence-transformers CrossEncoder cannot drive this model: {ce_reason}")

    with tempfile.TemporaryDirectory() as tmp:
        caption, paths, texts = candidates_data(n, Path(tmp))
        images = [Image.open(p).convert("RGB") for p in paths]
        image_cands = [Candidate(id=str(i), modality="image", image_path=str(p)) for i, p in enumerate(paths)]
        text_cands = [Candidate(id=str(i), modality="text", text=t) for i, t in enumerate(texts)]
        query_image = images[0]
        scenarios = {
            "text_image_cold": (Query(text=caption), image_cands, [(caption, im) for im in images]),
            "text_image_warm": (Query(text="a different question about the same photos"), image_cands, None),
            "image_text": (Query(image=paths[0]), text_cands, [(query_image, t) for t in texts]),
            "text_text": (Query(text=caption), text_cands, [(caption, t) for t in texts]),
        }
        # warm-up (allocator, kernels, lazy init) of every path on one pair, not counted
        for query, cands in ((Query(text="warm up"), text_cands[:1]), (Query(image=paths[-1]), image_cands[-1:])):
            scorer.score_reference(query, cands)
            scorer.score(query, cands)
        if ce is not None:
            ce.predict([(caption, images[-1]), (images[-1], texts[0]), (caption, texts[0])], batch_size=1, show_progress_bar=False)
        scorer.vision_cache.clear()
        results: dict[str, dict] = {}
        ce_times: dict[str, float] = {}
        for name, (query, cands, pairs) in scenarios.items():
            baseline_s, reference = timed(lambda: scorer.score_reference(query, cands), args.repeats)
            cold = scorer.vision_cache.clear if name == "text_image_cold" else None
            ours_s, fast = timed(lambda: scorer.score(query, cands), args.repeats, before=cold)
            diff = max(abs(a.probability - b.probability) for a, b in zip(fast, reference))
            diff_logodds = max(abs(a.logodds - b.logodds) for a, b in zip(fast, reference))
            if ce is not None and pairs is not None:
                ce_times[name], _ = timed(lambda: ce.predict(pairs, batch_size=args.batch_size, show_progress_bar=False), args.repeats)
            ce_s = ce_times.get(name, ce_times.get("text_image_cold") if name == "text_image_warm" else None)
            results[name] = {
                "baseline_s": baseline_s,
                "ours_s": ours_s,
                "speedup": baseline_s / ours_s,
                "max_abs_diff": diff,
                "max_abs_diff_logodds": diff_logodds,
                "crossencoder_s": ce_s,
                "vs_crossencoder": (ce_s / ours_s) if ce_s else None,
            }
            r = results[name]
            vs = f"{r['vs_crossencoder']:.2f}x vs CrossEncoder ({ce_s:.2f}s)" if ce_s else f"CrossEncoder: n/a ({ce_reason})"
            print(f"{name:16} naive {baseline_s:7.2f}s  ours {ours_s:7.2f}s  speedup {r['speedup']:5.2f}x  "
                  f"max|Δp| {diff:.1e} (|Δlogit| {diff_logodds:.1e})  {vs}")
    figures = {
        **results,
        "config": {"candidates": n, "batch_size": args.batch_size, "quick": args.quick, "repeats": args.repeats, **shape, "device": "cpu",
                   "crossencoder": "ok" if ce is not None else ce_reason,
                   "targets": {"image_text": 4, "text_text": 4, "text_image_warm": 5, "text_image_cold": 1.3}},
    }
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(figures, indent=2))
        print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
