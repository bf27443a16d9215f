"""``benchmarks/load.py --tiny``: the deployment set-up end to end (Chroma server, llama.cpp's
``llama-server`` with SmolLM2, ``mm-rag serve``), 1 and 4 simulated users, the kill tests.

Timings are the benchmark's business; this checks behaviour: every question answered, none mixed
up or lost, a killed model server gives clear error events and its restart recovers, a killed web
server loses nothing from the index and the conversation goes on after its restart.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.llama_server
def test_load_benchmark_tiny(tmp_path) -> None:
    out = tmp_path / "load.json"
    done = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "load.py"), "--tiny", "--out", str(out)],
                          capture_output=True, text=True, timeout=900, check=False, env={**os.environ, "HF_HUB_OFFLINE": "1"})
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    result = json.loads(out.read_text())
    assert result["setup"]["model_server"].startswith("llama.cpp llama-server")  # llama.cpp's own server (make test builds it)
    assert set(result["phases"]) == {"1", "4"}
    for users, phase in result["phases"].items():
        assert phase["questions"] == phase["answered"] == int(users) * 2, phase
        assert phase["errors"] == {} and phase["mixed_up"] == 0 and phase["lost"] == 0
        assert phase["questions_per_s"] > 0 and phase["done_s"]["p50"] >= phase["first_token_s"]["p50"] > 0
    assert result["throughput_vs_sequential"]["4"] > 0 and result["mixed_up"] == result["lost"] == 0
    killed = result["kill_llama"]
    assert killed["during"]["ended_in_error_event"] >= 1 and killed["clear_errors"] and killed["recovered"]
    assert set(killed["during"]["errors"]) <= {"answer_failed", "answer_timeout", "backend"}
    web = result["kill_web"]
    assert web["index_intact"] and web["records_after"] == result["setup"]["records"] and web["conversation_continued"]
    target = result["target_4_users"]
    assert target["ratio"] == result["throughput_vs_sequential"]["4"] and target["met"] == (target["ratio"] >= 2.5)
    line = next(x for x in done.stdout.splitlines() if x.startswith("throughput with 4 users vs the sequential baseline"))
    assert line.endswith(f"target ≥ 2.5×: {'met' if target['met'] else 'not met'} ({target['why']})")
    assert "Loading weights" not in done.stdout + done.stderr and "Writing model shards" not in done.stdout + done.stderr


def _load_module():
    import importlib.util

    spec = importlib.util.spec_from_file_location("load_benchmark", ROOT / "benchmarks" / "load.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # its dataclasses look their module up
    sys.path.insert(0, str(ROOT / "benchmarks"))
    try:
        spec.loader.exec_module(module)
    finally:
        sys.path.remove(str(ROOT / "benchmarks"))
    return module


def test_the_throughput_target_gets_a_verdict_and_a_reason() -> None:
    load = _load_module()
    cpu = load.verdict(1.97, "llama", 4, 2)
    assert (cpu["met"], cpu["min_ratio"]) == (False, 2.5)
    assert "compute-bound" in cpu["why"] and "2 CPU cores" in cpu["why"] and "cannot batch" in cpu["why"]
    assert load.verdict_line(cpu).startswith("target ≥ 2.5×: not met (the model server is the limit")
    simulated = load.verdict(2.0, "simulated", 4, 2)
    assert not simulated["met"] and simulated["why"].startswith("mm-rag serve is the limit")
    assert load.verdict(3.13, "simulated", 4, 2)["met"] and load.verdict(2.5, "llama", 4, 16)["met"]
    assert load.verdict_line(load.verdict(3.13, "simulated", 4, 2)) == "target ≥ 2.5×: met (overlapping questions ran concurrently, end to end)"
