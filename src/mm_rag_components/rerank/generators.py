"""Generator backends for the listwise reranker: chat turns (text + images) in, text out.

* :class:`LlamaIndexGenerator` — any LlamaIndex LLM whose chat accepts ``ImageBlock`` s
  (OpenAI, Gemini, Anthropic, Ollama, vLLM … through their LlamaIndex integrations); sync
  ``llm.chat`` and native async ``llm.achat``.
* :class:`TransformersGenerator` — a local ``AutoModelForImageTextToText`` VLM, greedy decoding
  with ``max_new_tokens``; its async path runs the (compute-bound) call in a worker thread.

Heavy libraries are imported inside methods, so importing this module is cheap.
"""

from __future__ import annotations

import asyncio
import io
import threading
from pathlib import Path
from typing import TYPE_CHECKING, Any, Sequence

from ..errors import BackendError, ConfigError, ModelError
from .listwise import ChatTurn

if TYPE_CHECKING:  # pragma: no cover
    from PIL import Image


def encode_image(image: "Image.Image", image_format: str = "PNG") -> tuple[bytes, str]:
    """Encode a PIL image; returns the bytes and their MIME type."""
    image_format = image_format.upper()
    if image_format not in ("PNG", "JPEG", "WEBP"):
        raise ConfigError(f"image_format must be PNG, JPEG or WEBP, got {image_format!r}")
    buffer = io.BytesIO()
    image.save(buffer, format=image_format, **({"quality": 90} if image_format == "JPEG" else {}))
    return buffer.getvalue(), f"image/{image_format.lower()}"


class LlamaIndexGenerator:
    """Answer chat turns with a LlamaIndex LLM (``llm.chat`` / ``llm.achat``).

    Images travel as ``ImageBlock(image=<encoded bytes>)`` between ``TextBlock`` s, in prompt
    order. ``chat_kwargs`` are passed to every call (e.g. ``temperature=0``).
    """

    def __init__(self, llm: Any, *, image_format: str = "PNG", **chat_kwargs: Any) -> None:
        if not callable(getattr(llm, "chat", None)):
            raise ConfigError("llm must be a LlamaIndex LLM with a chat() method")
        self.llm = llm
        self.image_format = image_format.upper()
        if self.image_format not in ("PNG", "JPEG", "WEBP"):
            raise ConfigError(f"image_format must be PNG, JPEG or WEBP, got {image_format!r}")
        self.chat_kwargs = chat_kwargs

    def to_messages(self, turns: Sequence[ChatTurn]) -> list[Any]:
        """Our chat turns as LlamaIndex ``ChatMessage`` s with text and image blocks."""
        from llama_index.core.base.llms.types import ChatMessage, ImageBlock, MessageRole, TextBlock

        messages = []
        for turn in turns:
            blocks: list[Any] = []
            for part in turn.parts:
                if isinstance(part, str):
                    blocks.append(TextBlock(text=part))
                else:
                    data, mimetype = encode_image(part, self.image_format)
                    blocks.append(ImageBlock(image=data, image_mimetype=mimetype))
            messages.append(ChatMessage(role=MessageRole(turn.role), blocks=blocks))
        return messages

    def generate(self, turns: Sequence[ChatTurn]) -> str:
        response = self.llm.chat(self.to_messages(turns), **self.chat_kwargs)
        return _response_text(response)

    async def agenerate(self, turns: Sequence[ChatTurn]) -> str:
        response = await self.llm.achat(self.to_messages(turns), **self.chat_kwargs)
        return _response_text(response)


def _response_text(response: Any) -> str:
    message = getattr(response, "message", None)
    content = getattr(message, "content", None)
    if content is None:
        raise BackendError(f"the LLM returned no text content: {response!r:.200}")
    return str(content)


