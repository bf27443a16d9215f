"""A million vectors on a Chroma server: ingest, memory, query latency and recall, ours vs bare.

The script starts its own ``chroma run`` server (temp dir unless ``--data-dir``/``--keep``) and
always stops it. The same seeded batches of 512-d unit vectors with ingest-like metadata go
through ``ChromaStore.upsert`` into one collection and through the bare ``collection.upsert`` of
``chromadb.HttpClient`` into another, alternating which goes first, so both grow together.

* ingest: vectors/s inside the upsert calls of each; ratio ours / bare (target >= 0.9).
* memory: this client's RSS (VmRSS) sampled after every batch, per checkpoint (should stay
  flat), and the server's.
* query: at each checkpoint ingest pauses; the same held-out query vectors go through
  ``ChromaStore.query(v, 10)`` and bare ``collection.query`` (metadatas, documents, distances),
  interleaved; p50/p95 and ratio ours / bare (target <= 1.2). Chroma's single-node server writes
  to a log and compacts it into the HNSW index inside the upsert call (``SqliteLog.push_logs``
  waits for the local compaction), so a returned upsert is indexed; the script checks both counts
  and, where the server supports it, ``get_indexing_status()`` before it queries.
* recall@10 of Chroma's HNSW against exact top-10 (numpy, streamed over regenerated batches), on
  held-out queries from the data distribution, with the stored HNSW settings; again with a
  higher ``ef_search`` set through ``ChromaStore(..., hnsw={"ef_search": N})`` and a server
  restart (Chroma 1.5 uses a changed ``ef_search`` once it reloads the index).

Usage: python benchmarks/scale.py [--tiny | --quick] [--out FILE] [--hnsw JSON] [--data-dir DIR] [--keep]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("ANONYMIZED_TELEMETRY", "False")
sys.path.insert(0, str(Path(__file__).resolve().parent))

from figures import write_figures
from scale_support import BLOCK, DIM, Data, exact_top_k, records
from servers import machine, rss_mib, running_chroma

from mm_rag_components.errors import ConfigError
from mm_rag_components.hnsw import HNSW_CREATION_ONLY, HNSW_MODIFIABLE, check_hnsw

MODES = {"tiny": (10_000, [1_000, 10_000]), "quick": (100_000, [10_000, 100_000]),
         "full": (1_000_000, [10_000, 100_000, 1_000_000])}
OURS, BARE = "scale_ours", "scale_bare"
INCLUDE = ["metadatas", "documents", "distances"]
HOW_TO_CHANGE = ("MultimodalIndex(..., hnsw={'ef_search': 200}) or ChromaStore(client, name, ..., hnsw={...}); "
                 "ef_search, sync_threshold and resize_factor change on an existing collection, "
                 "ef_construction and max_neighbors only when a collection is created (use a new collection name)")


def open_collections(port: int, hnsw: dict[str, Any]) -> tuple[Any, Any]:
    """(our ChromaStore, the bare chromadb collection), each on its own HTTP client, created fresh."""
    import chromadb
    from chromadb.config import Settings

    from mm_rag_components.store import ChromaStore, make_client

    bare_client = chromadb.HttpClient(host="127.0.0.1", port=port, settings=Settings(anonymized_telemetry=False))
    for name in (OURS, BARE):  # a kept --data-dir may hold an earlier run's collections
        if name in [c.name for c in bare_client.list_collections()]:
            bare_client.delete_collection(name)
    store = ChromaStore(make_client(None, host="127.0.0.1", port=port), OURS, embedder_name="synthetic-512",
                        dimension=DIM, hnsw=hnsw)
    bare = bare_client.get_or_create_collection(BARE, configuration={"hnsw": {**hnsw, "space": "cosine"}},
                                                embedding_function=None)
    return store, bare


def latency(store: Any, bare: Any, queries: np.ndarray, warmup: int = 10) -> dict[str, float]:
    """p50/p95 (ms) of top-10 queries through ours and bare, interleaved, after a warm-up."""
    for q in queries[:warmup]:
        store.query(q, 10)
        bare.query(query_embeddings=q[None, :], n_results=10, include=INCLUDE)
    times: dict[str, list[float]] = {"ours": [], "bare": []}
    for i, q in enumerate(queries):
        order = ("ours", "bare") if i % 2 == 0 else ("bare", "ours")
        for who in order:
            start = time.perf_counter()
            got = store.query(q, 10) if who == "ours" else bare.query(query_embeddings=q[None, :], n_results=10, include=INCLUDE)
            times[who].append(time.perf_counter() - start)
            assert len(got if who == "ours" else got["ids"][0]) == 10
    out = {f"{who}_p{pct}_ms": float(np.percentile(t, pct)) * 1e3 for who, t in times.items() for pct in (50, 95)}
    out["ratio_p50"] = out["ours_p50_ms"] / out["bare_p50_ms"]
    out["ratio_p95"] = out["ours_p95_ms"] / out["bare_p95_ms"]
    return out


def settled(store: Any, bare: Any, expected: int) -> dict[str, Any]:
    """Counts of both collections (must equal ``expected``) and Chroma's indexing status where offered."""
    counts = {"ours_count": store.count(), "bare_count": bare.count()}
    if counts != {"ours_count": expected, "bare_count": expected}:
        raise RuntimeError(f"after {expected:,} upserts the collections hold {counts}")
    try:
        status = bare.get_indexing_status()
        counts["indexing"] = {k: getattr(status, k) for k in ("num_indexed_ops", "num_unindexed_ops", "total_ops")}
    except Exception as exc:  # noqa: BLE001 - the single-node server does not offer it
        counts["indexing"] = f"not offered by this server ({type(exc).__name__}); upserts index before returning"
    return counts


