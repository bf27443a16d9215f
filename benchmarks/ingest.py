"""Ingest throughput and query latency of MultimodalIndex against bare baselines, same run.

* ingest: images/s through ``MultimodalIndex.ingest_folder`` (read, hash, decode, embed, upsert
  into embedded Chroma) vs the raw sentence-transformers ``encode`` on the same decoded images.
  Ratio = ours / raw (target ≥ 0.9). Model: CLIP ViT-B/32 dimensions, random weights.
* query: latency of ``retrieve`` (routing, Chroma query, candidates; query embedding excluded)
  over N synthetic 512-d vectors vs a bare ``collection.query`` on the same collection.
  Ratio = ours / bare (target ≤ 2).

Usage: python benchmarks/ingest.py [--quick] [--out results.json]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("ANONYMIZED_TELEMETRY", "False")
sys.path.insert(0, str(Path(__file__).resolve().parent))

from figures import write_figures  # noqa: E402


def image_folder(tmp: Path, n_images: int) -> Path:
    from PIL import Image

    from mm_rag_components.testing import coco_sample

    coco = coco_sample()
    if coco:
        return coco[0].path.parent
    folder = tmp / "images"
    folder.mkdir()
    rng = np.random.default_rng(0)
    for i in range(n_images):
        Image.fromarray(rng.integers(0, 255, (480, 640, 3), dtype=np.uint8)).save(folder / f"{i:04d}.jpg", quality=85)
    return folder


def bench_ingest(tmp: Path, model_dir: Path, folder: Path, batch_size: int, repeats: int) -> dict:
    from sentence_transformers import SentenceTransformer

    from mm_rag_components import ClipEmbedder, MultimodalIndex
    from mm_rag_components.media import IMAGE_SUFFIXES, load_image

    files = sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
    raw = SentenceTransformer(str(model_dir), device="cpu")
    embedder = ClipEmbedder(model_dir, device="cpu", batch_size=batch_size)
    embedder.warm_up()
    raw.encode([load_image(files[0])])  # warm both
    raw_times, our_times = [], []
    for r in range(repeats):
        start = time.perf_counter()
        raw.encode([load_image(p) for p in files], batch_size=batch_size, show_progress_bar=False)
        raw_times.append(time.perf_counter() - start)
        index = MultimodalIndex(tmp / f"db-{r}", image_embedder=embedder, batch_size=batch_size)
        start = time.perf_counter()
        report = index.ingest_folder(folder, show_progress=False)
        our_times.append(time.perf_counter() - start)
        assert report.added == len(files), report.summary()
    raw_s, our_s = min(raw_times), min(our_times)
    return {
        "images": len(files),
        "raw_images_per_s": len(files) / raw_s,
        "ours_images_per_s": len(files) / our_s,
        "ingest_ratio": raw_s / our_s,
    }


class _FixedEmbedder:
    """Stands in for the model so the query benchmark times retrieval, not text encoding."""

    name = "synthetic-512"
    modalities = frozenset({"text", "image"})
    dimension = 512

    def __init__(self, vector: np.ndarray) -> None:
        self.vector = vector

    def embed_texts(self, texts, **_):
        return np.repeat(self.vector[None, :], len(texts), axis=0)

    embed_images = embed_texts


def bench_query(tmp: Path, n_vectors: int, n_queries: int, k: int) -> dict:
    from mm_rag_components import MultimodalIndex, Query
    from mm_rag_components.retrieval import RetrievalOptions, retrieve

    rng = np.random.default_rng(0)
    index = MultimodalIndex(tmp / "db-query", image_embedder=_FixedEmbedder(np.zeros(512, np.float32)))
    store = index.image_store
    start = time.perf_counter()
    for offset in range(0, n_vectors, 5000):
        n = min(5000, n_vectors - offset)
        vectors = rng.standard_normal((n, 512)).astype(np.float32)
        vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
        ids = [f"v{offset + i}" for i in range(n)]
        metas = [{"modality": "image", "source": f"/synthetic/{offset + i}.jpg"} for i in range(n)]
        store.upsert(ids, vectors, metas)
    load_s = time.perf_counter() - start
    collection = store._collection
    queries = rng.standard_normal((n_queries, 512)).astype(np.float32)
    queries /= np.linalg.norm(queries, axis=1, keepdims=True)
    options = RetrievalOptions(modalities=["image"], top_k=k)
    bare, ours = [], []
    for q in queries:  # interleave so both see the same cache state
        start = time.perf_counter()
        collection.query(query_embeddings=q[None, :], n_results=k, include=["metadatas", "documents", "distances"])
        bare.append(time.perf_counter() - start)
        index.image_embedder.vector = q
        start = time.perf_counter()
        result = retrieve(index, Query(text="synthetic"), options)
        ours.append(time.perf_counter() - start)
        assert len(result.candidates) == k
    bare_ms, ours_ms = statistics.median(bare) * 1e3, statistics.median(ours) * 1e3
    return {"vectors": n_vectors, "load_s": load_s, "bare_query_ms": bare_ms, "ours_query_ms": ours_ms, "query_ratio": ours_ms / bare_ms}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="smaller run (fewer vectors and repeats)")
    parser.add_argument("--out", type=Path, help="write the figures as JSON here")
    parser.add_argument("--vectors", type=int, default=None)
    args = parser.parse_args()
    from transformers.utils import logging as hf_logging

    from mm_rag_components.testing import build_clip_vit_b32_random

    hf_logging.disable_progress_bar()
    n_vectors = args.vectors or (20_000 if args.quick else 100_000)
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        model_dir = build_clip_vit_b32_random(tmp / "clip-vit-b32-random")
        folder = image_folder(tmp, 24 if args.quick else 51)
        ingest = bench_ingest(tmp, model_dir, folder, batch_size=16, repeats=1 if args.quick else 2)
        print(f"ingest: {ingest['images']} images; raw encode {ingest['raw_images_per_s']:.1f} img/s, "
              f"MultimodalIndex {ingest['ours_images_per_s']:.1f} img/s -> ratio {ingest['ingest_ratio']:.2f} (target >= 0.9)")
        query = bench_query(tmp, n_vectors, n_queries=50 if args.quick else 200, k=10)
        print(f"query: {query['vectors']:,} vectors (loaded in {query['load_s']:.0f}s); bare Chroma {query['bare_query_ms']:.2f} ms, "
              f"retrieve {query['ours_query_ms']:.2f} ms -> ratio {query['query_ratio']:.2f} (target <= 2)")
    figures = {"ingest_ratio": ingest["ingest_ratio"], "query_ratio": query["query_ratio"], "ingest": ingest, "query": query,
               "model": "CLIP ViT-B/32 dimensions, random weights", "device": "cpu"}
    write_figures(args.out, figures)
    return 0


if __name__ == "__main__":
    sys.exit(main())
