"""Ingest never aborts and never loses good items: generated folders and item streams full of bad
inputs, store calls paged by the client's maximum batch size, queries on missing or empty
collections, the embedded-database writer lock and the progress total. Runs on embedded Chroma
with the fast fake embedders; every generated case runs under a time limit."""

from __future__ import annotations

import base64
import itertools
import logging
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import pytest
from bounds import time_limit
from fake_models import ColourShapeEmbedder
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image
from test_hardening_ingest_support import COLOURS, SmallBatchClient, pathological_text, png

from mm_rag_components import Item, MultimodalIndex
from mm_rag_components.chunking import PlainSplitter
from mm_rag_components.errors import ConfigError, StoreError
from mm_rag_components.media import clean_path, clean_text, content_hash
from mm_rag_components.retrieval import retrieve
from mm_rag_components.store import WRITER_LOCK_NAME, ChromaStore

CASES = settings(
    deadline=None,  # a hang guard (time_limit) bounds each case instead: Chroma's first calls are slow
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture, HealthCheck.data_too_large],
)
_names = itertools.count()


@pytest.fixture(scope="module")
def client():
    """One in-memory Chroma for the generated cases (same engine as the embedded one, no fsync)."""
    import chromadb
    from chromadb.config import Settings

    return chromadb.EphemeralClient(settings=Settings(anonymized_telemetry=False))


def fresh(client, **options) -> MultimodalIndex:
    """An index on a new collection of the shared client."""
    options.setdefault("splitter", PlainSplitter(60, 16))
    return MultimodalIndex(client=client, image_embedder=ColourShapeEmbedder(), collection=f"case{next(_names)}", **options)


def documents(store: ChromaStore, **where) -> list[str]:
    return [h.document for h in store.get(where=where or None)]


# --- store calls are paged ------------------------------------------------------------------------

@settings(CASES, max_examples=25)
@given(st.integers(0, 40), st.integers(1, 9), st.integers(1, 12))
def test_every_store_call_is_paged_by_the_clients_max_batch_size(client, n, limit, n_sources):
    proxy = SmallBatchClient(client, limit)
    store = ChromaStore(proxy, f"paged{next(_names)}", embedder_name="m", dimension=3)
    ids = [f"r{i}" for i in range(n)]
    sources = [f"s{i % n_sources}" for i in range(n)]
    with time_limit():
        store.upsert(ids, np.random.default_rng(n).random((n, 3)) + 0.1, [{"source": s, "i": i} for i, s in enumerate(sources)])
        assert store.count() == n
        assert store.existing([*ids, "nope"]) == set(ids)
        assert store.ids_by_source(sorted(set(sources)) + ["none"]) == {
            **{s: {i for i, t in zip(ids, sources) if t == s} for s in set(sources)}, "none": set()
        }
        assert sorted(store.ids()) == sorted(ids) and len(list(store.iter_metadata())) == n
        assert sorted(h.id for h in store.get(ids=ids)) == sorted(ids)
        assert store.delete(ids=ids[::2]) == len(ids[::2])
        assert store.delete(where={"source": "s0"}) == sum(1 for i in range(1, n, 2) if sources[i] == "s0")
    assert proxy.calls and max(size for _, size in proxy.calls) <= limit


@settings(CASES, max_examples=15)
@given(st.integers(2, 6), st.lists(st.integers(20, 60), min_size=2, max_size=6))
def test_ingest_writes_windows_larger_than_the_max_batch(client, limit, words):
    index = MultimodalIndex(client=SmallBatchClient(client, limit), image_embedder=ColourShapeEmbedder(),
                            collection=f"small{next(_names)}", splitter=PlainSplitter(8, 0))
    items = [Item(text=" ".join(f"w{n}x{i}" for i in range(count)), source=f"doc://{n}") for n, count in enumerate(words)]
    with time_limit():
        report = index.ingest(items)
    assert report.added == len(items) and report.ok
    assert index.count()["text"] == report.records == sum(len(index.splitter.split(i.text).chunks) for i in items)
    assert report.records > limit


def test_text_files_beyond_chromas_real_max_batch_are_all_indexed(tmp_path):
    folder = tmp_path / "texts"
    folder.mkdir()
    words = [np.base_repr(i, 36).rjust(4, "0") for i in range(72_000)]  # 12 distinct words a chunk
    for n in range(3):  # 3 files x 2,000 chunks = 6,000 records in one window (Chroma takes 5,461)
        (folder / f"{n}.txt").write_text(" ".join(words[n * 24_000 : (n + 1) * 24_000]), encoding="utf-8")
    index = MultimodalIndex(tmp_path / "db", image_embedder=ColourShapeEmbedder(), splitter=PlainSplitter(16, 0))
    assert index.text_store.page_size < 6000
    with time_limit():
        report = index.ingest_folder(folder)
    assert (report.added, report.records, report.skipped) == (3, 6000, [])
    assert index.count()["text"] == 6000


