"""The mm-rag command: demo, ingest and query on embedded Chroma, plain errors."""

import subprocess
import sys

from mm_rag_components.cli import main


def test_demo_with_tiny_model_on_a_drawn_folder(tmp_path, sample_folder, capsys):
    db = tmp_path / "state" / "chroma"
    assert main(["demo", "--tiny", "--data", str(sample_folder), "--db", str(db), "--queries", "2"]) == 0
    out = capsys.readouterr().out
    assert "added 15" in out and "NOT meaningful" in out
    assert "image query: blue_circle.png" in out
    assert "blue_circle.png" in out.split("image query: blue_circle.png")[1].splitlines()[1]
    assert (tmp_path / "state" / "models" / "tiny-clip").is_dir()


def test_ingest_then_query(tmp_path, sample_folder, capsys):
    db = str(tmp_path / "state" / "chroma")
    assert main(["ingest", str(sample_folder), "--tiny", "--db", db]) == 0
    assert "added 15" in capsys.readouterr().out
    assert main(["query", "--tiny", "--db", db, "--image", str(sample_folder / "red_square.png"), "--modalities", "image", "--top-k", "1"]) == 0
    assert "red_square.png" in capsys.readouterr().out
    assert main(["ingest", str(sample_folder), "--tiny", "--db", db]) == 0
    assert "unchanged 15" in capsys.readouterr().out


def test_errors_are_one_plain_line(tmp_path, capsys):
    assert main(["query", "--tiny", "--db", str(tmp_path / "db")]) == 2
    assert "give query text" in capsys.readouterr().err
    assert main(["ingest", str(tmp_path / "missing"), "--tiny", "--db", str(tmp_path / "db")]) == 2
    assert "is not a directory" in capsys.readouterr().err


def test_unavailable_model_without_fallback_says_so_without_traceback(tmp_path):
    env_cmd = [sys.executable, "-m", "mm_rag_components", "ingest", str(tmp_path), "--db", str(tmp_path / "db"), "--model", "org/not-cached-model"]
    out = subprocess.run(env_cmd, capture_output=True, text=True, env={**__import__("os").environ, "HF_HUB_OFFLINE": "1"})
    assert out.returncode == 2
    assert "model unavailable" in out.stderr and "Traceback" not in out.stderr
