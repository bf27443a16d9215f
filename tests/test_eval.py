"""The evaluation harness: metrics against hand computations, the item split, tuning on tune and
reporting on held-out, filter precision/recall, outputs, and clear errors for bad data sets.

Rankings mean something here: texts are embedded by colour words only (the retriever cannot see
shapes) and a fake scorer judges shapes (with a little noise), so fusing the two beats either.
"""

from __future__ import annotations

import hashlib
import json
import math
import subprocess
import sys

import pytest
from fake_models import ColourShapeEmbedder

from mm_rag_components.errors import ConfigError, MediaError
from mm_rag_components.eval import EvalReport, evaluate, kept_context, load_dataset, ranking_metrics, split_groups
from mm_rag_components.datasets.candidates import ingest_task, open_index, retrieve_candidates
from mm_rag_components.filters import FilterPolicy
from mm_rag_components.rerank import ListwiseRanker, PointwiseRanker
from mm_rag_components.scoring.base import PointScore
from mm_rag_components.testing.captions import write_captioned_folder
from mm_rag_components.testing.data import SHAPES

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


class ColourOnlyEmbedder(ColourShapeEmbedder):
    """Texts without their shape words: a retriever that ranks by colour (and filler words) only."""

    def embed_texts(self, texts, **kwargs):
        return super().embed_texts([" ".join(w for w in t.split() if w.strip(",.") not in SHAPES) for t in texts], **kwargs)


def _shape(text: str | None) -> str | None:
    return next((s for s in SHAPES if s in (text or "")), None)


class ShapeScorer:
    """Log-odds ±2 for the same / another shape than the query's, plus deterministic noise in
    [-0.5, 0.5]; ``sign=-1`` gives a harmful scorer that prefers the wrong shapes."""

    def __init__(self, sign: float = 1.0) -> None:
        self.sign = sign
        self.name = "shape-good" if sign > 0 else "shape-bad"

    def score(self, query, candidates):
        out = []
        for c in candidates:
            same = _shape(query.text) == _shape(c.text)
            noise = hashlib.sha256(f"{query.text}|{c.text}".encode()).digest()[0] / 255 - 0.5
            out.append(PointScore.from_logodds(self.sign * (2.0 if same else -2.0) + noise))
        return out


class ReverseGenerator:
    """A listwise generator that ranks every window in reverse."""

    name = "reverse"

    def generate(self, turns):
        import re

        count = len(re.findall(r"Candidate \[\d+\]:", turns[-1].text))
        return '{"ranking": [%s]}' % ", ".join(str(i) for i in range(count, 0, -1))


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    return write_captioned_folder(tmp_path_factory.mktemp("captioned") / "shapes", captions_per_image=3)


@pytest.fixture(scope="module")
def report(folder):
    task = load_dataset(folder, "caption2caption")
    rankers = {"good": PointwiseRanker(ShapeScorer(1.0)), "bad": PointwiseRanker(ShapeScorer(-1.0))}
    return evaluate(task, ColourOnlyEmbedder(), pointwise=rankers, depth=10, seed=3)


# ------------------------------------------------------------------ metrics by hand


def test_ranx_metrics_match_a_hand_computation() -> None:
    qrels = {"q1": {"a": 1, "b": 1}, "q2": {"c": 1}, "q3": {"d": 1, "e": 0}}
    rankings = {"q1": ["x", "a", "y", "a"], "q2": ["z", "w", "c"], "q3": ["e"]}  # "a" repeated: counts once
    got = ranking_metrics(qrels, rankings, ["recall@1", "recall@2", "recall@5", "mrr", "ndcg@10", "precision@1"])
    ndcg_q1 = (1 / math.log2(3)) / (1 + 1 / math.log2(3))  # a at rank 2; ideal: a, b at ranks 1, 2
    ndcg_q2 = (1 / math.log2(4)) / 1.0  # c at rank 3
    expected = {
        "recall@1": (0 + 0 + 0) / 3,
        "recall@2": (0.5 + 0 + 0) / 3,
        "recall@5": (0.5 + 1 + 0) / 3,
        "mrr": (1 / 2 + 1 / 3 + 0) / 3,
        "ndcg@10": (ndcg_q1 + ndcg_q2 + 0) / 3,
        "precision@1": 0.0,
    }
    assert got == pytest.approx(expected, abs=1e-12)
    # a query missing from the rankings scores 0
    assert ranking_metrics({"q2": {"c": 1}}, {}, ["mrr"]) == {"mrr": 0.0}
    with pytest.raises(ConfigError, match="no relevant document"):
        ranking_metrics({"q": {"a": 0}}, {"q": ["a"]})
    with pytest.raises(ConfigError, match="ranx cannot compute"):
        ranking_metrics(qrels, rankings, ["not-a-metric"])


