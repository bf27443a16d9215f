"""HNSW settings (``hnsw=``) on ChromaStore and MultimodalIndex: checked, given to Chroma,
reconciled with an existing collection, saved with the index config."""

import json
import logging
import subprocess
import sys
import textwrap

import numpy as np
import pytest
from fake_models import ColourShapeEmbedder

from mm_rag_components import MultimodalIndex, config
from mm_rag_components.errors import ConfigError, StoreError
from mm_rag_components.hnsw import HNSW_CREATION_ONLY, HNSW_MODIFIABLE, check_hnsw
from mm_rag_components.store import ChromaStore, make_client

GOOD = {"ef_construction": 64, "max_neighbors": 24, "ef_search": 40, "sync_threshold": 500, "resize_factor": 1.5}


def open_store(client, hnsw=None, name="vectors", **kwargs) -> ChromaStore:
    return ChromaStore(client, name, embedder_name="random-8", dimension=8, hnsw=hnsw, **kwargs)


def unit_vectors(n: int, seed: int = 0) -> np.ndarray:
    v = np.random.default_rng(seed).standard_normal((n, 8)).astype(np.float32)
    return v / np.linalg.norm(v, axis=1, keepdims=True)


@pytest.fixture()
def client(tmp_path):
    return make_client(tmp_path / "db")


def test_every_setting_reaches_chroma(client):
    store = open_store(client, {**GOOD, "space": "cosine"})
    stored = store.hnsw_settings()
    assert {k: stored[k] for k in GOOD} == GOOD
    assert stored["space"] == "cosine"
    # read back through a fresh client too: the settings are stored with the collection
    assert client.get_collection("vectors").configuration_json["hnsw"]["max_neighbors"] == 24


def test_default_store_keeps_chroma_defaults_in_cosine(client):
    stored = open_store(client).hnsw_settings()
    assert stored["space"] == "cosine" and stored["ef_search"] == 100 and stored["max_neighbors"] == 16


def test_ef_search_change_applies_on_reopen(tmp_path, caplog):
    first = open_store(make_client(tmp_path / "db"), {"ef_search": 50})
    first.upsert([f"id{i}" for i in range(20)], unit_vectors(20), [{"i": i} for i in range(20)])
    with caplog.at_level(logging.INFO, logger="mm_rag_components.store"):
        again = open_store(make_client(tmp_path / "db"), {"ef_search": 300, "resize_factor": 2.0})
    assert "updating HNSW" in caplog.text and "ef_search" in caplog.text
    assert again.hnsw_settings()["ef_search"] == 300
    assert again.hnsw_settings()["resize_factor"] == 2.0
    assert again.count() == 20 and again.query(unit_vectors(1)[0], 3)[0].id.startswith("id")
    # what is stored survives a restart, and an equal setting changes nothing
    caplog.clear()
    with caplog.at_level(logging.INFO, logger="mm_rag_components.store"):
        third = open_store(make_client(tmp_path / "db"), {"ef_search": 300})
    assert third.hnsw_settings()["ef_search"] == 300 and "updating HNSW" not in caplog.text


RECALL_SCRIPT = """
import json, sys
import numpy as np
from mm_rag_components.store import ChromaStore, make_client

path, ef = sys.argv[1], json.loads(sys.argv[2])
data = np.load(path + "/vectors.npz")
store = ChromaStore(make_client(path), "wide", embedder_name="random-128", dimension=128,
                    hnsw=None if ef is None else {"ef_search": ef}, create_on_open=False)
hits = [{int(h.id) for h in store.query(q, 10)} for q in data["queries"]]
print(json.dumps(np.mean([len(h & set(t)) / 10 for h, t in zip(hits, data["exact"])])))
"""


