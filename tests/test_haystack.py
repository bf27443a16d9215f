"""Haystack 3 components inside real ``haystack.Pipeline`` s: retrieve → pointwise rerank → filter
over a drawn sample folder, image documents included; YAML round trips; the async run path;
bad inputs; warm-up; and one run with a real tiny VLM."""

from __future__ import annotations

import asyncio
import base64
import math

import pytest
from fake_models import ColourShapeEmbedder
from haystack import Document, Pipeline
from haystack.core.errors import DeserializationError, PipelineRuntimeError
from haystack.dataclasses import ByteStream, ImageContent
from PIL import Image

from mm_rag_components import MultimodalIndex, config
from mm_rag_components.errors import ConfigError, ModelError
from mm_rag_components.filters import FilterPolicy, FilterReport
from mm_rag_components.integrations.haystack import MultimodalRetriever, PointwiseReranker, RelevanceFilter
from mm_rag_components.scoring.base import PointScore, sigmoid

ALLOWED = ["mm_rag_components"]


@config.register
class SavedColourShape(ColourShapeEmbedder):
    """The deterministic colour/shape embedder, saveable (so an index config round-trips)."""

    def config(self) -> dict:
        return {"name": self.name, "dimension": self.dimension}


@config.register
class KeywordScorer:
    """Log-odds = weight · (query words found in the candidate's path or text) − 2; records
    what it was given."""

    name = "keyword"

    def __init__(self, weight: float = 4.0) -> None:
        self.weight = weight
        self.seen: list[tuple[str, object, str | None]] = []
        self.queries: list[str] = []
        self.calls: list[str] = []

    def config(self) -> dict:
        return {"weight": self.weight}

    def score(self, query, candidates):
        self.calls.append("sync")
        return self._score(query, candidates)

    def _score(self, query, candidates):
        self.queries.append(query.modality)
        words = [w for w in (query.text or "").lower().split() if len(w) > 2]
        out = []
        for c in candidates:
            self.seen.append((c.modality, c.image_source, c.text))
            target = f"{c.image_path or ''} {c.text or ''}".lower()
            out.append(PointScore.from_logodds(self.weight * sum(w in target for w in words) - 2.0))
        return out


@config.register
class AsyncKeywordScorer(KeywordScorer):
    """The same scores, with a native ``ascore``."""

    async def ascore(self, query, candidates):
        self.calls.append("async")
        await asyncio.sleep(0)
        return self._score(query, candidates)


class UnsaveableScorer:
    name = "unsaveable"

    def score(self, query, candidates):
        return [PointScore.from_logodds(0.0) for _ in candidates]


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    from mm_rag_components.testing import write_sample_folder

    return write_sample_folder(tmp_path_factory.mktemp("sample"))


@pytest.fixture(scope="module")
def index(tmp_path_factory, folder):
    idx = MultimodalIndex(tmp_path_factory.mktemp("db") / "chroma", image_embedder=SavedColourShape())
    idx.ingest_folder(folder)
    return idx


def rag_pipeline(index, scorer, **filter_options) -> Pipeline:
    pipe = Pipeline()
    pipe.add_component("retriever", MultimodalRetriever(index, image_top_k=4, text_top_k=2))
    pipe.add_component("reranker", PointwiseReranker(scorer=scorer, top_n=4))
    pipe.add_component("filter", RelevanceFilter(**(filter_options or {"score_key": "rerank_score", "threshold": 0.5})))
    pipe.connect("retriever.documents", "reranker.documents")
    pipe.connect("reranker.documents", "filter.documents")
    return pipe


def names(documents):
    return [str(d.meta.get("file_path") or d.meta.get("source", "")).rsplit("/", 1)[-1] for d in documents]


def test_pipeline_retrieves_reranks_and_filters_image_documents(index, folder):
    scorer = KeywordScorer()
    out = rag_pipeline(index, scorer).run({"query": "a red circle"})
    kept, report = out["filter"]["documents"], out["filter"]["report"]
    assert names(kept)[0] == "red_circle.png"
    top = kept[0]
    assert top.content is None and top.meta["file_path"] == str(folder / "red_circle.png")
    assert top.meta["modality"] == "image" and top.meta["sha256"] and top.meta["source"] == top.meta["file_path"]
    assert top.score == pytest.approx(sigmoid(6.0)) == top.meta["rerank_score"]
    assert top.meta["rerank_logodds"] == 6.0 and top.meta["rerank_flag"] is None
    assert top.meta["retrieval_score"] == pytest.approx(top.meta["cosine"])  # the retriever's score, kept
    assert [d.score for d in kept] == sorted((d.score for d in kept), reverse=True)
    assert all(d.meta["rerank_score"] >= 0.5 for d in kept)
    assert isinstance(report, FilterReport) and report.total == 4 and report.kept == len(kept)
    # image documents reached the scorer as image candidates, by path; texts as texts
    seen = {(m, str(src).rsplit("/", 1)[-1] if src else None) for m, src, _ in scorer.seen}
    assert ("image", "red_circle.png") in seen and any(m == "text" and src is None for m, src in seen)


