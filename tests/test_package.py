"""The package imports light and exposes one error hierarchy."""

import subprocess
import sys
from pathlib import Path

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


ROOT = Path(__file__).resolve().parents[1]


def test_license_is_an_spdx_expression_with_its_file():
    import tomllib

    project = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    assert project["license"] == "Apache-2.0"
    assert project["license-files"] == ["LICENSE"]
    text = (ROOT / "LICENSE").read_text(encoding="utf-8")
    assert "Apache License" in text and "Version 2.0, January 2004" in text and "END OF TERMS AND CONDITIONS" in text


def test_package_is_marked_typed():
    assert (Path(mm.__file__).parent / "py.typed").is_file()


def test_wheel_ships_py_typed_and_the_license(tmp_path):
    """Build a wheel from a copy of the project (offline: the environment's setuptools, no isolation).
    The ``dev`` extra pins what this needs (``setuptools>=77``, for SPDX license strings); an older
    or missing one fails here instead of skipping, so CI always checks the wheel."""
    import importlib.metadata
    import shutil
    import zipfile

    try:
        version = importlib.metadata.version("setuptools")
    except importlib.metadata.PackageNotFoundError:
        pytest.fail("setuptools is not installed; install the dev extra: pip install -e '.[dev]'")
    assert int(version.split(".")[0]) >= 77, f"setuptools {version} predates SPDX license strings; the dev extra needs >= 77"
    project = tmp_path / "project"
    shutil.copytree(ROOT / "src", project / "src", ignore=shutil.ignore_patterns("*.egg-info", "__pycache__"))
    for name in ("pyproject.toml", "README.md", "LICENSE"):
        shutil.copy(ROOT / name, project / name)
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", str(project), "--no-deps", "--no-build-isolation", "-q", "-w", str(tmp_path / "dist")],
        check=True, capture_output=True, timeout=300,
    )
    (wheel,) = (tmp_path / "dist").glob("mm_rag_components-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    assert "mm_rag_components/py.typed" in names
    assert any(n.endswith(".dist-info/licenses/LICENSE") for n in names)
    metadata = zipfile.ZipFile(wheel).read(next(n for n in names if n.endswith(".dist-info/METADATA"))).decode()
    assert "License-Expression: Apache-2.0" in metadata
