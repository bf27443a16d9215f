"""What a new user of ``mm-rag`` trips over: output cut by a pipe, help text, options a command
does not use, a port meant for another server, the serve start-up line, the ingest report and
the chat's ``/image`` command."""

from __future__ import annotations

import argparse
import io
import json
import os
import subprocess
import sys
from contextlib import redirect_stderr, redirect_stdout
from pathlib import Path
from types import SimpleNamespace

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mm_rag_components.cli import READER_GONE, build_parser, main
from mm_rag_components.cli.qa_commands import capacity_line


@pytest.fixture(scope="module")
def indexed(tmp_path_factory) -> tuple[Path, str]:
    from mm_rag_components.testing import write_sample_folder

    root = tmp_path_factory.mktemp("cli-usability")
    folder = write_sample_folder(root / "data")
    db = str(root / "state" / "chroma")
    assert main(["ingest", str(folder), "--tiny", "--db", db]) == 0
    return folder, db


def _subparsers(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    return next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction)).choices


def _options(parser: argparse.ArgumentParser) -> set[str]:
    return {o for a in parser._actions for o in a.option_strings}


# --------------------------------------------------------------------------- a reader that goes away


class ClosedPipe(io.StringIO):
    """A standard output whose reader has gone: every write fails as a closed pipe does."""

    def write(self, text: str) -> int:
        raise BrokenPipeError(32, "Broken pipe")

    def flush(self) -> None:  # a real stream keeps what it could not write, and its flush fails too
        raise BrokenPipeError(32, "Broken pipe")


@pytest.mark.parametrize("argv", [["--help"], ["query", "--help"], ["query", "a red circle", "--tiny", "--json"],
                                  ["query", "a red circle", "--tiny"]])
def test_a_closed_pipe_ends_the_command_quietly_with_status_141(indexed, argv, capsys):
    _, db = indexed
    err = io.StringIO()
    with redirect_stdout(ClosedPipe()), redirect_stderr(err):
        status = main([*argv, *(["--db", db] if "--tiny" in argv else [])])
    assert (status, err.getvalue()) == (READER_GONE, "")


def test_the_real_command_piped_into_a_reader_that_leaves(indexed, tmp_path):
    """`mm-rag query … --json | head`: the reader has gone before the output is written."""
    _, db = indexed
    command = [sys.executable, "-m", "mm_rag_components", "query", "a red circle", "--tiny", "--db", db, "--json"]
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, cwd=tmp_path,
                               env={**os.environ, "HF_HUB_OFFLINE": "1"})
    process.stdout.close()  # the reader leaves at once
    err = process.stderr.read().decode()
    assert process.wait(timeout=300) == 141
    assert err == ""  # no "error: Broken pipe", no traceback at the interpreter's exit


# --------------------------------------------------------------------------- help text and options


def test_help_text_is_plain_without_restructuredtext_markup(capsys):
    assert main(["--help"]) == 0
    top = capsys.readouterr().out
    assert "ingest a folder of images and texts" in top
    parser = build_parser()
    texts = {"mm-rag": parser.format_help(), **{name: sub.format_help() for name, sub in _subparsers(parser).items()}}
    marked = {name: text for name, text in texts.items() if any(mark in text for mark in ("``", ":class:", ":func:", ":mod:"))}
    assert marked == {}


def test_each_command_lists_only_the_options_it_uses():
    commands = _subparsers(build_parser())
    retrieval = {"--top-k", "--modalities"}
    assert not retrieval & _options(commands["ingest"])
    assert {"--db", "--host", "--port", "--collection", "--model", "--tiny", "--batch-size"} <= _options(commands["ingest"])
    for name in ("query", "demo", "chat", "serve"):
        assert retrieval <= _options(commands[name]), name
    assert not {"--json", "--rerank", "--filter"} & _options(commands["ingest"])


@pytest.mark.parametrize("option", ["--top-k", "--modalities"])
def test_ingest_refuses_a_query_option(indexed, option, capsys):
    folder, db = indexed
    assert main(["ingest", str(folder), "--tiny", "--db", db, option, "3"]) == 2
    assert f"unrecognized arguments: {option}" in capsys.readouterr().err


# --------------------------------------------------------------------------- --port is the Chroma server's


@settings(max_examples=25, deadline=None)
@given(port=st.integers(1, 65535), command=st.sampled_from(["serve", "query", "ingest", "chat", "demo"]))
def test_port_without_host_is_refused_with_a_hint(port, command, tmp_path_factory):
    place = tmp_path_factory.getbasetemp() / "port-case"
    place.mkdir(exist_ok=True)
    argv = {"serve": ["serve"], "query": ["query", "x"], "ingest": ["ingest", str(place)], "chat": ["chat"],
            "demo": ["demo", "--tiny"]}[command]
    out, err = io.StringIO(), io.StringIO()
    with redirect_stdout(out), redirect_stderr(err):
        status = main([*argv, "--port", str(port), "--db", str(place / "db")])
    (line,) = err.getvalue().splitlines()
    assert status == 2 and out.getvalue() == ""
    assert line.startswith("mm-rag: error: --port is the Chroma server's port and needs --host HOST")
    assert ("--http-port" in line) == (command == "serve")
    assert not (place / "db").exists()


