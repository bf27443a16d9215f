"""The parts of training that need no model: the pair metrics against references computed here
(brute-force pair counting, the rank-sum formula, plain-Python log-loss and ECE), hard-negative
mining on a hand-made task whose answer is known, and the model card written from known numbers."""

from __future__ import annotations

import ast
import json
import math
import re
from types import SimpleNamespace

import pytest
from fake_models import ColourShapeEmbedder
from hypothesis import given
from hypothesis import strategies as st

from mm_rag_components.calibration import Calibration
from mm_rag_components.errors import ConfigError
from mm_rag_components.datasets.task import EvalDoc, EvalQuery, EvalTask
from mm_rag_components.training import TrainConfig
from mm_rag_components.training.card import write_card
from mm_rag_components.training.metrics import calibrated_metrics, pair_metrics, roc_auc
from mm_rag_components.training.mining import mine_pairs

# ------------------------------------------------------------------------- references, by hand


def auc_by_pairs(scores: list[float], labels: list[int]) -> float | None:
    """Every (relevant, irrelevant) pair counted one by one: a win 1, a tie ½."""
    pos = [s for s, y in zip(scores, labels) if y == 1]
    neg = [s for s, y in zip(scores, labels) if y == 0]
    if not pos or not neg:
        return None
    wins = sum(1.0 if p > n else 0.5 if p == n else 0.0 for p in pos for n in neg)
    return wins / (len(pos) * len(neg))


def auc_by_ranks(scores: list[float], labels: list[int]) -> float | None:
    """Mann–Whitney: (sum of the relevant items' mid-ranks − n₊(n₊+1)/2) / (n₊·n₋)."""
    n_pos, n_neg = labels.count(1), labels.count(0)
    if not n_pos or not n_neg:
        return None
    ordered = sorted(scores)
    first = {s: ordered.index(s) + 1 for s in scores}
    mid = {s: first[s] + (ordered.count(s) - 1) / 2 for s in scores}
    rank_sum = sum(mid[s] for s, y in zip(scores, labels) if y == 1)
    return (rank_sum - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg)


def sigmoid(z: float) -> float:
    return 1.0 / (1.0 + math.exp(-z)) if z >= 0 else math.exp(z) / (1.0 + math.exp(z))


def log_loss(p: list[float], y: list[int]) -> float:
    clipped = [min(max(q, 1e-7), 1 - 1e-7) for q in p]
    return -sum(math.log(q) if t == 1 else math.log(1 - q) for q, t in zip(clipped, y)) / len(y)


def ece(p: list[float], y: list[int], bins: int = 10) -> float:
    """Ten equal-width bins of [0, 1] (1.0 in the last): Σ |mean label − mean p| · count / n."""
    groups: dict[int, list[tuple[float, int]]] = {}
    for q, t in zip(p, y):
        groups.setdefault(min(int(q * bins), bins - 1), []).append((q, t))
    gaps = [abs(sum(t for _, t in g) / len(g) - sum(q for q, _ in g) / len(g)) * len(g) for g in groups.values()]
    return sum(gaps) / len(p)


def mean(values: list[float]) -> float | None:
    return sum(values) / len(values) if values else None


# ------------------------------------------------------------------------------------ metrics


def test_roc_auc_of_a_known_case_and_of_one_class():
    assert roc_auc([0.1, 0.4, 0.35, 0.8], [0, 0, 1, 1]) == 0.75  # 3 of the 4 pairs in order
    assert roc_auc([1.0, 2.0, 3.0], [0, 1, 1]) == 1.0 and roc_auc([3.0, 2.0, 1.0], [0, 1, 1]) == 0.0
    assert roc_auc([0.5, 0.5], [0, 1]) == 0.5  # a tie counts one half
    assert roc_auc([0.2, 0.9], [1, 1]) is None and roc_auc([0.2, 0.9], [0, 0]) is None and roc_auc([], []) is None


pairs_and_labels = st.integers(1, 30).flatmap(lambda n: st.tuples(
    st.lists(st.integers(-4, 4).map(float), min_size=n, max_size=n),  # few values: many ties
    st.lists(st.integers(0, 1), min_size=n, max_size=n),
))


