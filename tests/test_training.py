"""Training a yes/no reranker end to end on tiny random models (offline, seconds)."""

from __future__ import annotations

import json

import pytest

from mm_rag_components.errors import MMRagError


@pytest.fixture(scope="module")
def root(tmp_path_factory):
    return tmp_path_factory.mktemp("training")


@pytest.fixture(scope="module")
def captions(root):
    from mm_rag_components.testing.captions import write_captioned_folder

    return write_captioned_folder(root / "data", colours=3, shapes=2, captions_per_image=3, size=32)


@pytest.fixture(scope="module")
def causal(root):
    from mm_rag_components.testing import build_tiny_causal_lm

    return build_tiny_causal_lm(root / "causal")


@pytest.fixture(scope="module")
def text_pairs(captions, root):
    from mm_rag_components.embedders import TextEmbedder
    from mm_rag_components.testing import build_tiny_text_embedder
    from mm_rag_components.training.sources import load_pairs

    embedder = TextEmbedder(build_tiny_text_embedder(root / "embedder"))
    return load_pairs(captions, embedder=embedder, held_out_fraction=0.34, seed=0, positives=2, negatives=2)


def _config(**options):
    from mm_rag_components.training import TrainConfig

    defaults = {"learning_rate": 3e-3, "epochs": 4, "batch_size": 4, "micro_batch_size": 4, "progress": False, "warmup_fraction": 0.0}
    return TrainConfig(**{**defaults, **options})


def _loss(model, examples, config):
    """Mean pair loss of ``examples`` under ``model`` via the normal scoring path."""
    from mm_rag_components.scoring.transformers_scorer import TransformersScorer
    from mm_rag_components.training import evaluate_pairs

    scorer = TransformersScorer(model, template=config.template, max_length=config.max_length, device="cpu")
    return evaluate_pairs(scorer, examples)


def test_pairs_are_split_by_item_and_mined_within_each_side(text_pairs):
    train, held = text_pairs.train, text_pairs.held_out
    assert train and held
    assert not {e.group for e in train} & {e.group for e in held}
    assert {e.label for e in train} == {0, 1}
    for e in train:  # a caption2caption pair: a positive shares the query's photo
        assert e.doc_text != e.query_text
    assert text_pairs.source["held_out_items"] == sorted({e.group for e in held})


def test_objective_is_the_scorers_quantity(causal, text_pairs):
    """(z_yes − z_no) the trainer optimises equals the log-odds TransformersScorer reports."""
    import torch

    from mm_rag_components.training.objective import PairEncoder
    from mm_rag_components.training.trainer import load_trainable

    scorer, model = load_trainable(causal, _config())
    encoder = PairEncoder(scorer)
    pairs = text_pairs.train[:6]
    with torch.no_grad():
        logits = encoder.logits(model.eval(), [encoder.encode(e) for e in pairs])
    scored = _loss(causal, pairs, _config())["logodds"]
    assert torch.allclose(logits[:, 0] - logits[:, 1], torch.tensor(scored), atol=1e-4)


def test_text_model_trains_saves_and_loads(causal, text_pairs, root):
    from mm_rag_components.calibration import Calibration, fit_calibration
    from mm_rag_components.rerank.pointwise import PointwiseRanker
    from mm_rag_components.training import train_reranker
    from mm_rag_components.types import CALIBRATED_SCORE, RERANK_LOGODDS, Candidate, Query

    config = _config(epochs=15)
    train, held = text_pairs.train[:8], text_pairs.held_out[:8]
    before = _loss(causal, train, config)
    out = root / "trained-text"
    result = train_reranker(causal, train, out, held_out=held, config=config, source=text_pairs.source)
    after = _loss(out, train, config)
    assert after["log_loss"] < before["log_loss"] - 0.02  # it fits its training pairs
    assert (out / "config.json").is_file() and not (out / "adapter_config.json").exists()
    card = (out / "README.md").read_text()
    assert "qwen3-vl-reranker" in card and "held-out items" in card
    record = json.loads((out / "training.json").read_text())
    assert result.steps == len(record["losses"]) == 15 * 2  # 8 pairs in batches of 4, 15 epochs
    # the recorded held-out numbers are the saved model's, and the calibration was fitted on its scores
    held_scores = _loss(out, held, config)
    assert record["metrics"]["held_out"] == pytest.approx({k: v for k, v in held_scores.items() if k not in ("logodds", "labels")}, abs=2e-4)
    calibration = Calibration.load(out / "calibration.json")
    refit = fit_calibration(held_scores["logodds"], held_scores["labels"], "platt")
    assert calibration.method == "platt" and calibration.n_samples == len(held)
    assert (calibration.a, calibration.b) == pytest.approx((refit.a, refit.b), abs=1e-3)
    # loaded by path, it scores like the saved model and applies the saved calibration
    ranker = PointwiseRanker.create(str(out), calibration=str(out / "calibration.json"))
    e = held[0]
    (ranked,) = ranker.rerank(Query(text=e.query_text), [Candidate(id="a", modality="text", text=e.doc_text)]).candidates
    z = _loss(out, [e], config)["logodds"][0]
    assert ranked.metadata[RERANK_LOGODDS] == pytest.approx(z, abs=1e-4)
    assert ranked.metadata[CALIBRATED_SCORE] == pytest.approx(float(calibration.apply(z)), abs=1e-4) == ranked.score


