"""Generated bad input for the ``mm-rag`` command: exit status 2, one plain line on stderr, nothing
on stdout, never a traceback — and refused before any model loads (no case loads one).

Cases run ``cli.main`` in-process with strict UTF-8 streams (so an undecodable file name cannot
crash the output), each under a hang guard (``bounds.time_limit``; no hypothesis deadline); a few
run the real command in a subprocess with undecodable bytes in ``argv``. About 300 generated cases, in a few seconds.
"""

from __future__ import annotations

import io
import os
import subprocess
import sys
from contextlib import redirect_stderr, redirect_stdout
from pathlib import Path

import pytest
from bounds import time_limit
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from mm_rag_components.cli import build_parser, common, main, store

CASES = settings(
    max_examples=40,
    deadline=None,  # no timing check: _run bounds each case with a hang guard instead
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
    database=None,
)
LIMITS = {"--top-k": (1, 10_000), "--batch-size": (1, 4096), "--port": (1, 65535), "--queries": (1, 1000)}
COMMANDS = ("ingest", "query", "demo")

#: File-name text: any character a file name may hold, except NUL and the separator.
names = st.text(st.characters(blacklist_categories=("Cs",), blacklist_characters="\0/"), min_size=1, max_size=40)
names = names.filter(lambda n: n not in (".", ".."))


@pytest.fixture(scope="module")
def place(tmp_path_factory) -> Path:
    """A folder holding a regular file ``afile`` and a folder ``adir``; databases go under ``db``."""
    root = tmp_path_factory.mktemp("hardening-cli")
    (root / "afile").write_text("a regular file")
    (root / "adir").mkdir()
    return root


@pytest.fixture(autouse=True)
def no_model_loads(monkeypatch):
    """Every case must be refused before a model is chosen or loaded."""

    def refuse(*args, **kwargs):
        raise AssertionError("a model was about to load for bad input")

    monkeypatch.setattr(store, "choose_model", refuse)


def _run(argv: list[str]) -> tuple[int, str, str]:
    out_bytes, err_bytes = io.BytesIO(), io.BytesIO()
    out = io.TextIOWrapper(out_bytes, encoding="utf-8", errors="strict", write_through=True)
    err = io.TextIOWrapper(err_bytes, encoding="utf-8", errors="strict", write_through=True)
    with redirect_stdout(out), redirect_stderr(err), time_limit():
        status = main(argv)
    return status, out_bytes.getvalue().decode(), err_bytes.getvalue().decode()


def refused(argv: list[str]) -> str:
    """Assert ``argv`` is refused as one plain line; returns that line."""
    status, out, err = _run(argv)
    assert status == 2, (argv, status, out, err)
    assert out == "", (argv, out)
    lines = err.splitlines()
    assert len(lines) == 1 and lines[0].startswith("mm-rag: error: "), (argv, err)
    assert "Traceback" not in err
    return lines[0]


def _db(place: Path) -> list[str]:
    return ["--db", str(place / "db" / "chroma")]


def _base(command: str, place: Path) -> list[str]:
    """A command line that would be valid but for what the case adds (needs no model to refuse)."""
    if command == "ingest":
        return ["ingest", str(place / "adir")]
    if command == "query":
        return ["query", "a red bus"]
    return ["demo", "--tiny"]


def _not_an_int(text: str) -> bool:
    try:
        int(text)
    except ValueError:
        return True
    return False


@st.composite
def bad_number(draw) -> tuple[str, str, str]:
    option = draw(st.sampled_from(sorted(LIMITS)))
    low, high = LIMITS[option]
    takes = {"--queries": ("demo",), "--top-k": ("query", "demo")}.get(option, COMMANDS)  # ingest searches nothing
    command = draw(st.sampled_from(takes))
    value = draw(st.one_of(
        st.integers(max_value=low - 1).map(str),
        st.integers(min_value=high + 1).map(str),
        st.integers(min_value=20, max_value=5000).map(lambda n: "9" * n),  # huge, past int() digit limits too
        st.sampled_from(["1.5", "nan", "inf", "-inf", "1e3", "0x10", "", " ", "five", "½"]),
        st.text(max_size=20).filter(_not_an_int),
    ))
    return command, option, value


@CASES
@given(case=bad_number())
def test_bad_numbers_are_refused(place, case):
    command, option, value = case
    line = refused([*_base(command, place), *_db(place), f"{option}={value}"])
    assert option in line


@CASES
@given(command=st.sampled_from(COMMANDS), name=names)
def test_missing_files_and_folders_are_refused(place, command, name):
    missing = str(place / "nowhere" / name)
    argv = {
        "ingest": ["ingest", missing],
        "query": ["query", "--image", missing],
        "demo": ["demo", "--data", missing],
    }[command]
    line = refused([*argv, *_db(place)])
    assert "no such" in line or "too long" in line