@given(pairs_and_labels)
def test_roc_auc_counts_every_pair(case):
    scores, labels = case
    expected = auc_by_pairs(scores, labels)
    assert auc_by_ranks(scores, labels) == pytest.approx(expected)  # the two references agree
    assert roc_auc(scores, labels) == pytest.approx(expected)


def test_pair_metrics_of_a_case_worked_by_hand():
    z, y = [0.0, 2.0, -1.0, 3.0], [1, 1, 0, 0]
    p = [sigmoid(v) for v in z]  # 0.5, 0.881, 0.269, 0.953
    metrics = pair_metrics(z, y)
    assert metrics["pairs"] == 4
    assert metrics["accuracy"] == 0.75  # p ≥ ½ says relevant for 0, 2 and 3: the last is wrong
    assert metrics["auc"] == 0.5  # 0 and 2 each beat −1 and lose to 3
    assert metrics["log_loss"] == pytest.approx((math.log(2) - math.log(p[1]) - math.log(1 - p[2]) - math.log(1 - p[3])) / 4, abs=5e-5)
    assert metrics["mean_p_relevant"] == pytest.approx((0.5 + p[1]) / 2, abs=5e-5)
    assert metrics["mean_p_irrelevant"] == pytest.approx((p[2] + p[3]) / 2, abs=5e-5)
    assert metrics["ece"] == pytest.approx((0.5 + (1 - p[1]) + p[2] + p[3]) / 4, abs=5e-5)  # one pair per bin


@given(st.integers(1, 25).flatmap(lambda n: st.tuples(
    st.lists(st.integers(-3000, 3000).map(lambda k: k / 100), min_size=n, max_size=n),  # a grid: no p a rounding away from ½ or a bin edge
    st.lists(st.integers(0, 1), min_size=n, max_size=n),
)))
def test_pair_metrics_match_the_references(case):
    z, y = case
    p = [sigmoid(v) for v in z]
    metrics = pair_metrics(z, y)
    relevant = [q for q, t in zip(p, y) if t == 1]
    irrelevant = [q for q, t in zip(p, y) if t == 0]
    expected = {
        "pairs": len(z),
        "log_loss": log_loss(p, y),
        "accuracy": sum((q >= 0.5) == (t == 1) for q, t in zip(p, y)) / len(y),
        "auc": auc_by_pairs(z, y),
        "mean_p_relevant": mean(relevant),
        "mean_p_irrelevant": mean(irrelevant),
        "ece": ece(p, y),
    }
    assert set(metrics) == set(expected)
    for key, value in expected.items():  # the metrics are rounded to 4 decimals
        assert metrics[key] == (None if value is None else pytest.approx(value, abs=1e-4)), key


def test_pair_metrics_of_nothing_and_of_one_class():
    assert pair_metrics([], []) == {"pairs": 0}
    only_relevant = pair_metrics([1.0, -1.0], [1, 1])
    assert only_relevant["auc"] is None and only_relevant["mean_p_irrelevant"] is None
    assert only_relevant["accuracy"] == 0.5 and only_relevant["mean_p_relevant"] == pytest.approx(0.5, abs=5e-5)


def test_calibrated_metrics_use_the_calibrated_probabilities():
    calibration = Calibration("platt", a=2.0, b=-1.0)
    z, y = [-2.0, 0.0, 0.5, 1.0, 4.0], [0, 0, 1, 0, 1]
    p = [sigmoid(2.0 * v - 1.0) for v in z]
    assert calibrated_metrics(calibration, z, y) == {
        "log_loss": pytest.approx(log_loss(p, y), abs=5e-5), "ece": pytest.approx(ece(p, y), abs=5e-5)}


# ------------------------------------------------------------------------------------- mining
# ColourShapeEmbedder gives each colour and shape word its own axis, so cosines are known:
# "red circle" · "red circle triangle" = 2/√6 ≈ 0.82, · "red square" = ½, · "blue triangle" = 0.