def recall(found: list[list[str]], exact: np.ndarray) -> float:
    """Mean |found top-k ∩ exact top-k| / k (record ids end in ``:<row>``)."""
    hits = sum(len({int(i.rsplit(":", 1)[1]) for i in ids} & set(truth.tolist())) for ids, truth in zip(found, exact))
    return hits / exact.size


def ours_top10(store: Any, queries: np.ndarray) -> list[list[str]]:
    return [[hit.id for hit in store.query(q, 10)] for q in queries]


def bare_top10(bare: Any, queries: np.ndarray) -> list[list[str]]:
    return [ids for s in range(0, len(queries), 100)
            for ids in bare.query(query_embeddings=queries[s : s + 100], n_results=10, include=[])["ids"]]


def write_batch(store: Any, bare: Any, row: int, stop: int, data: Data, centres: np.ndarray | None,
                ours_first: bool) -> dict[str, Any]:
    """Rows ``[row, stop)`` into both collections, one after the other; seconds inside each upsert."""
    vectors, (ids, metas) = data.vectors(row, stop, centres), records(row, stop)
    bare_metas = [dict(m) for m in metas]  # each client gets its own dicts (ours copies inside, timed)
    took: dict[str, Any] = {"rows": stop, "first": "ours" if ours_first else "bare"}
    for who in ("ours", "bare") if ours_first else ("bare", "ours"):
        start = time.perf_counter()
        if who == "ours":
            store.upsert(ids, vectors, metas)
        else:
            bare.upsert(ids=ids, embeddings=vectors, metadatas=bare_metas)
        took[f"{who}_s"] = time.perf_counter() - start
    return took


