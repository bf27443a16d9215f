"""Decide, without hanging, where a model named by the user can come from.

``huggingface_hub`` retries for over a minute when the hub is unreachable — even for a model
that is cached, while it looks for optional files. Every model-loading class calls
:func:`ensure_loadable` before loading: it raises one plain :class:`ModelError` at once when the
model cannot come from anywhere, and says (``load_offline``) when the loader must be told
``local_files_only=True`` to skip the network. Apps call :func:`locate_model` to decide on a
fallback instead of failing.
"""

from __future__ import annotations

import hashlib
import json
import os
import socket
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal
from urllib.parse import urlparse

from .errors import ModelError

Where = Literal["local", "cached", "hub", "unavailable"]

_TRUE = {"1", "true", "yes", "on"}
#: Seconds a failed reachability probe is remembered (so loading three models probes once).
_UNREACHABLE_TTL = 30.0
_unreachable_until: dict[tuple[str, int], float] = {}


@dataclass(frozen=True)
class ModelLocation:
    """``where`` a model can be loaded from, and a one-line human ``reason``.

    ``load_offline`` is True when the model must be loaded with ``local_files_only=True``: it is
    local, or cached while the hub is offline or unreachable.
    """

    name: str
    where: Where
    reason: str
    load_offline: bool = False

    @property
    def available(self) -> bool:
        return self.where != "unavailable"


def model_kwargs(load_kwargs: dict[str, Any]) -> dict[str, Any]:
    """``load_kwargs`` for a model's ``from_pretrained``: with ``local_files_only`` set, also for
    transformers' optional adapter lookup (``adapter_kwargs``), which does not inherit it and,
    with peft installed, would ask an unreachable hub and retry."""
    if load_kwargs.get("local_files_only"):
        return {**load_kwargs, "adapter_kwargs": {"local_files_only": True}}
    return dict(load_kwargs)


def looks_like_path(name: str) -> bool:
    """True when ``name`` is a filesystem path rather than an ``org/model`` hub id."""
    return (
        Path(name).is_absolute()
        or name.startswith((".", "~"))
        or name.count("/") > 1
        or "\\" in name
        or name.endswith("/")
    )


