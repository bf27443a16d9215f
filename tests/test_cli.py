"""The mm-rag command: demo, ingest and query on embedded Chroma, plain errors."""

import argparse
import inspect
import os
import subprocess
import sys

import pytest

import mm_rag_components
from mm_rag_components.cli import DEFAULT_COLLECTION, build_parser, main


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
    assert "missing: no such folder" in capsys.readouterr().err


def test_unavailable_model_without_fallback_says_so_without_traceback(tmp_path):
    env_cmd = [sys.executable, "-m", "mm_rag_components", "ingest", str(tmp_path), "--db", str(tmp_path / "db"), "--model", "org/not-cached-model"]
    out = subprocess.run(env_cmd, capture_output=True, text=True, env={**__import__("os").environ, "HF_HUB_OFFLINE": "1"})
    assert out.returncode == 2
    assert "model unavailable" in out.stderr and "Traceback" not in out.stderr


def _one_error_line(err: str) -> str:
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("mm-rag: error: "), err
    assert "Traceback" not in err
    return lines[0]


def test_version(capsys):
    assert main(["--version"]) == 0
    assert capsys.readouterr().out.strip() == f"mm-rag {mm_rag_components.__version__}"


def _subparsers(parser):
    action = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    return action.choices


def test_every_option_and_argument_has_help():
    parser = build_parser()
    undocumented = [a.dest for a in parser._actions if not a.help]
    for name, sub in _subparsers(parser).items():
        undocumented += [f"{name} {a.dest}" for a in sub._actions if not a.help or a.help == argparse.SUPPRESS]
    assert undocumented == []


def test_cli_and_python_share_the_default_collection(tmp_path, sample_folder, tiny_clip_dir):
    from mm_rag_components.embedders import ClipEmbedder
    from mm_rag_components.index import MultimodalIndex

    assert inspect.signature(MultimodalIndex).parameters["collection"].default == DEFAULT_COLLECTION
    db = tmp_path / "chroma"
    assert main(["ingest", str(sample_folder), "--model", str(tiny_clip_dir), "--db", str(db)]) == 0
    index = MultimodalIndex(db, image_embedder=ClipEmbedder(tiny_clip_dir))
    assert index.count() == {"image": 12, "text": 3}


def test_collection_of_another_model_is_one_plain_line(tmp_path, sample_folder, capsys):
    from mm_rag_components.testing import build_tiny_clip

    db = str(tmp_path / "state" / "chroma")
    assert main(["ingest", str(sample_folder), "--tiny", "--db", db]) == 0
    other = build_tiny_clip(tmp_path / "other-clip", seed=3)
    capsys.readouterr()
    assert main(["query", "a red circle", "--model", str(other), "--db", db]) == 2
    assert "was built with embedder" in _one_error_line(capsys.readouterr().err)


def test_missing_or_empty_collection_says_so_before_loading_a_model(tmp_path, capsys):
    import chromadb

    db = tmp_path / "chroma"
    never_loaded = str(tmp_path / "no-model-here")  # the model is looked at only after the store
    assert main(["query", "x", "--db", str(db), "--model", never_loaded]) == 2
    assert "no Chroma database at" in _one_error_line(capsys.readouterr().err)
    assert not db.exists()  # reading creates nothing
    client = chromadb.PersistentClient(str(db))
    client.create_collection("other")
    assert main(["query", "x", "--db", str(db), "--model", never_loaded]) == 2
    assert "no collection 'mm_rag'" in _one_error_line(capsys.readouterr().err)
    client.create_collection("mm_rag")
    assert main(["query", "x", "--db", str(db), "--model", never_loaded]) == 2
    assert "holds no image and text records" in _one_error_line(capsys.readouterr().err)
    assert sorted(c.name for c in client.list_collections()) == ["mm_rag", "other"]


def test_a_file_where_a_folder_is_expected_is_one_line(tmp_path, capsys):
    afile = tmp_path / "afile"
    afile.write_text("not a folder")
    assert main(["query", "x", "--db", str(afile / "chroma"), "--tiny"]) == 2
    assert "afile is a file, not a folder" in _one_error_line(capsys.readouterr().err)
    assert main(["ingest", str(afile), "--tiny", "--db", str(tmp_path / "db")]) == 2
    assert "is a file, not a folder" in _one_error_line(capsys.readouterr().err)
    assert main(["query", "--image", str(tmp_path), "--tiny", "--db", str(tmp_path / "db")]) == 2
    assert "is a folder, not a file" in _one_error_line(capsys.readouterr().err)


def test_os_errors_at_the_boundary_are_one_line(tmp_path, sample_folder, capsys, monkeypatch):
    from mm_rag_components.cli import store

    def refuse(db):
        raise PermissionError(13, "Permission denied", str(tmp_path / "models"))

    monkeypatch.setattr(store, "tiny_model", refuse)
    assert main(["ingest", str(sample_folder), "--tiny", "--db", str(tmp_path / "db")]) == 2
    assert _one_error_line(capsys.readouterr().err).endswith("models: Permission denied")


def test_unexpected_errors_are_one_line_with_exit_status_1(tmp_path, sample_folder, capsys, monkeypatch):
    from mm_rag_components.cli import store

    def bug(db):
        raise RuntimeError("boom")

    monkeypatch.setattr(store, "tiny_model", bug)
    assert main(["ingest", str(sample_folder), "--tiny", "--db", str(tmp_path / "db")]) == 1
    assert "unexpected RuntimeError: boom" in _one_error_line(capsys.readouterr().err)


def test_weight_loading_progress_bars_only_with_verbose(tmp_path, sample_folder, capfd, monkeypatch):
    from transformers.utils import logging as hf_logging

    monkeypatch.delenv("HF_HUB_DISABLE_PROGRESS_BARS", raising=False)
    was_enabled = hf_logging.is_progress_bar_enabled()
    try:
        db = str(tmp_path / "quiet" / "chroma")  # a fresh tiny model is built (written) and loaded
        assert main(["ingest", str(sample_folder), "--tiny", "--db", db]) == 0
        err = capfd.readouterr().err
        assert "Loading weights" not in err and "Writing model shards" not in err and "%|" not in err
        assert main(["ingest", str(sample_folder), "--tiny", "--db", str(tmp_path / "loud" / "chroma"), "-v"]) == 0
        assert "Loading weights" in capfd.readouterr().err
    finally:
        (hf_logging.enable_progress_bar if was_enabled else hf_logging.disable_progress_bar)()


@pytest.mark.parametrize("argv", [["--version"], ["query", "--top-k", "0", "x"], ["ingest"]])
def test_the_installed_command_behaves_the_same(argv):
    out = subprocess.run([sys.executable, "-m", "mm_rag_components", *argv], capture_output=True, text=True,
                         env={**os.environ, "HF_HUB_OFFLINE": "1"}, timeout=120)
    if argv == ["--version"]:
        assert out.returncode == 0 and out.stdout.strip() == f"mm-rag {mm_rag_components.__version__}"
    else:
        assert out.returncode == 2 and out.stdout == ""
        _one_error_line(out.stderr)
