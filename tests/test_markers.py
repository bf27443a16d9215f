"""``-m "not llama_server"`` (``make test SERVER_TESTS=0``) leaves out exactly the tests that need
what the first ``make test`` builds: llama-cpp-python's server, llama.cpp's ``llama-server``."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

TESTS = Path(__file__).resolve().parent
#: What a test calls when it needs a llama.cpp server.
NEEDS_SERVER = re.compile(r"start_llama_server(_binary)?\(|benchmarks\" / \"load\.py\"|benchmarks/load\.py\"")


def test_the_llama_server_marker_selects_every_test_that_starts_a_server():
    done = subprocess.run([sys.executable, "-m", "pytest", "--collect-only", "-q", "-m", "llama_server", str(TESTS)],
                          capture_output=True, text=True, timeout=600, cwd=TESTS.parent, env={**os.environ, "HF_HUB_OFFLINE": "1"})
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    marked = {line.split("::")[0].split("/")[-1] for line in done.stdout.splitlines() if "::" in line}
    users = {p.name for p in TESTS.glob("test_*.py") if p.name != Path(__file__).name and NEEDS_SERVER.search(p.read_text())}
    assert users and marked == users
