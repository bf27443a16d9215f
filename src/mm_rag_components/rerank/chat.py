"""Moved to :mod:`mm_rag_components.generation` (this path still works, with a warning, until 0.3)."""

from .._lazy import moved_attributes

__getattr__ = moved_attributes(__name__, "mm_rag_components.generation")
