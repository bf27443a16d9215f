"""``mm-rag train`` (add_train_arguments / cmd_train) on tiny models, and its one-line errors."""

from __future__ import annotations

import argparse
import json

import pytest


def _args(*argv):
    from mm_rag_components.cli.train_commands import add_train_arguments

    return add_train_arguments(argparse.ArgumentParser(prog="mm-rag train")).parse_args(list(argv))


@pytest.fixture(scope="module")
def pairs_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("pairs") / "pairs.jsonl"
    rows = []
    for i, (colour, other) in enumerate([("red", "blue"), ("green", "yellow"), ("blue", "red"), ("yellow", "green"), ("black", "white")]):
        rows.append({"query": f"a {colour} car", "candidate": f"a car painted {colour}", "label": 1, "group": f"item{i}"})
        rows.append({"query": f"a {colour} car", "candidate": f"a {other} boat", "label": 0, "group": f"item{i}"})
    path.write_text("\n".join(json.dumps(r) for r in rows) + "\n", encoding="utf-8")
    return path


def test_cmd_train_on_a_pairs_file(pairs_file, tmp_path, capsys):
    from mm_rag_components.testing import build_tiny_causal_lm
    from mm_rag_components.cli.train_commands import cmd_train

    model = build_tiny_causal_lm(tmp_path / "causal")
    out = tmp_path / "trained"
    rc = cmd_train(_args(str(pairs_file), "--model", str(model), "--out", str(out), "--held-out-fraction", "0.4",
                         "--epochs", "2", "--batch-size", "2", "--learning-rate", "1e-3", "--quiet", "--evaluate-base"))
    assert rc == 0, capsys.readouterr().err
    assert {"README.md", "training.json", "calibration.json", "model.safetensors"} <= {p.name for p in out.iterdir()}
    record = json.loads((out / "training.json").read_text())
    assert record["metrics"]["held_out_base"]["pairs"] == record["metrics"]["held_out_pairs"] == 4
    assert "trained" in capsys.readouterr().out


@pytest.mark.parametrize("extra", [
    ["--method", "full", "--epochs", "0"],
    ["--learning-rate", "-1"],
    ["--positives", "0"],
    ["--template", "no-such-template"],
    ["--held-out-fraction", "1.5"],
    ["--gguf-missing"],
])
def test_cmd_train_bad_options_exit_2_with_one_line(extra, pairs_file, tmp_path, capsys):
    from mm_rag_components.cli.train_commands import cmd_train

    if extra == ["--gguf-missing"]:
        args = _args(str(pairs_file), "--gguf", str(tmp_path / "none.gguf"), "--out", str(tmp_path / "o"))
    else:
        args = _args(str(pairs_file), "--model", str(tmp_path / "no-model"), "--out", str(tmp_path / "o"), *extra)
    assert cmd_train(args) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("mm-rag: error:") and "\n" not in err


def test_cmd_train_missing_data_and_bad_model(tmp_path, pairs_file, capsys):
    from mm_rag_components.cli.train_commands import cmd_train

    assert cmd_train(_args(str(tmp_path / "absent"), "--model", "x", "--out", str(tmp_path / "o"))) == 2
    assert "no such file or folder" in capsys.readouterr().err
    assert cmd_train(_args(str(pairs_file), "--model", str(tmp_path / "no-model"), "--out", str(tmp_path / "o"), "--quiet")) == 2
    assert "\n" not in capsys.readouterr().err.strip()
