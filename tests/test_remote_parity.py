"""parity(): |Δp| and rank agreement between two scorers; the command's argument handling."""

from __future__ import annotations

import json
import math
import random

import pytest
from scipy import stats

from mm_rag_components.errors import ConfigError
from mm_rag_components.cli.parity_commands import run as run_parity_command
from mm_rag_components.remote.parity import kendall_tau, parity, spearman
from mm_rag_components.scoring.base import PointScore
from mm_rag_components.types import Query


class OffsetScorer:
    """p from a table by candidate text, shifted by ``offset`` in log-odds; ``flags`` by text."""

    def __init__(self, table: dict[str, float], offset: float = 0.0, flags: dict[str, str] | None = None) -> None:
        self.name = "offset"
        self.table, self.offset, self.flags = table, offset, flags or {}

    def score(self, query, candidates):
        out = []
        for c in candidates:
            if c.text in self.flags:
                out.append(PointScore(-math.inf, 0.0, self.flags[c.text]))
            else:
                p = self.table[c.text]
                out.append(PointScore.from_logodds(math.log(p / (1 - p)) + self.offset))
        return out


def test_rank_statistics_match_scipy_with_ties():
    rng = random.Random(0)
    for n in (2, 5, 12):
        x = [rng.choice([0.1, 0.2, 0.3, rng.random()]) for _ in range(n)]
        y = [v + rng.choice([0.0, 0.05, -0.2]) for v in x]
        assert spearman(x, y) == pytest.approx(stats.spearmanr(x, y).statistic)
        assert kendall_tau(x, y) == pytest.approx(stats.kendalltau(x, y).statistic)
    assert spearman([1.0, 1.0], [1.0, 2.0]) is None and kendall_tau([1.0], [1.0]) is None


def test_parity_reports_differences_agreement_and_flags():
    table = {"a": 0.9, "b": 0.6, "c": 0.3, "d": 0.1}
    local = OffsetScorer(table)
    remote = OffsetScorer(table, offset=0.1, flags={"d": "no_answer_logprobs"})
    report = parity(remote, local, [("q1", ["a", "b", "c", "d"]), (Query("q2"), ["c", "a"])])
    assert report.pairs == 6 and report.compared == 5
    expected = [abs(1 / (1 + math.exp(-(math.log(p / (1 - p)) + 0.1))) - p) for p in (0.9, 0.6, 0.3, 0.3, 0.9)]
    assert report.max_abs_dp == pytest.approx(max(expected)) and report.mean_abs_dp == pytest.approx(sum(expected) / 5)
    assert report.spearman == pytest.approx(1.0) and report.kendall == pytest.approx(1.0)
    assert report.overall_kendall == pytest.approx(1.0)
    assert report.remote_flags == {"no_answer_logprobs": 1} and report.local_flags == {}
    assert [q.compared for q in report.queries] == [3, 2]
    assert report.within(0.05) and not report.within(0.01)
    assert "max" in report.format(0.05) and json.dumps(report.to_dict())
    reversed_remote = OffsetScorer({k: 1 - v for k, v in table.items()})
    assert parity(reversed_remote, local, [("q", ["a", "b", "c"])]).kendall == pytest.approx(-1.0)
    with pytest.raises(ConfigError):
        parity(remote, local, [])


def test_parity_command_refuses_bad_input(tmp_path, capsys):
    assert run_parity_command(["--server", "http://127.0.0.1:9/v1"]) == 2
    assert "--model" in capsys.readouterr().err
    bad = tmp_path / "pairs.jsonl"
    bad.write_text('{"query": "q"}\n')
    assert run_parity_command(["--model", str(tmp_path), "--pairs", str(bad)]) == 2
    assert "pairs.jsonl:1" in capsys.readouterr().err
    assert run_parity_command(["--gguf", str(tmp_path / "missing.gguf"), "--server", "http://127.0.0.1:9/v1"]) == 2
    assert "no such GGUF" in capsys.readouterr().err
    assert run_parity_command(["--help"]) == 0
    assert "--gguf" in capsys.readouterr().out
