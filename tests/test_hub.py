"""locate_model answers quickly and plainly where a model can come from."""

from mm_rag_components.hub import locate_model


def test_local_directory(tmp_path):
    loc = locate_model(tmp_path)
    assert loc.where == "local" and loc.available


def test_missing_relative_path_is_unavailable():
    loc = locate_model("./definitely/not/here")
    assert loc.where == "unavailable" and "no such directory" in loc.reason


def test_hub_name_offline_and_uncached_is_unavailable(monkeypatch, tmp_path):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path))
    loc = locate_model("some-org/some-model-that-is-not-cached")
    assert loc.where == "unavailable"
    assert "HF_HUB_OFFLINE" in loc.reason
