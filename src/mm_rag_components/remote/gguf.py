"""A GGUF file as a local transformers model directory, for parity with the server serving it.

transformers reads a GGUF (``gguf_file=``, needs the ``gguf`` package) and dequantises its
weights to float32, but refuses to save that model; :func:`dequantised_model_dir` rebuilds a plain
model from its config, loads the dequantised weights and writes a directory (weights, config,
tokenizer with its chat template) that :class:`TransformersScorer` loads by path. The directory is
cached under :func:`cache_root` by the GGUF's sha256, so the conversion runs once per file.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import tempfile
from pathlib import Path

from ..errors import ConfigError, ModelError, one_line
from ..progress import quiet_loading


def cache_root() -> Path:
    """``$MM_RAG_CACHE``, else ``${XDG_CACHE_HOME:-~/.cache}/mm-rag`` (also where
    ``scripts/bootstrap.sh`` keeps the llama-cpp-python wheel it builds)."""
    explicit = os.environ.get("MM_RAG_CACHE")
    if explicit:
        return Path(explicit)
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "mm-rag"


def file_sha256(path: Path, chunk: int = 1 << 20) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while block := handle.read(chunk):
            digest.update(block)
    return digest.hexdigest()


def dequantised_model_dir(gguf_path: str | Path, out_dir: str | Path | None = None) -> Path:
    """A transformers directory with ``gguf_path``'s weights dequantised to float32 (built once)."""
    gguf = Path(gguf_path)
    if not gguf.is_file():
        raise ConfigError(f"{gguf}: no such GGUF file")
    target = Path(out_dir) if out_dir is not None else cache_root() / "gguf" / f"{gguf.stem}-{file_sha256(gguf)[:16]}"
    if (target / "config.json").is_file() and (target / "model.safetensors").is_file():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix=".building-", dir=target.parent))
    try:
        _convert(gguf, work)
        if target.exists():  # built meanwhile by another process, or a partial directory
            shutil.rmtree(target, ignore_errors=True)
        os.replace(work, target)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return target


def _convert(gguf: Path, out: Path) -> None:
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    source = {"pretrained_model_name_or_path": str(gguf.parent), "gguf_file": gguf.name}
    try:
        with quiet_loading():
            tokenizer = AutoTokenizer.from_pretrained(**source)
            loaded = AutoModelForCausalLM.from_pretrained(**source, dtype=torch.float32)
    except Exception as exc:  # noqa: BLE001 - one plain error for any loading failure
        raise ModelError(f"cannot read {gguf} through transformers (needs the gguf package): {one_line(exc)}") from exc
    config = loaded.config
    if hasattr(config, "quantization_config"):
        del config.quantization_config  # the weights below are plain float32
    model = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    model.load_state_dict(loaded.state_dict())
    with quiet_loading():
        model.save_pretrained(out)
        tokenizer.save_pretrained(out)


__all__ = ["cache_root", "dequantised_model_dir", "file_sha256"]
