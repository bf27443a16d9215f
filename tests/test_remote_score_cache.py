"""ScoreCache / CachedScorer: a follow-up question over the same candidates costs nothing, only
clean scores are kept, keys follow the scorer identity and image bytes, the SQLite file outlives
the process and takes two writers at once, and a remote scorer behind the cache sends nothing."""

from __future__ import annotations

import asyncio
import io
import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

from PIL import Image

from mm_rag_components import config
from mm_rag_components.remote.chat_scorer import OpenAIChatScorer
from mm_rag_components.remote.transport import TransportSettings
from mm_rag_components.rerank.pointwise import PointwiseRanker
from mm_rag_components.scoring.cache import CachedScorer, ScoreCache, scorer_identity
from mm_rag_components.types import Candidate, Query
from remote_support import CountingScorer, FakeServer, Reply, chat_reply

TESTS = Path(__file__).parent
DOCS = ["a red circle", "a blue square", "stock prices", "sourdough bread", "a red ball"]


def texts(*docs: str) -> list[Candidate]:
    return [Candidate(id=str(i), modality="text", text=d) for i, d in enumerate(docs)]


def png(colour) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (4, 4), colour).save(buffer, format="PNG")
    return buffer.getvalue()


def test_follow_up_question_over_the_same_candidates_costs_nothing():
    inner = CountingScorer()
    cached = CachedScorer(inner)
    first = cached.score(Query("red"), texts(*DOCS))
    assert inner.calls == [DOCS]
    again = cached.score(Query("red"), texts(*DOCS))
    assert len(inner.calls) == 1  # the inner scorer was not called
    assert [p.logodds for p in again] == [p.logodds for p in first]
    ranked = PointwiseRanker(cached).rerank(Query("red"), texts(*DOCS))
    assert len(inner.calls) == 1 and len(ranked.candidates) == 5
    cached.score(Query("blue"), texts(*DOCS[:3], "new one"))  # a new question: scored
    cached.score(Query("red"), texts(*DOCS[:3], "new two"))  # three known, one new
    assert inner.calls[1:] == [[*DOCS[:3], "new one"], ["new two"]]
    assert cached.cache.hits == 5 + 5 + 3 and cached.cache.misses == 5 + 4 + 1


def test_only_clean_results_are_cached():
    inner = CountingScorer(flags={"flaky": "request_failed", "long": "truncated", "odd": "partial_answer_logprobs"})
    cached = CachedScorer(inner)
    docs = ["flaky", "long", "odd", "fine"]
    cached.score(Query("q"), texts(*docs))
    cached.score(Query("q"), texts(*docs))
    assert inner.calls == [docs, ["flaky", "odd"]]


def test_keys_follow_scorer_identity_and_image_bytes(tmp_path):
    base = scorer_identity(CountingScorer())
    assert scorer_identity(CountingScorer(batch_size=64)) == base  # speed only
    assert scorer_identity(CountingScorer(instruction="Find photos.")) != base
    assert scorer_identity(CountingScorer(template="retllm")) != base
    inner = CountingScorer()
    cached = CachedScorer(inner)
    (tmp_path / "a.png").write_bytes(png((255, 0, 0)))
    (tmp_path / "copy.png").write_bytes(png((255, 0, 0)))
    (tmp_path / "b.png").write_bytes(png((0, 255, 0)))
    image = lambda name: [Candidate(id=name, modality="image", text="x", image_path=str(tmp_path / name))]  # noqa: E731
    cached.score(Query("q"), image("a.png"))
    cached.score(Query("q"), image("copy.png"))  # same bytes, other path: a hit
    cached.score(Query("q"), image("b.png"))
    cached.score(Query("q", image=png((0, 0, 255))), image("a.png"))  # same text, a query image: new
    assert len(inner.calls) == 3
    small = ScoreCache(max_items=2)
    small.put_many({"a": (1.0, None), "b": (2.0, None), "c": (3.0, None)})
    assert len(small) == 2 and small.get_many(["a", "b", "c"]) == {"b": (2.0, None), "c": (3.0, None)}


