"""TransportSettings: one validated, saveable settings object for every remote component; the old
loose keywords (and old saved configs) still work for one release, with a DeprecationWarning."""

from __future__ import annotations

import dataclasses
import inspect
import json
import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mm_rag_components import config
from mm_rag_components.errors import ConfigError
from mm_rag_components.remote.chat_generator import OpenAIChatGenerator
from mm_rag_components.remote.chat_scorer import OpenAIChatScorer
from mm_rag_components.remote.http import JsonClient
from mm_rag_components.remote.rerank_endpoint import RerankEndpointScorer
from mm_rag_components.remote.transport import LEGACY_KEYS, TransportSettings
from mm_rag_components.rerank.pointwise import PointwiseRanker
from mm_rag_components.scoring.cache import CachedScorer

URL = "http://127.0.0.1:9/v1"
BUILDERS = {
    "OpenAIChatScorer": lambda **kw: OpenAIChatScorer("m", base_url=URL, **kw),
    "RerankEndpointScorer": lambda **kw: RerankEndpointScorer("m", base_url=URL, **kw),
    "OpenAIChatGenerator": lambda **kw: OpenAIChatGenerator("m", base_url=URL, **kw),
}
CUSTOM = TransportSettings(timeout=5.0, deadline=42.0, first_token_timeout=3.0, retries=1, backoff=0.25, max_backoff=4.0,
                           max_concurrency=3, max_response_bytes=1000, max_stream_chunks=50)


@pytest.mark.parametrize("name", sorted(BUILDERS))
def test_components_take_one_settings_object_and_save_it_nested(name):
    component = BUILDERS[name](transport=CUSTOM)
    assert component.transport == CUSTOM and component.client.settings == CUSTOM
    saved = json.loads(json.dumps(config.to_dict(component)))
    assert saved["transport"] == {"type": "TransportSettings", **dataclasses.asdict(CUSTOM)}
    assert not set(LEGACY_KEYS) & set(saved)  # one saved shape: nothing flat beside it
    rebuilt = config.from_dict(saved)
    assert type(rebuilt) is type(component) and rebuilt.transport == CUSTOM and rebuilt.client.settings == CUSTOM


@pytest.mark.parametrize("name", sorted(BUILDERS))
def test_signatures_no_longer_list_the_loose_keywords(name):
    cls = {"OpenAIChatScorer": OpenAIChatScorer, "RerankEndpointScorer": RerankEndpointScorer,
           "OpenAIChatGenerator": OpenAIChatGenerator}[name]
    parameters = inspect.signature(cls).parameters
    assert "transport" in parameters and not set(LEGACY_KEYS) & set(parameters)


def test_defaults_per_component():
    assert OpenAIChatScorer("m", base_url=URL).max_concurrency == 8
    assert RerankEndpointScorer("m", base_url=URL).max_concurrency == 4
    assert OpenAIChatGenerator("m", base_url=URL).transport == TransportSettings()
    assert TransportSettings().first_token == TransportSettings().timeout and CUSTOM.first_token == 3.0


LEGACY_VALUES = {"timeout": 7.0, "retries": 0, "backoff": 0.1, "max_backoff": 2.0, "max_concurrency": 2}


@pytest.mark.parametrize("name, keys", [
    ("OpenAIChatScorer", LEGACY_KEYS),
    ("RerankEndpointScorer", LEGACY_KEYS),
    ("OpenAIChatGenerator", ("timeout", "retries", "backoff", "max_backoff")),
])
def test_old_keywords_warn_and_map_onto_the_settings(name, keys):
    old = {key: LEGACY_VALUES[key] for key in keys}
    with pytest.warns(DeprecationWarning, match=r"transport=TransportSettings\("):
        component = BUILDERS[name](**old)
    for key, value in old.items():
        assert getattr(component.transport, key) == value
    if name == "OpenAIChatGenerator":
        with pytest.raises(ConfigError, match="max_concurrency"):
            BUILDERS[name](max_concurrency=2)  # it never took one


