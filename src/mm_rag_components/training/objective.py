"""The training objective: exactly what :class:`~mm_rag_components.scoring.transformers_scorer.TransformersScorer` reads.

A pair's prompt comes from the scorer's own :class:`~mm_rag_components.scoring.prompt_builder.PromptBuilder`
(same template, instruction, neutralisation, truncation, answer tokens) and, for images, the
model family's own processor inputs (the scorer's reference path). The loss is the cross-entropy
over the two answer logits ``(z_yes, z_no)`` at the answer position (the last prompt token):
``-log softmax([z_yes, z_no])[label == 1 ? yes : no]`` = the log-loss of the score
``sigmoid(z_yes − z_no)`` the scorer reports.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from ..errors import ConfigError, MediaError
from ..media import load_image_with_hash
from ..scoring.prompt_builder import PROMPT_TOO_LONG
from .data import Example


@dataclass
class Encoded:
    """One pair ready for the model: token ids (text-only models) or processor tensors (VLMs)."""

    label: int
    ids: list[int] = field(default_factory=list)
    inputs: dict[str, Any] | None = None


class PairEncoder:
    """Turns :class:`~.data.Example` pairs into model inputs with a (loaded) ``TransformersScorer``."""

    def __init__(self, scorer: Any) -> None:
        self.scorer = scorer
        self.family = scorer.family
        self.prompts = scorer.prompts
        self.yes_id, self.no_id = scorer.yes_id, scorer.no_id
        if self.yes_id is None:  # a model scored by its own head (jina-reranker-m0)
            raise ConfigError(f"training learns yes/no answers; template {scorer.template.name!r} scores with the model's own head")
        self.pad_id = scorer.tokenizer.pad_token_id if scorer.tokenizer.pad_token_id is not None else 0

    def check(self, examples: Sequence[Example]) -> None:
        """Refuse image pairs for a text-only model (one line)."""
        if not self.family.multimodal:
            bad = next((e for e in examples if e.has_image), None)
            if bad is not None:
                raise ConfigError(f"{self.scorer.name} is a text-only model; pair of item {bad.group!r} has an image")

    def encode(self, example: Example) -> Encoded | None:
        """The pair's inputs, or ``None`` when its prompt cannot fit ``max_length``."""
        images = {}
        for label, path in (("query", example.query_image), ("document", example.doc_image)):
            if path is not None:
                try:
                    images[label] = load_image_with_hash(path, max_pixels=self.scorer.max_pixels).image
                except MediaError as exc:
                    raise MediaError(f"training pair of item {example.group!r}: {exc}") from exc
        expansions = None
        if self.family.multimodal:
            expansions = {k: self.family.layout(im).ids for k, im in images.items()}
        prompt = self.prompts.build(example.query_text, "query" in images, example.doc_text, "document" in images, expansions=expansions)
        if prompt.flag == PROMPT_TOO_LONG:
            return None
        if not self.family.multimodal:
            return Encoded(example.label, ids=list(prompt.ids))
        inputs = self.family.reference_inputs(prompt.text, [images[label] for label in prompt.images])
        return Encoded(example.label, inputs=dict(inputs))

    # forward ---------------------------------------------------------------------------------
    def logits(self, model: Any, batch: Sequence[Encoded]) -> Any:
        """``(n, 2)`` tensor of ``(z_yes, z_no)`` at each pair's answer position."""
        import torch

        from ..scoring.families.base import to_device

        device, dtype = model.device, model.dtype
        if batch and batch[0].inputs is None:  # text: one left-padded batch, explicit positions
            width = max(len(e.ids) for e in batch)
            ids = torch.full((len(batch), width), self.pad_id, dtype=torch.long)
            mask = torch.zeros((len(batch), width), dtype=torch.long)
            for row, e in enumerate(batch):
                ids[row, width - len(e.ids):] = torch.tensor(e.ids)
                mask[row, width - len(e.ids):] = 1
            positions = (mask.cumsum(-1) - 1).clamp(min=0)
            out = model(input_ids=ids.to(device), attention_mask=mask.to(device), position_ids=positions.to(device), logits_to_keep=1)
            last = out.logits[:, -1]
        else:  # VLM: the processor's tensors, one pair per forward
            rows = []
            for e in batch:
                assert e.inputs is not None
                rows.append(model(**to_device(e.inputs, device, dtype), logits_to_keep=1).logits[0, -1])
            last = torch.stack(rows)
        return last[:, [self.yes_id, self.no_id]].float()


def pair_loss(answer_logits: Any, labels: Sequence[int]) -> Any:
    """Mean cross-entropy over ``(z_yes, z_no)``: target ``yes`` for label 1, ``no`` for 0."""
    import torch
    import torch.nn.functional as F

    target = torch.tensor([0 if y == 1 else 1 for y in labels], device=answer_logits.device)
    return F.cross_entropy(answer_logits, target)


__all__ = ["Encoded", "PairEncoder", "pair_loss"]
