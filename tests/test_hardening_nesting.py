"""Deeply nested data from outside — a component config, a JSON line of training pairs — is one
typed ``ConfigError`` naming where it came from, never a ``RecursionError``; honest data nested
within :data:`~mm_rag_components.validate.MAX_NESTING` reads as before."""

from __future__ import annotations

import argparse
import json

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mm_rag_components import config
from mm_rag_components.errors import ConfigError
from mm_rag_components.filters import FilterPolicy
from mm_rag_components.validate import MAX_NESTING, json_value, nesting

CASES = settings(max_examples=25, deadline=None, database=None, suppress_health_check=[HealthCheck.function_scoped_fixture])

#: Depths past the limit: just past it, and far past the interpreter's recursion limit.
too_deep = st.one_of(st.integers(MAX_NESTING + 1, MAX_NESTING + 50), st.integers(2_000, 60_000))
shapes = st.sampled_from(["list", "dict", "mixed", "component"])


def nested(shape: str, depth: int) -> object:
    """A value ``depth`` containers deep, built without recursion."""
    value: object = "leaf"
    for level in range(depth):
        if shape == "list" or (shape == "mixed" and level % 2):
            value = [value]
        elif shape == "component" and level == depth - 1:
            value = {"type": "FilterPolicy", "threshold": value}
        else:
            value = {"k": value}
    return value


def nested_json(shape: str, depth: int) -> str:
    """The JSON text of :func:`nested`, written without ``json.dumps`` (which would recurse)."""
    opens, closes = [], []
    for level in range(depth):
        if shape == "list" or (shape == "mixed" and level % 2):
            opens.append("["), closes.append("]")
        else:
            opens.append('{"k": '), closes.append("}")
    return "".join(reversed(opens)) + '"leaf"' + "".join(closes)


@CASES
@given(shape=shapes, depth=too_deep, where=st.sampled_from(["top", "argument", "nested component"]))
def test_a_deep_component_config_is_a_config_error(shape, depth, where):
    deep = nested(shape, depth)
    data = {
        "top": deep if isinstance(deep, dict) and "type" in deep else {"type": "FilterPolicy", "threshold": deep},
        "argument": {"type": "FilterPolicy", "threshold": deep},
        "nested component": {"type": "PointwiseRanker", "scorer": {"type": "TransformersScorer", "model_name_or_path": "m",
                                                                   "instruction": deep}},
    }[where]
    with pytest.raises(ConfigError, match="nested deeper than") as info:
        config.from_dict(data)
    assert "\n" not in str(info.value)


def test_a_config_that_contains_itself_is_a_config_error():
    data = {"type": "FilterPolicy", "threshold": []}
    data["threshold"].append(data)
    with pytest.raises(ConfigError, match="contains itself"):
        config.from_dict(data)


def test_honest_configs_nested_within_the_limit_still_rebuild():
    policy = config.from_dict(config.to_dict(FilterPolicy(threshold=0.4, max_k=3)))
    assert policy == FilterPolicy(threshold=0.4, max_k=3)
    assert nesting("x", nested("mixed", MAX_NESTING)) is not None
    shared = [1, 2]
    assert nesting("x", {"a": shared, "b": [shared, [shared]]})  # shared (not cyclic) parts are fine


@CASES
@given(shape=st.sampled_from(["list", "dict", "mixed"]), depth=too_deep)
def test_deep_json_text_is_a_config_error(shape, depth):
    with pytest.raises(ConfigError, match="nested deeper than"):
        json_value("request", nested_json(shape, depth))


def _pairs_file(tmp_path, deep_line: str, position: int) -> object:
    rows = [json.dumps({"query": f"q{i}", "candidate": f"c{i}", "label": i % 2, "group": f"g{i}"}) for i in range(4)]
    rows.insert(position, deep_line)
    path = tmp_path / "pairs.jsonl"
    path.write_text("\n".join(rows) + "\n", encoding="utf-8")
    return path


@CASES
@given(shape=st.sampled_from(["list", "dict", "mixed"]), depth=too_deep, position=st.integers(0, 4),
       inside=st.booleans())
def test_a_deep_json_line_of_training_pairs_is_a_config_error_naming_the_line(tmp_path, shape, depth, position, inside):
    from mm_rag_components.training.data import read_pairs

    deep = nested_json(shape, depth)
    line = '{"query": "q", "candidate": ' + deep + ', "label": 1}' if inside else deep
    path = _pairs_file(tmp_path, line, position)
    with pytest.raises(ConfigError, match="nested deeper than") as info:
        read_pairs(path)
    assert f"pairs.jsonl:{position + 1}" in str(info.value)


def test_mm_rag_train_on_deep_json_lines_exits_2_with_one_line(tmp_path, capsys):
    from mm_rag_components.cli.train_commands import add_train_arguments, cmd_train

    path = _pairs_file(tmp_path, nested_json("list", 50_000), 2)
    args = add_train_arguments(argparse.ArgumentParser()).parse_args([str(path), "--model", str(tmp_path / "m"), "--out", str(tmp_path / "o")])
    assert cmd_train(args) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("mm-rag: error:") and "nested deeper than" in err and "\n" not in err


def test_honest_pairs_still_read(tmp_path):
    from mm_rag_components.training.data import read_pairs

    path = _pairs_file(tmp_path, json.dumps({"query": "a red car", "candidate": "a car painted red", "label": 1}), 0)
    assert [e.label for e in read_pairs(path)] == [1, 0, 1, 0, 1]