@pytest.mark.parametrize("name", sorted(BUILDERS))
def test_an_old_flat_saved_config_still_rebuilds(name):
    saved = config.to_dict(BUILDERS[name]())
    del saved["transport"]
    saved.update(timeout=9.0, retries=1, backoff=0.2, max_backoff=3.0)
    with pytest.warns(DeprecationWarning):
        rebuilt = config.from_dict(saved)
    assert (rebuilt.transport.timeout, rebuilt.transport.retries, rebuilt.transport.backoff, rebuilt.transport.max_backoff) == (9.0, 1, 0.2, 3.0)
    assert rebuilt.transport.deadline == TransportSettings().deadline


@pytest.mark.parametrize("name", sorted(BUILDERS))
def test_both_at_once_unknown_keywords_and_wrong_types_are_config_errors(name):
    with pytest.raises(ConfigError, match="not both"):
        BUILDERS[name](transport=CUSTOM, timeout=3.0)
    with pytest.raises(ConfigError, match="unknown option"):
        BUILDERS[name](timeuot=3.0)
    with pytest.raises(ConfigError, match="TransportSettings"):
        BUILDERS[name](transport=30)
    rebuilt = BUILDERS[name](transport={"deadline": 12.0})  # a plain mapping of its fields works too
    assert rebuilt.transport == TransportSettings(deadline=12.0)
    with pytest.raises(ConfigError, match="transport"):
        BUILDERS[name](transport={"dedline": 12.0})


def test_json_client_keeps_its_old_keywords_for_one_release():
    with pytest.warns(DeprecationWarning):
        client = JsonClient(URL, timeout=4.0, retries=0)
    assert client.settings == TransportSettings(timeout=4.0, retries=0)


def test_a_nested_remote_scorer_rebuilds_with_its_settings():
    ranker = PointwiseRanker(CachedScorer(OpenAIChatScorer("m", base_url=URL, transport=CUSTOM)))
    rebuilt = config.from_dict(json.loads(json.dumps(config.to_dict(ranker))))
    assert rebuilt.scorer.scorer.transport == CUSTOM


BAD_VALUES = st.one_of(
    st.none(), st.booleans(), st.text(max_size=3), st.just(math.nan), st.just(math.inf), st.just(-math.inf),
    st.floats(max_value=0.0, allow_nan=False), st.integers(max_value=0), st.lists(st.integers(), max_size=2),
)
FIELDS = {
    # field: what a bad value is for it (None is fine for first_token_timeout; 0 for retries and backoffs)
    "timeout": lambda v: True,
    "deadline": lambda v: True,
    "first_token_timeout": lambda v: v is not None,
    "retries": lambda v: not (isinstance(v, int) and not isinstance(v, bool) and v >= 0),
    "backoff": lambda v: not (isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) and v >= 0),
    "max_backoff": lambda v: not (isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) and v >= 0),
    "max_concurrency": lambda v: True,
    "max_response_bytes": lambda v: True,
    "max_stream_chunks": lambda v: True,
}


@settings(max_examples=150, deadline=None)
@given(field=st.sampled_from(sorted(FIELDS)), value=BAD_VALUES)
def test_bad_settings_are_config_errors_naming_the_field(field, value):
    if not FIELDS[field](value):
        assert getattr(TransportSettings(**{field: value}), field) == value  # a good value after all
        return
    with pytest.raises(ConfigError, match=field):
        TransportSettings(**{field: value})


def test_settings_are_frozen_and_replace_validates():
    with pytest.raises(dataclasses.FrozenInstanceError):
        CUSTOM.timeout = 1.0  # type: ignore[misc]
    assert CUSTOM.replace(deadline=1.0).deadline == 1.0 and CUSTOM.deadline == 42.0
    with pytest.raises(ConfigError, match="deadline"):
        CUSTOM.replace(deadline=0)
