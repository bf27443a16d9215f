"""One progress switch: bars for long work the user started, none while models load or save
(unless the switch is on), and the libraries' own settings restored afterwards."""

from __future__ import annotations

import logging
import threading

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mm_rag_components import progress
from mm_rag_components.errors import ConfigError
from mm_rag_components.progress import ENV_VAR, progress_bar, progress_enabled, progress_setting, quiet_loading, set_progress

BARS = ("Loading weights", "Writing model shards", "%|")


@pytest.fixture(autouse=True)
def bars_on(monkeypatch):
    """Transformers' and the hub's bars switched on, as in a fresh interpreter (other tests may
    have switched them off); the switch at its default; everything restored after."""
    import importlib

    from transformers.utils import logging as hf_logging

    hub = importlib.import_module("huggingface_hub.utils.tqdm")
    monkeypatch.delenv(ENV_VAR, raising=False)
    monkeypatch.delenv("HF_HUB_DISABLE_PROGRESS_BARS", raising=False)
    was, states = hf_logging.is_progress_bar_enabled(), dict(hub.progress_bar_states)
    hf_logging.enable_progress_bar()
    with progress_setting(None):
        yield
    (hf_logging.enable_progress_bar if was else hf_logging.disable_progress_bar)()
    hub.progress_bar_states.clear()
    hub.progress_bar_states.update(states)


def _bars_enabled() -> bool:
    from transformers.utils import logging as hf_logging

    return hf_logging.is_progress_bar_enabled()


def _loaders(tiny_clip_dir, tiny_vlm_dirs, tmp_path):
    from mm_rag_components.embedders import ClipEmbedder
    from mm_rag_components.generation.transformers import TransformersGenerator
    from mm_rag_components.scoring.transformers_scorer import TransformersScorer
    from mm_rag_components.testing import build_tiny_causal_lm

    return {
        "embedder": lambda: ClipEmbedder(tiny_clip_dir).warm_up(),
        "scorer": lambda: TransformersScorer(tiny_vlm_dirs["causal"]).warm_up(),
        "generator": lambda: TransformersGenerator(tiny_vlm_dirs["idefics3"]).warm_up(),
        "tiny build": lambda: build_tiny_causal_lm(tmp_path / "fresh-lm"),
    }


@pytest.mark.parametrize("what", ["embedder", "scorer", "generator", "tiny build"])
def test_loading_or_building_a_model_is_quiet_unless_the_switch_is_on(what, tiny_clip_dir, tiny_vlm_dirs, tmp_path, capfd, monkeypatch):
    load = _loaders(tiny_clip_dir, tiny_vlm_dirs, tmp_path / "quiet")[what]
    capfd.readouterr()
    load()
    err = capfd.readouterr().err
    assert not [bar for bar in BARS if bar in err], err[-500:]
    assert _bars_enabled()  # the libraries' own setting is back
    monkeypatch.setenv(ENV_VAR, "1")
    _loaders(tiny_clip_dir, tiny_vlm_dirs, tmp_path / "loud")[what]()
    err = capfd.readouterr().err
    assert ("Writing model shards" if what == "tiny build" else "Loading weights") in err


def test_set_progress_wins_over_the_environment(monkeypatch, tiny_vlm_dirs, capfd):
    from mm_rag_components.scoring.transformers_scorer import TransformersScorer

    monkeypatch.setenv(ENV_VAR, "0")
    with progress_setting(True):
        assert progress_enabled() is True
        capfd.readouterr()
        TransformersScorer(tiny_vlm_dirs["causal"]).warm_up()
        assert "Loading weights" in capfd.readouterr().err
    assert progress_enabled() is False  # back to the environment's word