CORPUS = {
    "rc": "red circle", "rct": "red circle triangle", "rs": "red square",
    "gs": "green square", "gst": "green square triangle", "bt": "blue triangle", "yt": "yellow triangle",
}


def colour_task(exclude: frozenset[str] = frozenset()) -> EvalTask:
    queries = [EvalQuery("q-red", "red circle", group="red", exclude=exclude), EvalQuery("q-green", "green square", group="green")]
    corpus = [EvalDoc(doc_id, text, group=doc_id) for doc_id, text in CORPUS.items()]
    return EvalTask("colours", "qrels", queries, corpus, {"q-red": {"rc": 1, "bt": 0}, "q-green": {"gs": 2}})


def pairs_of(examples, query_text: str) -> list[tuple[str, int]]:
    ids = {text: doc_id for doc_id, text in CORPUS.items()}
    return [(ids[e.doc_text], e.label) for e in examples if e.query_text == query_text]


def test_hard_negatives_are_the_retrievers_best_irrelevant_entries_in_order():
    examples = mine_pairs(colour_task(), ColourShapeEmbedder(), positives=4, negatives=2, pool=20)
    assert pairs_of(examples, "red circle") == [("rc", 1), ("rct", 0), ("rs", 0)]
    assert pairs_of(examples, "green square") == [("gs", 1), ("gst", 0), ("rs", 0)]
    assert [e.group for e in examples] == ["red"] * 3 + ["green"] * 3  # each pair belongs to its query's item
    assert all(e.query_image is None and e.doc_image is None for e in examples)


def test_an_excluded_entry_is_never_a_negative():
    examples = mine_pairs(colour_task(exclude=frozenset({"rct"})), ColourShapeEmbedder(), negatives=1, pool=20)
    assert pairs_of(examples, "red circle") == [("rc", 1), ("rs", 0)]


def test_a_short_pool_is_topped_up_at_random_from_the_irrelevant_entries():
    """pool=1 retrieves only the positive itself: both negatives are drawn, seeded."""
    task = colour_task()
    first = mine_pairs(task, ColourShapeEmbedder(), negatives=2, pool=1, seed=3)
    assert first == mine_pairs(task, ColourShapeEmbedder(), negatives=2, pool=1, seed=3)
    negatives = [doc for doc, label in pairs_of(first, "red circle") if label == 0]
    assert len(negatives) == len(set(negatives)) == 2 and "rc" not in negatives


def test_without_an_embedder_negatives_are_every_irrelevant_entry_at_most_once():
    examples = mine_pairs(colour_task(exclude=frozenset({"yt"})), positives=1, negatives=50, seed=0)
    red = pairs_of(examples, "red circle")
    assert red[0] == ("rc", 1)
    assert sorted(doc for doc, _ in red[1:]) == ["bt", "gs", "gst", "rct", "rs"]  # all but rc and the excluded yt
    assert {label for _, label in red[1:]} == {0}
    assert sorted(doc for doc, _ in pairs_of(examples, "green square")[1:]) == ["bt", "gst", "rc", "rct", "rs", "yt"]


def test_positives_are_capped_and_bad_counts_refused():
    task = EvalTask("two", "qrels", [EvalQuery("q", "red circle", group="g")],
                    [EvalDoc("a", "red circle"), EvalDoc("b", "red circle triangle"), EvalDoc("c", "blue triangle")],
                    {"q": {"a": 1, "b": 1}})
    one = mine_pairs(task, positives=1, negatives=1, seed=0)
    assert [e.label for e in one] == [1, 0] and one[0].doc_text in ("red circle", "red circle triangle")
    assert one[1].doc_text == "blue triangle"
    assert sorted(e.doc_text for e in mine_pairs(task, positives=5, negatives=1) if e.label == 1) == ["red circle", "red circle triangle"]
    for bad in ({"positives": 0}, {"negatives": 0}, {"pool": 0}):
        with pytest.raises(ConfigError):
            mine_pairs(task, **bad)


# --------------------------------------------------------------------------------------- card

