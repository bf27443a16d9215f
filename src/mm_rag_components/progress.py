"""One switch for progress bars: shown for long work the user started, quiet while models load.

Long work — ingesting, embedding many inputs, precomputing features, scoring hundreds of
candidates, training, evaluating — shows a tqdm bar through :func:`progress_bar`. Loading or
saving a model (transformers' "Loading weights" / "Writing model shards", the hub's file bars)
happens inside :func:`quiet_loading`, so it prints nothing between a program's own lines.

The switch, :func:`set_progress` or the environment variable ``MMRAG_PROGRESS``:

* unset (``None``, the default): long work shows its bar when stderr is a terminal; loading is quiet
  (a hub *download* still shows its bar on a terminal);
* ``1`` / ``True``: every bar, model loading included, wherever stderr goes;
* ``0`` / ``False``: no bar at all.

A ``show_progress=`` argument of a single call wins over the switch for that call.
"""

from __future__ import annotations

import contextlib
import importlib
import logging
import os
import threading
import warnings
from collections.abc import Iterator
from typing import Any

from .errors import ConfigError

logger = logging.getLogger(__name__)

ENV_VAR = "MMRAG_PROGRESS"
_ON = {"1", "true", "yes", "on"}
_OFF = {"0", "false", "no", "off"}
#: The hub's download bars, left on (terminal only) while a model loads quietly: a download is long work.
_DOWNLOAD_GROUPS = ("huggingface_hub.http_get", "huggingface_hub.xet_get", "huggingface_hub.snapshot_download")

_setting: bool | None = None
_explicit = False  # set_progress was called (it then wins over the environment)
_lock = threading.Lock()
_depth = 0
_saved: tuple[bool, dict[str, bool]] | None = None


def set_progress(enabled: bool | None) -> None:
    """Switch progress bars on (``True``), off (``False``), or back to the default (``None``:
    the ``MMRAG_PROGRESS`` variable if set, else bars for long work on a terminal only)."""
    global _setting, _explicit
    if enabled is not None and not isinstance(enabled, bool):
        raise ConfigError(f"set_progress takes True, False or None, got {enabled!r}")
    _setting, _explicit = enabled, enabled is not None


def progress_enabled() -> bool | None:
    """The switch: ``True`` (every bar), ``False`` (none) or ``None`` (the default)."""
    if _explicit:
        return _setting
    raw = os.environ.get(ENV_VAR, "").strip().lower()
    if raw in _ON:
        return True
    if raw in _OFF:
        return False
    if raw:
        logger.warning("%s=%r is not one of 1/0, true/false, yes/no, on/off; using the default", ENV_VAR, raw)
    return None


@contextlib.contextmanager
def progress_setting(enabled: bool | None) -> Iterator[None]:
    """:func:`set_progress` for a block, the previous setting restored after it."""
    global _setting, _explicit
    before = (_setting, _explicit)
    set_progress(enabled)
    try:
        yield
    finally:
        _setting, _explicit = before


def progress_bar(show: bool | None = None, **tqdm_kwargs: Any) -> Any:
    """A tqdm bar for long work: shown when ``show`` (else the switch) is True, never when it is
    False, and by default only when stderr is a terminal."""
    from tqdm.auto import tqdm

    choice = progress_enabled() if show is None else bool(show)
    return tqdm(disable=None if choice is None else not choice, **tqdm_kwargs)


@contextlib.contextmanager
def quiet_loading() -> Iterator[None]:
    """Load or save models inside this block: transformers' and the hub's progress bars are off
    (hub downloads excepted) and restored after it, unless the switch is on. Safe to nest and to
    use from several threads (the bars come back when the last block ends)."""
    global _depth, _saved
    if progress_enabled() is True or _hub_bars_forced():
        yield
        return
    with _lock:
        if _depth == 0:
            _saved = _silence()
        _depth += 1
    try:
        yield
    finally:
        with _lock:
            _depth -= 1
            if _depth == 0 and _saved is not None:
                _restore(*_saved)
                _saved = None


def _hub_bars_forced() -> bool:
    """``HF_HUB_DISABLE_PROGRESS_BARS=0``: the user wants the hub's bars whatever we do."""
    from huggingface_hub import constants

    return constants.HF_HUB_DISABLE_PROGRESS_BARS is False


def _silence() -> tuple[bool, dict[str, bool]]:
    from huggingface_hub import constants
    hub_tqdm = importlib.import_module("huggingface_hub.utils.tqdm")  # the module (the package exports a class of that name)
    from transformers.utils import logging as hf_logging

    saved = (hf_logging.is_progress_bar_enabled(), dict(hub_tqdm.progress_bar_states))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the hub warns when its environment variable decides
        hf_logging.disable_progress_bar()  # transformers' bars, and the hub's
        if constants.HF_HUB_DISABLE_PROGRESS_BARS is not True:
            for group in _DOWNLOAD_GROUPS:
                hub_tqdm.enable_progress_bars(group)
    return saved


def _restore(transformers_bars: bool, hub_states: dict[str, bool]) -> None:
    hub_tqdm = importlib.import_module("huggingface_hub.utils.tqdm")  # the module (the package exports a class of that name)
    from transformers.utils import logging as hf_logging

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        (hf_logging.enable_progress_bar if transformers_bars else hf_logging.disable_progress_bar)()
    hub_tqdm.progress_bar_states.clear()
    hub_tqdm.progress_bar_states.update(hub_states)


__all__ = ["ENV_VAR", "progress_bar", "progress_enabled", "progress_setting", "quiet_loading", "set_progress"]
