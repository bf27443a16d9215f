"""Caches read as untrusted, and keyed by what decides their values.

* the score cache knows a local model by its weights, not its folder: a model rebuilt or
  retrained in the same folder never meets the old scores;
* a score-cache row that is not a clean score (text, bytes, ±inf, an unknown flag) is a miss,
  logged, deleted and scored again; a file damaged or replaced while open is set aside (the
  cache goes on in memory); a path that is not a regular file, or another database's ``scores``
  table, is refused at open;
* a vision-feature entry that is not a regular file (a symlink to ``/dev/zero``, a FIFO, a
  folder), too large, or not finite floating-point features is a miss, removed and recomputed —
  never a hang or an endless read (checked in a child process with a memory and time bound).
"""

from __future__ import annotations

import json
import logging
import math
import os
import sqlite3
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mm_rag_components.errors import ConfigError
from mm_rag_components.scoring.cache import CACHEABLE_FLAGS, CachedScorer, ScoreCache
from mm_rag_components.scoring.disk_cache import encode
from mm_rag_components.scoring.transformers_scorer import TransformersScorer
from mm_rag_components.types import Candidate, Query
from bounds import time_limit
from remote_support import CountingScorer
from special_files import KINDS, make_special

TESTS = Path(__file__).parent
CASES = settings(max_examples=60, deadline=None, database=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
DOCS = ["a red circle", "a blue square", "stock prices", "sourdough bread"]
QUERY = Query("red")


def texts(*docs: str) -> list[Candidate]:
    return [Candidate(id=str(i), modality="text", text=d) for i, d in enumerate(docs)]


def honest(docs=DOCS) -> list[float]:
    return [p.logodds for p in CountingScorer().score(QUERY, texts(*docs))]


# ------------------------------------------------------------------ the key: weights, not paths


@pytest.mark.parametrize("rebuild", [{"seed": 1}, {"seed": 2, "intermediate_size": 96}, {"seed": 3, "num_hidden_layers": 1}])
def test_a_model_rebuilt_in_the_same_folder_never_meets_the_old_scores(tmp_path, rebuild):
    from mm_rag_components.testing import build_tiny_causal_lm

    folder, path = tmp_path / "my-reranker", tmp_path / "scores.sqlite"
    build_tiny_causal_lm(folder, seed=0)
    old = [p.logodds for p in CachedScorer(TransformersScorer(folder, local_files_only=True), ScoreCache(path)).score(QUERY, texts(*DOCS))]
    again = CachedScorer(TransformersScorer(folder, local_files_only=True), ScoreCache(path))
    assert [p.logodds for p in again.score(QUERY, texts(*DOCS))] == old and again.cache.hits == len(DOCS)  # same weights: hits

    build_tiny_causal_lm(folder, **rebuild)  # another model, same folder (as `mm-rag train --out` twice)
    fresh = [p.logodds for p in TransformersScorer(folder, local_files_only=True).score(QUERY, texts(*DOCS))]
    cached = CachedScorer(TransformersScorer(folder, local_files_only=True), ScoreCache(path))
    assert [p.logodds for p in cached.score(QUERY, texts(*DOCS))] == pytest.approx(fresh, abs=1e-6)
    assert cached.cache.hits == 0 and fresh != pytest.approx(old, abs=1e-6)


# ------------------------------------------------------------------ score-cache rows


bad_number = st.one_of(st.text(max_size=12), st.binary(max_size=12), st.sampled_from([math.inf, -math.inf]))
bad_flag = st.one_of(st.integers(-(2**63), 2**63 - 1), st.binary(max_size=8), st.floats(allow_nan=False),  # SQLite INTEGER range
                     st.text(max_size=30).filter(lambda f: not set(f.split(",")) - {""} <= CACHEABLE_FLAGS))
any_flag = st.one_of(st.none(), st.sampled_from(sorted(CACHEABLE_FLAGS)), bad_flag)
bad_rows = st.one_of(st.tuples(bad_number, any_flag), st.tuples(st.floats(-30, 30), bad_flag))


@CASES
@given(rows=st.lists(bad_rows, min_size=1, max_size=len(DOCS)), first=st.integers(0, len(DOCS) - 1))
def test_rows_that_are_not_clean_scores_are_misses_scored_again(tmp_path_factory, caplog, rows, first):
    path = tmp_path_factory.mktemp("rows") / "scores.sqlite"
    inner = CountingScorer()
    cached = CachedScorer(inner, ScoreCache(path, max_items=0))
    keys = cached._keys(QUERY, texts(*DOCS))
    planted = {keys[(first + i) % len(DOCS)]: row for i, row in enumerate(rows)}
    with sqlite3.connect(path) as other:  # what another program (or a damaged disk) left there
        other.executemany("INSERT OR REPLACE INTO scores VALUES (?, ?, ?)", [(k, z, f) for k, (z, f) in planted.items()])
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="mm_rag_components.scoring.cache"):
        points = cached.score(QUERY, texts(*DOCS))
    assert [p.logodds for p in points] == honest()
    assert sorted(map(len, inner.calls)) == [len(DOCS)]  # every candidate scored again, none served
    assert "not a clean score" in caplog.text
    with sqlite3.connect(path) as other:  # the bad rows were replaced by the fresh scores
        stored = dict((k, z) for k, z in other.execute("SELECT key, logodds FROM scores"))
    assert all(isinstance(stored[k], float) and math.isfinite(stored[k]) for k in planted)
    assert [p.logodds for p in cached.score(QUERY, texts(*DOCS))] == honest() and len(inner.calls) == 1  # now hits


