"""ChromaStore on an embedded Chroma: records, cosine scores, filters, embedder checks, errors."""

import datetime as dt
import math
from pathlib import Path

import numpy as np
import pytest

from mm_rag_components.errors import ConfigError, StoreError
from mm_rag_components.metadata import flatten_metadata
from mm_rag_components.store import ChromaStore, make_client


@pytest.fixture()
def client(tmp_path):
    return make_client(tmp_path / "db")


def unit(*values):
    v = np.asarray(values, dtype=np.float32)
    return v / np.linalg.norm(v)


def test_telemetry_is_off_unless_asked(tmp_path):
    assert make_client(tmp_path / "a").get_settings().anonymized_telemetry is False
    assert make_client(tmp_path / "b", telemetry=True).get_settings().anonymized_telemetry is True


def test_upsert_query_scores_are_cosine_similarities(client):
    store = ChromaStore(client, "vectors", embedder_name="m", dimension=3)
    vectors = np.stack([unit(1, 0, 0), unit(0, 1, 0), unit(1, 1, 0)])
    store.upsert(["x", "y", "xy"], vectors, [{"modality": "image", "n": i} for i in range(3)], ["dx", None, "dxy"])
    hits = store.query(unit(1, 0, 0), 3)
    assert [h.id for h in hits] == ["x", "xy", "y"]
    assert [h.similarity for h in hits] == pytest.approx([1.0, math.sqrt(0.5), 0.0], abs=1e-5)
    assert hits[0].document == "dx" and hits[0].metadata == {"modality": "image", "n": 0}
    # upsert replaces in place: same id, new vector
    store.upsert(["y"], unit(1, 0, 0)[None], [{"modality": "image", "n": 9}])
    assert store.count() == 3
    assert store.query(unit(1, 0, 0), 1, where={"n": 9})[0].id == "y"


def test_where_filters_get_and_delete(client):
    store = ChromaStore(client, "filters", embedder_name="m", dimension=2)
    store.upsert(
        ["a", "b", "c"], np.stack([unit(1, 0), unit(0, 1), unit(1, 1)]),
        [{"source": "/f/a.png", "year": 2020}, {"source": "/f/b.png", "year": 2024}, {"source": "/f/b.png", "year": 2025}],
    )
    assert {h.id for h in store.get(where={"year": {"$gte": 2024}})} == {"b", "c"}
    assert [h.id for h in store.query(unit(1, 0), 5, where={"year": 2024})] == ["b"]
    assert store.ids_by_source(["/f/a.png", "/f/b.png", "/f/none.png"]) == {
        "/f/a.png": {"a"}, "/f/b.png": {"b", "c"}, "/f/none.png": set()
    }
    assert store.existing(["a", "zz"]) == {"a"}
    assert store.delete(ids=["a", "zz"]) == 1  # counts only what was stored
    assert store.delete(where={"source": "/f/b.png"}) == 2
    assert store.count() == 0
    with pytest.raises(ConfigError):
        store.delete()


def test_iter_metadata_pages_through_everything(client):
    store = ChromaStore(client, "paged", embedder_name="m", dimension=2)
    n = 23
    store.upsert([f"r{i}" for i in range(n)], np.tile(unit(1, 1), (n, 1)), [{"i": i} for i in range(n)])
    pairs = list(store.iter_metadata(batch=5))
    assert sorted(m["i"] for _, m in pairs) == list(range(n))


def test_query_on_empty_store_and_bad_k(client):
    store = ChromaStore(client, "empty", embedder_name="m", dimension=2)
    assert store.query(unit(1, 0), 4) == []
    with pytest.raises(ConfigError):
        store.query(unit(1, 0), 0)
    with pytest.raises(StoreError, match="dimension 3"):
        store.query(unit(1, 0, 0), 1)


def test_shape_and_value_checks_on_upsert(client):
    store = ChromaStore(client, "checks", embedder_name="m", dimension=2)
    with pytest.raises(StoreError, match="shape"):
        store.upsert(["a"], np.ones((1, 3), np.float32), [{"k": 1}])
    with pytest.raises(StoreError, match="NaN"):
        store.upsert(["a"], np.array([[np.nan, 1.0]], np.float32), [{"k": 1}])
    assert store.count() == 0


def test_reopening_with_another_embedder_or_dimension_is_refused(client):
    ChromaStore(client, "bound", embedder_name="model-a", dimension=4)
    ChromaStore(client, "bound", embedder_name="model-a", dimension=4)  # same model: fine
    with pytest.raises(StoreError, match="model-a"):
        ChromaStore(client, "bound", embedder_name="model-b", dimension=4)
    with pytest.raises(StoreError, match="dimension 4"):
        ChromaStore(client, "bound", embedder_name="model-a", dimension=8)


def test_foreign_collections_adopted_only_when_empty(client):
    client.create_collection("plain-empty", embedding_function=None)
    store = ChromaStore(client, "plain-empty", embedder_name="m", dimension=2)
    assert client.get_collection("plain-empty").metadata["mmrag_embedder"] == "m"
    filled = client.create_collection("plain-filled", embedding_function=None)
    filled.add(ids=["x"], embeddings=[[1.0, 0.0]])
    with pytest.raises(StoreError, match="did not write"):
        ChromaStore(client, "plain-filled", embedder_name="m", dimension=2)
    assert store.count() == 0


