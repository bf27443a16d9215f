"""``mm-rag eval``: the --tiny smoke run end to end, the wiring functions, one-line errors."""

from __future__ import annotations

import argparse
import json

import pytest

from mm_rag_components.cli.eval_commands import TINY_NOTE, add_eval_arguments, cmd_eval, run
from mm_rag_components.testing.captions import write_captioned_folder


def test_tiny_run_end_to_end(tmp_path, capsys) -> None:
    data = write_captioned_folder(tmp_path / "data", colours=2, captions_per_image=2)
    out = tmp_path / "out"
    assert run([str(data), "--tiny", "--depth", "6", "--out", str(out)]) == 0
    captured = capsys.readouterr()
    for name in ("retriever", "pointwise", "fusion", "listwise", "retriever+filter", "fusion+filter"):
        assert f"| `{name}` |" in captured.out
    assert TINY_NOTE in captured.out and "wrote " in captured.err
    report = json.loads((out / "report.json").read_text())
    assert report["dataset"]["task"] == "caption2caption" and report["settings"]["depth"] == 6
    assert (out / "report.png").read_bytes()[:4] == b"\x89PNG" and (out / "report.md").read_text().startswith("# Evaluation")


def _errors(capsys, argv) -> str:
    assert run(argv) == 2
    captured = capsys.readouterr()
    lines = captured.err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("mm-rag: error: ") and "Traceback" not in captured.err, captured.err
    return lines[0]


def test_user_errors_are_one_line_exit_2(tmp_path, capsys) -> None:
    data = write_captioned_folder(tmp_path / "data", colours=1, shapes=2, captions_per_image=2)
    assert "no such folder" in _errors(capsys, [str(tmp_path / "missing")])
    (tmp_path / "broken").mkdir()
    (tmp_path / "broken" / "captions.jsonl").write_text('{"image": 3}\n')
    assert "captions.jsonl:1: 'image' must be a path" in _errors(capsys, [str(tmp_path / "broken")])
    assert "give DATASET" in _errors(capsys, [])
    assert "--depth must be >= 1" in _errors(capsys, [str(data), "--depth", "0"])
    assert "--depth must be >= 1" in _errors(capsys, [str(data), "--top-n", "0"])  # the former name
    assert "unknown template 'nope'" in _errors(capsys, [str(data), "--tiny", "--template", "nope"])
    assert "--template needs a pointwise reranker" in _errors(capsys, [str(data), "--template", "retllm"])
    assert "--gguf missing.gguf: no such file" in _errors(capsys, [str(data), "--gguf", "missing.gguf"])
    assert "invalid int value" in _errors(capsys, [str(data), "--seed", "x"])
    assert "is a captioned folder" in _errors(capsys, [str(data), "--task", "qrels"])
    (tmp_path / "file").write_text("x")
    assert "is a file, not a folder" in _errors(capsys, [str(data), "--out", str(tmp_path / "file" / "out")])


def test_wiring_into_a_main_parser(tmp_path, capsys) -> None:
    """How cli.py wires it: a sub-command whose handler is cmd_eval."""
    parser = argparse.ArgumentParser(prog="mm-rag")
    sub = parser.add_subparsers(dest="command", required=True)
    add_eval_arguments(sub.add_parser("eval", help="evaluate")).set_defaults(func=cmd_eval)
    args = parser.parse_args(["eval", str(tmp_path / "none"), "--task", "image2text", "--no-filter"])
    assert (args.task, args.no_filter, args.depth, args.tune_fraction) == ("image2text", True, 20, 0.5)
    assert args.func(args) == 2
    assert capsys.readouterr().err.startswith("mm-rag: error: ")
    defaults = parser.parse_args(["eval", "x"])
    assert (defaults.out, defaults.tiny, defaults.template) == (".mm-rag/eval", False, None)
    with pytest.raises(SystemExit):
        parser.parse_args(["eval", "x", "--reranker", "a", "--gguf", "b"])  # mutually exclusive