def test_image_documents_of_any_origin_reach_the_scorer_as_images(folder):
    png = folder / "blue_square.png"
    docs = [
        Document(content="a drawing", meta={"file_path": str(png), "author": "me"}, score=0.2),
        Document(blob=ByteStream(png.read_bytes(), mime_type="image/png"), meta={"k": 1}, score=0.3),
        Document(content="blue squares everywhere", meta={"file_path": "notes/blue.txt"}, score=0.1),
    ]
    before = [(d.score, dict(d.meta)) for d in docs]
    scorer = KeywordScorer()
    out = PointwiseReranker(scorer=scorer).run(documents=docs, query="blue square")["documents"]
    assert [m for m, _, _ in scorer.seen] == ["image", "image", "text"]
    assert scorer.seen[0][1] == str(png) and scorer.seen[1][1] == png.read_bytes()
    assert [d.id for d in out] == [docs[0].id, docs[2].id, docs[1].id]  # ties keep input order; a bare blob is last
    assert out[0].meta["author"] == "me" and out[0].meta["file_path"] == str(png)
    assert out[0].meta["retrieval_score"] == 0.2 and out[2].meta["k"] == 1
    assert all(o is not d for o in out for d in docs)
    assert [(d.score, d.meta) for d in docs] == before  # inputs untouched


@pytest.mark.parametrize("kind", ["str", "path", "bytes", "base64", "bytestream", "imagecontent", "pil"])
def test_query_image_in_every_form(index, folder, kind):
    path = folder / "green_triangle.png"
    data = path.read_bytes()
    image = {
        "str": str(path),
        "path": path,
        "bytes": data,
        "base64": base64.b64encode(data).decode(),
        "bytestream": ByteStream(data, mime_type="image/png"),
        "imagecontent": ImageContent(base64.b64encode(data).decode(), mime_type="image/png"),
        "pil": Image.open(path),
    }[kind]
    pipe = Pipeline()
    pipe.add_component("retriever", MultimodalRetriever(index, modalities=["image"], top_k=3))
    scorer = KeywordScorer()
    pipe.add_component("reranker", PointwiseReranker(scorer=scorer))
    pipe.connect("retriever.documents", "reranker.documents")
    out = pipe.run({"image": image})["reranker"]["documents"]
    assert len(out) == 3 and "green_triangle.png" in names(out)
    assert scorer.queries == ["image"]  # the image-only query reached the scorer


def test_top_k_overrides_per_call(index):
    docs = MultimodalRetriever(index, top_k=3).run(query="a blue square", top_k=1)["documents"]
    assert sorted(d.meta["modality"] for d in docs) == ["image", "text"]
    ranked = PointwiseReranker(scorer=KeywordScorer()).run(documents=docs, query="blue square", top_k=1)
    assert len(ranked["documents"]) == 1


def test_yaml_round_trip_gives_the_same_results(index):
    pipe = rag_pipeline(index, KeywordScorer(weight=3.0), score_key="rerank_score", threshold=0.5, min_keep=1)
    text = pipe.dumps()
    for expected in ("PointwiseRanker", "KeywordScorer", "weight: 3.0", "FilterPolicy", "score_key: rerank_score",
                     "MultimodalIndex", "SavedColourShape", "image_top_k: 4"):
        assert expected in text
    with pytest.raises(DeserializationError):  # Haystack only imports trusted modules
        Pipeline.loads(text)
    loaded = Pipeline.loads(text, allowed_modules=ALLOWED)
    assert loaded.to_dict()["components"] == pipe.to_dict()["components"]
    first = pipe.run({"query": "a yellow triangle"})["filter"]["documents"]
    again = loaded.run({"query": "a yellow triangle"})["filter"]["documents"]
    assert [(d.id, d.score) for d in again] == [(d.id, d.score) for d in first] and first
    assert names(first)[0] == "yellow_triangle.png"


def test_unsaveable_scorer_is_a_config_error():
    pipe = Pipeline()
    pipe.add_component("reranker", PointwiseReranker(scorer=UnsaveableScorer()))
    with pytest.raises(ConfigError, match="UnsaveableScorer cannot be saved"):
        pipe.dumps()


def test_async_pipeline_awaits_the_native_async_scorer(index):
    sync_out = rag_pipeline(index, KeywordScorer()).run({"query": "a blue circle"})
    scorer = AsyncKeywordScorer()
    pipe = rag_pipeline(index, scorer)
    out = asyncio.run(pipe.run_async({"query": "a blue circle"}))
    assert scorer.calls == ["async"]  # through PointwiseRanker.arerank → ascore, not score in a thread
    got = out["filter"]["documents"]
    assert [(d.id, d.score) for d in got] == [(d.id, d.score) for d in sync_out["filter"]["documents"]]
    assert names(got)[0] == "blue_circle.png"