def test_port_with_host_still_names_the_chroma_server(capsys, tmp_path):
    # nothing listens on port 9: the server is named, with the port given
    status = main(["query", "x", "--host", "127.0.0.1", "--port", "9", "--db", str(tmp_path / "db")])
    assert status == 2 and "127.0.0.1" in capsys.readouterr().err


# --------------------------------------------------------------------------- serve's start-up line


@pytest.mark.parametrize("concurrent, capacity, queue, path, expected", [
    (False, 1, 8, None, "questions: one at a time (local models); 8 more wait in line, then HTTP 503; sessions: in memory"),
    (True, 8, 0, "s.sqlite", "questions: up to 8 at once (models on servers); none waits, then HTTP 503; sessions: s.sqlite"),
])
def test_serve_says_once_how_many_questions_run_and_wait(concurrent, capacity, queue, path, expected):
    service = SimpleNamespace(concurrent=concurrent, admission=SimpleNamespace(capacity=capacity, queue=queue),
                              sessions=SimpleNamespace(path=path))
    assert capacity_line(service) == expected


def test_serve_prints_its_capacity_line_for_the_real_service(indexed, monkeypatch, capsys):
    """The line comes from the web service ``serve`` builds (uvicorn stubbed: nothing listens)."""
    import uvicorn

    from remote_support import free_port

    _, db = indexed
    monkeypatch.setattr(uvicorn.Server, "run", lambda self: None)
    assert main(["serve", "--tiny", "--db", db, "--http-port", str(free_port()), "--modalities", "image"]) == 0
    out = capsys.readouterr().out
    assert "questions: one at a time (local models); 8 more wait in line, then HTTP 503; sessions: in memory" in out
    assert "(one at a time)" not in out


# --------------------------------------------------------------------------- the ingest report


def test_ingest_lists_each_skipped_file_once_without_repeating_its_path(tmp_path, capfd):
    from mm_rag_components.testing import write_sample_folder

    folder = write_sample_folder(tmp_path / "data")
    (folder / "broken.png").write_bytes(b"not an image")
    (folder / "bad.txt").write_bytes(b"\xff\xfe")
    done = subprocess.run([sys.executable, "-m", "mm_rag_components", "ingest", str(folder), "--tiny", "--db",
                           str(tmp_path / "db")], capture_output=True, text=True, env={**os.environ, "HF_HUB_OFFLINE": "1"},
                          timeout=300)
    assert done.returncode == 0, done.stderr
    output = done.stdout + done.stderr
    broken = str(folder / "broken.png")
    assert output.count(broken) == 1 and output.count(str(folder / "bad.txt")) == 1
    assert f"  skipped {broken}: not a recognised image format" in done.stdout.splitlines()
    assert done.stderr == ""


def test_a_library_ingest_warns_once_and_the_report_holds_each_skip(tmp_path, caplog, tiny_clip_dir):
    import logging

    from mm_rag_components import ClipEmbedder, MultimodalIndex
    from mm_rag_components.testing import write_sample_folder

    folder = write_sample_folder(tmp_path / "data")
    (folder / "broken.png").write_bytes(b"not an image")
    (folder / "bad.jpg").write_bytes(b"")
    index = MultimodalIndex(tmp_path / "db", image_embedder=ClipEmbedder(tiny_clip_dir))
    with caplog.at_level(logging.WARNING, logger="mm_rag_components.ingest"):
        report = index.ingest_folder(folder)
    warnings = [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]
    assert warnings == ["2 inputs were skipped; the ingest report lists each with its reason (report.skipped, report.summary())"]
    reasons = {Path(s.source).name: s.reason for s in report.skipped}
    assert reasons == {"broken.png": "not a recognised image format", "bad.jpg": "empty image data (0 bytes)"}


# --------------------------------------------------------------------------- chat's /image


def test_chat_image_command_says_what_is_wrong_with_the_path(tmp_path):
    from mm_rag_components.app.terminal import run_chat

    picture = tmp_path / "cat.png"
    picture.write_bytes(b"an image file")
    script = "\n".join(["/image missing.png", f"/image {tmp_path}", "/image", "/image a b", f"/image {picture}", "/quit"]) + "\n"
    out = io.StringIO()
    assert run_chat(SimpleNamespace(), io.StringIO(script), out) == 0
    said = [line.removeprefix("you> ") for line in out.getvalue().splitlines()[1:]]
    assert said[:5] == [
        "error: /image missing.png: no such file; nothing attached",
        f"error: /image {tmp_path}: is a folder, not a file; nothing attached",
        "error: /image needs the path of one image file (quote a path with spaces)",
        "error: /image needs the path of one image file (quote a path with spaces)",
        f"(image attached: {picture})",
    ]


def test_json_output_is_unchanged_when_the_reader_stays(indexed, capsys):
    _, db = indexed
    capsys.readouterr()
    assert main(["query", "a red circle", "--tiny", "--db", db, "--json", "--top-k", "2"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["retrieved"] == 4 and data["tiny_models"] is True