# --- items: bad ones skipped, repairable ones repaired, duplicates counted, good ones kept --------

GOOD, REPAIRED, BAD, DUPLICATE = "good", "repaired", "bad", "duplicate"
TEXT = st.lists(st.sampled_from(["red", "circle", "blue.", "square", "the", "dog!", "cat", "\u00e9t\u00e9", "\u6f22\u5b57\u3002"]),
                min_size=1, max_size=60).map(" ".join)


@st.composite
def item_cases(draw: st.DrawFn) -> list[tuple[object, str]]:
    """(item, expected outcome) pairs; good items are distinct from one another by construction."""
    cases: list[tuple[object, str]] = []
    for n in range(draw(st.integers(1, 12))):
        kind = draw(st.sampled_from([
            "text", "text", "image", "pil", "pathological", "surrogate_text", "surrogate_source", "surrogate_meta",
            "collide", "reserved", "data_source", "b64_source", "long_source", "nonstr_text", "blank", "bad_image",
            "not_item", "huge_text", "huge_list", "caption_type", "duplicate", "url", "device", "folder",
        ]))
        source = draw(st.sampled_from([None, f"memo://{n}", f"/virtual/{n}.txt"]))
        text = f"item {n} " + draw(TEXT)
        image = png(COLOURS[n % len(COLOURS)], (10 + n, 9))
        odd = f"item {n} " + draw(pathological_text(max_repeat=3000)) if kind == "pathological" else ""
        good = [c for c in cases if c[1] in (GOOD, REPAIRED)]
        if kind == "duplicate" and good:
            cases.append((good[draw(st.integers(0, len(good) - 1))][0], DUPLICATE))
            continue
        made = {
            "text": (Item(text=text, source=source, metadata={"n": n, "tags": ["a", "b"]}), GOOD),
            "image": (Item(image=image, source=source, text=f"caption {n}"), GOOD),
            "pil": (Item(image=Image.new("RGB", (8 + n, 8), COLOURS[n % len(COLOURS)]), metadata={"exif": {"iso": n}}), GOOD),
            "pathological": (Item(text=odd, source=source), GOOD if len(odd.encode()) <= 4000 and odd.strip() else BAD),
            "surrogate_text": (Item(text=text + " \ud800 bad \udfff", source=source), REPAIRED),
            "surrogate_source": (Item(text=text, source=f"memo://{n}/\udcff"), REPAIRED),
            "surrogate_meta": (Item(text=text, metadata={"note": "x\ud800", "k\udc80": 1}), REPAIRED),
            "collide": (Item(text=text, metadata={"a.b": 1, "a": {"b": 2}}), BAD),
            "reserved": (Item(text=text, metadata={"sha256": "x"}), BAD),
            "data_source": (Item(image=image, source="data:image/png;base64," + base64.b64encode(image).decode()), BAD),
            "b64_source": (Item(image=image, source=base64.b64encode(image * 8).decode()), BAD),
            "long_source": (Item(text=text, source="/x" * 3000), BAD),
            "nonstr_text": (Item(text=1234, source=source), BAD),  # type: ignore[arg-type]
            "blank": (Item(text=" \n\t ", source=source), BAD),
            "bad_image": (Item(image=b"\x89PNG not really %d" % n, source=source), BAD),
            "not_item": (f"not an item {n}", BAD),
            "huge_text": (Item(text="big " * 2000, source=source), BAD),
            "huge_list": (Item(text=text, metadata={"ids": list(range(5000))}), BAD),
            "caption_type": (Item(image=image, text=["not", "a", "caption"]), BAD),  # type: ignore[arg-type]
            "url": (Item(image="http://example.invalid/x.png"), BAD),
            "device": (Item(image=draw(st.sampled_from([Path("/dev/zero"), "/dev/zero", "/dev/null"]))), BAD),
            "folder": (Item(image=draw(st.sampled_from([Path("/"), "/tmp/"]))), BAD),
            "duplicate": (Item(text=text, source=source), GOOD),
        }[kind]
        cases.append(made)
    return cases


def _label_of(skipped_source: str, number: int) -> bool:
    return skipped_source == f"item #{number}" or skipped_source.startswith(f"item #{number} (")