def test_filter_keeps_the_best_by_min_keep_with_a_reason(index):
    out = rag_pipeline(index, KeywordScorer(), score_key="rerank_score", threshold=0.999, min_keep=1).run(
        {"query": "a green square"}
    )
    kept, report = out["filter"]["documents"], out["filter"]["report"]
    assert names(kept) == ["green_square.png"] and kept[0].meta["filter_reason"].startswith("below_threshold")
    assert report.reasons == {"below_threshold": 3} and len(report.restored) == 1 and "kept 1 of 4" in report.summary()
    loaded = RelevanceFilter.from_dict(RelevanceFilter(score_key="score", top_p=0.9).to_dict())
    assert loaded.policy == FilterPolicy(score_key="score", top_p=0.9)


DOCS = [Document(content="x")]
BAD_RUN_INPUTS = {
    "no query": {"documents": DOCS},
    "blank query": {"documents": DOCS, "query": "   "},
    "query not text": {"documents": DOCS, "query": 42},
    "image of a wrong type": {"documents": DOCS, "image": 3.5},
    "documents not a list": {"documents": "a text", "query": "q"},
    "not documents": {"documents": [{"content": "x"}], "query": "q"},
    "top_k zero": {"documents": DOCS, "query": "q", "top_k": 0},
}


@pytest.mark.parametrize("case", list(BAD_RUN_INPUTS))
def test_bad_run_inputs_are_config_errors(case):
    reranker = PointwiseReranker(scorer=KeywordScorer())
    with pytest.raises(ConfigError):
        reranker.run(**BAD_RUN_INPUTS[case])
    with pytest.raises(ConfigError):
        asyncio.run(reranker.run_async(**BAD_RUN_INPUTS[case]))


@pytest.mark.parametrize("build", [
    lambda i: RelevanceFilter(treshold=0.5),
    lambda i: RelevanceFilter(policy="strict"),
    lambda i: MultimodalRetriever(i, topk=3),
    lambda i: MultimodalRetriever(i, top_k=0),
    lambda i: MultimodalRetriever("not an index"),
    lambda i: PointwiseReranker(scorer=KeywordScorer(), bogus=1),
    lambda i: PointwiseReranker("some/model", bogus=1),
    lambda i: PointwiseReranker("some/model", scorer=KeywordScorer()),
    lambda i: PointwiseReranker(),
    lambda i: PointwiseReranker(model=42),
])
def test_bad_construction_is_a_config_error(index, build):
    with pytest.raises(ConfigError):
        build(index)


def test_a_bad_input_inside_a_pipeline_keeps_its_config_error(index):
    with pytest.raises(PipelineRuntimeError) as info:
        rag_pipeline(index, KeywordScorer()).run({"retriever": {"query": "a red square"}})  # reranker: no query
    assert isinstance(info.value.__cause__, ConfigError)


def test_model_loads_in_warm_up_not_at_construction(tmp_path, index):
    missing = tmp_path / "no-such-model"
    reranker = PointwiseReranker(missing, top_n=2, batch_size=2)  # nothing is read yet
    data = reranker.to_dict()
    saved = data["init_parameters"]["reranker"]  # one shape: the core reranker's config
    assert (saved["type"], saved["top_n"]) == ("PointwiseRanker", 2)
    assert (saved["scorer"]["type"], saved["scorer"]["model_name_or_path"], saved["scorer"]["batch_size"]) == (
        "TransformersScorer", str(missing), 2)
    with pytest.raises(ModelError):
        PointwiseReranker.from_dict(data).warm_up()
    legacy = {**data, "init_parameters": {"model": str(missing), "top_n": 2, "batch_size": 2}}  # the 0.1 shape
    assert PointwiseReranker.from_dict(legacy).to_dict() == data
    pipe = Pipeline()
    pipe.add_component("retriever", MultimodalRetriever(index, top_k=2))
    pipe.add_component("reranker", reranker)
    pipe.connect("retriever.documents", "reranker.documents")
    with pytest.raises(ModelError):  # Pipeline.run warms every component up first
        pipe.run({"query": "a red circle"})


def test_real_tiny_vlm_reranks_image_documents_in_a_pipeline(index, folder, tiny_vlm_dirs):
    pipe = Pipeline()
    pipe.add_component("retriever", MultimodalRetriever(index, image_top_k=4, text_top_k=2))
    pipe.add_component("reranker", PointwiseReranker(tiny_vlm_dirs["idefics3"], top_n=4, batch_size=4))
    pipe.add_component("filter", RelevanceFilter(score_key="rerank_score", top_p=0.99, min_keep=1))
    pipe.connect("retriever.documents", "reranker.documents")
    pipe.connect("reranker.documents", "filter.documents")
    kept = pipe.run({"query": "a red circle"})["filter"]["documents"]
    retrieval = {d.id: d.score for d in pipe.get_component("retriever").run(query="a red circle")["documents"]}
    assert 1 <= len(kept) <= 4 and {d.meta["modality"] for d in kept} <= {"image", "text"}
    for doc in kept:
        assert 0.0 < doc.meta["rerank_score"] < 1.0 and math.isfinite(doc.meta["rerank_logodds"])
        assert doc.score == pytest.approx(doc.meta["rerank_score"]) and doc.meta["retrieval_score"] == pytest.approx(retrieval[doc.id])
    image_query = pipe.run({"retriever": {"query": "red"}, "reranker": {"image": str(folder / "red_circle.png")}})
    assert image_query["filter"]["documents"]