def test_lora_is_merged_on_save(causal, text_pairs, root, monkeypatch):
    """The saved model (no adapter files) scores exactly as the trained LoRA model did in memory."""
    import torch

    from mm_rag_components.training import train_reranker
    from mm_rag_components.training import trainer as trainer_module
    from mm_rag_components.training.objective import PairEncoder

    probe = text_pairs.train[:8]
    in_memory: dict = {}
    save_model = trainer_module.save_model

    def scoring_before_the_merge(net, scorer, source, output):
        encoder = PairEncoder(scorer)
        with torch.no_grad():
            logits = encoder.logits(net.eval(), [encoder.encode(e) for e in probe])
        in_memory.update(adapter=hasattr(net, "peft_config"), logodds=(logits[:, 0] - logits[:, 1]).tolist())
        save_model(net, scorer, source, output)

    monkeypatch.setattr(trainer_module, "save_model", scoring_before_the_merge)
    config = _config(method="lora", learning_rate=1e-2, epochs=2, lora_r=4)
    out = root / "trained-lora"
    train_reranker(causal, text_pairs.train, out, config=config)
    assert in_memory["adapter"] and not (out / "adapter_config.json").exists()
    saved, base = _loss(out, probe, config)["logodds"], _loss(causal, probe, config)["logodds"]
    assert saved == pytest.approx(in_memory["logodds"], abs=1e-4)  # the adapter is in the saved weights
    assert max(abs(a - b) for a, b in zip(saved, base)) > 1e-2  # and it learned something


def test_resume_continues_the_same_run(causal, text_pairs, root, monkeypatch):
    import torch
    from safetensors.torch import load_file

    from mm_rag_components.training import train_reranker
    from mm_rag_components.training import trainer as trainer_module

    config = _config(max_steps=4, checkpoint_every=2, epochs=1)
    train_reranker(causal, text_pairs.train, root / "straight", config=config)
    saved = trainer_module._save_checkpoint

    def interrupted(*args, **kwargs):
        saved(*args, **kwargs)
        raise KeyboardInterrupt

    monkeypatch.setattr(trainer_module, "_save_checkpoint", interrupted)
    with pytest.raises(KeyboardInterrupt):
        train_reranker(causal, text_pairs.train, root / "resumed", config=config)
    monkeypatch.setattr(trainer_module, "_save_checkpoint", saved)
    result = train_reranker(causal, text_pairs.train, root / "resumed", config=_config(max_steps=4, checkpoint_every=2, epochs=1, resume=True))
    assert result.steps == 4 and len(result.losses) == 4
    a, b = load_file(root / "straight" / "model.safetensors"), load_file(root / "resumed" / "model.safetensors")
    assert all(torch.allclose(a[k], b[k], atol=1e-6) for k in a)
    with pytest.raises(MMRagError, match="different run"):
        train_reranker(causal, text_pairs.train[:-1], root / "resumed", config=_config(max_steps=4, resume=True))


