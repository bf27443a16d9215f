"""The multimodal QA app: a framework-free pipeline (retrieve → rerank → filter → answer) and its
front ends (terminal chat, web chat)."""

from __future__ import annotations

from .._lazy import lazy_attributes

_LAZY: dict[str, str] = {
    "QAPipeline": "pipeline",
    "QATurn": "pipeline",
    "Conversation": "pipeline",
    "SessionStore": "sessions",
    "Admission": "admission",
    "ChatService": "web",
    "create_app": "web",
}

__getattr__, __dir__ = lazy_attributes(__name__, _LAZY)

__all__ = list(_LAZY)