class TransformersGenerator:
    """A local transformers VLM (``AutoModelForImageTextToText`` + ``AutoProcessor``), greedy.

    ``model`` is a hub name or a local directory; nothing loads until :meth:`warm_up` or the
    first call. ``system_role=False`` folds the system text into the user turn for chat
    templates that have no system role. Calls are serialised by a lock (one model, one stream);
    :meth:`agenerate` runs :meth:`generate` in a worker thread.
    """

    def __init__(
        self,
        model: str | Path,
        *,
        device: str = "cpu",
        dtype: str | None = None,
        max_new_tokens: int = 512,
        system_role: bool = True,
        trust_remote_code: bool = False,
        processor_kwargs: dict[str, Any] | None = None,
        model_kwargs: dict[str, Any] | None = None,
    ) -> None:
        if max_new_tokens < 1:
            raise ConfigError(f"max_new_tokens must be >= 1, got {max_new_tokens}")
        self.model_name = str(model)
        self.device = device
        self.dtype = dtype
        self.max_new_tokens = max_new_tokens
        self.system_role = system_role
        self.trust_remote_code = trust_remote_code
        self.processor_kwargs = dict(processor_kwargs or {})
        self.model_kwargs = dict(model_kwargs or {})
        self._model: Any = None
        self._processor: Any = None
        self._lock = threading.Lock()

    def warm_up(self) -> None:
        """Load the model and processor once."""
        with self._lock:
            self._load()

    def _load(self) -> None:
        if self._model is not None:
            return
        import torch
        from transformers import AutoModelForImageTextToText, AutoProcessor

        try:
            dtype = getattr(torch, self.dtype) if self.dtype else None
        except AttributeError as exc:
            raise ConfigError(f"unknown torch dtype {self.dtype!r}") from exc
        try:
            processor = AutoProcessor.from_pretrained(
                self.model_name, trust_remote_code=self.trust_remote_code, **self.processor_kwargs
            )
            model = AutoModelForImageTextToText.from_pretrained(
                self.model_name,
                trust_remote_code=self.trust_remote_code,
                **({"dtype": dtype} if dtype is not None else {}),
                **self.model_kwargs,
            )
        except (OSError, ValueError, KeyError) as exc:
            raise ModelError(f"cannot load VLM {self.model_name!r}: {exc}") from exc
        if getattr(processor, "chat_template", None) is None:
            raise ModelError(f"{self.model_name!r} has no chat template; the listwise prompt needs one")
        model.to(self.device).eval()
        self._model, self._processor = model, processor

    def to_messages(self, turns: Sequence[ChatTurn]) -> list[dict[str, Any]]:
        """Our chat turns in the transformers chat format (``{"type": "image", "image": PIL}``)."""
        messages: list[dict[str, Any]] = []
        pending_system: list[str] = []
        for turn in turns:
            if turn.role == "system" and not self.system_role:
                pending_system.append(turn.text)
                continue
            content: list[dict[str, Any]] = []
            if pending_system and turn.role == "user":
                content.append({"type": "text", "text": "\n".join(pending_system)})
                pending_system = []
            for part in turn.parts:
                if isinstance(part, str):
                    content.append({"type": "text", "text": part})
                else:
                    content.append({"type": "image", "image": part})
            messages.append({"role": turn.role, "content": content})
        return messages

    def generate(self, turns: Sequence[ChatTurn]) -> str:
        import torch

        with self._lock:
            self._load()
            inputs = self._processor.apply_chat_template(
                self.to_messages(turns),
                add_generation_prompt=True,
                tokenize=True,
                return_dict=True,
                return_tensors="pt",
            )
            model_dtype = getattr(self._model, "dtype", None)
            inputs = {
                key: (
                    value.to(self.device, dtype=model_dtype)
                    if torch.is_tensor(value) and value.is_floating_point() and model_dtype is not None
                    else value.to(self.device) if torch.is_tensor(value) else value
                )
                for key, value in inputs.items()
            }
            prompt_length = inputs["input_ids"].shape[1]
            with torch.inference_mode():
                output = self._model.generate(
                    **inputs, do_sample=False, max_new_tokens=self.max_new_tokens
                )
            new_tokens = output[:, prompt_length:]
            return self._processor.batch_decode(new_tokens, skip_special_tokens=True)[0]

    async def agenerate(self, turns: Sequence[ChatTurn]) -> str:
        """:meth:`generate` in a worker thread (local generation is compute-bound)."""
        return await asyncio.to_thread(self.generate, turns)


__all__ = ["LlamaIndexGenerator", "TransformersGenerator", "encode_image"]