def test_chroma_errors_become_store_errors(client):
    with pytest.raises(StoreError, match="cannot open Chroma collection"):
        ChromaStore(client, "x", embedder_name="m", dimension=2)  # Chroma wants 3+ characters
    store = ChromaStore(client, "errs", embedder_name="m", dimension=2)
    with pytest.raises(StoreError, match="Chroma get on collection 'errs' failed"):
        store.get(where={"$bogus": 1})


def test_embedded_client_needs_a_path():
    with pytest.raises(ConfigError):
        make_client(None)


def test_unusable_path_is_a_store_error(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    with pytest.raises(StoreError, match="cannot open Chroma database"):
        make_client(blocker / "db")


def test_flatten_metadata_documented_conversions():
    when = dt.datetime(2024, 5, 1, 12, 30)
    flat = flatten_metadata(
        {
            "title": "x", "n": 3, "f": 0.5, "ok": True, "none": None, "empty": [],
            "tags": ["a", "b"], "nums": (1, 2.5), "flags": [True, False], "mixed": [1, "a", None],
            "exif": {"iso": 100, "lens": {"mm": 35}}, "path": Path("/a/b.png"), "when": when, "set": {"b", "a"},
        }
    )
    assert flat == {
        "title": "x", "n": 3, "f": 0.5, "ok": True, "tags": ["a", "b"], "nums": [1.0, 2.5],
        "flags": [True, False], "mixed": '[1, "a", null]', "exif.iso": 100, "exif.lens.mm": 35,
        "path": "/a/b.png", "when": "2024-05-01T12:30:00", "set": ["a", "b"],
    }


@pytest.mark.parametrize(
    "metadata, message",
    [
        ({"modality": "text"}, "reserved"),
        ({"source": "x"}, "reserved"),
        ({1: "x"}, "non-empty strings"),
        ({"": "x"}, "non-empty strings"),
        ({"$and": 1}, "may not start"),
        ({"blob": b"\x89PNG"}, "no blobs"),
        ({"uri": "data:image/png;base64,iVBOR"}, "no blobs"),
        ({"long": "x" * 70_000}, "over the limit"),
        ({"f": float("nan")}, "finite"),
        ({"big": 2**70}, "64 bits"),
        ({"nested": {1: "x"}}, "non-empty strings"),
        ({"nested": {"blob": b"x"}}, "no blobs"),
        ({"#document": 1}, "may not start"),
        ({"a.b": 1, "a": {"b": 2}}, "collide"),
        ({"ids": list(range(2000))}, "entries"),
    ],
)
def test_flatten_metadata_refuses_with_clear_errors(metadata, message):
    with pytest.raises(ConfigError, match=message):
        flatten_metadata(metadata)


def test_flattened_metadata_is_accepted_by_chroma(client):
    store = ChromaStore(client, "meta", embedder_name="m", dimension=2)
    flat = flatten_metadata({"tags": ["cat", "dog"], "exif": {"iso": 200}, "mixed": [1, "a"], "when": dt.date(2020, 1, 2)})
    store.upsert(["a"], unit(1, 0)[None], [{"modality": "image", **flat}])
    assert [h.id for h in store.get(where={"tags": {"$contains": "dog"}})] == ["a"]
    assert store.get(ids=["a"])[0].metadata["exif.iso"] == 200


def test_a_store_opened_for_reading_creates_nothing_until_written(client, caplog):
    store = ChromaStore(client, "lazy", embedder_name="m", dimension=2, create_on_open=False)
    assert store.count() == 0 and store.get() == [] and store.existing(["a"]) == set() and store.delete(ids=["a"]) == 0
    with pytest.raises(StoreError, match="'lazy' does not exist; ingest first"):
        store.query(unit(1, 0), 3)
    assert "lazy" not in {c.name for c in client.list_collections()}
    store.ensure()
    assert store.query(unit(1, 0), 3) == [] and "is empty" in caplog.text
    store.upsert(["a"], unit(1, 0)[None], [{"k": 1}])
    assert [h.id for h in ChromaStore(client, "lazy", embedder_name="m", dimension=2).query(unit(1, 0), 3)] == ["a"]
    with pytest.raises(StoreError, match="was built with embedder"):
        ChromaStore(client, "lazy", embedder_name="other", dimension=2, create_on_open=False).count()


def test_upsert_refuses_records_chroma_cannot_store_before_sending_any(client):
    store = ChromaStore(client, "checked", embedder_name="m", dimension=2)
    vectors = np.stack([unit(1, 0), unit(0, 1)])
    for bad_meta, bad_doc in [({"k": "\ud800"}, None), ({"k": list(range(5000))}, None), ({"k": 1}, "\udfff"), ({"#k": 1}, None)]:
        with pytest.raises(StoreError):
            store.upsert(["good", "bad"], vectors, [{"k": 1}, bad_meta], [None, bad_doc])
    assert store.count() == 0  # nothing sent: the collection is still usable
    store.upsert(["good"], vectors[:1], [{"k": 1}])
    assert store.count() == 1
