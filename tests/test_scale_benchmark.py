"""``benchmarks/scale.py --tiny`` end to end: its own Chroma server, both collections filled,
memory sampled per checkpoint, recall and HNSW settings reported; no timing assertions."""

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("scale")
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "ANONYMIZED_TELEMETRY": "False"}
    done = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / "scale.py"), "--tiny", "--out", str(tmp / "tiny.json"),
         "--data-dir", str(tmp / "db"), "--progress-s", "0"],
        cwd=ROOT, env=env, check=False, capture_output=True, text=True, timeout=600,
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    return json.loads((tmp / "tiny.json").read_text()), done.stdout, tmp


def test_both_collections_hold_every_record(tiny_run):
    import chromadb
    from chromadb.config import Settings

    figures, _, tmp = tiny_run
    assert figures["vectors"] == 10_000 and [p["vectors"] for p in figures["checkpoints"]] == [1_000, 10_000]
    for point in figures["checkpoints"]:
        assert point["ours_count"] == point["bare_count"] == point["vectors"]
    # the server is gone; its database, opened directly, holds exactly the records written
    client = chromadb.PersistentClient(path=str(tmp / "db" / "chroma"), settings=Settings(anonymized_telemetry=False))
    assert {c.name: c.count() for c in client.list_collections()} == {"scale_ours": 10_000, "scale_bare": 10_000}
    ours, bare = client.get_collection("scale_ours"), client.get_collection("scale_bare")
    ids = ours.get(limit=5, include=["metadatas"])
    assert bare.get(ids=ids["ids"])["ids"] == ids["ids"]
    assert set(ids["metadatas"][0]) >= {"source", "file_name", "modality", "sha256", "chunk"}


def test_the_server_was_stopped(tiny_run):
    figures, _, _ = tiny_run
    with pytest.raises(ProcessLookupError):
        os.kill(figures["server"]["pid"], 0)


def test_recall_and_hnsw_settings_are_reported(tiny_run):
    figures, stdout, _ = tiny_run
    recall = figures["recall"]
    assert recall["queries"] == 1000 and recall["k"] == 10
    for value in (recall["ours"], recall["bare"]):
        assert 0.0 <= value <= 1.0
        assert value > 0.9  # 10,000 clustered vectors, Chroma's default HNSW: 0.97 observed
    assert recall["hnsw"]["space"] == "cosine"
    assert {"ef_search", "ef_construction", "max_neighbors"} <= set(recall["hnsw"])
    assert figures["hnsw"]["stored"] == recall["hnsw"] and "hnsw=" in figures["hnsw"]["how_to_change"]
    higher = recall["higher_ef_search"]  # raised through ChromaStore(hnsw=...), read back after a restart
    assert higher["ef_search"] == 4 * recall["hnsw"]["ef_search"]
    assert higher["recall"] >= recall["ours"] - 0.01 and higher["bare_recall_after_restart"] == pytest.approx(recall["bare"])
    assert "recall@10" in stdout and "hnsw settings" in stdout and "hnsw=" in stdout


def test_memory_and_timings_are_reported_per_checkpoint(tiny_run):
    figures, stdout, _ = tiny_run
    for point in figures["checkpoints"]:
        for key in ("client_rss_mib", "client_rss_max_mib", "server_rss_mib"):
            assert math.isfinite(point[key]) and point[key] > 0
        assert point["client_rss_max_mib"] >= point["client_rss_min_mib"]
        assert {"ours_p50_ms", "bare_p50_ms", "ours_p95_ms", "bare_p95_ms", "ratio_p50", "ratio_p95"} <= set(point["query"])
    ingest = figures["ingest"]
    assert ingest["ours_vectors_per_s"] > 0 and ingest["bare_vectors_per_s"] > 0
    assert len(ingest["batches"]) == 3  # 1,000 then two batches of 5,000, each through both clients
    assert {b["first"] for b in ingest["batches"]} == {"ours", "bare"}
    assert {"cpu", "cores", "ram_gib", "chromadb", "python"} <= set(figures["machine"])
    assert "ingest " in stdout and "checkpoint 10,000" in stdout
