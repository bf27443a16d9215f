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

ROOT = Path(__file__).resolve().parents[1]


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
    assert "throughput with 4 users vs the sequential baseline" in done.stdout
