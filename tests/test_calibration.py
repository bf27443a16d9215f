"""Calibration: Platt/temperature fitting, ECE, JSON persistence, thresholds, prior correction."""

from __future__ import annotations

import json
import math
from typing import Sequence

import numpy as np
import pytest

from mm_rag_components.calibration import (
    Calibration,
    content_free_logodds,
    expected_calibration_error,
    fit_calibration,
    logit,
    prior_corrected_logodds,
    sigmoid,
)
from mm_rag_components.errors import ConfigError
from mm_rag_components.scoring.base import PointScore
from mm_rag_components.types import Candidate, Query


def synthetic(n: int, a: float, b: float, seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Raw log-odds z whose true relevance probability is sigmoid(a·z + b) — miscalibrated when (a, b) ≠ (1, 0)."""
    rng = np.random.default_rng(seed)
    z = rng.normal(0.0, 3.0, n)
    truth = sigmoid(a * z + b)
    labels = (rng.random(n) < truth).astype(int)
    return z, labels, truth


def test_platt_recovers_the_miscalibration_and_lowers_ece() -> None:
    z, y, _ = synthetic(6000, a=0.4, b=0.8, seed=0)
    calibration = fit_calibration(z, y)
    assert calibration.method == "platt"
    assert calibration.a == pytest.approx(0.4, abs=0.05)
    assert calibration.b == pytest.approx(0.8, abs=0.12)
    z_test, y_test, _ = synthetic(6000, a=0.4, b=0.8, seed=1)
    before = expected_calibration_error(sigmoid(z_test), y_test)
    after = expected_calibration_error(calibration.apply(z_test), y_test)
    assert before > 0.08
    assert after < 0.03
    assert after < before / 3


def test_temperature_scaling_fits_an_overconfident_model() -> None:
    z, y, _ = synthetic(6000, a=1 / 2.5, b=0.0, seed=2)
    calibration = fit_calibration(z, y, method="temperature")
    assert calibration.temperature == pytest.approx(2.5, rel=0.12)
    z_test, y_test, _ = synthetic(6000, a=1 / 2.5, b=0.0, seed=3)
    assert expected_calibration_error(calibration.apply(z_test), y_test) < expected_calibration_error(sigmoid(z_test), y_test) / 3


@pytest.mark.parametrize("tau", [0.3, 0.5, 0.7, 0.9])
def test_calibrated_thresholds_keep_the_intended_fraction(tau: float) -> None:
    calibration = fit_calibration(*synthetic(6000, a=0.4, b=0.8, seed=4)[:2])
    z, y, truth = synthetic(8000, a=0.4, b=0.8, seed=5)
    probs = calibration.apply(z)
    kept = probs >= tau
    # as many items pass as truly have P(relevant) >= tau …
    assert kept.mean() == pytest.approx((truth >= tau).mean(), abs=0.03)
    # … and what passes is as relevant as the probabilities claim
    assert y[kept].mean() == pytest.approx(probs[kept].mean(), abs=0.03)
    assert y[kept].mean() >= tau - 0.02
    # the raw scores, read as probabilities, keep the wrong amount
    assert abs((sigmoid(z) >= tau).mean() - (truth >= tau).mean()) > 0.05


def test_probability_inputs() -> None:
    z, y, _ = synthetic(4000, a=0.4, b=0.8, seed=6)
    raw_probs = sigmoid(z)
    calibration = fit_calibration(raw_probs, y, kind="probability")
    assert calibration.input_kind == "probability"
    np.testing.assert_allclose(calibration.apply(raw_probs[:50]), fit_calibration(z, y).apply(z[:50]), atol=0.02)
    with pytest.raises(ConfigError):
        fit_calibration([0.5, 1.5], [0, 1], kind="probability")


def test_separable_labels_give_finite_parameters() -> None:
    calibration = fit_calibration([-3.0, -2.0, -1.0, 1.0, 2.0, 3.0], [0, 0, 0, 1, 1, 1])
    assert math.isfinite(calibration.a) and calibration.a > 0
    probabilities = calibration.apply([-3.0, 3.0])
    assert 0.0 < probabilities[0] < 0.5 < probabilities[1] < 1.0


def test_save_and_load_round_trip(tmp_path) -> None:
    calibration = fit_calibration(*synthetic(500, a=0.5, b=-0.3, seed=7)[:2])
    path = calibration.save(tmp_path / "sub" / "calibration.json")
    data = json.loads(path.read_text())
    assert data["method"] == "platt" and data["format_version"] == 1
    loaded = Calibration.load(path)
    assert loaded == calibration
    grid = np.linspace(-8, 8, 17)
    np.testing.assert_array_equal(loaded.apply(grid), calibration.apply(grid))
    temperature = Calibration("temperature", temperature=2.0)
    assert Calibration.load(temperature.save(tmp_path / "t.json")) == temperature


def test_load_errors(tmp_path) -> None:
    with pytest.raises(ConfigError):
        Calibration.load(tmp_path / "missing.json")
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    with pytest.raises(ConfigError):
        Calibration.load(bad)
    bad.write_text(json.dumps({"method": "isotonic"}))
    with pytest.raises(ConfigError):
        Calibration.load(bad)
    bad.write_text(json.dumps({"method": "platt", "a": 1, "format_version": 99}))
    with pytest.raises(ConfigError):
        Calibration.load(bad)


def test_apply_handles_unscorable_and_shapes() -> None:
    platt = Calibration("platt", a=-0.5, b=0.2)
    out = platt.apply([-math.inf, 0.0])
    assert out[0] == 0.0  # an unscorable candidate never becomes relevant
    assert out[1] == pytest.approx(sigmoid(0.2))
    assert Calibration().apply(0.0) == pytest.approx(0.5)
    assert Calibration("temperature", temperature=2.0).apply(np.array([[2.0]])).shape == (1, 1)
    np.testing.assert_allclose(logit(sigmoid(np.array([-4.0, 0.0, 4.0]))), [-4.0, 0.0, 4.0], atol=1e-9)


@pytest.mark.parametrize(
    "scores, labels, message",
    [
        ([0.1, 0.2], [0, 1, 1], "labels"),
        ([0.1], [1], "two"),
        ([0.1, 0.2, 0.3], [1, 1, 1], "single class"),
        ([0.1, 0.2], [0, 2], "0/1"),
        ([0.1, float("nan")], [0, 1], "finite"),
        ([0.1, -math.inf], [0, 1], "finite"),
    ],
)
def test_fit_rejects_bad_input(scores: list[float], labels: list[int], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        fit_calibration(scores, labels)
    with pytest.raises(ConfigError):
        fit_calibration([0.0, 1.0], [0, 1], method="isotonic")  # type: ignore[arg-type]


def test_temperature_needs_increasing_scores() -> None:
    with pytest.raises(ConfigError, match="platt"):
        fit_calibration([-2.0, -1.0, 1.0, 2.0] * 10, [1, 1, 0, 0] * 10, method="temperature")


def test_expected_calibration_error() -> None:
    assert expected_calibration_error([0.0, 1.0, 1.0], [0, 1, 1]) == 0.0
    assert expected_calibration_error([0.9, 0.9], [0, 0]) == pytest.approx(0.9)
    # two bins: |0.25 - 0.5| in the low bin, |0.75 - 0.5| in the high bin
    assert expected_calibration_error([0.25, 0.25, 0.75, 0.75], [0, 1, 0, 1], n_bins=2) == pytest.approx(0.25)
    with pytest.raises(ConfigError):
        expected_calibration_error([1.2], [1])
    with pytest.raises(ConfigError):
        expected_calibration_error([], [])
    with pytest.raises(ConfigError):
        expected_calibration_error([0.5], [1], n_bins=0)


class StandInScorer:
    """log-odds = relevance (query word in the text) + a per-candidate bias the model has anyway."""

    name = "stand-in"

    def __init__(self, bias: dict[str, float]) -> None:
        self.bias = bias
        self.queries: list[str | None] = []

    def score(self, query: Query, candidates: Sequence[Candidate]) -> list[PointScore]:
        self.queries.append(query.text)
        words = set((query.text or "").lower().split())
        return [
            PointScore.from_logodds(2.0 * len(words & set((c.text or "").split())) + self.bias[c.id])
            for c in candidates
        ]


def test_prior_correction_removes_query_independent_bias() -> None:
    candidates = [
        Candidate(id="popular", modality="text", text="stock photo of people"),
        Candidate(id="relevant", modality="text", text="red bicycle"),
    ]
    scorer = StandInScorer({"popular": 5.0, "relevant": -1.0})
    query = Query(text="red bicycle")
    raw = np.array([s.logodds for s in scorer.score(query, candidates)])
    assert raw.argmax() == 0  # the bias wins without correction
    prior = content_free_logodds(scorer, candidates)
    np.testing.assert_allclose(prior, [5.0, -1.0])
    assert scorer.queries[-1] == "N/A"
    corrected = prior_corrected_logodds(scorer, query, candidates, prior=prior)
    np.testing.assert_allclose(corrected, [0.0, 4.0])
    assert corrected.argmax() == 1
    np.testing.assert_allclose(prior_corrected_logodds(scorer, query, candidates), corrected)
    averaged = content_free_logodds(scorer, candidates, queries=("N/A", Query(text="bicycle")))
    np.testing.assert_allclose(averaged, [5.0, 0.0])
    with pytest.raises(ConfigError):
        prior_corrected_logodds(scorer, query, candidates, prior=[1.0])
    with pytest.raises(ConfigError):
        content_free_logodds(scorer, candidates, queries=())


def test_prior_correction_keeps_unscorable_candidates_unscorable() -> None:
    class Flagging:
        def score(self, query: Query, candidates: Sequence[Candidate]) -> list[PointScore]:
            return [PointScore.from_logodds(-math.inf, "unreadable_image"), PointScore.from_logodds(1.0)]

    candidates = [Candidate(id="a", modality="image"), Candidate(id="b", modality="text", text="b")]
    corrected = prior_corrected_logodds(Flagging(), Query(text="q"), candidates)
    assert corrected[0] == -math.inf and corrected[1] == 0.0


def test_prior_that_cannot_be_scored_leaves_the_candidate_uncorrected() -> None:
    class QueryDependent:
        def score(self, query: Query, candidates: Sequence[Candidate]) -> list[PointScore]:
            value = -math.inf if query.text == "N/A" else 2.0
            return [PointScore.from_logodds(value) for _ in candidates]

    corrected = prior_corrected_logodds(QueryDependent(), Query(text="q"), [Candidate(id="a", modality="text", text="a")])
    assert corrected.tolist() == [2.0]
