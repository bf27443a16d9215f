"""Scoring heads: the last position's hidden state → log-odds of relevance.

* :class:`YesNoHead` — the two answer rows of the model's output layer: ``z_yes − z_no``, so that
  ``sigmoid`` of it is ``softmax([z_yes, z_no])[yes]`` (never P(yes) over the vocabulary).
* :class:`ScoreHead` — a reranker trained with its own head on the last hidden state instead of
  answer words. jina-reranker-m0 (``JinaVLForRanking``, a Qwen2-VL) scores
  ``sigmoid(W2 · relu(W1 · h + b1) + b2 − 2.65)`` where ``h`` is the final (normed) hidden state of
  its score token; the head's weights (``score.0.*``, ``score.2.*``) are read from the
  checkpoint's safetensors — no remote code runs — and the log-odds are everything inside the
  sigmoid.

:data:`SCORE_HEADS` maps the checkpoint architectures that have such a head to their logit bias
(a constant of the model's own modeling code).
"""

from __future__ import annotations

import contextlib
import json
import logging
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from ..errors import ModelError

#: Checkpoint ``architectures`` scored by their own head → the bias subtracted before the sigmoid.
SCORE_HEADS: dict[str, float] = {"JinaVLForRanking": 2.65}
_KEYS = ("score.0.weight", "score.0.bias", "score.2.weight", "score.2.bias")


def score_head_bias(config: Any) -> float | None:
    """The logit bias of the score head a checkpoint's config declares, or ``None`` (yes/no)."""
    for architecture in getattr(config, "architectures", None) or ():
        if architecture in SCORE_HEADS:
            return SCORE_HEADS[architecture]
    return None


def check_head(name: str, template: Any, config: Any) -> float | None:
    """The score head's logit bias (``None``: yes/no answers), after checking that ``template``
    is made for the way the model scores; a mismatch is a :class:`ModelError` saying what to use."""
    bias = score_head_bias(config)
    if (bias is None) == (template.head == "yes_no"):
        return bias
    architectures = ", ".join(getattr(config, "architectures", None) or ["?"])
    if template.head == "yes_no":
        from .templates import BUILTIN_TEMPLATES

        own = next(t.name for t in BUILTIN_TEMPLATES.values() if t.head != "yes_no")
        raise ModelError(f"{name} ({architectures}) scores with its own head, not yes/no answers: use template={own!r} "
                         f"(template {template.name!r} would read answer words it was not trained on)")
    raise ModelError(f"template {template.name!r} needs a model with its own score head ({', '.join(SCORE_HEADS)}); "
                     f"{name} is {architectures}")


class YesNoHead:
    """``z_yes − z_no`` from the output layer's two answer rows (its bias and a final logit
    soft-capping, e.g. Gemma's, included)."""

    def __init__(self, model: Any, yes_id: int, no_id: int) -> None:
        import torch

        head = model.get_output_embeddings()
        rows = torch.tensor([yes_id, no_id], device=head.weight.device)
        self.weight = head.weight.index_select(0, rows)
        bias = getattr(head, "bias", None)
        self.bias = bias.index_select(0, rows) if bias is not None else None
        self.softcap = getattr(getattr(model.config, "text_config", model.config), "final_logit_softcapping", None)

    def __call__(self, hidden: Any) -> Any:
        import torch

        logits = hidden.to(self.weight.dtype) @ self.weight.T
        if self.bias is not None:
            logits = logits + self.bias
        if self.softcap:
            logits = torch.tanh(logits / self.softcap) * self.softcap
        logits = logits.float()
        return logits[:, 0] - logits[:, 1]


