"""Generated bad text for the pieces under ingest: Unicode repair, the plain and guarded splitters,
metadata flattening and item sources. Pure functions, no store: fast."""

from __future__ import annotations

import math
import re
from pathlib import Path

import pytest
from bounds import time_limit
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from test_hardening_ingest_support import ANY_CHAR, pathological_text

from mm_rag_components.chunking import GuardedSplitter, PlainSplitter, default_splitter
from mm_rag_components.errors import ConfigError
from mm_rag_components.media import MAX_SOURCE_CHARS, check_source, clean_text, content_hash
from mm_rag_components.metadata import MAX_METADATA_ENTRIES, RESERVED_KEYS, check_record, clean_metadata, flatten_metadata

FAST = settings(max_examples=80, deadline=None, database=None, suppress_health_check=[HealthCheck.too_slow])


# --- Unicode ---------------------------------------------------------------------------------------

@FAST
@given(st.text(alphabet=ANY_CHAR, max_size=200))
def test_clean_text_always_gives_valid_unicode_and_keeps_valid_text(text):
    with time_limit():
        cleaned, changed = clean_text(text)
        cleaned.encode("utf-8")  # never raises
        assert clean_text(cleaned) == (cleaned, False)  # idempotent
        assert len(content_hash(text)) == 64  # hashing the raw text never raises either
        if not re.search("[\ud800-\udfff]", text):
            assert (cleaned, changed) == (text, False)
        elif not re.search("[\ud800-\udbff][\udc00-\udfff]", text):  # no pairs: each surrogate -> U+FFFD
            assert changed and cleaned == re.sub("[\ud800-\udfff]", "\ufffd", text)


def test_clean_text_joins_surrogate_pairs():
    assert clean_text("a\ud83d\ude00b") == ("a\U0001F600b", True)
    assert clean_text("\ude00\ud83d") == ("\ufffd\ufffd", True)


# --- the plain splitter ---------------------------------------------------------------------------

def _pieces(text: str, max_chars: int) -> list[str]:
    return [w[i : i + max_chars] for w in text.split() for i in range(0, len(w), max_chars)]


def _is_subsequence(needle: list[str], haystack: list[str]) -> bool:
    it = iter(haystack)
    return all(any(h == n for h in it) for n in needle)


@settings(max_examples=90, deadline=None, database=None, suppress_health_check=[HealthCheck.too_slow])
@given(pathological_text(), st.integers(1, 300), st.integers(0, 120))
def test_plain_splitter_is_bounded_and_loses_no_word(text, chunk_size, overlap):
    splitter = PlainSplitter(chunk_size, overlap)
    with time_limit():
        chunks = splitter.split_text(text)
    pieces = _pieces(text, splitter.max_chars)
    assert all(c.strip() for c in chunks)
    assert all(len(c) <= splitter.max_chars and len(c.split()) <= splitter.max_words for c in chunks)
    assert len(chunks) <= max(len(pieces), 0)
    words = [w for c in chunks for w in c.split()]
    assert _is_subsequence(pieces, words)  # every word, in order
    assert len(words) <= len(pieces) + len(chunks) * splitter.overlap_words  # only the overlap repeats
    if splitter.overlap_words == 0:
        assert words == pieces


def test_plain_splitter_prefers_sentence_ends_and_overlaps():
    text = " ".join(f"Sentence {i} is here." for i in range(40))
    chunks = PlainSplitter(40, 12).split_text(text)
    assert len(chunks) > 3 and all(c.endswith(".") for c in chunks[:-1])
    assert chunks[1].split()[0] in chunks[0].split()[-8:]  # some overlap carried over