@settings(CASES, max_examples=50)
@given(item_cases(), st.integers(1, 6), st.integers(3, 40))
def test_item_ingest_keeps_good_items_and_accounts_for_every_one(client, cases, batch_size, max_chunks):
    index = fresh(client, batch_size=batch_size, max_text_bytes=4000, max_chunks_per_file=max_chunks)
    items = [item for item, _ in cases]
    with time_limit():
        report = index.ingest(items)
    assert report.added + report.updated + report.unchanged + report.duplicates + len(report.skipped) == len(items)
    assert report.duplicates == sum(1 for _, outcome in cases if outcome == DUPLICATE)
    assert not any("unexpected error" in s.reason for s in report.skipped)
    stored_docs = set(documents(index.text_store))
    for number, (item, outcome) in enumerate(cases):
        skipped = [s for s in report.skipped if _label_of(s.source, number)]
        if outcome == BAD:
            assert len(skipped) == 1, (number, item, report.summary())
            continue
        assert not skipped, (number, skipped)
        if outcome == REPAIRED:
            assert any(_label_of(n.source, number) and "U+FFFD" in n.note for n in report.notes)
        if outcome == DUPLICATE:
            continue
        if item.image is None:  # every chunk of the repaired text is stored
            chunks = index.splitter.split(clean_text(item.text)[0]).chunks
            assert set(chunks) <= stored_docs, (number, item)
        else:
            data = item.image if isinstance(item.image, bytes) else None
            digest = content_hash(data) if data else None
            hits = index.image_store.get(where={"sha256": digest}) if digest else index.image_store.get(where={"exif.iso": number})
            assert len(hits) == 1 and hits[0].document == item.text
    for record in index.text_store.get() + index.image_store.get():  # nothing stored is invalid Unicode
        assert not clean_text(record.document or "")[1] and not clean_text(str(record.metadata))[1]


def test_one_bad_item_in_a_window_does_not_lose_the_others(client):
    index = fresh(client, batch_size=5)
    items = [Item(text=f"note {i} about a red circle", source=f"memo://{i}") for i in range(5)]
    items[2] = Item(text="a lone surrogate \ud800 in the text", source="memo://bad")
    report = index.ingest(items)
    assert report.added == 5 and index.count()["text"] == 5
    assert [n.source for n in report.notes] == ["item #2 (memo://bad)"]
    assert documents(index.text_store, source="memo://bad") == ["a lone surrogate \ufffd in the text"]


def test_a_record_the_store_refuses_is_skipped_and_the_window_kept(client, monkeypatch):
    index = fresh(client, batch_size=4)
    store = index.text_store
    real = store.upsert

    def picky(ids, *args, **kwargs):
        bad = [i for i, meta in enumerate(args[1]) if meta.get("source") == "memo://refused"]
        if bad:
            raise StoreError("Chroma upsert on collection failed: refused")
        return real(ids, *args, **kwargs)

    monkeypatch.setattr(store, "upsert", picky)
    items = [Item(text=f"text number {i}", source="memo://refused" if i == 1 else f"memo://{i}") for i in range(4)]
    report = index.ingest(items)
    assert report.added == 3 and [s.source for s in report.skipped] == ["item #1 (memo://refused)"]
    assert "not stored" in report.skipped[0].reason and index.count()["text"] == 3


def test_identical_items_and_chunks_are_counted_not_fatal(client):
    index = fresh(client, splitter=type("Repeat", (), {"split_text": lambda self, t: [t, t, "tail"]})())
    image = png((220, 30, 30))
    report = index.ingest([Item(text="same"), Item(text="same"), Item(image=image), Item(image=image), Item(text="other")])
    assert (report.added, report.duplicates, report.skipped) == (3, 2, [])
    assert report.duplicate_chunks >= 2 and "duplicates 2" in report.summary()
    assert index.count() == {"image": 1, "text": 3}  # "same", "tail", "other"


def test_sentence_splitter_time_limit_falls_back_and_is_reported(client, monkeypatch):
    import nltk.redos

    index = fresh(client, splitter=None)  # the default: LlamaIndex's SentenceSplitter behind the guard
    monkeypatch.setattr(nltk.redos, "DEFAULT_TIMEOUT", 1e-9)
    report = index.ingest([Item(text="Dogs run. Cats sleep. " * 200, source="memo://long")])
    assert report.added == 1 and report.records > 1
    assert any("TimeoutError" in n.note and "PlainSplitter" in n.note for n in report.notes)


def _made(root: Path, outside: Path, n: int, kind: str) -> list[tuple[Path, str | None]]:
    made = _make(root, outside, n, kind)
    return made if isinstance(made, list) else [made]


