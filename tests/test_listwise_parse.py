"""The listwise ranking parser is total: any text becomes a permutation of all candidates."""

from __future__ import annotations

import json

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mm_rag_components.rerank.parse import PARSE_STATUSES, parse_ranking

FAST = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def _is_permutation(order: list[int], n: int) -> bool:
    return sorted(order) == list(range(n))


# Text built from the pieces a model writes: numbers, brackets, arrows, JSON fragments, prose.
_TOKENS = st.sampled_from(
    [
        "[", "]", "{", "}", ",", " ", "\n", ">", " > ", ":", '"', "'", "-", "0", "1", "2", "3", "7",
        "10", "99", "999999999999", '"ranking"', "ranking", "Ranking:", "answer", "Final answer:",
        "```json", "```", "Candidate", "[3]", "[1] > [2]", '{"ranking": [', "]}", "order", "null",
        "true", "3.0", "-1", "é", "≻", "<think>", "</think>",
    ]
)
_ADVERSARIAL = st.one_of(
    st.text(max_size=300),
    st.lists(_TOKENS, max_size=60).map("".join),
    st.lists(st.one_of(_TOKENS, st.text(max_size=5)), max_size=40).map("".join),
)


@settings(max_examples=2000, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(text=_ADVERSARIAL, n=st.integers(min_value=0, max_value=30))
def test_any_output_becomes_a_full_permutation(text: str, n: int) -> None:
    parsed = parse_ranking(text, n)
    assert _is_permutation(parsed.order, n)
    assert parsed.status in PARSE_STATUSES
    assert 0 <= parsed.mentioned <= n
    if parsed.status == "fallback":
        assert parsed.order == list(range(n))
        assert parsed.index_base is None
    else:
        assert parsed.mentioned >= 1
        # the model's ids come first, the unmentioned follow in input order
        tail = parsed.order[parsed.mentioned :]
        assert tail == sorted(tail)


@FAST
@given(perm=st.permutations(list(range(12))), n=st.integers(1, 12), data=st.data())
def test_json_answer_after_reasoning_is_recovered_exactly(perm: list[int], n: int, data: st.DataObject) -> None:
    order = [i for i in perm if i < n]
    # reasoning that mentions candidate numbers (and arrows) must not confuse the answer
    noise = data.draw(st.lists(st.sampled_from(["Candidate [2] shows a dog. ", "[1] > [3] ", "3 cats, 2 dogs. "]), max_size=5))
    text = "".join(noise) + "\n" + json.dumps({"ranking": [i + 1 for i in order]})
    parsed = parse_ranking(text, n)
    assert parsed.status == "json"
    assert parsed.order == order
    assert parsed.complete
    assert parsed.rationale == "".join(noise).strip()


@FAST
@given(perm=st.permutations(list(range(9))), brackets=st.booleans())
def test_rankgpt_arrows_are_recovered(perm: list[int], brackets: bool) -> None:
    fmt = "[{}]" if brackets else "{}"
    text = "My ranking: " + " > ".join(fmt.format(i + 1) for i in perm)
    parsed = parse_ranking(text, 9)
    assert parsed.status == "arrows"
    assert parsed.order == perm


@FAST
@given(perm=st.permutations(list(range(8))), cut=st.integers(min_value=1, max_value=30))
def test_truncated_json_keeps_the_readable_prefix(perm: list[int], cut: int) -> None:
    full = json.dumps({"ranking": [i + 1 for i in perm]})
    text = full[: len(full) - cut]  # generation stopped mid-answer
    parsed = parse_ranking(text, 8)
    assert _is_permutation(parsed.order, 8)
    readable = [int(t) - 1 for t in text.split("[", 1)[-1].replace(",", " ").split() if t.isdigit()] if "[" in text else []
    if "]" in text:  # only the closing brace was lost: the list itself is complete
        assert parsed.status == "json"
        assert parsed.order == perm
    elif readable:
        assert parsed.status == "digits"  # not a complete JSON answer
        assert parsed.order[: len(readable)] == readable
    else:
        assert parsed.status == "fallback"


@FAST
@given(
    ids=st.lists(st.integers(min_value=-5, max_value=40), min_size=1, max_size=25),
    n=st.integers(min_value=1, max_value=15),
)
def test_duplicates_and_hallucinated_ids_are_dropped(ids: list[int], n: int) -> None:
    parsed = parse_ranking(json.dumps({"ranking": ids}), n, index_base=1)
    valid = list(dict.fromkeys(i - 1 for i in ids if 1 <= i <= n))
    assert _is_permutation(parsed.order, n)
    if valid:
        assert parsed.status == "json"
        assert parsed.order[: len(valid)] == valid
        assert parsed.mentioned == len(valid)
        assert parsed.dropped == len(ids) - len(valid)
    else:
        assert parsed.status != "json"


def test_zero_based_ids_are_detected() -> None:
    parsed = parse_ranking('{"ranking": [2, 0, 1]}', 3)
    assert parsed.index_base == 0
    assert parsed.order == [2, 0, 1]
    one_based = parse_ranking('{"ranking": [3, 1, 2]}', 3)
    assert one_based.index_base == 1
    assert one_based.order == [2, 0, 1]


@pytest.mark.parametrize(
    "text, n, status, order",
    [
        ("", 3, "fallback", [0, 1, 2]),
        ("I cannot decide.", 3, "fallback", [0, 1, 2]),
        ('{"ranking": [7, 8, 9]}', 3, "fallback", [0, 1, 2]),  # every id hallucinated
        ('{"ranking": []}', 2, "fallback", [0, 1]),
        ("Final answer: 2, 3", 3, "digits", [1, 2, 0]),
        ("```json\n{'ranking': ['[2]', '[1]']}\n```", 3, "json", [1, 0, 2]),
        ("[2, 3, 1]", 3, "json", [1, 2, 0]),
        ("{\"ranking\": [1, 1, 2, 2, 3]}", 3, "json", [0, 1, 2]),
        ("anything", 0, "fallback", []),
    ],
)
def test_edge_cases(text: str, n: int, status: str, order: list[int]) -> None:
    parsed = parse_ranking(text, n)
    assert (parsed.status, parsed.order) == (status, order)


def test_non_string_outputs_do_not_crash() -> None:
    assert parse_ranking(None, 2).order == [0, 1]
    assert parse_ranking(2, 2).order == [1, 0]  # str(2): the model named candidate 2
    assert parse_ranking(12, 2).status == "fallback"  # one id, 12, out of range
    assert parse_ranking(b"\xff\xfe", 2).status == "fallback"


def test_huge_adversarial_outputs_are_bounded() -> None:
    for text in ("ranking: [" * 20_000, "[1] > " * 20_000, "{" * 50_000, "9" * 100_000, " " * 50_000 + "x"):
        parsed = parse_ranking(text, 5)
        assert _is_permutation(parsed.order, 5)


def test_invalid_arguments() -> None:
    with pytest.raises(ValueError):
        parse_ranking("1", -1)
    with pytest.raises(ValueError):
        parse_ranking("1", 2, index_base=2)
