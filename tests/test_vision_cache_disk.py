"""The on-disk vision-feature cache: round trips, corruption detected and recomputed, bounded with
least-recently-used eviction, safe with two processes writing, reading and evicting at once."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import pytest
import torch

from mm_rag_components import Candidate, Query
from mm_rag_components.errors import ConfigError
from mm_rag_components.scoring.disk_cache import DiskFeatureCache, decode, encode
from mm_rag_components.scoring.transformers_scorer import TransformersScorer


def test_round_trip_keeps_dtype_shape_and_values(tmp_path):
    cache = DiskFeatureCache(tmp_path / "features")
    assert not (tmp_path / "features").exists()  # nothing is created until a write
    values = {"a" * 64: torch.randn(5, 8), "b" * 64: torch.randn(3, 5, 8).to(torch.bfloat16), "c" * 64: torch.zeros(0, 8)}
    for key, tensor in values.items():
        cache.put(key, tensor)
    for key, tensor in values.items():
        got = cache.get(key)
        assert got.dtype == tensor.dtype and torch.equal(got, tensor)
    assert cache.get("d" * 64) is None and cache.hits == 3 and cache.misses == 1
    with pytest.raises(ValueError, match="does not match"):
        decode(encode("a" * 64, values["a" * 64]), "b" * 64)  # an entry never answers for another key
    with pytest.raises(ConfigError):
        DiskFeatureCache(tmp_path, max_bytes=0)


@pytest.mark.parametrize("damage", ["truncate", "flip", "header", "empty", "magic"])
def test_corrupt_entries_are_misses_and_removed(tmp_path, damage):
    cache = DiskFeatureCache(tmp_path)
    key = "e" * 64
    cache.put(key, torch.arange(40, dtype=torch.float32).reshape(5, 8))
    file = next(tmp_path.rglob("*.feat"))
    data = bytearray(file.read_bytes())
    if damage == "truncate":
        data = data[:-7]
    elif damage == "flip":
        data[-3] ^= 0xFF
    elif damage == "header":
        data[25:30] = b"}}}}}"
    elif damage == "empty":
        data = bytearray()
    else:
        data[:3] = b"XYZ"
    file.write_bytes(bytes(data))
    assert cache.get(key) is None and cache.corrupt == 1
    assert not file.exists()


def test_size_is_bounded_and_least_recently_used_go_first(tmp_path):
    one = len(encode("k" * 64, torch.zeros(16, 16)))
    cache = DiskFeatureCache(tmp_path, max_bytes=one * 5)
    keys = [f"{i:064x}" for i in range(12)]
    for i, key in enumerate(keys):
        cache.put(key, torch.full((16, 16), float(i)))
        os.utime(next(tmp_path.rglob(f"{key}.feat")), (1000 + i, 1000 + i))  # distinct, ordered times
        if i == 3:
            assert torch.equal(cache.get(keys[0]), torch.full((16, 16), 0.0))  # a hit makes the oldest entry the newest
    assert cache.size() <= one * 5
    # the newest and the recently read are kept, each with its own value
    assert torch.equal(cache.get(keys[-1]), torch.full((16, 16), 11.0)) and torch.equal(cache.get(keys[0]), torch.full((16, 16), 0.0))
    assert cache.get(keys[1]) is None  # the least recently used went


WORKER = textwrap.dedent("""
    import sys, torch
    from mm_rag_components.scoring.disk_cache import DiskFeatureCache
    cache = DiskFeatureCache(sys.argv[1], max_bytes=int(sys.argv[2]))
    bad = 0
    for round in range(60):
        for i in range(8):
            key = f"{i:064x}"
            cache.put(key, torch.full((32, 32), float(i)))
            got = cache.get(f"{(i + 3) % 8:064x}")
            if got is not None and not torch.equal(got, torch.full((32, 32), float((i + 3) % 8))):
                bad += 1
    print("bad", bad, "corrupt", cache.corrupt)
""")


def test_two_processes_share_one_cache_while_it_evicts(tmp_path):
    one = len(encode("k" * 64, torch.zeros(32, 32)))
    args = [sys.executable, "-c", WORKER, str(tmp_path), str(one * 4)]  # room for half the keys: constant eviction
    procs = [subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for _ in range(2)]
    outs = [p.communicate(timeout=120) for p in procs]
    for proc, (out, err) in zip(procs, outs):
        assert proc.returncode == 0, err
        assert out.split() == ["bad", "0", "corrupt", "0"], (out, err)
    assert DiskFeatureCache(tmp_path).size() <= one * 8  # bounded (each process may overshoot by one entry)
    assert not list(tmp_path.rglob(".tmp-*"))  # no temporary file left behind


def test_scorer_reads_recomputes_and_keys_by_settings(tiny_vlm_dirs, drawn_images, tmp_path):
    cands = [Candidate(id=str(i), modality="image", image_path=str(p)) for i, p in enumerate(drawn_images[:3])]
    query = Query(text="a red circle")
    first = TransformersScorer(tiny_vlm_dirs["idefics3"], vision_cache_dir=tmp_path)
    baseline = first.score(query, cands)
    assert first.features.computed == 3 and len(list(tmp_path.rglob("*.feat"))) == 3
    for file in tmp_path.rglob("*.feat"):  # damage every entry: a fresh scorer recomputes them, same scores
        file.write_bytes(file.read_bytes()[:-4])
    second = TransformersScorer(tiny_vlm_dirs["idefics3"], vision_cache_dir=tmp_path)
    assert [s.logodds for s in second.score(query, cands)] == pytest.approx([s.logodds for s in baseline], abs=1e-6)
    assert second.features.computed == 3 and second.vision_cache.disk.corrupt == 3
    third = TransformersScorer(tiny_vlm_dirs["idefics3"], vision_cache_dir=tmp_path)
    assert [s.logodds for s in third.score(query, cands)] == pytest.approx([s.logodds for s in baseline], abs=1e-6)
    assert third.features.computed == 0  # read back from disk
    other = TransformersScorer(tiny_vlm_dirs["idefics3"], vision_cache_dir=tmp_path, dtype="bfloat16")
    other.score(query, cands)
    assert other.features.computed == 3  # another dtype: other features, other keys
    assert third.config()["vision_cache_dir"] == str(tmp_path)


def test_unwritable_cache_never_fails_a_query(tiny_vlm_dirs, drawn_images, tmp_path, caplog):
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    scorer = TransformersScorer(tiny_vlm_dirs["llava"], vision_cache_dir=blocker / "cache")
    scores = scorer.score(Query(text="x"), [Candidate(id="a", modality="image", image_path=str(drawn_images[0]))])
    assert scores[0].flag is None and scores[0].probability > 0.0
    assert "cannot write" in caplog.text  # logged, not raised
