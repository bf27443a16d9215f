"""Training checkpoints that resuming can read without running anything stored in them.

A checkpoint is a folder holding ``checkpoint.json`` (the step, the losses, the run's identity —
model, data fingerprint, options — and the name and sha256 of its tensor file) and that file,
``state-<step>.pt``: the trainable parameters, the optimizer state and the RNG state, plain
tensors and numbers only. Resuming reads the JSON first (bounded, regular file), refuses a
checkpoint of another run before touching the tensors, checks the file's hash, and loads it with
``torch.load(weights_only=True)``, which builds tensors and plain containers and nothing else.
Checkpoints of older versions (a pickled ``state.pt``) are never loaded. Every refusal is one
:class:`~mm_rag_components.errors.ConfigError` line.
"""

from __future__ import annotations

import errno
import hashlib
import json
import os
import pickle
import re
import stat
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any, BinaryIO

from ..errors import ConfigError, one_line
from ..validate import json_value

FORMAT = "mm-rag-checkpoint-2"
META = "checkpoint.json"
LEGACY = "state.pt"
_TENSORS = re.compile(r"state-\d{1,12}\.pt")
_MAX_META = 64 << 20  # a loss per step for millions of steps


def save_checkpoint(folder: Path, *, step: int, losses: list[float], identity: dict[str, Any], params: dict[str, Any],
                    optimizer: Any) -> None:
    """Write the state after ``step`` (tensors first, then the JSON that names them, each moved
    into place whole, so a crash leaves the previous checkpoint or this one)."""
    import torch

    folder.mkdir(parents=True, exist_ok=True)
    name = f"state-{step}.pt"
    state = {"trainable": {k: v.detach().to("cpu").clone() for k, v in params.items()},
             "optimizer": optimizer.state_dict(), "rng": torch.get_rng_state()}
    digest = _write(folder / name, lambda out: torch.save(state, out))
    meta = {"format": FORMAT, "step": step, "losses": losses, "identity": identity, "tensors": name, "sha256": digest}
    text = json.dumps(meta).encode()
    _write(folder / META, lambda out: out.write(text))
    for old in folder.iterdir():
        if old.name != name and (_TENSORS.fullmatch(old.name) or old.name == LEGACY):
            old.unlink(missing_ok=True)


def load_checkpoint(folder: Path, *, identity: dict[str, Any], params: dict[str, Any], optimizer: Any) -> tuple[int, list[float]]:
    """(step, losses) of the checkpoint in ``folder``, its tensors copied into ``params`` and
    ``optimizer``; ``(0, [])`` when there is none. Anything else is a :class:`ConfigError`."""
    import torch

    meta_path = folder / META
    if not meta_path.exists() and not meta_path.is_symlink():
        if (folder / LEGACY).exists():
            raise ConfigError(f"{folder / LEGACY} is a checkpoint of an older version (a pickle, which is never loaded: "
                              "it could run code); remove it or drop resume")
        return 0, []
    with _open(meta_path, _MAX_META) as file:
        meta = json_value(str(meta_path), file.read())
    step, losses = _check_meta(meta_path, meta)
    if meta["identity"] != identity:
        raise ConfigError(f"{folder} is a checkpoint of a different run (data, model or options differ); remove it or drop resume")
    tensors = folder / meta["tensors"]
    with _open(tensors, None) as file:
        if _sha256(file) != meta["sha256"]:
            raise ConfigError(f"{tensors} does not match {META} (damaged or replaced); remove {folder} or drop resume")
        file.seek(0)
        try:
            state = torch.load(file, map_location="cpu", weights_only=True)
        except pickle.UnpicklingError:
            raise ConfigError(f"{tensors}: refused: it holds more than tensors and plain data (objects that could run "
                              "code when loaded)") from None
        except Exception as exc:  # noqa: BLE001 - a damaged file: say what torch found
            raise ConfigError(f"{tensors}: not a readable checkpoint ({one_line(exc, 200)})") from None
    _restore(tensors, state, params, optimizer)
    return step, losses


def _check_meta(path: Path, meta: object) -> tuple[int, list[float]]:
    if not isinstance(meta, dict) or meta.get("format") != FORMAT:
        raise ConfigError(f"{path}: not an mm-rag checkpoint ({FORMAT})")
    step, losses = meta.get("step"), meta.get("losses")
    if isinstance(step, bool) or not isinstance(step, int) or step < 0:
        raise ConfigError(f"{path}: 'step' must be a whole number >= 0")
    if not isinstance(losses, list) or not all(isinstance(x, (int, float)) and not isinstance(x, bool) for x in losses):
        raise ConfigError(f"{path}: 'losses' must be a list of numbers")
    if not isinstance(meta.get("tensors"), str) or not _TENSORS.fullmatch(meta["tensors"]):
        raise ConfigError(f"{path}: 'tensors' must name a state-<step>.pt file beside it")
    if not isinstance(meta.get("sha256"), str):
        raise ConfigError(f"{path}: 'sha256' is missing")
    return step, [float(x) for x in losses]


def _restore(path: Path, state: object, params: dict[str, Any], optimizer: Any) -> None:
    import torch

    if not isinstance(state, dict) or not isinstance(state.get("trainable"), dict) or not isinstance(state.get("optimizer"), dict) \
            or not isinstance(state.get("rng"), torch.Tensor):
        raise ConfigError(f"{path}: not a training state (trainable, optimizer, rng)")
    trainable = state["trainable"]
    if set(trainable) != set(params):
        raise ConfigError(f"{path}: its parameters do not match this model")
    wrong = [k for k, v in trainable.items() if not isinstance(v, torch.Tensor) or v.shape != params[k].shape]
    if wrong:
        raise ConfigError(f"{path}: parameter {wrong[0]!r} has another shape than this model's")
    try:
        with torch.no_grad():
            for name, value in trainable.items():
                params[name].copy_(value)
        optimizer.load_state_dict(state["optimizer"])
        torch.set_rng_state(state["rng"])
    except (RuntimeError, ValueError, KeyError, TypeError) as exc:
        raise ConfigError(f"{path}: cannot restore the training state ({one_line(exc, 200)})") from None


def _open(path: Path, limit: int | None) -> BinaryIO:
    """A regular file of at most ``limit`` bytes, opened without following a symlink or waiting
    on a FIFO."""
    try:
        handle = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0))
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            raise ConfigError(f"{path}: refused: a symbolic link, not a regular file") from None
        raise ConfigError(f"{path}: cannot read the checkpoint ({exc.strerror or exc})") from None
    info = os.fstat(handle)
    if not stat.S_ISREG(info.st_mode) or (limit is not None and info.st_size > limit):
        os.close(handle)
        raise ConfigError(f"{path}: not a regular file" if not stat.S_ISREG(info.st_mode) else
                          f"{path}: {info.st_size} bytes, more than a checkpoint's {limit}")
    return os.fdopen(handle, "rb")


def _sha256(file: BinaryIO) -> str:
    digest = hashlib.sha256()
    for block in iter(lambda: file.read(1 << 20), b""):
        digest.update(block)
    return digest.hexdigest()


def _write(path: Path, fill: Callable[[BinaryIO], object]) -> str:
    """Write ``path`` whole (a temporary file moved into place) with ``fill(file)``; its sha256."""
    handle, temp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(handle, "w+b") as out:
            fill(out)
            out.flush()
            out.seek(0)
            digest = _sha256(out)
        os.replace(temp, path)
    except BaseException:
        Path(temp).unlink(missing_ok=True)
        raise
    return digest


__all__ = ["FORMAT", "load_checkpoint", "save_checkpoint"]
