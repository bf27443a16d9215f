"""A local transformers model as a generator (the answer stage and the listwise reranker): chat turns in, greedy text out.

:class:`TransformersGenerator` drives a chat VLM (``AutoModelForImageTextToText`` +
``AutoProcessor``) or a text-only causal LM (``AutoModelForCausalLM`` + tokenizer; candidates'
images are then described, not shown). Framework LLMs (LlamaIndex, Haystack, LangChain) have their
generators under ``integrations/``. Heavy libraries load inside methods.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from ..errors import ConfigError, ModelError, one_line
from ..hub import ensure_loadable, model_kwargs
from ..progress import quiet_loading
from ..validate import boolean, dtype_name, no_unknown, positive_int, torch_dtype
from .base import ChatTurn


class TransformersGenerator:
    """A local model by hub name or directory, greedy decoding up to ``max_new_tokens``.

    Nothing loads until :meth:`warm_up` or the first call (then once); a model that cannot load
    raises one :class:`ModelError`. ``system_role=False`` folds the system text into the user turn
    for chat templates without a system role. Calls are serialised by a lock (one model, one
    stream); ``generate(..., stop_event=e)`` stops at the next token once ``e`` is set.
    """

    #: Keyword options (what :meth:`ListwiseRanker.create` forwards here).
    OPTIONS = (
        "device", "dtype", "max_new_tokens", "system_role", "trust_remote_code", "processor_kwargs",
        "model_kwargs", "local_files_only",
    )

    def __init__(
        self,
        model: str | Path,
        *,
        device: str = "cpu",
        dtype: Any = None,
        max_new_tokens: int = 512,
        system_role: bool = True,
        trust_remote_code: bool = False,
        processor_kwargs: dict[str, Any] | None = None,
        model_kwargs: dict[str, Any] | None = None,
        local_files_only: bool = False,
    ) -> None:
        if not isinstance(model, (str, Path)) or not str(model).strip():
            raise ConfigError(f"model must be a hub name or a directory, got {model!r}")
        self.model_name = str(model)
        self.name = self.model_name
        self.device = device
        self.dtype = dtype_name(dtype)
        self.max_new_tokens = positive_int("max_new_tokens", max_new_tokens)
        self.system_role = boolean("system_role", system_role)
        self.trust_remote_code = boolean("trust_remote_code", trust_remote_code)
        self.local_files_only = boolean("local_files_only", local_files_only)
        self.processor_kwargs = dict(processor_kwargs or {})
        self.model_kwargs = dict(model_kwargs or {})
        self._model: Any = None
        self._processor: Any = None
        self._multimodal: bool | None = None
        self._offline: bool | None = None
        self._lock = threading.Lock()

    def config(self) -> dict[str, Any]:
        return {
            "model": self.model_name, "device": self.device, "dtype": self.dtype,
            "max_new_tokens": self.max_new_tokens, "system_role": self.system_role,
            "trust_remote_code": self.trust_remote_code, "processor_kwargs": self.processor_kwargs,
            "model_kwargs": self.model_kwargs, "local_files_only": self.local_files_only,
        }

    @property
    def accepts_images(self) -> bool:
        """True for a VLM; False for a text-only causal LM (reads the config only)."""
        if self._multimodal is None:
            self._multimodal = hasattr(self._config(), "vision_config")
        return self._multimodal

    def warm_up(self) -> None:
        """Load the model and processor once."""
        with self._lock:
            self._load()

    def _kwargs(self) -> dict[str, Any]:
        if self._offline is None:  # fail fast (one probe) when the model cannot come from anywhere
            location = ensure_loadable(self.model_name, what="listwise model", local_files_only=self.local_files_only)
            self._offline = self.local_files_only or location.load_offline
        return {"trust_remote_code": self.trust_remote_code, "local_files_only": self._offline}

    def _config(self) -> Any:
        from transformers import AutoConfig

        try:
            return AutoConfig.from_pretrained(self.model_name, **self._kwargs())
        except Exception as exc:  # noqa: BLE001 - one plain error for any loading failure
            raise ModelError(f"cannot load {self.model_name!r}: {one_line(exc)}") from exc

    def _load(self) -> None:
        if self._model is not None:
            return
        from transformers import AutoModelForCausalLM, AutoModelForImageTextToText, AutoProcessor, AutoTokenizer

        multimodal = self.accepts_images
        dtype = torch_dtype(self.dtype)
        try:
            loader = AutoProcessor if multimodal else AutoTokenizer
            model_class = AutoModelForImageTextToText if multimodal else AutoModelForCausalLM
            with quiet_loading():
                processor = loader.from_pretrained(self.model_name, **self._kwargs(), **self.processor_kwargs)
                model = model_class.from_pretrained(
                    self.model_name, **model_kwargs(self._kwargs()), **({"dtype": dtype} if dtype is not None else {}), **self.model_kwargs
                )
        except Exception as exc:  # noqa: BLE001 - one plain error for any loading failure
            raise ModelError(f"cannot load {self.model_name!r}: {one_line(exc)}") from exc
        if getattr(processor, "chat_template", None) is None:
            raise ModelError(f"{self.model_name!r} has no chat template; the listwise prompt needs one")
        model.to(self.device).eval()
        self._model, self._processor = model, processor

    def to_messages(self, turns: Sequence[ChatTurn]) -> list[dict[str, Any]]:
        """Our chat turns in the transformers chat format (``{"type": "image", "image": PIL}``);
        plain string contents for a text-only model."""
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
        if self._multimodal is False:
            messages = [
                {"role": m["role"], "content": "\n".join(p["text"] for p in m["content"] if p["type"] == "text")}
                for m in messages
            ]
        return messages

    def _inputs(self, turns: Sequence[ChatTurn]) -> dict[str, Any]:
        """Model inputs for ``turns`` (the model must be loaded), on the model's device and dtype."""
        import torch

        inputs = self._processor.apply_chat_template(
            self.to_messages(turns), add_generation_prompt=True, tokenize=True, return_dict=True, return_tensors="pt"
        )
        model_dtype = getattr(self._model, "dtype", None)
        return {
            key: (
                value.to(self.device, dtype=model_dtype)
                if torch.is_tensor(value) and value.is_floating_point() and model_dtype is not None
                else value.to(self.device) if torch.is_tensor(value) else value
            )
            for key, value in inputs.items()
        }

    def _generate_kwargs(self, stop_event: threading.Event | None) -> dict[str, Any]:
        import torch
        from transformers import StoppingCriteria, StoppingCriteriaList

        class _Stop(StoppingCriteria):
            def __call__(self, input_ids: Any, scores: Any, **kwargs: Any) -> Any:
                stop = stop_event is not None and stop_event.is_set()
                return torch.full((input_ids.shape[0],), stop, dtype=torch.bool, device=input_ids.device)

        return {"do_sample": False, "max_new_tokens": self.max_new_tokens, "stopping_criteria": StoppingCriteriaList([_Stop()])}

    def generate(self, turns: Sequence[ChatTurn], *, stop_event: threading.Event | None = None) -> str:
        import torch

        with self._lock:
            self._load()
            inputs = self._inputs(turns)
            prompt_length = inputs["input_ids"].shape[1]
            with torch.inference_mode():
                output = self._model.generate(**inputs, **self._generate_kwargs(stop_event))
            return self._processor.batch_decode(output[:, prompt_length:], skip_special_tokens=True)[0]

    def stream(self, turns: Sequence[ChatTurn]) -> Iterator[str]:
        """The answer's text, piece by piece, as it is generated (greedy, like :meth:`generate`).

        Generation runs in a daemon thread; leaving the iteration early stops it at the next token.
        """
        import torch
        from transformers import TextIteratorStreamer

        with self._lock:
            self._load()
            inputs = self._inputs(turns)
        tokenizer = getattr(self._processor, "tokenizer", self._processor)
        streamer = TextIteratorStreamer(tokenizer, skip_prompt=True, skip_special_tokens=True)
        stop = threading.Event()
        failure: list[BaseException] = []

        def work() -> None:
            try:
                with self._lock, torch.inference_mode():
                    self._model.generate(**inputs, **self._generate_kwargs(stop), streamer=streamer)
            except BaseException as exc:  # noqa: BLE001 - handed to the reading side
                failure.append(exc)
                streamer.end()

        threading.Thread(target=work, name="mm-rag-stream", daemon=True).start()
        try:
            for piece in streamer:
                if piece:
                    yield piece
        finally:
            stop.set()
        if failure:
            raise failure[0]


def generator_or_local(model: str | Path | None, generator: Any, options: dict[str, Any], who: str) -> Any:
    """``generator`` as given (then ``options`` must be empty), or a :class:`TransformersGenerator`
    for ``model`` with ``options`` (only its own :attr:`~TransformersGenerator.OPTIONS`); ``who``
    names the component in the :class:`ConfigError` for an unknown option."""
    if generator is not None:
        no_unknown(f"{who} (generator options apply only with model=)", options)
        return generator
    no_unknown(f"{who} / TransformersGenerator", options, TransformersGenerator.OPTIONS)
    return TransformersGenerator(model, **options)  # type: ignore[arg-type]


__all__ = ["TransformersGenerator", "generator_or_local"]
