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


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    """A wheel built from a copy of the project (offline: the environment's setuptools, no isolation).
    The ``dev`` extra pins what this needs (``setuptools>=77``, for SPDX license strings); an older
    or missing one fails here instead of skipping, so CI always checks the wheel."""
    import importlib.metadata
    import shutil

    try:
        version = importlib.metadata.version("setuptools")
    except importlib.metadata.PackageNotFoundError:
        pytest.fail("setuptools is not installed; install the dev extra: pip install -e '.[dev]'")
    assert int(version.split(".")[0]) >= 77, f"setuptools {version} predates SPDX license strings; the dev extra needs >= 77"

    tmp_path = tmp_path_factory.mktemp("wheel")
    project = tmp_path / "project"
    shutil.copytree(ROOT / "src", project / "src", ignore=shutil.ignore_patterns("*.egg-info", "__pycache__", ".ruff_cache"))
    for name in ("pyproject.toml", "README.md", "LICENSE"):
        shutil.copy(ROOT / name, project / name)
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", str(project), "--no-deps", "--no-build-isolation", "-q", "-w", str(tmp_path / "dist")],
        check=True, capture_output=True, timeout=300,
    )
    (built,) = (tmp_path / "dist").glob("mm_rag_components-*.whl")
    return built


def test_the_readme_pip_install_path_holds(wheel, tmp_path):
    """The README's install-without-make block: the torch pin is the one set-up installs, every
    extra it names exists, and the wheel installs and runs ``mm-rag`` (its dependencies are this
    environment's: the network is not asked for)."""
    import re
    import tomllib

    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    block = next(b for b in readme.split("```") if 'pip install "mm-rag-components[' in b)
    pin = re.search(r"pip install (torch==[\d.]+) --index-url https://download\.pytorch\.org/whl/cpu", block)
    assert pin and f'"{pin.group(1)}"' in (ROOT / "scripts" / "bootstrap.sh").read_text(encoding="utf-8")
    extras = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]["optional-dependencies"]
    named = set(re.findall(r'mm-rag-components\[([\w,-]+)\]', block)[0].split(",")) | set(
        re.search(r"# extras: ([\w, ()-]+);", block).group(1).replace("(web chat)", "").replace(" ", "").split(","))
    assert named and named <= set(extras), named - set(extras)
    target = tmp_path / "site"
    subprocess.run([sys.executable, "-m", "pip", "install", "--no-deps", "--no-index", "-q", "--target", str(target), str(wheel)],
                   check=True, capture_output=True, timeout=300)
    script = next((target / "bin").glob("mm-rag"))
    env = {**__import__("os").environ, "PYTHONPATH": str(target)}
    done = subprocess.run([sys.executable, str(script), "--version"], capture_output=True, text=True, env=env, timeout=120)
    assert done.returncode == 0 and done.stdout.strip() == f"mm-rag {mm.__version__}", done.stderr
    where = subprocess.run([sys.executable, "-c", "import mm_rag_components as m; print(m.__file__)"], capture_output=True,
                           text=True, env=env, check=True).stdout
    assert where.startswith(str(target))  # the installed wheel, not this checkout


def test_wheel_ships_py_typed_and_the_license(wheel):
    """Build a wheel from a copy of the project (offline: the environment's setuptools, no isolation).
    The ``dev`` extra pins what this needs (``setuptools>=77``, for SPDX license strings); an older
    or missing one fails here instead of skipping, so CI always checks the wheel."""
    import zipfile

    names = zipfile.ZipFile(wheel).namelist()
    assert "mm_rag_components/py.typed" in names
    assert any(n.endswith(".dist-info/licenses/LICENSE") for n in names)
    metadata = zipfile.ZipFile(wheel).read(next(n for n in names if n.endswith(".dist-info/METADATA"))).decode()
    assert "License-Expression: Apache-2.0" in metadata
