"""locate_model / ensure_loadable answer quickly and plainly; seeded hub caches load by name."""

import hashlib
import json
import os
import socket

import pytest

from mm_rag_components import hub
from mm_rag_components.errors import ConfigError, ModelError
from mm_rag_components.hub import ensure_loadable, locate_model, looks_like_path
from mm_rag_components.testing import seed_hub_cache, use_hub_cache
from mm_rag_components.testing.hub_cache import seed_model

REPO = "sentence-transformers/clip-ViT-B-32"


@pytest.fixture()
def online(monkeypatch):
    """HF_HUB_OFFLINE unset (environment and hub constant); returns a setter for the endpoint."""
    from huggingface_hub import constants

    for key in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE"):
        monkeypatch.delenv(key, raising=False)
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    monkeypatch.setattr(hub, "_unreachable_until", {})
    for key in ("HTTPS_PROXY", "https_proxy", "HTTP_PROXY", "http_proxy", "ALL_PROXY", "all_proxy"):
        monkeypatch.delenv(key, raising=False)
    return lambda url: monkeypatch.setattr(constants, "ENDPOINT", url)


@pytest.fixture()
def cache(tmp_path, tiny_clip_dir):
    return seed_hub_cache(tmp_path / "cache", {REPO: tiny_clip_dir})


def test_local_directory(tmp_path):
    loc = locate_model(tmp_path)
    assert loc.where == "local" and loc.available and loc.load_offline


def test_missing_relative_path_is_unavailable():
    loc = locate_model("./definitely/not/here")
    assert loc.where == "unavailable" and "no such directory" in loc.reason


def test_a_file_or_an_empty_name_is_unavailable(tmp_path):
    afile = tmp_path / "weights.bin"
    afile.write_bytes(b"x")
    assert "is a file, not a model directory" in locate_model(afile).reason
    assert not locate_model("").available and not locate_model("   ").available
    assert "no such directory" in locate_model("~no-such-user-mmrag/model").reason  # no RuntimeError


def test_paths_and_hub_ids_are_told_apart():
    assert looks_like_path("./m") and looks_like_path("/abs/m") and looks_like_path("a/b/c") and looks_like_path("~/m")
    assert not looks_like_path("org/model") and not looks_like_path("gpt2")


def test_hub_name_offline_and_uncached_is_unavailable(monkeypatch, tmp_path):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path))
    loc = locate_model("some-org/some-model-that-is-not-cached")
    assert loc.where == "unavailable"
    assert "HF_HUB_OFFLINE" in loc.reason


def test_ensure_loadable_raises_one_plain_model_error(tmp_path):
    assert ensure_loadable(tmp_path).where == "local"
    with pytest.raises(ModelError, match=r"^cannot load scorer model: no such directory: .*missing; pass a local model directory$"):
        ensure_loadable(tmp_path / "missing", what="scorer model")
    with use_hub_cache(tmp_path / "empty"), pytest.raises(ModelError) as info:
        ensure_loadable("org/not-cached")
    assert "org/not-cached is not cached and HF_HUB_OFFLINE is set" in str(info.value)
    assert "\n" not in str(info.value)


def test_cached_model_is_found_and_loads_offline(cache):
    with use_hub_cache(cache):
        loc = ensure_loadable(REPO)
        assert loc.where == "cached" and loc.load_offline


def test_unreachable_hub_fails_fast_for_uncached_and_says_load_offline_for_cached(online, cache, tmp_path):
    online("http://127.0.0.1:9")  # a closed local port: connection refused at once
    from huggingface_hub import constants

    saved = constants.HF_HUB_CACHE
    try:
        constants.HF_HUB_CACHE = str(cache)
        with pytest.raises(ModelError, match="not cached and the Hugging Face hub cannot be reached"):
            ensure_loadable("org/not-cached")
        loc = locate_model(REPO)
        assert loc.where == "cached" and loc.load_offline and "cannot be reached" in loc.reason
    finally:
        constants.HF_HUB_CACHE = saved


def test_reachable_hub_means_downloadable(online, tmp_path, monkeypatch):
    from huggingface_hub import constants

    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen()
    with server:
        online(f"http://127.0.0.1:{server.getsockname()[1]}")
        monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "empty"))
        loc = locate_model("org/not-cached")
        assert loc.where == "hub" and not loc.load_offline
        assert locate_model("org/not-cached", local_files_only=True).where == "unavailable"


def test_probe_goes_to_the_proxy_unless_bypassed(online, monkeypatch):
    online("https://huggingface.co")
    monkeypatch.setenv("HTTPS_PROXY", "http://127.0.0.1:3128")
    monkeypatch.delenv("NO_PROXY", raising=False)
    monkeypatch.delenv("no_proxy", raising=False)
    assert hub._probe_target() == ("127.0.0.1", 3128)
    monkeypatch.setenv("NO_PROXY", "huggingface.co")
    assert hub._probe_target() == ("huggingface.co", 443)