# --- folders: FIFOs, devices, symlinks, caps, bad names -----------------------------------------

FILE_KINDS = ["text", "image", "empty", "latin1", "big_text", "big_image", "truncated", "fifo", "device",
              "link_dev", "link_outside", "link_inside", "dangling", "bad_name", "other", "loop"]


def _make(root: Path, outside: Path, n: int, kind: str) -> list[tuple[Path, str | None]] | tuple[Path, str | None]:
    """Create file ``n`` of ``kind``; return its path(s) and expected skip reasons (None: good)."""
    folder = root / "sub" if n % 3 == 2 else root
    folder.mkdir(exist_ok=True)
    text_path, image_path = folder / f"f{n}.txt", folder / f"f{n}.png"
    if kind == "text":
        text_path.write_text(f"file {n}: a red circle and a blue square.", encoding="utf-8")
        return text_path, None
    if kind in ("image", "link_inside"):
        image_path.write_bytes(png(COLOURS[n % len(COLOURS)], (10 + n, 7)))
        if kind == "image":
            return image_path, None
        link = folder / f"f{n}-link.png"
        link.symlink_to(image_path.name)
        return [(image_path, None), (link, None)]
    if kind == "empty":
        text_path.write_bytes(b"")
        return text_path, "empty text"
    if kind == "latin1":
        text_path.write_bytes("caf\xe9".encode("latin-1"))
        return text_path, "not UTF-8"
    if kind == "big_text":
        text_path.write_text("word " * 1000, encoding="utf-8")
        return text_path, "max_text_bytes"
    if kind == "big_image":
        noise = np.random.default_rng(n).integers(0, 255, (64, 64, 3), dtype=np.uint8)
        Image.fromarray(noise).save(image_path)
        return image_path, "max_image_bytes"
    if kind == "truncated":
        image_path.write_bytes(png((1, 2, 3), (64, 64))[:70])
        return image_path, "truncated"
    if kind == "fifo":
        os.mkfifo(text_path)
        return text_path, "not a regular file (FIFO)"
    if kind == "device":
        try:
            os.mknod(image_path, 0o600 | 0o020000, os.makedev(1, 3))  # a character device, like /dev/null
        except (PermissionError, OSError):
            os.mkfifo(image_path)
            return image_path, "not a regular file (FIFO)"
        return image_path, "not a regular file (character device)"
    if kind == "link_dev":
        text_path.symlink_to("/dev/zero")
        return text_path, "not a regular file (character device)|outside the ingested folder"
    if kind == "link_outside":
        target = outside / f"f{n}.txt"
        target.write_text(f"outside file {n}", encoding="utf-8")
        text_path.symlink_to(target)
        return text_path, "follow|outside the ingested folder"
    if kind == "dangling":
        image_path.symlink_to(folder / "missing.png")
        return image_path, "no such file"
    if kind == "bad_name":
        path = Path(os.fsdecode(os.path.join(os.fsencode(folder), b"f%d-\xff.txt" % n)))
        path.write_text(f"bad name {n}", encoding="utf-8")
        return path, None
    if kind == "other":
        (folder / f"f{n}.csv").write_text("a,b\n")
        return folder / f"f{n}.csv", "ignored"
    text_path.symlink_to(text_path.name)  # "loop": a symlink to itself
    return text_path, "cannot open"


@settings(CASES, max_examples=40)
@given(st.lists(st.sampled_from(FILE_KINDS), min_size=1, max_size=10), st.booleans(), st.integers(1, 4))
def test_folder_ingest_keeps_every_good_file_and_reports_every_bad_one(client, kinds, follow, batch_size):
    with tempfile.TemporaryDirectory() as tmp:
        root, outside = Path(tmp) / "root", Path(tmp) / "elsewhere"
        root.mkdir()
        outside.mkdir()
        made = [pair for n, kind in enumerate(kinds) for pair in _made(root.resolve(), outside, n, kind)]
        index = fresh(client, batch_size=batch_size, max_text_bytes=2000, max_image_bytes=8000, follow_external_symlinks=follow)
        with time_limit():
            report = index.ingest_folder(root)
        expected_bad = {}
        for path, reason in made:
            if reason == "ignored" or reason is None:
                continue
            choices = reason.split("|")
            reason = choices[0] if follow or len(choices) == 1 else choices[1]
            if reason != "follow":
                expected_bad[clean_path(path)[0]] = reason
        good = [clean_path(p)[0] for p, r in made if r is None or (r.startswith("follow") and follow)]
        assert report.ignored == kinds.count("other")
        assert {s.source: s.reason for s in report.skipped}.keys() == expected_bad.keys(), report.summary()
        for skipped in report.skipped:
            assert expected_bad[skipped.source] in skipped.reason, skipped
        assert report.added == len(good) and report.records == len(good)
        for source in good:
            store = index.image_store if source.endswith(".png") else index.text_store
            assert len(store.get(where={"source": source})) == 1, source
        assert sum("not valid UTF-8" in n.note for n in report.notes) == kinds.count("bad_name")
        with time_limit():
            again = index.ingest_folder(root, delete_missing=True)
        assert (again.added, again.unchanged, again.deleted) == (0, len(good), 0)