@pytest.mark.parametrize("family", ["idefics3", "llava", "qwen2_vl"])
def test_vlm_image_candidates_train_and_load(family, captions, root):
    """caption → image pairs on a tiny random VLM: the saved model loads by path and its pair loss is lower."""
    from mm_rag_components import testing
    from mm_rag_components.datasets.loading import load_dataset
    from mm_rag_components.training import train_reranker
    from mm_rag_components.training.mining import mine_pairs

    build = {"idefics3": testing.build_tiny_idefics3, "llava": testing.build_tiny_llava, "qwen2_vl": testing.build_tiny_qwen2_vl}[family]
    model = build(root / family)
    pairs = mine_pairs(load_dataset(captions, "text2image"), positives=1, negatives=1, seed=0)[:12]
    assert all(e.doc_image for e in pairs)
    config = _config(epochs=3, batch_size=4, learning_rate=2e-3)
    before = _loss(model, pairs, config)
    out = root / f"trained-{family}"
    train_reranker(model, pairs, out, config=config)
    after = _loss(out, pairs, config)
    assert after["log_loss"] < before["log_loss"]  # the saved model fits its image pairs better than the base


# ------------------------------------------------------------------ bad input: one typed line


def _jsonl(tmp_path, lines):
    path = tmp_path / "pairs.jsonl"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


BAD_PAIRS = {
    "empty": [""],
    "bad-json": ['{"query": "a", "candidate": "b", "label": 1', ],
    "not-object": ["[1, 2]"],
    "label-2": ['{"query": "a", "candidate": "b", "label": 2}'],
    "label-text": ['{"query": "a", "candidate": "b", "label": "yes"}'],
    "no-label": ['{"query": "a", "candidate": "b"}'],
    "unknown-key": ['{"query": "a", "candidate": "b", "label": 1, "score": 3}'],
    "missing-image": ['{"query": "a", "candidate_image": "nowhere.png", "label": 1}'],
    "no-candidate": ['{"query": "a", "label": 1}'],
    "no-query": ['{"candidate": "a", "label": 0}'],
    "query-not-text": ['{"query": 3, "candidate": "b", "label": 0}'],
    "bad-group": ['{"query": "a", "candidate": "b", "label": 0, "group": true}'],
    "one-label": ['{"query": "a", "candidate": "b", "label": 1, "group": "x"}', '{"query": "c", "candidate": "d", "label": 1, "group": "y"}'],
}


@pytest.mark.parametrize("case", sorted(BAD_PAIRS))
def test_bad_pairs_file_is_one_typed_line(case, tmp_path):
    from mm_rag_components.training.data import read_pairs, split_examples

    path = _jsonl(tmp_path, BAD_PAIRS[case])
    with pytest.raises(MMRagError) as info:
        split_examples(read_pairs(path), 0.0, 0)
    assert "\n" not in str(info.value) and str(info.value)


BAD_OPTIONS = {
    "method": {"method": "qlora"},
    "learning-rate": {"learning_rate": 0},
    "epochs": {"epochs": 0},
    "micro-batch": {"batch_size": 2, "micro_batch_size": 4},
    "lora-r": {"lora_r": 0},
    "time-budget": {"time_budget_s": -1.0},
    "resume": {"resume": "yes"},
    "unknown": {"learnng_rate": 1e-3},
}


@pytest.mark.parametrize("case", sorted(BAD_OPTIONS))
def test_bad_options_are_one_typed_line(case):
    from mm_rag_components.training import TrainConfig

    with pytest.raises(MMRagError) as info:
        TrainConfig.from_kwargs(**BAD_OPTIONS[case])
    assert "\n" not in str(info.value)


def test_image_pair_for_text_model_and_leaking_split_are_refused(causal, captions, text_pairs, root):
    from mm_rag_components.datasets.loading import load_dataset
    from mm_rag_components.training import train_reranker
    from mm_rag_components.training.mining import mine_pairs

    image_pairs = mine_pairs(load_dataset(captions, "text2image"), positives=1, negatives=1)
    with pytest.raises(MMRagError, match="text-only"):
        train_reranker(causal, image_pairs, root / "never", config=_config())
    with pytest.raises(MMRagError, match="both the training and the held-out"):
        train_reranker(causal, text_pairs.train, root / "never", held_out=text_pairs.train[:2], config=_config())