def test_failed_probes_are_remembered_briefly(online, monkeypatch):
    online("http://127.0.0.1:9")
    assert hub.hub_reachable(1.0) is False
    monkeypatch.setattr(socket, "create_connection", lambda *a, **k: pytest.fail("probed again"))
    assert hub.hub_reachable(1.0) is False


# --------------------------------------------------------------------------- seeded caches


def test_seeded_cache_has_the_hub_layout(cache, tiny_clip_dir):
    from huggingface_hub import scan_cache_dir, try_to_load_from_cache

    repo = cache / "models--sentence-transformers--clip-ViT-B-32"
    commit = (repo / "refs" / "main").read_text()
    assert len(commit) == 40 and int(commit, 16) >= 0
    config = repo / "snapshots" / commit / "config.json"
    assert config.is_symlink() and os.readlink(config) == os.path.join("..", "..", "blobs", config.resolve().name)
    data = (tiny_clip_dir / "config.json").read_bytes()
    assert config.resolve().name == hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()  # git blob id
    weights = (repo / "snapshots" / commit / "model.safetensors").resolve()
    assert weights.name == hashlib.sha256(weights.read_bytes()).hexdigest()  # LFS files: sha256
    info = scan_cache_dir(cache)
    assert not info.warnings
    (cached_repo,) = info.repos
    assert cached_repo.repo_id == REPO and {r.commit_hash for r in cached_repo.revisions} == {commit}
    found = try_to_load_from_cache(REPO, "config.json", cache_dir=str(cache))
    assert json.loads(open(found).read()) == json.loads(data)


def test_seeding_is_idempotent_and_updates_main(tmp_path, tiny_clip_dir):
    import shutil

    first = seed_model(tmp_path / "c", "org/m", tiny_clip_dir)
    assert seed_model(tmp_path / "c", "org/m", tiny_clip_dir) == first
    changed = tmp_path / "changed"
    shutil.copytree(tiny_clip_dir, changed)
    (changed / "extra.txt").write_text("new")
    second = seed_model(tmp_path / "c", "org/m", changed)
    assert second != first and (tmp_path / "c/models--org--m/refs/main").read_text() == second.name


def test_seeded_names_load_through_the_real_name_based_path(cache):
    from sentence_transformers import SentenceTransformer

    with use_hub_cache(cache):
        model = SentenceTransformer(REPO, device="cpu", local_files_only=True)
    assert model.encode(["a dog"]).shape == (1, 32)


def test_use_hub_cache_restores_the_environment(tmp_path):
    from huggingface_hub import constants

    before = (constants.HF_HUB_CACHE, os.environ.get("HF_HUB_CACHE"))
    with use_hub_cache(tmp_path) as where:
        assert constants.HF_HUB_CACHE == str(where) == os.environ["HF_HUB_CACHE"]
    assert (constants.HF_HUB_CACHE, os.environ.get("HF_HUB_CACHE")) == before


@pytest.mark.parametrize("bad", ["no-slash", "a/b/c", "/abs", "org/", ".org/m", "org/m m"])
def test_bad_repo_ids_are_refused(tmp_path, tiny_clip_dir, bad):
    with pytest.raises(ConfigError):
        seed_model(tmp_path, bad, tiny_clip_dir)


def test_seeding_a_missing_directory_is_refused(tmp_path):
    with pytest.raises(ConfigError, match="is not a model directory"):
        seed_model(tmp_path, "org/m", tmp_path / "missing")


@pytest.mark.parametrize("kind", ["scorer", "generator"])
def test_cached_reranker_loads_by_name_without_retrying_an_unreachable_hub(kind, tmp_path, tiny_vlm_dirs):
    """With peft installed, transformers' optional adapter lookup ignored local_files_only and
    retried an unreachable hub for a cached model: every model load passes it on."""
    import subprocess
    import sys

    cache = seed_hub_cache(tmp_path / "cache", {"someone/tiny-idefics3": tiny_vlm_dirs["idefics3"]})
    load = {
        "scorer": "from mm_rag_components import TransformersScorer as C; m = C('someone/tiny-idefics3'); m.warm_up()",
        "generator": "from mm_rag_components.generation.transformers import TransformersGenerator as C; m = C('someone/tiny-idefics3'); m.warm_up()",
    }[kind]
    env = {k: v for k, v in os.environ.items() if k not in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE")}
    env.update(HF_ENDPOINT="http://127.0.0.1:9", HF_HUB_CACHE=str(cache))
    out = subprocess.run([sys.executable, "-c", load + "; print('loaded')"], capture_output=True, text=True, env=env, timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    assert "loaded" in out.stdout
    assert "Retrying" not in out.stderr and "Connection refused" not in out.stderr
