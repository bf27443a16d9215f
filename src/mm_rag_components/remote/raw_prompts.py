"""Raw prompts for ``/completions``: the served model's tokenizer and chat template, rendered by
the same :class:`~mm_rag_components.scoring.prompt_builder.PromptBuilder` as the local scorer."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ..errors import ModelError, one_line
from ..progress import quiet_loading
from ..scoring.prompt_builder import PROMPT_TOO_LONG, Prompt, PromptBuilder
from ..scoring.templates import PointwiseTemplate

#: How byte-level BPE (``Ġ``) and SentencePiece (``▁``) write a leading space in a token.
_SPACE_MARKS = ("\u0120", "\u2581")


class RawPrompts:
    """Prompt texts and the exact answer tokens, from a tokenizer name or directory (or a loaded
    tokenizer). A tokenizer without a chat template borrows its processor's (VLM repositories)."""

    def __init__(
        self,
        tokenizer: str | Path | Any,
        template: PointwiseTemplate,
        *,
        instruction: str | None = None,
        max_length: int | None = None,
        gguf_file: str | None = None,
        local_files_only: bool | None = None,
    ) -> None:
        processor = None
        if isinstance(tokenizer, (str, Path)):
            tokenizer, processor = _load(str(tokenizer), gguf_file, bool(local_files_only))
        self.tokenizer = tokenizer
        self.builder = PromptBuilder(tokenizer, template, processor=processor, instruction=instruction, max_length=max_length)
        yes_id, no_id = self.builder.answer_ids()
        self.yes_forms = _forms(tokenizer, yes_id)
        self.no_forms = _forms(tokenizer, no_id)

    def build(self, query_text: str | None, document: str | None) -> Prompt | None:
        """The text-only prompt for one pair (flag ``truncated`` when cut); ``None`` if it cannot fit."""
        prompt = self.builder.build(query_text, False, document, False)
        return None if prompt.flag == PROMPT_TOO_LONG else prompt


def _forms(tokenizer: Any, token_id: int) -> list[str]:
    """The strings a server may print for one token: decoded, and the raw piece with its
    space mark as a space (SentencePiece decoders drop a lone token's leading space)."""
    forms = [tokenizer.decode([token_id])]
    piece = tokenizer.convert_ids_to_tokens(token_id)
    if isinstance(piece, str):
        for mark in _SPACE_MARKS:
            piece = piece.replace(mark, " ")
        forms.append(piece)
    return list(dict.fromkeys(forms))


def _load(name: str, gguf_file: str | None, local_files_only: bool) -> tuple[Any, Any]:
    from transformers import AutoProcessor, AutoTokenizer

    kwargs: dict[str, Any] = {"local_files_only": local_files_only}
    if gguf_file:
        kwargs["gguf_file"] = gguf_file
    try:
        with quiet_loading():
            tokenizer = AutoTokenizer.from_pretrained(name, **kwargs)
    except Exception as exc:  # noqa: BLE001 - one plain error for any loading failure
        raise ModelError(f"cannot load the tokenizer {name!r}: {one_line(exc)}") from exc
    if getattr(tokenizer, "chat_template", None):
        return tokenizer, None
    try:
        with quiet_loading():
            processor = AutoProcessor.from_pretrained(name, **kwargs)
    except Exception:  # noqa: BLE001 - no processor: PromptBuilder says the template is missing
        return tokenizer, None
    return getattr(processor, "tokenizer", tokenizer), processor if getattr(processor, "chat_template", None) else None


__all__ = ["RawPrompts"]
