"""Loading a config is a trust boundary: a config never carries permission to run a model's own
code, nor to receive the API key from the environment at a server it names itself."""

from __future__ import annotations

import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mm_rag_components import config
from mm_rag_components.errors import ConfigError
from mm_rag_components.remote.chat_generator import OpenAIChatGenerator
from mm_rag_components.remote.chat_scorer import OpenAIChatScorer
from mm_rag_components.remote.rerank_endpoint import RerankEndpointScorer
from mm_rag_components.remote.transport import TransportSettings
from mm_rag_components.generation.transformers import TransformersGenerator
from mm_rag_components.rerank.pointwise import PointwiseRanker
from mm_rag_components.scoring.cache import CachedScorer
from mm_rag_components.scoring.transformers_scorer import TransformersScorer
from mm_rag_components.types import Candidate, Query
from remote_support import TEST_TEMPLATE, FakeServer, Reply, chat_reply

KEY_VARS = ("MMRAG_API_KEY", "OPENAI_API_KEY", "MMRAG_RERANK_API_KEY", "MMRAG_BASE_URL", "OPENAI_BASE_URL", "MMRAG_RERANK_BASE_URL")
FAST = TransportSettings(retries=0, deadline=10.0)


@config.register
class Built:
    """A registered component that records what it was built with."""

    made: list[dict] = []

    def __init__(self, **options):
        Built.made.append(options)
        self.options = options

    def config(self):
        return dict(self.options)


# ---------------------------------------------------------------------------- remote code

def test_real_components_asking_for_remote_code_are_refused_unless_allowed():
    for component in (TransformersScorer("some/model", trust_remote_code=True), TransformersGenerator("some/model", trust_remote_code=True),
                      TransformersGenerator("some/model", processor_kwargs={"trust_remote_code": True})):
        saved = json.loads(json.dumps(config.to_dict(component)))
        with pytest.raises(ConfigError, match="trust_remote_code"):
            config.from_dict(saved)
        rebuilt = config.from_dict(saved, allow_remote_code=True)
        assert rebuilt.config() == component.config()
    plain = config.to_dict(TransformersScorer("some/model"))  # trust_remote_code: false is saved, and loads
    assert plain["trust_remote_code"] is False and config.from_dict(plain).trust_remote_code is False
    # the caller may still ask for it by name: an override is the caller's word, not the file's
    assert config.from_dict(plain, trust_remote_code=True).trust_remote_code is True


KEYS = st.text(max_size=5).filter(lambda k: k not in ("type", "trust_remote_code"))
JSON = st.recursive(st.none() | st.booleans() | st.integers() | st.text(max_size=5),
                    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(KEYS, inner, max_size=3), max_leaves=12)


def _plant(tree, path: list[int], value):
    """``tree`` with ``{"trust_remote_code": value}`` planted at the place ``path`` chooses."""
    if path and isinstance(tree, dict) and tree:
        key = sorted(tree)[path[0] % len(tree)]
        return {**tree, key: _plant(tree[key], path[1:], value)}
    if path and isinstance(tree, list) and tree:
        i = path[0] % len(tree)
        return tree[:i] + [_plant(tree[i], path[1:], value)] + tree[i + 1:]
    planted = {"trust_remote_code": value}
    return {**tree, **planted} if isinstance(tree, dict) else [tree, planted]


@settings(max_examples=150, deadline=None)
@given(tree=st.dictionaries(KEYS, JSON, max_size=4), path=st.lists(st.integers(0, 9), max_size=5),
       value=st.one_of(st.just(True), st.just(1), st.just("true"), st.just("yes"), st.lists(st.integers(), min_size=1, max_size=2)))
def test_a_request_for_remote_code_anywhere_is_refused_before_anything_is_built(tree, path, value):
    data = {"type": "Built", **_plant(tree, path, value)}
    Built.made.clear()
    with pytest.raises(ConfigError, match="trust_remote_code"):
        config.from_dict(data)
    assert Built.made == []  # refused before any component was built
    config.from_dict(data, allow_remote_code=True)
    assert len(Built.made) == 1


def test_remote_code_refusal_walks_configs_deeper_than_the_stack():
    deep: dict = {"trust_remote_code": True}
    for _ in range(5000):
        deep = {"x": deep}
    with pytest.raises(ConfigError, match="nested deeper"):  # refused before anything is walked or built
        config.from_dict({"type": "Built", "options": deep})
    within: dict = {"trust_remote_code": True}
    for _ in range(30):  # 61 levels: within the nesting bound (64)
        within = {"x": [within]}
    with pytest.raises(ConfigError, match="trust_remote_code"):
        config.from_dict({"type": "Built", "options": within})


# --------------------------------------------------------------------------- API keys

@pytest.fixture()
def env(monkeypatch):
    for name in KEY_VARS:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("MMRAG_API_KEY", "sk-env")
    monkeypatch.setenv("MMRAG_RERANK_API_KEY", "rk-env")
    return monkeypatch


