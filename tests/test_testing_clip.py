"""The offline model builders write directories that load through the normal library paths."""

import json

import numpy as np
import pytest
from PIL import Image

from mm_rag_components.errors import ConfigError
from mm_rag_components.testing import build_clip_vit_b32_random, build_tiny_clip, build_tiny_text_embedder
from mm_rag_components.testing import clip as clip_builders
from mm_rag_components.testing.clip import BUILD_MARKER, build_tiny_siglip, shared_clip_processor_dir


def _st(path):
    from sentence_transformers import SentenceTransformer

    return SentenceTransformer(str(path), device="cpu")


def test_tiny_clip_loads_with_transformers(tiny_clip_dir):
    from transformers import AutoProcessor, CLIPModel

    model = CLIPModel.from_pretrained(tiny_clip_dir)
    processor = AutoProcessor.from_pretrained(tiny_clip_dir)
    inputs = processor(
        text=["a red circle", "a cat"], images=[Image.new("RGB", (40, 50))], return_tensors="pt", padding=True
    )
    out = model(**inputs)
    assert out.logits_per_image.shape == (1, 2)
    assert inputs["pixel_values"].shape[-2:] == (32, 32)


def test_tiny_clip_loads_with_sentence_transformers_for_both_modalities(tiny_clip_dir):
    st = _st(tiny_clip_dir)
    assert {"text", "image"} <= set(st.modalities)
    assert st.encode(["a dog"]).shape == (1, 32)
    assert st.encode([Image.new("RGB", (20, 30), (9, 90, 200))]).shape == (1, 32)


def test_tiny_clip_text_pooling_sees_the_whole_text_and_ignores_padding(tiny_clip_dir):
    st = _st(tiny_clip_dir)
    texts = ["a red circle", "a red square", "a much longer caption of a blue triangle next to a tree"]
    joint = st.encode(texts)
    alone = np.vstack([st.encode([t]) for t in texts])
    np.testing.assert_allclose(joint, alone, atol=1e-5)  # padding does not leak into the pooled token
    assert not np.allclose(joint[0], joint[1], atol=1e-4)  # the last word matters


def test_tiny_clip_honours_its_parameters(tmp_path):
    path = build_tiny_clip(tmp_path / "c", projection_dim=16, image_size=48, seed=3)
    config = json.loads((path / "config.json").read_text())
    assert config["projection_dim"] == 16 and config["vision_config"]["image_size"] == 48
    assert _st(path).encode([Image.new("RGB", (64, 64))]).shape == (1, 16)
    with pytest.raises(ConfigError):
        build_tiny_clip(tmp_path / "bad", image_size=30)


def test_builds_are_deterministic_per_seed(tmp_path, tiny_clip_dir):
    same = build_tiny_clip(tmp_path / "same")
    other = build_tiny_clip(tmp_path / "other", seed=1)
    weights = (tiny_clip_dir / "model.safetensors").read_bytes()
    assert (same / "model.safetensors").read_bytes() == weights
    assert (same / "tokenizer.json").read_bytes() == (tiny_clip_dir / "tokenizer.json").read_bytes()
    assert (other / "model.safetensors").read_bytes() != weights


def test_builds_are_idempotent_and_never_clobber_foreign_files(tmp_path):
    path = build_tiny_clip(tmp_path / "m")
    stamp = (path / "model.safetensors").stat().st_mtime_ns
    assert build_tiny_clip(path) == path
    assert (path / "model.safetensors").stat().st_mtime_ns == stamp
    # Our own build with other parameters is replaced ...
    build_tiny_clip(path, projection_dim=8)
    assert json.loads((path / "config.json").read_text())["projection_dim"] == 8
    # ... but a directory we did not write is refused and left alone.
    foreign = tmp_path / "foreign"
    foreign.mkdir()
    (foreign / "notes.txt").write_text("mine")
    with pytest.raises(ConfigError, match="not an empty directory"):
        build_tiny_clip(foreign)
    assert sorted(p.name for p in foreign.iterdir()) == ["notes.txt"]
    # No temporary directories are left beside the builds.
    assert sorted(p.name for p in tmp_path.iterdir()) == ["foreign", "m"]


def test_real_tokenizer_absent_or_invalid_is_a_clear_error(tmp_path, monkeypatch):
    monkeypatch.setattr(clip_builders, "shared_dir", lambda: None)
    with pytest.raises(ConfigError, match="real_tokenizer=True needs"):
        build_tiny_clip(tmp_path / "x", real_tokenizer=True)
    with pytest.raises(ConfigError, match="no tokenizer_config.json"):
        build_tiny_clip(tmp_path / "y", real_tokenizer=tmp_path)
    assert not (tmp_path / "x").exists() and not (tmp_path / "y").exists()


@pytest.mark.skipif(
    shared_clip_processor_dir() is None,
    reason="optional asset shared/models/clip-vit-base-patch32-processor is absent",
)
def test_tiny_clip_with_the_real_clip_tokenizer(tmp_path):
    from transformers import AutoTokenizer

    path = build_tiny_clip(tmp_path / "real", real_tokenizer=True)
    saved = AutoTokenizer.from_pretrained(path)
    original = AutoTokenizer.from_pretrained(shared_clip_processor_dir())
    text = "A photo of two cats on a sofa."
    assert saved(text)["input_ids"] == original(text)["input_ids"]
    assert json.loads((path / "config.json").read_text())["text_config"]["vocab_size"] == len(original)
    assert _st(path).encode([text]).shape == (1, 32)


def test_tiny_text_embedder_is_a_sentence_transformer(tmp_path):
    path = build_tiny_text_embedder(tmp_path / "t", dim=16)
    assert (path / "modules.json").is_file() and (path / BUILD_MARKER).is_file()
    vectors = _st(path).encode(["a dog", "a cat on the sofa"])
    assert vectors.shape == (2, 16)
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["t"]


def test_tiny_siglip_loads_with_sentence_transformers(tmp_path):
    st = _st(build_tiny_siglip(tmp_path / "s"))
    assert {"text", "image"} <= set(st.modalities)
    assert st.encode(["a dog"]).shape == (1, 32)
    assert st.encode([Image.new("RGB", (40, 40))]).shape == (1, 32)


def test_clip_vit_b32_random_has_the_real_dimensions(tmp_path):
    path = build_clip_vit_b32_random(tmp_path / "vit")
    config = json.loads((path / "config.json").read_text())
    text, vision = config["text_config"], config["vision_config"]
    assert (text["hidden_size"], text["num_hidden_layers"], text["num_attention_heads"]) == (512, 12, 8)
    assert (text["intermediate_size"], text["max_position_embeddings"], text["vocab_size"]) == (2048, 77, 49408)
    assert (vision["hidden_size"], vision["num_hidden_layers"], vision["num_attention_heads"]) == (768, 12, 12)
    assert (vision["intermediate_size"], vision["patch_size"], vision["image_size"]) == (3072, 32, 224)
    assert config["projection_dim"] == 512
    st = _st(path)
    assert st.encode([Image.new("RGB", (300, 200))]).shape == (1, 512)
    assert st.encode(["a photo of a cat"]).shape == (1, 512)
