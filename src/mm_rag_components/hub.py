"""Decide, without hanging, where a model named by the user can come from.

``huggingface_hub`` retries for over a minute when the hub is unreachable. Apps (the CLI, the
chatbot) call :func:`locate_model` first so they can say in one plain line that a model is not
available and fall back, instead of stalling and printing a stack trace.
"""

from __future__ import annotations

import os
import socket
from dataclasses import dataclass
from pathlib import Path
from typing import Literal
from urllib.parse import urlparse

Where = Literal["local", "cached", "hub", "unavailable"]


@dataclass(frozen=True)
class ModelLocation:
    """``where`` a model can be loaded from, and a one-line human ``reason``."""

    name: str
    where: Where
    reason: str

    @property
    def available(self) -> bool:
        return self.where != "unavailable"


def _offline() -> bool:
    return any(os.environ.get(k, "").lower() in {"1", "true", "yes", "on"} for k in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE"))


def _hub_reachable(timeout: float) -> bool:
    from huggingface_hub import constants

    url = urlparse(constants.ENDPOINT)
    port = url.port or (443 if url.scheme == "https" else 80)
    try:
        with socket.create_connection((url.hostname or "", port), timeout=timeout):
            return True
    except OSError:
        return False


def locate_model(name_or_path: str | Path, *, probe_timeout: float = 3.0) -> ModelLocation:
    """Where ``name_or_path`` can be loaded from: a local directory, the HF cache, or the hub."""
    name = str(name_or_path)
    if Path(name).expanduser().exists():
        return ModelLocation(name, "local", f"local directory {name}")
    if name.startswith((".", "/", "~")) or name.count("/") > 1:  # a path, not an "org/model" hub id
        return ModelLocation(name, "unavailable", f"no such directory: {name}")
    try:
        from huggingface_hub import snapshot_download

        snapshot_download(name, local_files_only=True)
        return ModelLocation(name, "cached", f"{name} (found in the Hugging Face cache)")
    except Exception:  # noqa: BLE001 - any failure here just means "not cached"
        pass
    if _offline():
        return ModelLocation(name, "unavailable", f"{name} is not cached and HF_HUB_OFFLINE is set")
    if not _hub_reachable(probe_timeout):
        return ModelLocation(name, "unavailable", f"{name} is not cached and the Hugging Face hub cannot be reached")
    return ModelLocation(name, "hub", f"{name} (will be downloaded from the Hugging Face hub)")


__all__ = ["ModelLocation", "locate_model"]