def ingest(args: argparse.Namespace, data: Data, store: Any, bare: Any, server_pid: int,
           on_checkpoint: Callable[[list[dict]], None]) -> tuple[dict, list[dict]]:
    """Write every batch into both collections (alternating which goes first), sampling this
    process's RSS after each; at each checkpoint check the counts, time queries, and hand the
    figures so far to ``on_checkpoint``."""
    total, checkpoints = args.vectors, args.checkpoints
    spent, window = {"ours": 0.0, "bare": 0.0}, {"ours": 0.0, "bare": 0.0}
    centres = data.centres() if data.kind == "clustered" else None
    queries = data.queries(args.queries, salt=1)
    results, rss_window, batches, row, wall = [], [], [], 0, time.perf_counter()
    next_print = time.monotonic()
    for checkpoint in checkpoints:
        window_start = row
        while row < checkpoint:
            stop = min(row + args.batch, checkpoint)
            batches.append(write_batch(store, bare, row, stop, data, centres, ours_first=len(batches) % 2 == 0))
            for who in ("ours", "bare"):
                spent[who] += batches[-1][f"{who}_s"]
                window[who] += batches[-1][f"{who}_s"]
            row = stop
            rss_window.append(rss_mib())
            if time.monotonic() >= next_print or row == total:
                print(f"  ingest {row:>9,}/{total:,}  ours {row / spent['ours']:7.0f} v/s  bare {row / spent['bare']:7.0f} v/s  "
                      f"client RSS {rss_window[-1]:6.0f} MiB  server RSS {rss_mib(server_pid) / 1024:5.2f} GiB", flush=True)
                next_print = time.monotonic() + args.progress_s
        n = row - window_start
        point: dict[str, Any] = {"vectors": row, **settled(store, bare, row),
                                 "ingest_ours_vps": n / window["ours"], "ingest_bare_vps": n / window["bare"],
                                 "client_rss_mib": rss_window[-1], "client_rss_max_mib": max(rss_window),
                                 "client_rss_min_mib": min(rss_window), "server_rss_mib": rss_mib(server_pid)}
        point["ingest_ratio"] = point["ingest_ours_vps"] / point["ingest_bare_vps"]
        point["query"] = latency(store, bare, queries)
        results.append(point)
        on_checkpoint(results)
        print(f"  checkpoint {row:,}: query p50 ours {point['query']['ours_p50_ms']:.2f} ms, "
              f"bare {point['query']['bare_p50_ms']:.2f} ms; client RSS {point['client_rss_mib']:.0f} MiB", flush=True)
        window, rss_window = {"ours": 0.0, "bare": 0.0}, []
    summary = {"ours_vectors_per_s": total / spent["ours"], "bare_vectors_per_s": total / spent["bare"],
               "ours_s": spent["ours"], "bare_s": spent["bare"], "wall_s": time.perf_counter() - wall}
    summary["ratio"] = summary["ours_vectors_per_s"] / summary["bare_vectors_per_s"]
    summary["median_batch_ratio"] = float(np.median([b["bare_s"] / b["ours_s"] for b in batches]))
    summary["batches"] = batches
    return summary, results


def measure_recall(args: argparse.Namespace, data: Data, store: Any, bare: Any) -> tuple[dict[str, Any], np.ndarray, np.ndarray]:
    """Recall@10 of both collections on held-out queries, with the stored HNSW settings."""
    queries = data.queries(args.recall_queries, salt=2)
    start = time.perf_counter()
    exact = exact_top_k(data, queries, args.vectors, 10)
    out: dict[str, Any] = {"k": 10, "queries": len(queries), "exact_s": time.perf_counter() - start,
                           "query_vectors": f"held-out draws from the data distribution ({data.kind}), not stored",
                           "hnsw": store.hnsw_settings()}
    out["ours"], out["bare"] = recall(ours_top10(store, queries), exact), recall(bare_top10(bare, queries), exact)
    return out, queries, exact


def open_store(port: int, hnsw: dict[str, Any] | None = None) -> Any:
    from mm_rag_components.store import ChromaStore, make_client

    return ChromaStore(make_client(None, host="127.0.0.1", port=port), OURS, embedder_name="synthetic-512",
                       dimension=DIM, hnsw=hnsw, create_on_open=False)


