"""The small model card (``README.md``) and ``training.json`` written next to a trained model."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from .config import TrainConfig

CARD = "README.md"
RECORD = "training.json"


def _row(name: str, values: dict[str, Any] | None) -> str:
    if not values:
        return ""
    cells = [values.get(k) for k in ("pairs", "log_loss", "accuracy", "auc", "mean_p_relevant", "mean_p_irrelevant", "ece")]
    return f"| {name} | " + " | ".join("–" if v is None else f"{v}" for v in cells) + " |\n"


def write_card(result: Any, config: TrainConfig, source: dict[str, Any], identity: dict[str, Any]) -> Path:
    """Write ``README.md`` (data, template, split, metrics, how to load) and ``training.json``."""
    out = Path(result.output_dir)
    metrics = result.metrics
    calibration = result.calibration.to_dict() if result.calibration is not None else None
    record = {"base_model": identity["model"], "data_fingerprint": identity["data"], "source": source,
              "config": config.to_dict(), "metrics": metrics, "calibration": calibration,
              "stopped_early": result.stopped_early, "losses": [round(x, 5) for x in result.losses]}
    (out / RECORD).write_text(json.dumps(record, indent=2, default=str) + "\n", encoding="utf-8")
    instruction = f", instruction={config.instruction!r}" if config.instruction else ""
    table = ""
    if metrics.get("held_out"):
        table = ("| model | pairs | log-loss | accuracy | AUC | mean p (relevant) | mean p (irrelevant) | ECE |\n"
                 "|---|---|---|---|---|---|---|---|\n"
                 + _row("base (untrained)", metrics.get("held_out_base")) + _row("trained", metrics["held_out"]))
        if metrics.get("held_out_calibrated"):
            cal = metrics["held_out_calibrated"]
            table += f"\nWith calibration.json (fitted on these same held-out pairs): log-loss {cal['log_loss']}, ECE {cal['ece']}.\n"
    split = source.get("split") or "by item (group), seeded"
    text = f"""# Yes/no reranker fine-tuned with mm-rag-components

Base model: `{identity['model']}`. Method: {config.method} fine-tuning{' (LoRA merged into the weights)' if config.method == 'lora' else ''},
{f'only the last {config.train_layers} decoder layers and the final norm trained, ' if config.train_layers else ''}vision tower (if any) {'frozen' if config.freeze_vision else 'trained'}; {result.steps} optimizer steps of {config.batch_size} pairs,
learning rate {config.learning_rate}, seed {config.seed}, {metrics.get('train_seconds')} s of training{' (stopped early by the time budget)' if result.stopped_early else ''}.

**Template:** `{config.template}`{instruction}; max_length {config.max_length}. The prompts were rendered by the same
`PromptBuilder` the scorer uses, and the objective is the cross-entropy over (z_yes, z_no) at the answer
position, i.e. the log-loss of the score `TransformersScorer` reports. Score with the same template.

**Data:** {source.get('description', 'training pairs')}. Training pairs: {metrics.get('train_pairs')}; held-out pairs: {metrics.get('held_out_pairs')}.
**Split:** {split}; no item has pairs on both sides.

## Held-out pairs

{table or 'No held-out pairs.'}
Loss: first 10 steps {metrics.get('first_loss')}, last 10 steps {metrics.get('last_loss')}.

## Use

```python
from mm_rag_components.rerank.pointwise import PointwiseRanker

ranker = PointwiseRanker.create("{out}", template="{config.template}"{instruction},
                                calibration="{out}/calibration.json")  # calibrated p in the results
```

`calibration.json` is a Platt scaling (`p = sigmoid(a·z + b)` on the log-odds z) fitted on the held-out
pairs (`mm_rag_components.calibration.Calibration.load`); leave it out for the raw p(yes).
`training.json` records every option, the data fingerprint, the loss curve and these metrics.
"""
    path = out / CARD
    path.write_text(text, encoding="utf-8")
    return path


__all__ = ["CARD", "RECORD", "write_card"]
