"""A Hugging Face hub cache seeded from local model directories, for offline tests and demos.

:func:`seed_hub_cache` lays model directories out exactly as ``huggingface_hub`` stores downloads
(``models--org--name/{blobs,refs/main,snapshots/<commit>}``), so that loading by *hub name* —
``SentenceTransformer("sentence-transformers/clip-ViT-B-32")``,
``AutoModel.from_pretrained("org/name")``, ``snapshot_download(..., local_files_only=True)`` —
finds the tiny model offline through the real name-based path. :func:`use_hub_cache` points the
current process at such a cache; :func:`hub_cache_env` gives the variables for a subprocess.
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path

from ..errors import ConfigError

#: ``org/name`` as the hub accepts it (letters, digits, ``-``, ``_``, ``.``; no leading dot/dash).
_REPO_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[A-Za-z0-9][\w.-]*$")
#: Files the hub keeps in Git LFS (their etag, hence blob name, is the content's sha256).
_LFS_SUFFIXES = frozenset({".safetensors", ".bin", ".pt", ".pth", ".onnx", ".h5", ".msgpack", ".model", ".npz"})
_LFS_MIN_BYTES = 10 * 1024 * 1024


def _etag(path: Path) -> str:
    """The name ``huggingface_hub`` gives the blob: sha256 for LFS files, the git blob sha1 otherwise."""
    data = path.read_bytes()
    if path.suffix in _LFS_SUFFIXES or len(data) >= _LFS_MIN_BYTES:
        return hashlib.sha256(data).hexdigest()
    return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()


def _files(root: Path) -> list[Path]:
    """Every file under ``root``, hidden ones (and those in hidden folders) left out."""
    return sorted(
        p for p in root.rglob("*")
        if p.is_file() and not any(part.startswith(".") for part in p.relative_to(root).parts)
    )


def _link_or_copy(blob: Path, target: Path) -> None:
    """Relative symlink from the snapshot to the blob, as the hub makes it; a copy where links fail."""
    target.parent.mkdir(parents=True, exist_ok=True)
    if target.exists() or target.is_symlink():
        target.unlink()
    try:
        target.symlink_to(os.path.relpath(blob, target.parent))
    except OSError:  # no symlinks (some Windows set-ups): the hub copies too
        shutil.copyfile(blob, target)


def seed_model(cache_dir: str | Path, repo_id: str, model_dir: str | Path, *, revision: str = "main") -> Path:
    """Store ``model_dir`` in the hub cache at ``cache_dir`` as ``repo_id``; returns the snapshot folder.

    The commit hash is derived from the files, so seeding the same directory twice is a no-op and
    seeding changed files makes a new snapshot that ``refs/<revision>`` then points to.
    """
    if not isinstance(repo_id, str) or not _REPO_ID.match(repo_id) or repo_id.count("/") != 1:
        raise ConfigError(f"repo_id must look like 'org/name', got {repo_id!r}")
    source = Path(model_dir).expanduser()
    if not source.is_dir():
        raise ConfigError(f"{source} is not a model directory")
    files = _files(source)
    if not files:
        raise ConfigError(f"{source} holds no files")
    repo = Path(cache_dir).expanduser() / ("models--" + repo_id.replace("/", "--"))
    etags = {f.relative_to(source).as_posix(): _etag(f) for f in files}
    commit = hashlib.sha1("\n".join(f"{k}\0{v}" for k, v in sorted(etags.items())).encode()).hexdigest()
    snapshot = repo / "snapshots" / commit
    for relative, etag in etags.items():
        blob = repo / "blobs" / etag
        if not blob.is_file():
            blob.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(source / relative, blob)
        _link_or_copy(blob, snapshot / relative)
    ref = repo / "refs" / revision
    ref.parent.mkdir(parents=True, exist_ok=True)
    ref.write_text(commit)  # no trailing newline: the hub reads the file verbatim
    return snapshot


def seed_hub_cache(cache_dir: str | Path, models: Mapping[str, str | Path]) -> Path:
    """Seed ``cache_dir`` with ``{"org/name": local_model_dir, ...}``; returns ``cache_dir``."""
    cache = Path(cache_dir).expanduser()
    cache.mkdir(parents=True, exist_ok=True)
    for repo_id, model_dir in models.items():
        seed_model(cache, repo_id, model_dir)
    return cache


def hub_cache_env(cache_dir: str | Path) -> dict[str, str]:
    """Environment variables that make a new process load from ``cache_dir`` only (offline)."""
    return {"HF_HUB_CACHE": str(Path(cache_dir).expanduser()), "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}


@contextmanager
def use_hub_cache(cache_dir: str | Path) -> Iterator[Path]:
    """Within the block, this process loads hub names from ``cache_dir``, offline.

    ``huggingface_hub`` reads its environment once, at import; this sets the variables and the
    module constants it consults on every call, and restores both afterwards.
    """
    from huggingface_hub import constants

    env = hub_cache_env(cache_dir)
    saved_env = {key: os.environ.get(key) for key in env}
    saved = (constants.HF_HUB_CACHE, constants.HF_HUB_OFFLINE)
    os.environ.update(env)
    constants.HF_HUB_CACHE, constants.HF_HUB_OFFLINE = env["HF_HUB_CACHE"], True
    try:
        yield Path(env["HF_HUB_CACHE"])
    finally:
        constants.HF_HUB_CACHE, constants.HF_HUB_OFFLINE = saved
        for key, value in saved_env.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


# --------------------------------------------------------------------------- tiny stand-ins


def _tiny_text(path: Path) -> Path:
    from .clip import build_tiny_text_embedder

    return build_tiny_text_embedder(path)


def _tiny_st_clip(path: Path) -> Path:
    from .clip import build_tiny_st_clip

    return build_tiny_st_clip(path)


def _tiny_smolvlm(path: Path) -> Path:
    from .vlm import build_tiny_idefics3

    return build_tiny_idefics3(path)


def _tiny_jina_m0(path: Path) -> Path:
    from .qwen import build_tiny_jina_reranker_m0

    return build_tiny_jina_reranker_m0(path)


#: Hub ids the README and the CLI name, and the builder of a tiny random-weight stand-in for each.
TINY_STANDINS: dict[str, Callable[[Path], Path]] = {
    "sentence-transformers/clip-ViT-B-32": _tiny_st_clip,
    "sentence-transformers/all-MiniLM-L6-v2": _tiny_text,
    "HuggingFaceTB/SmolVLM-256M-Instruct": _tiny_smolvlm,
    "jinaai/jina-reranker-m0": _tiny_jina_m0,
}


def seed_tiny_hub_cache(cache_dir: str | Path, repo_ids: list[str] | None = None, *, build_dir: str | Path | None = None) -> Path:
    """Seed ``cache_dir`` with tiny stand-ins for ``repo_ids`` (default: every id in :data:`TINY_STANDINS`).

    Models are built under ``build_dir`` (default ``<cache_dir>/../tiny-standins``). An id with no
    stand-in raises :class:`ConfigError` naming the known ones.
    """
    ids = list(TINY_STANDINS) if repo_ids is None else list(repo_ids)
    unknown = [i for i in ids if i not in TINY_STANDINS]
    if unknown:
        raise ConfigError(f"no tiny stand-in for {unknown}; known: {sorted(TINY_STANDINS)}")
    cache = Path(cache_dir).expanduser()
    builds = Path(build_dir) if build_dir is not None else cache.parent / "tiny-standins"
    built = {i: TINY_STANDINS[i](builds / i.replace("/", "--")) for i in ids}
    return seed_hub_cache(cache, built)


__all__ = [
    "TINY_STANDINS",
    "hub_cache_env",
    "seed_hub_cache",
    "seed_model",
    "seed_tiny_hub_cache",
    "use_hub_cache",
]
