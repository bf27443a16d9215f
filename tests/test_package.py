"""The package imports light and exposes one error hierarchy."""

import subprocess
import sys

import pytest

import mm_rag_components as mm


def test_import_does_not_load_heavy_libraries():
    code = (
        "import sys, mm_rag_components, mm_rag_components.testing, "
        "mm_rag_components.integrations.llama_index\n"
        "heavy = [m for m in ('torch', 'transformers', 'chromadb', 'sentence_transformers', 'llama_index') "
        "if m in sys.modules]\n"
        "print(','.join(heavy))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == ""


def test_lazy_names_resolve_and_unknown_names_fail():
    assert mm.ChromaStore.__name__ == "ChromaStore"
    assert mm.ConfigError.__mro__[1] is mm.MMRagError
    with pytest.raises(AttributeError):
        mm.DoesNotExist  # noqa: B018


@pytest.mark.parametrize("name", ["ConfigError", "MediaError", "ModelError", "StoreError", "ParseError", "BackendError"])
def test_every_error_derives_from_the_root(name):
    assert issubclass(getattr(mm, name), mm.MMRagError)


def test_query_needs_text_or_image():
    with pytest.raises(mm.ConfigError):
        mm.Query()
    with pytest.raises(mm.ConfigError):
        mm.Query(text="   ")
    assert mm.Query(text="a dog").modality == "text"
    assert mm.Query(text="a dog", image=b"x").modality == "image+text"
    assert mm.Query(image=b"x").modality == "image"
