"""Reranker image features computed at ingest: a fresh scorer in a new process over the
precomputed cache scores without running the vision tower, and gives the same scores."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

import pytest
from fake_models import ColourShapeEmbedder
from PIL import Image

from mm_rag_components import Candidate, Item, MultimodalIndex, Query
from mm_rag_components.cli import main
from mm_rag_components.errors import ConfigError, ModelError
from mm_rag_components.scoring.transformers_scorer import TransformersScorer

FRESH_PROCESS = textwrap.dedent("""
    import json, sys
    from mm_rag_components import Candidate, Query
    from mm_rag_components.scoring.transformers_scorer import TransformersScorer
    model, cache, paths = sys.argv[1], sys.argv[2], json.loads(sys.argv[3])
    scorer = TransformersScorer(model, vision_cache_dir=cache)
    scorer.warm_up()
    calls = []
    scorer._model.model.vision_model.register_forward_hook(lambda *a: calls.append(1))
    scores = scorer.score(Query(text="a red circle"), [Candidate(id=p, modality="image", image_path=p) for p in paths])
    print(json.dumps({"tower_calls": len(calls), "computed": scorer.features.computed, "logodds": [s.logodds for s in scores]}))
""")


def test_ingest_precomputes_and_a_fresh_process_starts_warm(tiny_vlm_dirs, sample_folder, tmp_path):
    features = tmp_path / "features"
    scorer = TransformersScorer(tiny_vlm_dirs["idefics3"], vision_cache_dir=features)
    index = MultimodalIndex(tmp_path / "db", image_embedder=ColourShapeEmbedder(), batch_size=4)
    images = sorted(sample_folder.glob("*.png"))
    report = index.ingest_folder(sample_folder, precompute=scorer, show_progress=False)
    assert report.ok and report.added == len(images) + 3
    assert scorer.features.computed == len(images) and len(list(features.rglob("*.feat"))) == len(images)
    again = index.ingest_folder(sample_folder, precompute=scorer, show_progress=False)
    assert again.unchanged == len(images) + 3 and scorer.features.computed == len(images)  # nothing recomputed

    paths = [str(p) for p in images[:4]]
    here = scorer.score(Query(text="a red circle"), [Candidate(id=p, modality="image", image_path=p) for p in paths])
    out = subprocess.run([sys.executable, "-c", FRESH_PROCESS, str(tiny_vlm_dirs["idefics3"]), str(features), json.dumps(paths)],
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    fresh = json.loads(out.stdout.strip().splitlines()[-1])
    assert fresh["tower_calls"] == 0 and fresh["computed"] == 0
    assert fresh["logodds"] == pytest.approx([s.logodds for s in here], abs=1e-6)


def test_unchanged_images_are_precomputed_too_and_items_work(tiny_vlm_dirs, tmp_path):
    index = MultimodalIndex(tmp_path / "db", image_embedder=ColourShapeEmbedder())
    items = [Item(image=Image.new("RGB", (40, 30), colour), source=f"img-{i}") for i, colour in enumerate(["red", "blue"])]
    assert index.ingest(items).added == 2  # ingested without a reranker
    scorer = TransformersScorer(tiny_vlm_dirs["llava"], vision_cache_dir=tmp_path / "f")
    report = index.ingest(items, precompute=scorer)
    assert report.unchanged == 2 and scorer.features.computed == 2


def test_bad_precompute_arguments(tiny_vlm_dirs, sample_folder, tmp_path):
    index = MultimodalIndex(tmp_path / "db", image_embedder=ColourShapeEmbedder())
    with pytest.raises(ConfigError):
        index.ingest_folder(sample_folder, precompute="not a scorer")
    with pytest.raises(ModelError):  # a reranker that cannot load fails before anything is stored
        index.ingest_folder(sample_folder, precompute=TransformersScorer(tmp_path / "no-model"))
    assert index.count() == {"image": 0, "text": 0}
    text_only = TransformersScorer(tiny_vlm_dirs["causal"], vision_cache_dir=tmp_path / "f")
    assert index.ingest_folder(sample_folder, precompute=text_only).ok and text_only.features.computed == 0


def test_cli_ingest_precomputes_reranker_features(tiny_vlm_dirs, sample_folder, tmp_path, capsys):
    db, cache = tmp_path / "state" / "chroma", tmp_path / "feat"
    args = ["ingest", str(sample_folder), "--tiny", "--db", str(db), "--precompute-reranker", str(tiny_vlm_dirs["llava"])]
    assert main([*args, "--feature-cache", str(cache)]) == 0
    out = capsys.readouterr().out
    assert "added 15" in out and "reranker image features: 12 computed" in out and str(cache) in out
    assert len(list(cache.rglob("*.feat"))) == 12
    assert main(args) == 0  # default cache: beside the database
    assert len(list((tmp_path / "state" / "reranker-features").rglob("*.feat"))) == 12
    assert main(["ingest", str(sample_folder), "--tiny", "--db", str(db), "--feature-cache", str(cache)]) == 2
    assert "--feature-cache needs --precompute-reranker" in capsys.readouterr().err


def test_pdf_pages_are_precomputed_on_their_stored_image(tiny_vlm_dirs, tmp_path):
    """A page's features are computed at ingest on the JPEG a scorer opens at query time (keyed by
    its bytes' sha256), so scoring the retrieved pages runs no vision tower."""
    from pdf_support import report_pdf

    from mm_rag_components.retrieval import RetrievalOptions, retrieve

    pdf = report_pdf(tmp_path / "docs" / "report.pdf", ["a red circle on a page", "a blue square on a page"])
    features = tmp_path / "features"
    scorer = TransformersScorer(tiny_vlm_dirs["idefics3"], vision_cache_dir=features)
    index = MultimodalIndex(tmp_path / "db", image_embedder=ColourShapeEmbedder(), page_dpi=30)
    assert index.ingest_paths([pdf], precompute=scorer, show_progress=False).ok
    assert scorer.features.computed == 2
    pages = retrieve(index, Query(text="a red circle"), RetrievalOptions(top_k=2, pages=True))
    assert [p.modality for p in pages] == ["image+text", "image+text"]
    fresh = TransformersScorer(tiny_vlm_dirs["idefics3"], vision_cache_dir=features)
    cached = fresh.score(Query(text="a red circle"), pages)
    assert fresh.features.computed == 0  # every page image came from the cache
    direct = TransformersScorer(tiny_vlm_dirs["idefics3"]).score(Query(text="a red circle"), pages)
    assert [s.logodds for s in cached] == pytest.approx([s.logodds for s in direct], abs=1e-4)