def test_kept_context_by_hand() -> None:
    qrels = {"q1": {"a": 1, "b": 1}, "q2": {"c": 1}}
    candidates = {"q1": ["a", "b", "x"], "q2": ["y", "z"]}  # c was never retrieved
    kept = {"q1": ["a", "x"], "q2": []}
    got = kept_context(qrels, kept, candidates)
    assert (got.precision, got.recall, got.f1, got.mean_kept, got.empty_rate) == (0.5, 0.5, 0.5, 1.0, 0.5)
    nothing = kept_context(qrels, {}, candidates)
    assert nothing.precision is None and nothing.recall == 0.0 and nothing.f1 is None and nothing.empty_rate == 1.0


# ------------------------------------------------------------------ data sets and the split


def test_captioned_folder_gives_three_tasks(folder) -> None:
    c2c = load_dataset(folder)  # caption2caption by default
    assert (c2c.task, len(c2c.queries), len(c2c.corpus), c2c.modalities) == ("caption2caption", 36, 36, ("text",))
    first = c2c.queries[0]
    assert first.exclude == {first.id} and first.id not in c2c.qrels[first.id]
    assert sorted(c2c.qrels[first.id]) == [f"{first.group}#1", f"{first.group}#2"]
    t2i = load_dataset(folder, "text2image")
    assert (len(t2i.queries), len(t2i.corpus), t2i.modalities) == (36, 12, ("image",))
    assert t2i.qrels["images/red_circle.png#0"] == {"images/red_circle.png": 1}
    i2t = load_dataset(folder, "image2text")
    assert len(i2t.queries) == 12 and i2t.queries[0].image.endswith(".png") and len(i2t.qrels[i2t.queries[0].id]) == 3


def test_split_is_by_item_seeded_and_never_leaks(folder) -> None:
    task = load_dataset(folder)
    for seed in range(5):
        tune, held = task.split(0.5, seed)
        assert {q.group for q in tune}.isdisjoint({q.group for q in held})
        assert len(tune) + len(held) == len(task.queries) and tune and held
        assert {q.id for q in tune} == {q.id for q in task.split(0.5, seed)[0]}  # seeded: the same again
    assert task.split(0.5, 0)[0] != task.split(0.5, 1)[0]
    assert split_groups(["a", "b"], 0.1, 0)[0] and split_groups(["a", "b"], 0.9, 0)[1]  # each side keeps one
    assert split_groups(["a", "b", "c"], 0.0, 0) == (set(), {"a", "b", "c"})
    with pytest.raises(ConfigError, match="tune_fraction"):
        split_groups(["a"], 1.0, 0)


# ------------------------------------------------------------------ one run, many systems


def test_report_has_every_system_on_the_same_split(report) -> None:
    names = [s.name for s in report.systems]
    assert names == [
        "retriever", "pointwise[good]", "fusion[good]", "pointwise[bad]", "fusion[bad]", "retriever+filter",
        "pointwise[good]+filter", "fusion[good]+filter", "pointwise[bad]+filter", "fusion[bad]+filter",
    ]
    assert report.dataset["queries"] == {"held_out": 18, "tune": 18} and report.dataset["items"] == {"held_out": 6, "tune": 6}
    for system in report.systems:
        assert set(system.metrics) == {"held_out", "tune"}
        assert set(system.latency_ms) == {"mean_ms", "p50_ms", "p95_ms"} and system.latency_ms["p95_ms"] >= 0
    # a reranker's latency includes the retrieval it reranks
    assert report.system("pointwise[good]").latency_ms["mean_ms"] >= report.system("retriever").latency_ms["mean_ms"]