def test_clean_rows_written_by_another_process_are_still_served(tmp_path):
    path = tmp_path / "scores.sqlite"
    writer = CachedScorer(CountingScorer(flags={"stock prices": "truncated"}), ScoreCache(path))
    writer.score(QUERY, texts(*DOCS))
    reader = CachedScorer(CountingScorer(), ScoreCache(path, max_items=0))
    assert [p.logodds for p in reader.score(QUERY, texts(*DOCS))] == honest() and reader.scorer.calls == []


# ------------------------------------------------------------------ whole score-cache files


def _damage(path: Path, how: str) -> None:
    size = path.stat().st_size
    if how == "truncate to 0":
        os.truncate(path, 0)
    elif how.startswith("truncate to 1/"):
        os.truncate(path, size // int(how.rsplit("/", 1)[1]))
    elif how == "garbage after the header":
        with open(path, "r+b") as f:
            f.seek(100)
            f.write(os.urandom(size - 100))
    elif how == "another table":
        with sqlite3.connect(path) as other:
            other.execute("DROP TABLE scores")
            other.execute("CREATE TABLE scores (key TEXT, logodds TEXT)")
            other.execute("INSERT INTO scores VALUES ('k', 'x')")
    else:
        raise AssertionError(how)


@pytest.mark.parametrize("how", ["truncate to 0", "truncate to 1/2", "truncate to 1/5", "garbage after the header", "another table"])
def test_a_file_damaged_while_open_is_set_aside_and_scoring_goes_on(tmp_path, caplog, how):
    path = tmp_path / "scores.sqlite"
    filler = CachedScorer(CountingScorer(), ScoreCache(path))
    filler.score(QUERY, texts(*[f"filler {i} " * 20 for i in range(3000)]))  # several pages
    filler.cache.close()
    inner = CountingScorer()
    cached = CachedScorer(inner, ScoreCache(path, max_items=100))
    _damage(path, how)
    with caplog.at_level(logging.WARNING, logger="mm_rag_components.scoring.cache"):
        assert [p.logodds for p in cached.score(QUERY, texts(*DOCS))] == honest()
        assert [p.logodds for p in cached.score(QUERY, texts(*DOCS))] == honest()  # from memory now
    assert inner.calls == [DOCS] and "set aside" in caplog.text
    assert cached.cache._db is None and path.exists()  # nothing of the user's is deleted


SCHEMAS = {
    "two columns": "CREATE TABLE scores (key TEXT PRIMARY KEY, logodds REAL)",
    "extra column": "CREATE TABLE scores (key TEXT PRIMARY KEY, logodds REAL NOT NULL, flag TEXT, note TEXT)",
    "other types": "CREATE TABLE scores (key BLOB PRIMARY KEY, logodds TEXT NOT NULL, flag TEXT)",
    "no key": "CREATE TABLE scores (key TEXT, logodds REAL NOT NULL, flag TEXT)",
    "a view": "CREATE VIEW scores AS SELECT 'k' AS key, 'x' AS logodds, NULL AS flag",
}


@pytest.mark.parametrize("schema", sorted(SCHEMAS))
def test_another_databases_scores_table_is_refused_at_open(tmp_path, schema):
    path = tmp_path / "app.sqlite"
    with sqlite3.connect(path) as other:
        other.execute(SCHEMAS[schema])
    with pytest.raises(ConfigError, match="not a score cache") as info:
        ScoreCache(path)
    assert "\n" not in str(info.value)
    with sqlite3.connect(path) as other:  # left as it was
        assert other.execute("SELECT count(*) FROM sqlite_master WHERE name = 'scores'").fetchone() == (1,)


@pytest.mark.parametrize("kind", KINDS)
def test_a_score_cache_path_that_is_not_a_regular_file_is_refused(tmp_path, kind):
    path = make_special(tmp_path / "scores.sqlite", kind)
    with time_limit(60), pytest.raises(ConfigError, match="score cache"):  # the limit is a hang guard
        ScoreCache(path)


# ------------------------------------------------------------------ vision-feature entries

SPECIAL_FILES = textwrap.dedent(
    """
    import json, os, resource, sys, torch
    from pathlib import Path
    from mm_rag_components.scoring.disk_cache import DiskFeatureCache
    resource.setrlimit(resource.RLIMIT_AS, (6 << 30, 6 << 30))  # an endless read fails here, not the machine
    root, kind = Path(sys.argv[1]), sys.argv[2]
    cache = DiskFeatureCache(root, max_bytes=1 << 20)
    key = "f" * 64
    cache.put(key, torch.ones(4, 8))
    entry = next(root.rglob("*.feat"))
    entry.unlink()
    if kind == "fifo":
        os.mkfifo(entry)
    elif kind == "folder":
        entry.mkdir()
    elif kind == "too large":
        entry.write_bytes(b"x" * (2 << 20))
    else:
        target = {"symlink to /dev/zero": "/dev/zero", "symlink to a fifo": str(root / "pipe"),
                  "symlink to a good entry": str(root / "elsewhere.feat")}[kind]
        if kind == "symlink to a fifo":
            os.mkfifo(target)
        if kind == "symlink to a good entry":
            from mm_rag_components.scoring.disk_cache import encode
            Path(target).write_bytes(encode(key, torch.ones(4, 8)))
        entry.symlink_to(target)
    contained = key in cache
    got = cache.get(key)
    corrupt = cache.corrupt
    cache.put(key, torch.full((4, 8), 2.0))  # recomputed and written back over the bad entry
    again = cache.get(key)
    print(json.dumps({"got": got is None, "corrupt": corrupt, "contained": contained,
                      "rewritten": again is not None and float(again.sum()) == 64.0, "regular": entry.is_file() and not entry.is_symlink()}))
    """
)


@pytest.mark.parametrize("kind", ["symlink to /dev/zero", "fifo", "symlink to a fifo", "symlink to a good entry", "folder", "too large"])
def test_a_vision_entry_that_is_not_a_regular_file_is_a_miss_never_a_hang(tmp_path, kind):
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(TESTS), os.environ.get("PYTHONPATH", "")])}
    try:  # the timeout is a hang guard, not a measurement
        done = subprocess.run([sys.executable, "-c", SPECIAL_FILES, str(tmp_path), kind], capture_output=True, text=True, timeout=120, env=env)
    except subprocess.TimeoutExpired:
        pytest.fail(f"reading a {kind} entry hung")
    assert done.returncode == 0, done.stderr[-2000:]
    result = json.loads(done.stdout.strip().splitlines()[-1])
    assert result["got"] is True and result["corrupt"] == 1  # a miss, never read through
    assert result["contained"] is (kind == "too large")  # only a regular file counts as an entry
    if kind != "folder":  # a folder cannot be replaced by a file: that entry stays a miss
        assert result["rewritten"] is True and result["regular"] is True