HELD_OUT = {"pairs": 4, "log_loss": 0.5123, "accuracy": 0.75, "auc": 0.5, "mean_p_relevant": 0.6904,
            "mean_p_irrelevant": 0.6108, "ece": 0.4602}
BASE = {**HELD_OUT, "log_loss": 0.6931, "auc": None}


def _result(tmp_path, **changes):
    metrics = {"train_pairs": 10, "held_out_pairs": 4, "steps": 2, "train_seconds": 3.5, "first_loss": 0.6931,
               "last_loss": 0.5, "held_out": HELD_OUT, "held_out_base": BASE,
               "held_out_calibrated": {"log_loss": 0.4, "ece": 0.1}}
    fields = {"output_dir": tmp_path, "steps": 2, "losses": [0.69314718, 0.51234567], "metrics": metrics,
              "calibration": Calibration("platt", a=1.5, b=-0.25, n_samples=4), "stopped_early": False}
    return SimpleNamespace(**{**fields, **changes})


def test_model_card_and_training_record(tmp_path):
    config = TrainConfig(method="lora", learning_rate=1e-3, batch_size=4, micro_batch_size=2, seed=7, instruction="Judge it")
    result = _result(tmp_path)
    source = {"description": "3 captioned photos", "split": "by photo"}
    path = write_card(result, config, source, {"model": "tiny/base", "data": "abc123"})
    assert path == tmp_path / "README.md"
    assert json.loads((tmp_path / "training.json").read_text()) == {
        "base_model": "tiny/base", "data_fingerprint": "abc123", "source": source, "config": config.to_dict(),
        "metrics": result.metrics, "calibration": result.calibration.to_dict(), "stopped_early": False,
        "losses": [0.69315, 0.51235],
    }
    card = path.read_text()
    assert "Base model: `tiny/base`. Method: lora fine-tuning (LoRA merged into the weights)" in card
    assert "2 optimizer steps of 4 pairs" in card and "learning rate 0.001, seed 7, 3.5 s of training." in card
    assert f"**Template:** `{config.template}`, instruction='Judge it'; max_length 512." in card
    assert "Training pairs: 10; held-out pairs: 4." in card and "**Split:** by photo; no item has pairs on both sides." in card
    assert "| base (untrained) | 4 | 0.6931 | 0.75 | – | 0.6904 | 0.6108 | 0.4602 |" in card  # no AUC: a dash
    assert "| trained | 4 | 0.5123 | 0.75 | 0.5 | 0.6904 | 0.6108 | 0.4602 |" in card
    rows = [line for line in card.splitlines() if line.startswith("|")]
    assert len(rows) == 4 and {row.count("|") for row in rows} == {9}  # header, rule, two rows: 8 columns each
    assert "log-loss 0.4, ECE 0.1." in card and "first 10 steps 0.6931, last 10 steps 0.5." in card
    (code,) = re.findall(r"```python\n(.*?)```", card, re.S)
    call = next(node for node in ast.walk(ast.parse(code)) if isinstance(node, ast.Call))  # the snippet is valid Python
    assert ast.literal_eval(call.args[0]) == str(tmp_path)
    assert {k.arg: ast.literal_eval(k.value) for k in call.keywords} == {
        "template": config.template, "instruction": "Judge it", "calibration": f"{tmp_path}/calibration.json"}


def test_model_card_without_held_out_pairs_after_a_time_budget_stop(tmp_path):
    config = TrainConfig(train_layers=2, freeze_vision=False)
    result = _result(tmp_path, metrics={"train_pairs": 6, "held_out_pairs": 0}, calibration=None, stopped_early=True)
    card = write_card(result, config, {}, {"model": "m", "data": "d"}).read_text()
    assert "No held-out pairs." in card and "|" not in card
    assert "(stopped early by the time budget)" in card and "LoRA" not in card and "Method: full fine-tuning" in card
    assert "only the last 2 decoder layers and the final norm trained, vision tower (if any) trained" in card
    assert "**Data:** training pairs." in card and "**Split:** by item (group), seeded;" in card
    record = json.loads((tmp_path / "training.json").read_text())
    assert record["calibration"] is None and record["stopped_early"] is True and record["source"] == {}
