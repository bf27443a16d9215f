"""Test-wide settings: never touch the network, keep threads modest on small CI machines, no
hypothesis deadlines."""

import os

os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["TRANSFORMERS_OFFLINE"] = "1"
os.environ["ANONYMIZED_TELEMETRY"] = "False"
os.environ["HAYSTACK_TELEMETRY_ENABLED"] = "False"  # Haystack sends pipeline telemetry by default; tests never touch the network
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

from pathlib import Path

import pytest
from hypothesis import settings

# No generated test is a timing check: no per-example deadline anywhere (a slow example on a busy
# machine is not a failure; tests that could hang guard themselves with bounds.time_limit).
settings.register_profile("mm-rag", deadline=None)
settings.load_profile("mm-rag")


@pytest.fixture(scope="session")
def tiny_clip_dir(tmp_path_factory) -> Path:
    from mm_rag_components.testing import build_tiny_clip

    return build_tiny_clip(tmp_path_factory.mktemp("models") / "tiny-clip")


@pytest.fixture(scope="session")
def clip_embedder(tiny_clip_dir):
    from mm_rag_components.embedders import ClipEmbedder

    return ClipEmbedder(tiny_clip_dir, batch_size=4)


@pytest.fixture()
def sample_folder(tmp_path) -> Path:
    from mm_rag_components.testing import write_sample_folder

    return write_sample_folder(tmp_path / "data")


@pytest.fixture(scope="session")
def tiny_vlm_dirs(tmp_path_factory) -> dict:
    """Tiny random-weight Idefics3 (SmolVLM), LLaVA and causal LM directories."""
    from mm_rag_components.testing import build_tiny_causal_lm, build_tiny_idefics3, build_tiny_llava

    root = tmp_path_factory.mktemp("vlms")
    return {
        "idefics3": build_tiny_idefics3(root / "idefics3"),
        "llava": build_tiny_llava(root / "llava"),
        "causal": build_tiny_causal_lm(root / "causal"),
    }


@pytest.fixture(scope="session")
def drawn_images(tmp_path_factory) -> list:
    from mm_rag_components.testing import write_sample_folder

    return sorted(write_sample_folder(tmp_path_factory.mktemp("drawn")).glob("*.png"))