def _plant(files: list[Path], forge) -> None:
    from mm_rag_components.scoring.disk_cache import decode

    for file in files:
        real = decode(file.read_bytes(), file.stem)
        file.write_bytes(encode(file.stem, forge(real)))


FORGED = {  # entries whose header and checksum check out, but are not features of that image
    "one-dimensional": lambda real: real.reshape(-1),
    "a scalar": lambda real: real.reshape(-1)[0],
    "integers": lambda real: real.to(torch.int64),
    "not finite": lambda real: torch.full_like(real, math.nan),
    "infinite": lambda real: torch.full_like(real, -math.inf),
    "wrong rows": lambda real: real[..., :1, :],
}


@pytest.mark.parametrize("forged", sorted(FORGED))
def test_forged_vision_entries_are_recomputed_with_the_same_scores(tiny_vlm_dirs, drawn_images, tmp_path, forged):
    cands = [Candidate(id=str(i), modality="image", image_path=str(p)) for i, p in enumerate(drawn_images[:2])]
    baseline = TransformersScorer(tiny_vlm_dirs["idefics3"], vision_cache_dir=tmp_path).score(QUERY, cands)
    _plant(sorted(tmp_path.rglob("*.feat")), FORGED[forged])
    scorer = TransformersScorer(tiny_vlm_dirs["idefics3"], vision_cache_dir=tmp_path)
    assert [p.logodds for p in scorer.score(QUERY, cands)] == pytest.approx([p.logodds for p in baseline], abs=1e-6)
    assert scorer.features.computed == 2