def hub_offline() -> bool:
    """True when ``HF_HUB_OFFLINE`` / ``TRANSFORMERS_OFFLINE`` is set (environment or hub constant)."""
    if any(os.environ.get(k, "").strip().lower() in _TRUE for k in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE")):
        return True
    try:
        from huggingface_hub import constants
    except ImportError:  # pragma: no cover - a dependency of transformers
        return False
    return bool(getattr(constants, "HF_HUB_OFFLINE", False))


def _probe_target() -> tuple[str, int]:
    """Host and port a connection to the hub goes to first: its proxy when one applies."""
    from urllib.request import getproxies, proxy_bypass

    from huggingface_hub import constants

    url = urlparse(constants.ENDPOINT)
    host = url.hostname or ""
    proxy = getproxies().get(url.scheme or "https")
    if proxy and host and not proxy_bypass(host):
        parsed = urlparse(proxy if "://" in proxy else f"http://{proxy}")
        return parsed.hostname or "", parsed.port or (443 if parsed.scheme == "https" else 80)
    return host, url.port or (443 if url.scheme == "https" else 80)


def hub_reachable(timeout: float = 3.0) -> bool:
    """Whether a TCP connection to the hub endpoint (``HF_ENDPOINT``, or its proxy) opens within ``timeout``.

    A failure is remembered for a few seconds, so several loads in a row probe once.
    """
    target = _probe_target()
    if _unreachable_until.get(target, 0.0) > time.monotonic():
        return False
    try:
        with socket.create_connection(target, timeout=timeout):
            return True
    except (OSError, ValueError):
        _unreachable_until[target] = time.monotonic() + _UNREACHABLE_TTL
        return False


def _cached(name: str) -> bool:
    try:
        from huggingface_hub import snapshot_download

        snapshot_download(name, local_files_only=True)
        return True
    except Exception:  # noqa: BLE001 - any failure here just means "not cached"
        return False


def locate_model(name_or_path: str | Path, *, probe_timeout: float = 3.0, local_files_only: bool = False) -> ModelLocation:
    """Where ``name_or_path`` can be loaded from: a local directory, the HF cache, or the hub.

    Never waits longer than one ``probe_timeout`` connection attempt. ``local_files_only``
    treats the hub as out of reach (as ``from_pretrained(..., local_files_only=True)`` does).
    """
    name = str(name_or_path)
    if not name.strip():
        return ModelLocation(name, "unavailable", "no model name given")
    path = Path(os.path.expanduser(name))  # Path.expanduser raises for '~nosuchuser'
    if path.is_dir():
        return ModelLocation(name, "local", f"local directory {name}", load_offline=True)
    if path.exists():
        return ModelLocation(name, "unavailable", f"{name} is a file, not a model directory")
    if looks_like_path(name):
        return ModelLocation(name, "unavailable", f"no such directory: {name}")
    offline = local_files_only or hub_offline()
    if _cached(name):
        if offline:
            return ModelLocation(name, "cached", f"{name} (found in the Hugging Face cache)", load_offline=True)
        if not hub_reachable(probe_timeout):
            reason = f"{name} (found in the Hugging Face cache; the hub cannot be reached)"
            return ModelLocation(name, "cached", reason, load_offline=True)
        return ModelLocation(name, "cached", f"{name} (found in the Hugging Face cache)")
    if offline:
        why = "local_files_only is set" if local_files_only else "HF_HUB_OFFLINE is set"
        return ModelLocation(name, "unavailable", f"{name} is not cached and {why}")
    if not hub_reachable(probe_timeout):
        return ModelLocation(name, "unavailable", f"{name} is not cached and the Hugging Face hub cannot be reached")
    return ModelLocation(name, "hub", f"{name} (will be downloaded from the Hugging Face hub)")


def ensure_loadable(
    name_or_path: str | Path, *, what: str = "model", local_files_only: bool = False, probe_timeout: float = 3.0
) -> ModelLocation:
    """Check, within one short probe, that ``name_or_path`` can be loaded; else raise :class:`ModelError`.

    Call it before ``from_pretrained`` / ``SentenceTransformer``, and pass
    ``local_files_only=location.load_offline or local_files_only`` to the loader so a cached model
    loads without the hub's retries. ``what`` names the model in the message ("embedding model").
    """
    location = locate_model(name_or_path, probe_timeout=probe_timeout, local_files_only=local_files_only)
    if not location.available:
        hint = "pass a local model directory" if looks_like_path(location.name) else (
            "pass a local model directory, or download it once with the hub reachable (HF_HUB_OFFLINE unset)"
        )
        raise ModelError(f"cannot load {what}: {location.reason}; {hint}")
    return location


def adapter_hint(source: str, *, local_files_only: bool) -> str | None:
    """What to do when ``source`` is a LoRA adapter (``adapter_config.json``: e.g. MonoQwen2-VL)
    rather than a model; ``None`` when it is not one (or cannot be told)."""
    import json

    from transformers.utils import cached_file

    try:
        found = cached_file(source, "adapter_config.json", local_files_only=local_files_only,
                            _raise_exceptions_for_missing_entries=False)
        with open(found, encoding="utf-8") as handle:
            base = json.load(handle).get("base_model_name_or_path") or "its base model"
    except Exception:  # noqa: BLE001 - not an adapter, unreadable, or the hub is unreachable: no hint
        return None
    return (f"it is a LoRA adapter of {base}, not a model: merge it first (peft: PeftModel.from_pretrained(base, "
            "adapter).merge_and_unload().save_pretrained(DIR), the base model's processor saved beside it) and pass DIR")


def weight_files(folder: Path) -> list[tuple[str, int, int]]:
    """(name, size, modification time in ns) of the weight files in model folder ``folder``:
    a rebuilt or retrained model never shows the same list."""
    out = []
    for file in sorted([*folder.glob("*.safetensors"), *folder.glob("*.bin")]):
        stat = file.stat()
        out.append((file.name, stat.st_size, stat.st_mtime_ns))
    return out


def weights_fingerprint(name_or_path: str | Path) -> str | None:
    """A digest of the weights ``name_or_path`` loads, found without loading them or the network:
    a local folder's ``config.json`` and :func:`weight_files`, or the revision of a hub model in
    the local cache; ``None`` when neither is there (a model not downloaded yet)."""
    name = str(name_or_path)
    folder = Path(os.path.expanduser(name))
    try:
        if folder.is_dir():
            config = folder / "config.json"
            digest = hashlib.sha256(config.read_bytes()).hexdigest() if config.is_file() else None
            parts: list[object] = ["folder", digest, weight_files(folder)]
        else:
            from huggingface_hub import try_to_load_from_cache

            found = try_to_load_from_cache(name, "config.json")
            if not isinstance(found, str):
                return None
            parts = ["hub", name, Path(found).parent.name]  # snapshots/<revision>/config.json
    except (OSError, ValueError):  # unreadable, or not a valid hub id
        return None
    return hashlib.sha256(json.dumps(parts).encode()).hexdigest()


__all__ = [
    "ModelLocation", "adapter_hint", "ensure_loadable", "hub_offline", "hub_reachable", "locate_model", "looks_like_path",
    "model_kwargs", "weight_files", "weights_fingerprint",
]