def _server():
    def respond(path, body, headers):
        if path.endswith("/rerank"):
            return Reply(body={"results": [{"index": i, "relevance_score": 0.5} for i in range(len(body["documents"]))]})
        if body.get("logprobs"):
            return Reply(body=chat_reply({"yes": -0.2, "no": -1.8}))
        return Reply(body={"choices": [{"index": 0, "message": {"role": "assistant", "content": "hi"}}]})

    return FakeServer(respond)


def _use(component) -> None:
    inner = getattr(getattr(component, "scorer", None), "scorer", component)
    if isinstance(inner, OpenAIChatGenerator):
        from mm_rag_components.generation.base import ChatTurn

        inner.generate([ChatTurn("user", ("hi",))])
    else:
        inner.score(Query(text="q"), [Candidate(id="0", modality="text", text="d")])


def _sent_key(server) -> str | None:
    auth = server.requests[-1].headers.get("authorization")
    return auth.removeprefix("Bearer ") if auth else None


BUILD = {
    "chat scorer": lambda url: OpenAIChatScorer("m", base_url=url + "/v1", template=TEST_TEMPLATE, transport=FAST),
    "generator": lambda url: OpenAIChatGenerator("m", base_url=url + "/v1", transport=FAST),
    "rerank endpoint": lambda url: RerankEndpointScorer("m", base_url=url, transport=FAST),
    "nested in a ranker": lambda url: PointwiseRanker(CachedScorer(OpenAIChatScorer("m", base_url=url + "/v1", template=TEST_TEMPLATE, transport=FAST))),
}
ENV_KEY = {"chat scorer": "sk-env", "generator": "sk-env", "rerank endpoint": "rk-env", "nested in a ranker": "sk-env"}


@pytest.mark.parametrize("kind", sorted(BUILD))
def test_a_config_naming_its_own_server_gets_no_key_from_the_environment(env, kind, caplog):
    with _server() as server:
        built = BUILD[kind](server.url)
        _use(built)
        assert _sent_key(server) == ENV_KEY[kind]  # built in code: the environment's key, as before
        saved = json.loads(json.dumps(config.to_dict(built)))
        assert "env" not in json.dumps(saved)  # keys are never saved
        _use(config.from_dict(saved))
        assert _sent_key(server) is None
        assert "not sending the environment's API key" in caplog.text
        _use(config.from_dict(saved, api_key="sk-given"))
        assert _sent_key(server) == "sk-given"
        _use(config.from_dict(saved, use_env_key=True))
        assert _sent_key(server) == ENV_KEY[kind]


def test_the_environment_key_goes_to_the_environment_server(env):
    with _server() as server:
        saved = config.to_dict(OpenAIChatScorer("m", base_url=server.url + "/v1", template=TEST_TEMPLATE, transport=FAST))
        env.setenv("MMRAG_BASE_URL", server.url + "/v1/")  # the environment names this very server
        _use(config.from_dict(saved))
        assert _sent_key(server) == "sk-env"
        unnamed = config.to_dict(OpenAIChatScorer("m", template=TEST_TEMPLATE, transport=FAST))  # base_url from the environment
        assert unnamed["base_url"] is None
        _use(config.from_dict(unnamed))
        assert _sent_key(server) == "sk-env"


def test_trust_does_not_leak_out_of_from_dict(env):
    with _server() as server:
        saved = config.to_dict(OpenAIChatScorer("m", base_url=server.url + "/v1", template=TEST_TEMPLATE, transport=FAST))
        config.from_dict(saved, api_key="sk-given")
        assert config.loading() is None
        _use(OpenAIChatScorer("m", base_url=server.url + "/v1", template=TEST_TEMPLATE, transport=FAST))
        assert _sent_key(server) == "sk-env"


def test_trusting_grants_permissions_to_configs_a_framework_loads(env):
    with _server() as server:
        saved = config.to_dict(OpenAIChatScorer("m", base_url=server.url + "/v1", template=TEST_TEMPLATE, transport=FAST))
        with config.trusting(api_key="sk-granted"):
            _use(config.from_dict(saved))  # as a framework adapter would call it
            assert _sent_key(server) == "sk-granted"
            _use(OpenAIChatScorer("m", base_url=server.url + "/v1", template=TEST_TEMPLATE, transport=FAST))
            assert _sent_key(server) == "sk-env"  # built in code: unaffected
        _use(config.from_dict(saved))
        assert _sent_key(server) is None
    asking = config.to_dict(TransformersScorer("some/model", trust_remote_code=True))
    with config.trusting(allow_remote_code=True):
        assert config.from_dict(asking).trust_remote_code is True
    with pytest.raises(ConfigError, match="trust_remote_code"):
        config.from_dict(asking)