def test_fusion_weight_is_tuned_on_tune_and_reported_on_held_out(report, folder) -> None:
    sweep = next(s for s in report.sweeps if s["system"] == "fusion[good]")
    best = max(p["tune"] for p in sweep["points"])
    assert sweep["chosen"] == min(p["value"] for p in sweep["points"] if p["tune"] == best)  # argmax on tune, smallest w
    assert sweep["chosen"] > 0
    fused = report.system("fusion[good]")
    assert fused.params == {"fusion_weight": sweep["chosen"], "tuned": True}
    chosen_point = next(p for p in sweep["points"] if p["value"] == sweep["chosen"])
    assert fused.metrics["held_out"]["ndcg@10"] == pytest.approx(chosen_point["held_out"])
    # the helpful scorer: fusion beats both parts on held-out
    for other in ("retriever", "pointwise[good]"):
        assert report.held_out("fusion[good]", "ndcg@10") > report.held_out(other, "ndcg@10")
    # the harmful scorer hurts alone; tuning falls back to w = 0, i.e. exactly the retriever
    assert report.held_out("pointwise[bad]", "ndcg@10") < report.held_out("retriever", "ndcg@10")
    assert report.system("fusion[bad]").params["fusion_weight"] == 0.0
    assert report.system("fusion[bad]").metrics == report.system("retriever").metrics

    # the held-out figure, recomputed from the public pieces
    task = load_dataset(folder)
    tune, held = task.split(0.5, 3)
    index = open_index(task, ColourOnlyEmbedder(), tmp := folder.parent / "recheck-db")
    ingest_task(index, task)
    retrieved, _ = retrieve_candidates(index, task, held, 10)
    ranker = PointwiseRanker(ShapeScorer(1.0), fusion_weight=sweep["chosen"])
    rankings = {q.id: ranker.rerank(q.to_query(), retrieved[q.id].candidates).ids for q in held}
    expected = ranking_metrics({q.id: task.qrels[q.id] for q in held}, rankings)
    assert fused.metrics["held_out"] == pytest.approx(expected)
    assert tmp.is_dir()


def test_filter_threshold_tuned_for_f1_and_precision_recall_exact(report, folder) -> None:
    result = report.system("retriever+filter")
    sweep = next(s for s in report.sweeps if s["system"] == "retriever+filter")
    best = max(p["tune"] for p in sweep["points"])
    assert sweep["chosen"] == max(p["value"] for p in sweep["points"] if p["tune"] == best)
    assert result.params["threshold"] == sweep["chosen"] and result.base == "retriever"
    task = load_dataset(folder)
    _, held = task.split(0.5, 3)
    index = open_index(task, ColourOnlyEmbedder(), folder.parent / "recheck-filter-db")
    ingest_task(index, task)
    retrieved, _ = retrieve_candidates(index, task, held, 10)
    policy = FilterPolicy(threshold=sweep["chosen"])
    kept = {q.id: [c.id for c in policy.apply(retrieved[q.id].candidates).kept] for q in held}
    expected = kept_context({q.id: task.qrels[q.id] for q in held}, kept, {q.id: [c.id for c in retrieved[q.id].candidates] for q in held})
    held_out = result.metrics["held_out"]
    assert (held_out["kept_precision"], held_out["kept_recall"], held_out["mean_kept"]) == pytest.approx(
        (expected.precision, expected.recall, expected.mean_kept))
    assert 0 < held_out["mean_kept"] < 10  # it does filter


def test_outputs_json_markdown_png(report, tmp_path) -> None:
    paths = report.save(tmp_path / "out")
    data = json.loads(paths["json"].read_text())
    assert [s["name"] for s in data["systems"]] == [s.name for s in report.systems]
    table = paths["markdown"].read_text()
    for system in report.systems:
        assert f"| `{system.name}` |" in table
    assert "| system | R@1 | R@5 | R@10 | MRR | nDCG@10 | kept P | kept R |" in table
    assert paths["png"].read_bytes()[:8] == PNG_SIGNATURE and paths["png"].stat().st_size > 10_000
    again = EvalReport.load(paths["json"])
    assert again.to_markdown() == report.to_markdown()