def higher_ef(args: argparse.Namespace, data: Data, root: Path, high: int, queries: np.ndarray,
              exact: np.ndarray) -> dict[str, Any]:
    """Restart the server on the same data (our collection's ``ef_search`` was raised through
    ``hnsw=`` before; Chroma uses it once it reloads the index) and measure recall and latency
    again; the bare collection keeps its settings and is the control."""
    import chromadb
    from chromadb.config import Settings

    with running_chroma(root / "chroma", root / "server-restarted.log") as chroma:
        port = chroma.port
        store = open_store(port, {"ef_search": high})
        bare = chromadb.HttpClient(host="127.0.0.1", port=port, settings=Settings(anonymized_telemetry=False)).get_collection(BARE)
        lat = latency(store, bare, data.queries(args.queries, salt=1))
        return {"ef_search": store.hnsw_settings()["ef_search"], "recall": recall(ours_top10(store, queries), exact),
                "bare_recall_after_restart": recall(bare_top10(bare, queries), exact),
                "ours_p50_ms": lat["ours_p50_ms"], "ours_p95_ms": lat["ours_p95_ms"],
                "bare_p50_ms_at_its_ef": lat["bare_p50_ms"], "bare_p95_ms_at_its_ef": lat["bare_p95_ms"]}


def report(figures: dict[str, Any]) -> None:
    """The readable table: ratios against the bare client measured in the same run."""
    m, ing, rec = figures["machine"], figures["ingest"], figures["recall"]
    print(f"\nscale: {figures['vectors']:,} {figures['data']['kind']} 512-d unit vectors, batches of {figures['batch']:,}, "
          f"Chroma {m['chromadb']} server (chroma run) on 127.0.0.1")
    print(f"machine: {m['cpu']}, {m['cores']} cores, {m['ram_gib']} GiB RAM, Python {m['python']}")
    print(f"ingest: ours {ing['ours_vectors_per_s']:,.0f} vectors/s, bare {ing['bare_vectors_per_s']:,.0f} vectors/s "
          f"-> ratio {ing['ratio']:.2f} (target >= 0.9; median of per-batch ratios {ing['median_batch_ratio']:.2f}); "
          f"wall {ing['wall_s']:.0f} s for both")
    print(f"{'vectors':>10} | {'ingest v/s ours':>15} {'bare':>7} {'ratio':>5} | {'p50 ms ours':>11} {'bare':>6} {'ratio':>5} | "
          f"{'p95 ms ours':>11} {'bare':>6} {'ratio':>5} | {'client RSS MiB':>14} | {'server RSS GiB':>14}")
    for p in figures["checkpoints"]:
        q = p["query"]
        print(f"{p['vectors']:>10,} | {p['ingest_ours_vps']:>15,.0f} {p['ingest_bare_vps']:>7,.0f} {p['ingest_ratio']:>5.2f} | "
              f"{q['ours_p50_ms']:>11.2f} {q['bare_p50_ms']:>6.2f} {q['ratio_p50']:>5.2f} | {q['ours_p95_ms']:>11.2f} "
              f"{q['bare_p95_ms']:>6.2f} {q['ratio_p95']:>5.2f} | {p['client_rss_mib']:>6.0f} (max {p['client_rss_max_mib']:>4.0f}) | "
              f"{p['server_rss_mib'] / 1024:>14.2f}")
    print("  query latency target: ratio <= 1.2; client RSS should not grow with the collection")
    print(f"recall@10 ({rec['queries']:,} {rec['query_vectors']}; exact top-10 by numpy): "
          f"ours {rec['ours']:.3f}, bare {rec['bare']:.3f}")
    if "higher_ef_search" in rec:
        hi = rec["higher_ef_search"]
        print(f"  ours with ef_search={hi['ef_search']} (set by hnsw=, server restarted): recall@10 {hi['recall']:.3f}, "
              f"query p50 {hi['ours_p50_ms']:.2f} ms, p95 {hi['ours_p95_ms']:.2f} ms; bare unchanged after the restart: "
              f"recall@10 {hi['bare_recall_after_restart']:.3f}, p50 {hi['bare_p50_ms_at_its_ef']:.2f} ms")
    print(f"hnsw settings (read back from the collection): {json.dumps(rec['hnsw'])}")
    print(f"  change them with {figures['hnsw']['how_to_change']}")