def test_plain_splitter_is_linear_on_megabytes():
    with time_limit():
        assert len(PlainSplitter(60, 16).split_text("a" * 4_000_000)) == -(-4_000_000 // 240)
        assert PlainSplitter(60, 16).split_text(" \n" * 2_000_000) == []


# --- the guard ------------------------------------------------------------------------------------

class PanicException(BaseException):
    """Stands for pyo3's PanicException (a Rust tokenizer's panic): not an ``Exception``."""


def _primary(kind: str):
    class Primary:
        def split_text(self, text):
            if kind == "ok":
                return [text[: len(text) // 2], text[len(text) // 2 :], text[: len(text) // 2]]
            if kind == "timeout":
                raise TimeoutError("regular-expression match exceeded its 5.0s time limit")
            if kind == "panic":
                raise PanicException("called `Result::unwrap()` on an `Err` value: StackOverflow")
            if kind == "unicode":
                raise UnicodeEncodeError("utf-8", text, 0, 1, "surrogates not allowed")
            return {"none": None, "ints": [1, 2], "str": text, "empty": [], "blank": [" ", "\n"]}[kind]

    return Primary()


@FAST
@given(
    st.text(alphabet=ANY_CHAR, min_size=1, max_size=400).filter(lambda t: t.strip()),
    st.sampled_from(["ok", "timeout", "panic", "unicode", "none", "ints", "str", "empty", "blank"]),
    st.integers(1, 20),
)
def test_guarded_splitter_never_raises_and_says_when_it_fell_back(text, kind, max_chunks):
    guard = GuardedSplitter(_primary(kind), fallback=PlainSplitter(20, 4), max_chunks=max_chunks)
    with time_limit():
        split = guard.split(text)
    assert split.chunks and len(split.chunks) <= max_chunks
    assert len(set(split.chunks)) == len(split.chunks)
    fell_back = any("instead" in note for note in split.notes)
    assert fell_back == (kind != "ok")
    if kind == "ok":
        halves = [c for c in (text[: len(text) // 2], text[len(text) // 2 :]) if c.strip()]
        assert split.chunks == list(dict.fromkeys(halves))[:max_chunks]
        returned = [c for c in _primary("ok").split_text(text) if c.strip()]
        assert split.duplicates == len(returned) - len(set(returned))


def test_guard_bounds_chunks_and_sends_huge_texts_to_the_plain_splitter():
    guard = GuardedSplitter(_primary("ok"), fallback=PlainSplitter(8, 0), max_chunks=3, max_primary_chars=100)
    split = guard.split(" ".join(f"w{i}" for i in range(200)))
    assert len(split.chunks) == 3 and any("max_primary_chars" in n for n in split.notes)
    assert any("kept the first 3" in n for n in split.notes)


def test_guard_falls_back_when_the_real_sentence_splitter_hits_its_regex_time_limit(monkeypatch):
    import nltk.redos

    guard = GuardedSplitter(default_splitter(60, 16), fallback=PlainSplitter(60, 16))
    text = "Dogs run. Cats sleep. " * 300
    assert not guard.split(text).notes  # the real SentenceSplitter works
    monkeypatch.setattr(nltk.redos, "DEFAULT_TIMEOUT", 1e-9)  # what a huge text does to it
    with time_limit():
        split = guard.split(text)
    assert split.chunks and any("TimeoutError" in n and "PlainSplitter" in n for n in split.notes)


def test_core_modules_do_not_import_llama_index():
    import mm_rag_components

    root = Path(mm_rag_components.__file__).parent
    for name in ("index.py", "chunking.py", "store.py", "media.py"):
        source = (root / name).read_text(encoding="utf-8")
        assert not re.search(r"^\s*(import|from)\s+llama_index", source, re.MULTILINE), name


# --- metadata -------------------------------------------------------------------------------------

KEYS = st.one_of(
    st.sampled_from(["a", "b", "a.b", "c", "$x", "#x", "chroma:x", "", "\ud800", "\udfff", "k\ud800", "k\udfff", *RESERVED_KEYS]),
    st.text(alphabet="ab.", min_size=1, max_size=3),
    st.integers(0, 3),
)
SCALARS = st.one_of(
    st.none(), st.booleans(), st.integers(-(2**70), 2**70), st.floats(allow_nan=True, allow_infinity=True),
    st.text(alphabet=ANY_CHAR, max_size=20), st.sampled_from(["data:image/png;base64,AAAA", "DATA:x", "y" * 66_000]),
    st.binary(max_size=8), st.just(Path("/a/b.png")), st.just(float("nan")),
)
VALUES = st.recursive(
    st.one_of(SCALARS, st.lists(SCALARS, max_size=4), st.lists(st.integers(), min_size=1100, max_size=1100)),
    lambda inner: st.dictionaries(KEYS, inner, max_size=4),
    max_leaves=12,
)


def _leaf_keys(metadata, prefix=""):
    """Dotted keys of every stored leaf (None and empty lists are not stored)."""
    for key, value in metadata.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            yield from _leaf_keys(value, name + ".")
        elif value is not None and value != []:
            yield name


@pytest.mark.filterwarnings("ignore:Generating overly large repr")
@settings(max_examples=100, deadline=None, database=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.dictionaries(KEYS, VALUES, max_size=5))
def test_metadata_is_stored_whole_or_refused_with_a_config_error(metadata):
    with time_limit():
        try:
            flat, repaired = clean_metadata(flatten_metadata(metadata))
        except ConfigError:
            return
    keys = list(_leaf_keys(metadata))
    assert len(set(keys)) == len(keys), f"colliding keys {keys} were merged"
    assert len(flat) <= len(keys)
    check_record("id", {"modality": "text", **flat}, "doc")  # Chroma can take it: no StoreError
    assert sum(len(v) if isinstance(v, list) else 1 for v in flat.values()) <= MAX_METADATA_ENTRIES
    assert all(not isinstance(v, float) or math.isfinite(v) for v in flat.values())


@pytest.mark.parametrize(
    "metadata",
    [{"a.b": 1, "a": {"b": 2}}, {"a": {"b": 2}, "a.b": 1}, {"x": {"y.z": 1, "y": {"z": 2}}}],
)
def test_colliding_flattened_keys_are_refused(metadata):
    with pytest.raises(ConfigError, match="collide"):
        flatten_metadata(metadata)


def test_repaired_metadata_keys_that_become_equal_are_refused():
    with pytest.raises(ConfigError, match="collide"):
        clean_metadata(flatten_metadata({"k\ud800": 1, "k\udfff": 2}))


def test_self_referencing_metadata_is_a_config_error():
    loop: dict = {}
    loop["again"] = loop
    with pytest.raises(ConfigError, match="nested"):
        flatten_metadata({"loop": loop})


# --- sources --------------------------------------------------------------------------------------

SOURCES = st.one_of(
    st.none(), st.just(""), st.text(alphabet=ANY_CHAR, max_size=40),
    st.text(alphabet="ABCDEFabcdef0123456789+/=", min_size=500, max_size=700),
    st.text(alphabet=ANY_CHAR, max_size=10).map(lambda t: "data:image/png;base64," + t),
    st.integers(1, 3).map(lambda n: "x" * (MAX_SOURCE_CHARS + n)),
    st.text(alphabet="abc/\ud800", max_size=20).map(Path),
    st.integers(), st.binary(max_size=4), st.just(["a"]),
)


@FAST
@given(SOURCES)
def test_sources_are_stored_clean_or_refused(source):
    try:
        stored, repaired = check_source(source)
    except ConfigError as exc:  # one line, for one of the documented reasons
        message = str(exc)
        assert "\n" not in message and message.startswith("source ")
        assert any(why in message for why in ("must be a string or a path", "over the limit of", "which is not stored")), message
        return
    if stored is None:
        assert source in (None, "")
        return
    stored.encode("utf-8")
    assert len(stored) <= MAX_SOURCE_CHARS and not stored.lower().startswith("data:")
    assert repaired == (stored != str(source))
    assert not (len(stored) >= 512 and re.fullmatch(r"[A-Za-z0-9+/=_-]+", stored))