def test_listwise_runs_on_held_out_and_images_work(folder) -> None:
    task = load_dataset(folder, "text2image")
    report = evaluate(task, ColourShapeEmbedder(), listwise=ListwiseRanker(ReverseGenerator(), window_size=4, step=2),
                      depth=6, filtering={"min_keep": 1, "threshold": 0.9})
    listwise = report.system("listwise")
    assert set(listwise.metrics) == {"held_out"}  # nothing to tune: held-out only
    assert report.held_out("retriever", "recall@1") == 1.0  # drawn colours and shapes: found first
    assert report.held_out("listwise", "recall@1") < 1.0  # the reversing "model" hurts
    assert any("listwise: " in note and "json" in note for note in report.notes)
    fixed = report.system("retriever+filter")
    assert fixed.params == {"threshold": 0.9, "min_keep": 1} and fixed.metrics["held_out"]["mean_kept"] >= 1


def test_an_existing_index_is_read_not_changed(tmp_path, folder) -> None:
    from mm_rag_components.index import MultimodalIndex

    index = MultimodalIndex(tmp_path / "db", image_embedder=ColourShapeEmbedder())
    index.ingest_folder(folder / "images")  # records know their file, not the task's corpus ids
    before = index.count()
    report = evaluate(load_dataset(folder, "text2image"), index, top_n=3, filtering=False)
    assert report.held_out("retriever", "recall@1") == 1.0 and index.count() == before
    assert report.settings["models"]["retriever"] == "fake-colour-shape"


def test_bring_your_own_qrels(tmp_path, folder) -> None:
    root = tmp_path / "own"
    root.mkdir()
    (root / "queries.jsonl").write_text(
        '{"id": 1, "text": "a red circle", "group": "g1"}\n'
        '{"id": "q2", "image": "blue.png", "exclude": ["d3"]}\n'
        '{"id": "q3", "text": "nothing relevant"}\n')
    (root / "corpus.jsonl").write_text(
        '{"id": "d1", "text": "a red circle"}\n{"id": "d2", "text": "a green square"}\n'
        '{"id": "d3", "text": "a blue triangle"}\n{"id": "d4", "image": "blue.png", "text": "blue triangle"}\n')
    (root / "blue.png").write_bytes((folder / "images/blue_triangle.png").read_bytes())
    (root / "qrels.txt").write_text("query-id corpus-id score\n1 0 d1 1\n1 0 d2 0\nq2 0 d4 2\nq2 0 d3 1\n")
    task = load_dataset(root)
    assert task.task == "qrels" and [q.id for q in task.queries] == ["1", "q2"]
    assert task.qrels == {"1": {"d1": 1, "d2": 0}, "q2": {"d4": 2, "d3": 1}}
    assert any("without a relevant" in n for n in task.notes) and task.modalities == ("image", "text")
    report = evaluate(task, ColourShapeEmbedder(), top_n=3, tune_fraction=0.0, filtering=False, fusion=False)
    assert [s.name for s in report.systems] == ["retriever"] and report.dataset["queries"]["held_out"] == 2
    assert report.held_out("retriever", "mrr") == 1.0  # q2's excluded d3 never shows up, d4 comes first


def _write(root, files):
    root.mkdir(parents=True, exist_ok=True)
    for name, text in files.items():
        (root / name).write_text(text)
    return root


QRELS_OK = {"queries.jsonl": '{"id": "q", "text": "x"}\n', "corpus.jsonl": '{"id": "a", "text": "a"}\n{"id": "b", "text": "b"}\n'}