class ScoreHead:
    """``W2 · relu(W1 · h + b1) + b2 − logit_bias``: the log-odds whose sigmoid is the score."""

    def __init__(self, tensors: dict[str, Any], logit_bias: float, hidden_size: int) -> None:
        w1, b1, w2, b2 = (tensors[k] for k in _KEYS)
        expected = {"score.0.weight": (hidden_size, hidden_size), "score.0.bias": (hidden_size,),
                    "score.2.weight": (1, hidden_size), "score.2.bias": (1,)}
        for key, shape in expected.items():
            if tuple(tensors[key].shape) != shape:
                raise ModelError(f"score head weight {key} has shape {tuple(tensors[key].shape)}, expected {shape}")
        self.w1, self.b1, self.w2, self.b2 = w1, b1, w2, b2
        self.logit_bias = float(logit_bias)

    def to(self, device: Any, dtype: Any) -> ScoreHead:
        for name in ("w1", "b1", "w2", "b2"):
            setattr(self, name, getattr(self, name).to(device, dtype))
        return self

    def __call__(self, hidden: Any) -> Any:
        import torch

        inner = torch.relu(hidden.to(self.w1.dtype) @ self.w1.T + self.b1)
        return (inner @ self.w2.T + self.b2).float()[:, 0] - self.logit_bias

    @classmethod
    def from_checkpoint(cls, source: str, logit_bias: float, hidden_size: int) -> ScoreHead:
        """The head's weights from the checkpoint's safetensors (a directory, or a hub name whose
        weights are cached: the model has loaded)."""
        from safetensors import safe_open

        folder = _checkpoint_folder(source)
        tensors: dict[str, Any] = {}
        for file in _weight_files(folder):
            with safe_open(str(file), framework="pt") as handle:
                for key in set(_KEYS) & set(handle.keys()):
                    tensors[key] = handle.get_tensor(key)
        missing = [k for k in _KEYS if k not in tensors]
        if missing:
            raise ModelError(f"{source} declares a score head but its weights lack {', '.join(missing)}")
        return cls(tensors, logit_bias, hidden_size)


class _HeadKeysReport(logging.Filter):
    """Drops transformers' load report when all it says is that the ``score.*`` weights were not
    loaded into the generic class: they are the head, read by :class:`ScoreHead`."""

    _ROW = re.compile(r"^\s*([^|]+?)\s*\|\s*([A-Z]+)\s*\|")

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        if "LOAD REPORT" not in message:
            return True
        rows = [m.groups() for m in map(self._ROW.match, message.splitlines()) if m]
        return not rows or not all(key.startswith("score.") and status == "UNEXPECTED" for key, status in rows)


@contextlib.contextmanager
def head_keys_expected() -> Iterator[None]:
    """Load a score-head checkpoint inside this block: its ``score.*`` weights are no news."""
    logger = logging.getLogger("transformers.modeling_utils")
    quiet = _HeadKeysReport()
    logger.addFilter(quiet)
    try:
        yield
    finally:
        logger.removeFilter(quiet)


def _checkpoint_folder(source: str) -> Path:
    path = Path(source).expanduser()
    if path.is_dir():
        return path
    from huggingface_hub import snapshot_download

    try:  # the model itself has just loaded, so its weight files are in the cache
        return Path(snapshot_download(source, allow_patterns=["*.safetensors", "*.safetensors.index.json"],
                                      local_files_only=True))
    except Exception as exc:  # noqa: BLE001 - any hub failure is one plain error
        raise ModelError(f"cannot find the weight files of {source} to read its score head: {exc}") from exc


def _weight_files(folder: Path) -> list[Path]:
    """The safetensors files holding the head: those the index names for ``score.*``, else all."""
    index = folder / "model.safetensors.index.json"
    if index.is_file():
        weight_map = json.loads(index.read_text(encoding="utf-8")).get("weight_map", {})
        return sorted({folder / weight_map[k] for k in _KEYS if k in weight_map})
    files = sorted(folder.glob("*.safetensors"))
    if not files:
        raise ModelError(f"{folder} holds no .safetensors weights to read the score head from")
    return files


__all__ = ["SCORE_HEADS", "ScoreHead", "YesNoHead", "check_head", "head_keys_expected", "score_head_bias"]