def recall_in_new_process(path, ef) -> float:
    """Recall@10 measured by a fresh process (which loads the index from disk)."""
    script = path / "recall.py"
    script.write_text(textwrap.dedent(RECALL_SCRIPT))
    done = subprocess.run([sys.executable, str(script), str(path), json.dumps(ef)],
                          check=False, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    return float(done.stdout.strip().splitlines()[-1])


def test_raised_ef_search_is_used_once_chroma_loads_the_index_again(tmp_path):
    rng = np.random.default_rng(0)
    vectors = rng.standard_normal((3000, 128)).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    queries = vectors[:100] + 0.3 * rng.standard_normal((100, 128)).astype(np.float32)
    exact = np.argsort(-(queries @ vectors.T), axis=1)[:, :10]
    np.savez(tmp_path / "vectors.npz", queries=queries, exact=exact)
    store = ChromaStore(make_client(tmp_path), "wide", embedder_name="random-128", dimension=128, hnsw={"ef_search": 10})
    store.upsert([str(i) for i in range(3000)], vectors, [{"i": i} for i in range(3000)])
    low = recall_in_new_process(tmp_path, None)
    high = recall_in_new_process(tmp_path, 400)  # stores ef_search=400, then queries
    assert store.hnsw_settings()["ef_search"] == 10  # this process's handle was read before the update
    assert make_client(tmp_path).get_collection("wide").configuration_json["hnsw"]["ef_search"] == 400
    assert recall_in_new_process(tmp_path, None) == pytest.approx(high)  # the update is stored: it stays
    assert high >= 0.95 and low < high - 0.1, (low, high)


def test_reader_without_hnsw_leaves_the_settings_alone(client):
    open_store(client, {"ef_search": 77, "max_neighbors": 32})
    reader = open_store(client, create_on_open=False)
    assert reader.count() == 0
    assert reader.hnsw_settings()["ef_search"] == 77 and reader.hnsw_settings()["max_neighbors"] == 32


@pytest.mark.parametrize(("key", "first", "second"), [("max_neighbors", 16, 32), ("ef_construction", 100, 200)])
def test_creation_only_mismatch_is_a_store_error(client, key, first, second):
    assert key in HNSW_CREATION_ONLY
    open_store(client, {key: first})
    with pytest.raises(StoreError, match=rf"was created with HNSW {key}={first}; {key}={second} is fixed .* new collection name"):
        open_store(client, {key: second})
    with pytest.raises(StoreError, match="was created with HNSW"):  # a reader is told too, on first use
        open_store(client, {key: second}, create_on_open=False).count()
    assert open_store(client, {key: first}).hnsw_settings()[key] == first


def test_creation_only_mismatch_with_chroma_defaults(client):
    open_store(client)  # created with Chroma's default max_neighbors=16
    with pytest.raises(StoreError, match="max_neighbors=16"):
        open_store(client, {"max_neighbors": 48})


def _bad_inputs():
    yield "not-a-mapping", "mapping"
    yield [("ef_search", 10)], "mapping"
    yield {"ef": 10}, "unknown setting 'ef'"
    yield {"M": 16}, "unknown setting 'M'"
    yield {"hnsw:search_ef": 10}, "unknown setting"
    for key in ("num_threads", "batch_size"):
        yield {key: 4}, "does not store"
    for space in ("l2", "ip", "COSINE", None, 1):
        yield {"space": space}, "must be 'cosine'"
    minimum = {"ef_construction": 1, "ef_search": 1, "max_neighbors": 2, "sync_threshold": 2}
    for key, low in minimum.items():
        for wrong in (1.5, "100", True, None, [100], 100.0):
            yield {key: wrong}, "must be an integer"
        yield {key: low - 1}, f">= {low}"
        yield {key: -5}, f">= {low}"
        yield {key: 2**31}, "must be <="
    for wrong in ("1.2", True, None, float("nan"), float("inf")):
        yield {"resize_factor": wrong}, "resize_factor"
    for wrong in (1.0, 1, 0.5, 0, -2.0):
        yield {"resize_factor": wrong}, "must be > 1.0"
    yield {"resize_factor": 11.0}, "must be <= 10.0"


BAD = list(_bad_inputs())


@pytest.mark.parametrize(("hnsw", "message"), BAD, ids=[repr(h)[:40] for h, _ in BAD])
def test_bad_settings_are_config_errors_at_construction(client, hnsw, message):
    with pytest.raises(ConfigError, match=message.replace("(", r"\(").replace("[", r"\[")):
        check_hnsw(hnsw)
    with pytest.raises(ConfigError):
        open_store(client, hnsw, name="never-made")
    with pytest.raises(ConfigError):
        MultimodalIndex(None, client=client, image_embedder=ColourShapeEmbedder(), hnsw=hnsw)
    assert "never-made" not in [c.name for c in client.list_collections()]


def test_every_modifiable_setting_is_accepted():
    values = {"ef_search": 1, "sync_threshold": 2, "resize_factor": 1.01}
    assert set(values) == set(HNSW_MODIFIABLE)
    assert check_hnsw(values) == values
    assert check_hnsw(None) == {} and check_hnsw({}) == {}


@config.register
class SavedColourShape(ColourShapeEmbedder):
    """A fake embedder that can be saved, for the config round trip."""

    def config(self) -> dict:
        return {"name": self.name, "dimension": self.dimension}


def test_index_passes_hnsw_to_both_collections_and_round_trips(tmp_path, sample_folder):
    settings = {"ef_search": 64, "max_neighbors": 12}
    index = MultimodalIndex(tmp_path / "db", image_embedder=SavedColourShape(), hnsw=settings)
    assert index.ingest_folder(sample_folder).added == 15
    for store in index.stores():
        stored = store.hnsw_settings()
        assert (stored["ef_search"], stored["max_neighbors"], stored["space"]) == (64, 12, "cosine")
    saved = config.to_dict(index)
    assert saved["hnsw"] == settings
    rebuilt = config.from_dict(saved)
    assert rebuilt.hnsw == settings and config.to_dict(rebuilt) == saved
    assert rebuilt.count() == index.count()
    plain = MultimodalIndex(tmp_path / "db2", image_embedder=SavedColourShape())
    assert plain.config()["hnsw"] is None and config.from_dict(config.to_dict(plain)).hnsw is None


def test_index_with_other_fixed_settings_is_refused(tmp_path, sample_folder):
    MultimodalIndex(tmp_path / "db", image_embedder=ColourShapeEmbedder(), hnsw={"max_neighbors": 12}).ingest_folder(sample_folder)
    other = MultimodalIndex(tmp_path / "db", image_embedder=ColourShapeEmbedder(), hnsw={"max_neighbors": 20})
    with pytest.raises(StoreError, match="max_neighbors=12"):
        other.count()
    wider = MultimodalIndex(tmp_path / "db", image_embedder=ColourShapeEmbedder(), hnsw={"max_neighbors": 12, "ef_search": 250})
    assert wider.count()["image"] == 12
    assert wider.image_store.hnsw_settings()["ef_search"] == 250