@settings(CASES, max_examples=30)
@given(st.one_of(st.text(alphabet=st.characters(), max_size=30), st.text(alphabet="/.\x00~\ud800", max_size=12)))
def test_delete_and_ingest_folder_take_any_string(client, text):
    index = fresh(client)
    index.ingest([Item(text="keep me", source="memo://keep")])
    with time_limit():
        assert index.delete(text) == 0
    assert index.count()["text"] == 1
    with tempfile.TemporaryDirectory() as tmp:
        here = os.getcwd()
        os.chdir(tmp)
        try:
            try:  # never walk a real folder outside the empty temporary one
                inside = Path(text).expanduser().resolve().is_relative_to(Path(tmp).resolve())
            except (OSError, ValueError, RuntimeError):
                inside = True
            with time_limit():
                report = index.ingest_folder(text) if inside else None
        except ConfigError:
            return
        finally:
            os.chdir(here)
    assert report is None or (report.added, report.skipped) == (0, [])


# --- reading never creates collections --------------------------------------------------------

def test_query_on_a_missing_collection_says_so_and_creates_nothing(client, caplog):
    index = fresh(client)
    before = {c.name for c in client.list_collections()}
    with pytest.raises(StoreError, match="does not exist; ingest first"):
        retrieve(index, "a red circle")
    assert index.count() == {"image": 0, "text": 0} and index.delete("memo://x") == 0
    assert {c.name for c in client.list_collections()} == before
    index.ingest([])  # ingest creates both collections, bound to this embedder
    assert {c.name for c in client.list_collections()} - before == {index.collection, f"{index.collection}-text"}
    with caplog.at_level(logging.WARNING, logger="mm_rag_components.store"):
        assert retrieve(index, "a red circle") == []
    assert "is empty; ingest first" in caplog.text


# --- several processes on one embedded database ------------------------------------------------

def test_a_second_writer_is_detected_and_pointed_to_server_mode(tmp_path, caplog):
    index = MultimodalIndex(tmp_path / "db", image_embedder=ColourShapeEmbedder(), splitter=PlainSplitter(60, 16))
    with caplog.at_level(logging.WARNING, logger="mm_rag_components.store"):
        index.ingest([Item(text="alone", source="memo://1")])
    assert "another writer" not in caplog.text
    lock = tmp_path / "db" / WRITER_LOCK_NAME
    holder = subprocess.Popen(
        [sys.executable, "-c", "import fcntl, os, sys, time\n"
         f"fd = os.open({str(lock)!r}, os.O_RDWR | os.O_CREAT)\nfcntl.flock(fd, fcntl.LOCK_EX)\n"
         "os.ftruncate(fd, 0); os.write(fd, str(os.getpid()).encode())\nprint('locked', flush=True)\nsys.stdin.read()"],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
    )
    try:
        assert holder.stdout.readline().strip() == "locked"
        with caplog.at_level(logging.WARNING, logger="mm_rag_components.store"):
            report = index.ingest([Item(text="together", source="memo://2")])
    finally:
        holder.kill()
        holder.wait()
    assert report.added == 1
    assert f"process {holder.pid}" in caplog.text and "host=..., port=..." in caplog.text


# --- the progress bar knows its total ----------------------------------------------------------

def test_progress_bar_has_a_total_for_folders_and_sized_item_lists(client, sample_folder, monkeypatch):
    import tqdm.auto

    totals: list[object] = []

    class Recording(tqdm.auto.tqdm):
        def close(self):
            if not getattr(self, "recorded", False):
                self.recorded = True
                totals.append((self.total, self.n))
            super().close()

    monkeypatch.setattr(tqdm.auto, "tqdm", Recording)
    (sample_folder / "skip.csv").write_text("x")
    index = fresh(client)
    index.ingest_folder(sample_folder, show_progress=True)
    index.ingest([Item(text=f"t{i}") for i in range(7)], show_progress=True)
    index.ingest((Item(text=f"g{i}") for i in range(3)), show_progress=True)
    assert totals == [(15, 15), (7, 7), (None, 3)]
