"""What a component whose work is done by one backend (a scorer, a generator) says about it."""

from __future__ import annotations

from typing import Any


class Backed:
    """``name``, ``remote`` and ``warm_up`` delegated to the backend in attribute :attr:`BACKEND`."""

    #: The attribute holding the backend (``"scorer"``, ``"generator"``).
    BACKEND = "backend"

    @property
    def _backend(self) -> Any:
        return getattr(self, self.BACKEND)

    @property
    def name(self) -> str:
        return str(getattr(self._backend, "name", type(self._backend).__name__))

    @property
    def remote(self) -> bool:
        """Whether the backend works on a server (calls may then overlap: the web chat answers,
        reranks, concurrently)."""
        return bool(getattr(self._backend, "remote", False))

    def warm_up(self) -> None:
        """Load the backend's model now, if it has one (a ``ModelError`` surfaces here)."""
        warm = getattr(self._backend, "warm_up", None)
        if callable(warm):
            warm()


__all__ = ["Backed"]