@pytest.mark.parametrize("before", [True, False])
def test_quiet_loading_restores_both_libraries_settings(before):
    import importlib

    from transformers.utils import logging as hf_logging

    hub = importlib.import_module("huggingface_hub.utils.tqdm")
    (hf_logging.enable_progress_bar if before else hf_logging.disable_progress_bar)()
    hub.progress_bar_states["some.group"] = before  # a group setting of the user's
    saved = dict(hub.progress_bar_states)
    with quiet_loading():
        assert not hf_logging.is_progress_bar_enabled()
        assert hub.are_progress_bars_disabled("transformers.something")
        assert not hub.are_progress_bars_disabled("huggingface_hub.http_get")  # a download still shows (on a terminal)
    assert hf_logging.is_progress_bar_enabled() is before
    assert hub.progress_bar_states == saved


def test_quiet_loading_nests_and_holds_across_threads():
    inside, release = threading.Barrier(3), threading.Event()
    seen: list[bool] = []

    def load() -> None:
        with quiet_loading():
            inside.wait(timeout=30)
            release.wait(timeout=30)
            seen.append(_bars_enabled())

    workers = [threading.Thread(target=load) for _ in range(2)]
    for worker in workers:
        worker.start()
    with quiet_loading():
        inside.wait(timeout=30)
        with quiet_loading():
            assert not _bars_enabled()
        assert not _bars_enabled()  # the inner block ended, the others still load
        release.set()
        for worker in workers:
            worker.join(timeout=30)
        assert not _bars_enabled()
    assert seen == [False, False] and _bars_enabled()


@pytest.mark.parametrize("switch, show, shown", [
    (None, None, False),   # default: only on a terminal (pytest's stderr is not one)
    ("1", None, True),
    ("0", None, False),
    ("0", True, True),     # a call's show_progress= wins
    ("1", False, False),
    (None, True, True),
])
def test_progress_bar_follows_the_switch_and_the_call(switch, show, shown, monkeypatch):
    if switch is not None:
        monkeypatch.setenv(ENV_VAR, switch)
    with progress_bar(show, total=3, desc="work") as bar:
        assert (not bar.disable) is shown


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])  # caplog cleared per case
@given(raw=st.text(st.characters(blacklist_categories=("Cs",), blacklist_characters="\0"), max_size=12))
def test_any_environment_value_is_read_or_refused_with_a_warning(raw, caplog):
    import os

    os.environ[ENV_VAR] = raw
    try:
        with caplog.at_level(logging.WARNING, logger="mm_rag_components.progress"):
            caplog.clear()
            value = progress_enabled()
    finally:
        del os.environ[ENV_VAR]
    word = raw.strip().lower()
    expected = True if word in progress._ON else False if word in progress._OFF else None
    assert value is expected
    assert bool(caplog.records) == (expected is None and bool(word))


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])  # bars_on: untouched here
@given(value=st.one_of(st.integers(), st.floats(allow_nan=True), st.text(max_size=5), st.lists(st.booleans(), max_size=2)))
def test_set_progress_takes_only_true_false_or_none(value):
    with pytest.raises(ConfigError, match="set_progress takes True, False or None"):
        set_progress(value)
    assert progress_enabled() is None


@pytest.mark.parametrize("switch, show, shown", [("1", None, True), ("0", None, False), ("0", True, True)])
def test_ingest_shows_its_bar_as_the_switch_says(switch, show, shown, monkeypatch, tmp_path, sample_folder, clip_embedder, capfd):
    from mm_rag_components import MultimodalIndex

    monkeypatch.setenv(ENV_VAR, switch)
    capfd.readouterr()
    MultimodalIndex(tmp_path / "db", image_embedder=clip_embedder).ingest_folder(sample_folder, show_progress=show)
    assert ("ingesting" in capfd.readouterr().err) is shown


def test_cli_verbose_shows_no_bar_when_the_environment_says_never(monkeypatch, tmp_path, sample_folder, capfd):
    from mm_rag_components.cli import main

    monkeypatch.setenv(ENV_VAR, "0")
    assert main(["ingest", str(sample_folder), "--tiny", "--db", str(tmp_path / "db"), "-v"]) == 0
    err = capfd.readouterr().err
    assert not [bar for bar in BARS if bar in err] and "ingesting" not in err