def save_partial(args: argparse.Namespace, checkpoints: list[dict]) -> None:
    """Write the checkpoints measured so far to ``--out`` (a long run keeps them if it stops)."""
    write_figures(args.out, {"mode": args.mode, "partial": True, "checkpoints": checkpoints}, announce=False)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    size = parser.add_mutually_exclusive_group()
    size.add_argument("--tiny", action="store_true", help="10,000 vectors, checkpoints 1k/10k (a test)")
    size.add_argument("--quick", action="store_true", help="100,000 vectors, checkpoints 10k/100k")
    parser.add_argument("--out", type=Path, help="write every figure as JSON here")
    parser.add_argument("--hnsw", type=json.loads, default={}, help='HNSW settings for both collections, e.g. \'{"ef_search": 200}\'')
    parser.add_argument("--data", choices=["clustered", "uniform"], default="clustered", help="vector distribution (see scale_support.Data)")
    parser.add_argument("--batch", type=int, default=5000, help=f"vectors per upsert (a multiple of {BLOCK})")
    parser.add_argument("--queries", type=int, default=200, help="query vectors per latency checkpoint")
    parser.add_argument("--recall-queries", type=int, default=1000)
    parser.add_argument("--high-ef", type=int, default=0,
                        help="ef_search of the second recall figure (0: 4x the stored one; -1: skip it)")
    parser.add_argument("--data-dir", type=Path, help="keep the server's database here (implies --keep)")
    parser.add_argument("--keep", action="store_true", help="keep the temporary database folder")
    parser.add_argument("--progress-s", type=float, default=10.0, help="seconds between progress lines")
    args = parser.parse_args(argv)
    args.mode = "tiny" if args.tiny else "quick" if args.quick else "full"
    args.vectors, args.checkpoints = MODES[args.mode]
    try:
        args.hnsw = check_hnsw(args.hnsw)
    except ConfigError as exc:
        parser.error(f"--hnsw: {exc}")
    if args.batch < BLOCK or args.batch % BLOCK:
        parser.error(f"--batch must be a positive multiple of {BLOCK}")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    hnsw, data = args.hnsw, Data(kind=args.data)
    root = args.data_dir or Path(tempfile.mkdtemp(prefix="mm-rag-scale-"))
    root.mkdir(parents=True, exist_ok=True)
    print(f"scale benchmark ({args.mode}): {args.vectors:,} vectors into two collections; server data in {root}", flush=True)
    try:
        with running_chroma(root / "chroma", root / "server.log") as chroma:
            proc, port = chroma.process, chroma.port
            server = {"pid": proc.pid, "port": port, "data": str(root / "chroma")}
            store, bare = open_collections(port, hnsw)
            summary, checkpoints = ingest(args, data, store, bare, proc.pid, lambda points: save_partial(args, points))
            recall_figures, queries, exact = measure_recall(args, data, store, bare)
            base = int(recall_figures["hnsw"].get("ef_search", 100))
            high = 0 if args.high_ef < 0 or args.high_ef == base else args.high_ef or 4 * base
            if high:
                open_store(port, {"ef_search": high}).count()  # stores the new ef_search on the running server
        if high:
            recall_figures["higher_ef_search"] = higher_ef(args, data, root, high, queries, exact)
    finally:
        if args.data_dir is None and not args.keep:
            shutil.rmtree(root, ignore_errors=True)
    figures = {
        "mode": args.mode, "vectors": args.vectors, "batch": args.batch, "data": asdict(data), "machine": machine(),
        "server": {**server, "kept": args.data_dir is not None or args.keep},
        "hnsw": {"requested": hnsw, "stored": recall_figures["hnsw"], "creation_only": list(HNSW_CREATION_ONLY),
                 "modifiable": list(HNSW_MODIFIABLE), "how_to_change": HOW_TO_CHANGE},
        "ingest": summary, "checkpoints": checkpoints, "recall": recall_figures,
        "targets": {"ingest_ratio_min": 0.9, "query_ratio_max": 1.2},
    }
    report(figures)
    write_figures(args.out, figures)
    return 0


if __name__ == "__main__":
    sys.exit(main())
