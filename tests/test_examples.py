"""The examples run end to end offline (tiny models)."""

import subprocess
import sys
from pathlib import Path

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"


def test_pipeline_example_runs_offline(tmp_path):
    out = subprocess.run(
        [sys.executable, str(EXAMPLES / "multimodal_rag_pipeline.py"), "--tiny", "--db", str(tmp_path / "db")],
        capture_output=True, text=True, timeout=600, cwd=tmp_path,
    )
    assert out.returncode == 0, out.stderr[-2000:]
    lines = out.stdout.splitlines()
    assert lines[0].startswith("added 15")
    assert sum(1 for line in lines if "p=" in line) == 3
    assert lines[-1].startswith("kept 3 of 8")