@pytest.mark.parametrize("files, task, error, message", [
    ({}, None, ConfigError, "not an evaluation folder"),
    ({"captions.jsonl": "{not json\n"}, None, ConfigError, r"captions.jsonl:1: not valid JSON"),
    ({"captions.jsonl": '["a"]\n'}, None, ConfigError, "expected a JSON object"),
    ({"captions.jsonl": '{"image": "x.png", "captions": "a cat"}\n'}, None, ConfigError, "'captions' must be a list"),
    ({"captions.jsonl": '{"image": "missing.png", "captions": ["a"]}\n'}, None, MediaError, "image 'missing.png' not found"),
    ({"captions.jsonl": "\n"}, None, ConfigError, "no images listed"),
    ({"captions.jsonl": '{"image": "x.png", "captions": ["a"]}\n'}, "qrels", ConfigError, "is a captioned folder"),
    ({**QRELS_OK}, None, ConfigError, "no qrels file"),
    ({**QRELS_OK, "qrels.jsonl": '{"query_id": "q", "doc_id": "zz"}\n'}, None, ConfigError, "unknown corpus id 'zz'"),
    ({**QRELS_OK, "qrels.jsonl": '{"query_id": "q", "doc_id": "a", "relevance": -1}\n'}, None, ConfigError, "relevance must be an integer >= 0"),
    ({**QRELS_OK, "qrels.txt": "q 0 a\tx y\n"}, None, ConfigError, "expected 'QID 0 DOCID REL'"),
    ({**QRELS_OK, "qrels.txt": "q 0 a 1\n", "qrels.jsonl": "\n"}, None, ConfigError, "more than one qrels file"),
    ({**QRELS_OK, "qrels.txt": "q 0 a 1\nq 0 a 1\n"}, None, ConfigError, "judged twice"),
    ({**QRELS_OK, "qrels.txt": "q 0 a 0\n"}, None, ConfigError, "no query has a relevant"),
    ({**QRELS_OK, "queries.jsonl": '{"id": "q"}\n', "qrels.txt": "q 0 a 1\n"}, None, ConfigError, "needs 'text', 'image' or both"),
    ({**QRELS_OK, "queries.jsonl": '{"id": "q", "text": "x"}\n{"id": "q", "text": "y"}\n', "qrels.txt": "q 0 a 1\n"}, None, ConfigError, "appears twice"),
    ({**QRELS_OK, "qrels.txt": "q 0 a 1\n"}, "text2image", ConfigError, "is a qrels folder"),
])
def test_bad_datasets_fail_with_one_clear_error(tmp_path, files, task, error, message) -> None:
    root = _write(tmp_path / "bad", files)
    if "captions.jsonl" in files and "x.png" in files["captions.jsonl"]:
        (root / "x.png").write_bytes(b"")
    with pytest.raises(error, match=message):
        load_dataset(root, task)


def test_bad_arguments_fail_before_any_work(folder) -> None:
    task = load_dataset(folder)
    with pytest.raises(ConfigError, match="depth"):
        evaluate(task, ColourShapeEmbedder(), depth=0)
    with pytest.warns(DeprecationWarning, match="depth"), pytest.raises(ConfigError, match="depth"):
        evaluate(task, ColourShapeEmbedder(), top_n=0)  # the former name still works, with a warning
    with pytest.raises(ConfigError, match="ranx cannot compute"):
        evaluate(task, ColourShapeEmbedder(), tune_metric="ndcg@x")
    with pytest.raises(ConfigError, match="treshold"):
        evaluate(task, ColourShapeEmbedder(), filtering={"treshold": 0.5})
    with pytest.raises(ConfigError, match="held-out split is empty"):
        evaluate(task.limited(1), ColourShapeEmbedder(), tune_fraction=0.9)
    with pytest.raises(ConfigError, match="tune split is empty, so the filter threshold"):
        evaluate(task, ColourShapeEmbedder(), tune_fraction=0.0)
    with pytest.raises(ConfigError, match="Embedder or a MultimodalIndex"):
        evaluate(task, object())
    with pytest.raises(ConfigError, match="PointwiseRanker"):
        evaluate(task, ColourShapeEmbedder(), pointwise=ShapeScorer())
    with pytest.raises(ConfigError, match="embeds text only"):
        from fake_models import WordHashEmbedder

        evaluate(load_dataset(folder, "text2image"), WordHashEmbedder())


def test_import_stays_light() -> None:
    code = ("import sys, mm_rag_components.eval, mm_rag_components.cli.eval_commands; "
            "heavy = [m for m in ('ranx', 'matplotlib', 'torch', 'chromadb') if m in sys.modules]; print(heavy)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip()
    assert out == "[]"