@CASES
@given(where=st.sampled_from(["ingest", "demo --data", "query --image", "--db", "--db below"]), suffix=st.sampled_from(["", "/"]))
def test_a_file_where_a_folder_is_expected_and_back(place, where, suffix):
    afile, adir = str(place / "afile") + suffix, str(place / "adir") + suffix
    argv = {
        "ingest": ["ingest", afile, *_db(place)],
        "demo --data": ["demo", "--data", afile, *_db(place)],
        "query --image": ["query", "--image", adir, *_db(place)],
        "--db": ["ingest", adir, "--db", afile],
        "--db below": ["query", "x", "--db", str(place / "afile" / "sub" / "chroma")],
    }[where]
    line = refused(argv)
    assert "is a file, not a folder" in line or "is a folder, not a file" in line


@CASES
@given(command=st.sampled_from(COMMANDS), text=st.text(max_size=200))
def test_any_query_text_or_folder_name_is_handled(place, command, text):
    """Unicode, blanks, control characters: a missing database or folder, said in one line."""
    if command == "query":
        refused(["query", *_db(place), "--", text])
    elif command == "ingest":
        refused(["ingest", *_db(place), "--", str(place / "nowhere" / text)])
    else:
        refused(["demo", *_db(place), "--data", str(place / "nowhere") + "/" + text])


def _known_options() -> list[str]:
    import argparse

    parser = build_parser()
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    parsers = [parser, *sub.choices.values()]
    return [o for p in parsers for a in p._actions for o in a.option_strings]


KNOWN = _known_options()


@CASES
@given(command=st.one_of(st.sampled_from(COMMANDS), st.text(max_size=12)), option=st.from_regex(r"\A--[a-z][a-z-]{0,14}\Z"))
def test_unknown_commands_and_options_are_refused(place, command, option):
    assume(not any(known.startswith(option) for known in KNOWN))  # argparse accepts unique prefixes
    assume(not command.startswith("-"))
    refused([command, option, *_db(place)])


@CASES
@given(command=st.sampled_from(COMMANDS), name=st.text(max_size=40))
def test_bad_collection_names_are_refused(place, command, name):
    assume(common.COLLECTION_NAME.match(name) is None or ".." in name)
    assert "collection" in refused([*_base(command, place), *_db(place), f"--collection={name}"])


@CASES
@given(command=st.sampled_from(COMMANDS), modality=st.text(max_size=10).filter(lambda m: m not in ("image", "text")))
def test_bad_modalities_are_refused(place, command, modality):
    assume(not modality.startswith("-"))
    refused([*_base(command, place), *_db(place), "--modalities", modality])


@CASES
@given(host=st.sampled_from(["", " ", "\t"]), command=st.sampled_from(COMMANDS))
def test_blank_host_is_refused(place, host, command):
    refused([*_base(command, place), f"--host={host}"])


@CASES
@given(name=st.from_regex(r"\A[A-Za-z0-9][A-Za-z0-9_-]{1,30}[A-Za-z0-9]\Z"), modalities=st.sampled_from([["image"], ["text"], ["image", "text"]]))
def test_querying_a_collection_that_is_not_there_is_refused(place, name, modalities):
    """Past every argument check, into Chroma: still one line, and nothing is created."""
    import chromadb

    db = place / "empty-db"
    line = refused(["query", "a dog", "--db", str(db), "--collection", name, "--modalities", *modalities])
    if db.is_dir():
        assert f"no collection {name!r}" in line
        assert [c.name for c in chromadb.PersistentClient(str(db)).list_collections()] == []
    else:
        assert "no Chroma database" in line
        db.mkdir()


@pytest.mark.parametrize("argv", [
    ["ingest", os.fsdecode(b"\xff\xfe-not-utf8")],
    ["query", "--image", os.fsdecode(b"caf\xe9.jpg")],
    ["ingest", "bad\0name"],
    ["ingest", "~no-such-user-mmrag/photos"],
    ["query", "x", "--db", "~no-such-user-mmrag/db"],
    ["query", "x", "--collection", "c" * 5000],
    ["query", "x", "--db", "bad\0db"],
    ["query"],
    ["query", "   "],
    ["ingest"],
    [],
])
def test_odd_arguments_in_process(place, argv):
    refused([*argv, *(_db(place) if "--db" not in argv and argv else [])])


@pytest.mark.parametrize("raw", [
    [b"ingest", b"\xff\xfe-not-utf8"],
    [b"query", b"--top-k", b"\xff"],
    [b"demo", b"--data", "日本語-フォルダ".encode()],
])
def test_the_real_command_with_undecodable_argv(tmp_path, raw):
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "PYTHONIOENCODING": "utf-8"}
    done = subprocess.run([sys.executable.encode(), b"-m", b"mm_rag_components", *raw, b"--db", str(tmp_path / "db").encode()],
                          capture_output=True, env=env, timeout=120, cwd=tmp_path)
    err = done.stderr.decode("utf-8", "replace")
    assert done.returncode == 2 and done.stdout == b"", err
    assert len(err.splitlines()) == 1 and err.startswith("mm-rag: error: ") and "Traceback" not in err