SCRIPT = textwrap.dedent(
    """
    import json, sys
    from remote_support import CountingScorer
    from mm_rag_components.scoring.cache import CachedScorer, ScoreCache
    from mm_rag_components.types import Candidate, Query
    path, query, start, count = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
    inner = CountingScorer()
    cached = CachedScorer(inner, ScoreCache(path, max_items=0))
    docs = [Candidate(id=str(i), modality="text", text=f"doc {i}") for i in range(start, start + count)]
    points = cached.score(Query(query), docs)
    print(json.dumps({"scored": sum(len(c) for c in inner.calls), "logodds": [p.logodds for p in points]}))
    """
)


def run_script(*args: str) -> subprocess.Popen:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(TESTS), os.environ.get("PYTHONPATH", "")])}
    return subprocess.Popen([sys.executable, "-c", SCRIPT, *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)


def finish(process: subprocess.Popen) -> dict:
    out, err = process.communicate(timeout=120)
    assert process.returncode == 0, err
    return json.loads(out.strip().splitlines()[-1])


def test_disk_cache_survives_a_new_process_and_takes_two_writers(tmp_path):
    path = str(tmp_path / "scores.sqlite")
    first = finish(run_script(path, "red", "0", "5"))
    assert first["scored"] == 5
    second = finish(run_script(path, "red", "0", "5"))  # a new process: nothing to score
    assert second == {"scored": 0, "logodds": first["logodds"]}
    writers = [run_script(path, "two", "0", "150"), run_script(path, "two", "100", "150")]
    assert all(finish(w)["scored"] <= 150 for w in writers)
    reader = CachedScorer(CountingScorer(), ScoreCache(path))
    reader.score(Query("two"), [Candidate(id=str(i), modality="text", text=f"doc {i}") for i in range(250)])
    assert reader.scorer.calls == []  # both writers' rows are there
    saved = config.to_dict(reader)
    assert saved["cache"] == {"type": "ScoreCache", "path": path, "max_items": 100_000}
    saved.pop("scorer")  # a test class, not registered
    rebuilt = config.from_dict(saved, scorer=CountingScorer())
    assert isinstance(rebuilt, CachedScorer) and rebuilt.cache.path == Path(path)


def test_remote_scorer_behind_the_cache_sends_nothing_the_second_time():
    with FakeServer(lambda *a: Reply(body=chat_reply({"yes": -0.2, "no": -1.9}))) as server:
        remote = OpenAIChatScorer("m", base_url=server.url + "/v1", transport=TransportSettings(retries=0))
        cached = CachedScorer(remote)
        first = asyncio.run(cached.ascore(Query("red"), texts(*DOCS)))
        assert len(server.requests) == 5
        second = asyncio.run(PointwiseRanker(cached).arerank(Query("red"), texts(*DOCS)))
        assert len(server.requests) == 5
    assert [p.flag for p in first] == [None] * 5 and len(second.candidates) == 5
    other_server = OpenAIChatScorer("m", base_url="http://127.0.0.1:9/v1")
    assert scorer_identity(other_server) != scorer_identity(remote)  # the server is part of the key


def test_local_transformers_scorer_behind_the_cache(tmp_path_factory, monkeypatch):
    from mm_rag_components.scoring.transformers_scorer import TransformersScorer
    from mm_rag_components.testing import build_tiny_causal_lm

    local = TransformersScorer(build_tiny_causal_lm(tmp_path_factory.mktemp("causal") / "m"), local_files_only=True)
    cached = CachedScorer(local, ScoreCache(tmp_path_factory.mktemp("db") / "scores.sqlite"))
    first = cached.score(Query("red"), texts(*DOCS))

    def no_model(*args, **kwargs):
        raise AssertionError("the model ran for a cached pair")

    monkeypatch.setattr(local, "_score", no_model)
    again = cached.score(Query("red"), texts(*DOCS))
    assert [p.logodds for p in again] == [p.logodds for p in first]
    assert scorer_identity(local) != scorer_identity(TransformersScorer(local.model_name_or_path, instruction="Other.", local_files_only=True))
