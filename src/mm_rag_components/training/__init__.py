"""Train your own yes/no reranker (``mm-rag train``).

Pairs come from a captioned folder (hard negatives mined with the project's retriever) or a JSONL
of pairs (:mod:`.data`, :mod:`.mining`); the split is by item. The objective is the scorer's own
quantity: cross-entropy over ``(z_yes, z_no)`` at the answer position of prompts rendered by the
scorer's ``PromptBuilder`` (:mod:`.objective`). :func:`train_reranker` (:mod:`.trainer`) saves a
directory ``TransformersScorer`` / ``PointwiseRanker`` load by path, with ``calibration.json``
and a model card. Heavy modules load on first use of a name.
"""

from __future__ import annotations

from .._lazy import lazy_attributes

_LAZY: dict[str, str] = {
    "Example": "data",
    "read_pairs": "data",
    "split_examples": "data",
    "load_pairs": "sources",
    "pairs_from_task": "sources",
    "write_pairs": "data",
    "mine_pairs": "mining",
    "restrict": "mining",
    "split_task": "mining",
    "PairEncoder": "objective",
    "pair_loss": "objective",
    "TrainConfig": "config",
    "TrainResult": "trainer",
    "train_reranker": "trainer",
    "evaluate_pairs": "trainer",
}
#: The command moved to the CLI package (``mm-rag train``).
_DEPRECATED = {name: ("mm_rag_components.cli.train_commands", name) for name in ("add_train_arguments", "cmd_train")}

__getattr__, __dir__ = lazy_attributes(__name__, _LAZY, _DEPRECATED)

__all__ = list(_LAZY)
