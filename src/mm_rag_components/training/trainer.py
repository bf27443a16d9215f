"""Fine-tune a chat LM / VLM into a yes/no reranker that ``TransformersScorer`` loads by path.

:func:`train_reranker` runs the loop (seeded order, gradient accumulation, linear warm-up/decay,
a tqdm bar with the loss, checkpoints and resume — :mod:`.checkpoint`, never a pickle), saves the model (LoRA merged, so loading
needs no ``peft``) with its tokenizer/processor, scores the held-out pairs through the normal
scoring path, fits a Platt calibration on them and writes a model card (:mod:`.card`).
"""

from __future__ import annotations

import logging
import math
import random
import re
import shutil
import time
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..errors import ConfigError, ModelError, one_line
from ..hub import model_kwargs, weights_fingerprint
from ..progress import quiet_loading
from .checkpoint import load_checkpoint, save_checkpoint
from .config import TrainConfig
from .data import Example, check_labels, fingerprint
from .lock import LOCK_NAME, output_lock
from .objective import PairEncoder, pair_loss

logger = logging.getLogger(__name__)

VISION_MARKERS = ("vision_model", "vision_tower", "visual.", "vision_encoder")
CHECKPOINT = "checkpoint"
_LAYER = re.compile(r"\.layers\.(\d+)\.")
WEIGHT_SUFFIXES = (".safetensors", ".bin", ".pt", ".pth", ".gguf", ".index.json", ".msgpack", ".h5")


@dataclass
class TrainResult:
    """What a run produced: the model directory, its calibration, the loss curve and metrics."""

    output_dir: Path
    steps: int
    seconds: float
    losses: list[float] = field(default_factory=list)
    metrics: dict[str, Any] = field(default_factory=dict)
    calibration: Any = None
    stopped_early: bool = False


def _seed_all(seed: int) -> None:
    import numpy as np
    import torch

    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def schedule(n_examples: int, config: TrainConfig) -> list[list[int]]:
    """Example indices per optimizer step: a seeded shuffle per epoch, cut into batches."""
    order: list[int] = []
    for epoch in range(config.epochs if config.max_steps is None else 10**9):
        perm = list(range(n_examples))
        random.Random(config.seed * 1000 + epoch).shuffle(perm)
        order += perm
        if config.max_steps is not None and len(order) >= config.max_steps * config.batch_size:
            break
    steps = [order[i:i + config.batch_size] for i in range(0, len(order), config.batch_size)]
    return steps[: config.max_steps] if config.max_steps is not None else steps


def load_trainable(model_path: str | Path, config: TrainConfig) -> tuple[Any, Any]:
    """(scorer, model): the scorer gives the prompt builder and answer ids; the model is loaded
    by the same family class, in float32, vision tower frozen, LoRA wrapped when asked."""
    import torch
    import transformers

    from ..scoring.transformers_scorer import TransformersScorer

    scorer = TransformersScorer(model_path, template=config.template, instruction=config.instruction,
                                max_length=config.max_length, device=config.device or "cpu", fast=False)
    family = scorer.family  # loads tokenizer/processor; a ModelError names the problem
    try:
        with quiet_loading():
            model = getattr(transformers, family.model_class).from_pretrained(str(model_path), dtype=torch.float32, **model_kwargs(scorer.load_options))
    except Exception as exc:  # noqa: BLE001
        raise ModelError(f"cannot load model {str(model_path)!r}: {one_line(exc)}") from exc
    model.to(config.device or "cpu")
    if config.freeze_vision:
        for name, param in model.named_parameters():
            if any(marker in name for marker in VISION_MARKERS):
                param.requires_grad_(False)
    if config.train_layers is not None:
        _train_top_layers(model, config.train_layers)
    if config.method == "lora":
        model = _lora(model, config)
    if not any(p.requires_grad for p in model.parameters()):
        raise ConfigError("nothing to train: every parameter is frozen")
    return scorer, model


def _layer_index(name: str) -> int | None:
    """The decoder-layer index in a parameter/module name (``….layers.7.…``), vision excluded."""
    match = _LAYER.search(name)
    if match is None or any(marker in name for marker in VISION_MARKERS):
        return None
    return int(match.group(1))


def _train_top_layers(model: Any, k: int) -> None:
    """Freeze everything but the last ``k`` decoder layers and the final norm (a speed option:
    the backward pass stops at the first trainable layer)."""
    indices = {i for name, _ in model.named_parameters() if (i := _layer_index(name)) is not None}
    if not indices:
        raise ConfigError("train_layers: cannot find the decoder layers of this model")
    first = max(indices) + 1 - k
    for name, param in model.named_parameters():
        index = _layer_index(name)
        top = index is not None and index >= first
        final_norm = index is None and name.endswith("norm.weight") and not any(m in name for m in VISION_MARKERS)
        param.requires_grad_(top or final_norm)


def _lora(model: Any, config: TrainConfig) -> Any:
    try:
        from peft import LoraConfig, get_peft_model
    except ImportError as exc:
        raise ConfigError("method='lora' needs peft (pip install 'mm-rag-components[train]')") from exc
    import torch

    head = model.get_output_embeddings()
    targets = [name for name, module in model.named_modules()
               if isinstance(module, torch.nn.Linear) and module is not head
               and not (config.freeze_vision and any(m in name + "." for m in VISION_MARKERS))
               and (config.train_layers is None or any(p.requires_grad for p in module.parameters()))]
    if not targets:
        raise ConfigError("no linear layer to adapt with LoRA")
    lora = LoraConfig(r=config.lora_r, lora_alpha=config.lora_alpha, lora_dropout=config.lora_dropout, target_modules=targets)
    return get_peft_model(model, lora)


def _trainable(model: Any) -> dict[str, Any]:
    return {name: p for name, p in model.named_parameters() if p.requires_grad}


def _save_checkpoint(folder: Path, model: Any, optimizer: Any, step: int, losses: list[float], identity: dict[str, Any]) -> None:
    save_checkpoint(folder, step=step, losses=losses, identity=identity, params=_trainable(model), optimizer=optimizer)


def _load_checkpoint(folder: Path, model: Any, optimizer: Any, identity: dict[str, Any]) -> tuple[int, list[float]]:
    return load_checkpoint(folder, identity=identity, params=_trainable(model), optimizer=optimizer)


def train_reranker(
    model: str | Path,
    train: Sequence[Example],
    output_dir: str | Path,
    *,
    held_out: Sequence[Example] = (),
    config: TrainConfig | None = None,
    source: dict[str, Any] | None = None,
    evaluate_base: bool = False,
) -> TrainResult:
    """Train ``model`` (a directory or hub name) on ``train`` pairs and save it to ``output_dir``.

    ``held_out`` pairs (other items than ``train``'s) are scored after training with the saved
    model through ``TransformersScorer``; a Platt calibration is fitted on them and saved as
    ``calibration.json``. ``source`` describes the data for the model card. ``evaluate_base``
    also scores them with the untrained model (before/after in the card). One run at a time
    writes to ``output_dir``: another run on it is refused (:mod:`.lock`)."""
    config = config or TrainConfig()
    output = Path(output_dir).expanduser()
    if output.exists() and not output.is_dir():
        raise ConfigError(f"{output} is a file, not a folder")
    check_labels(list(train), "training")
    overlap = {e.group for e in train} & {e.group for e in held_out}
    if overlap:
        raise ConfigError(f"{len(overlap)} item(s) are in both the training and the held-out pairs, e.g. {sorted(overlap)[0]!r}")
    with output_lock(output):  # one run per output folder: a second one is refused, never interleaved
        return _train(model, train, output, held_out, config, source, evaluate_base)


def _train(model: str | Path, train: Sequence[Example], output: Path, held_out: Sequence[Example], config: TrainConfig,
           source: dict[str, Any] | None, evaluate_base: bool) -> TrainResult:
    import torch

    if config.threads:
        torch.set_num_threads(config.threads)
    _seed_all(config.seed)
    scorer, net = load_trainable(model, config)
    encoder = PairEncoder(scorer)
    encoder.check([*train, *held_out])
    base = evaluate_pairs(scorer, held_out) if evaluate_base and held_out else None
    identity = {"model": str(model), "weights": weights_fingerprint(model), "data": fingerprint(list(train)), **config.identity()}

    steps = schedule(len(train), config)
    optimizer = torch.optim.AdamW([p for p in net.parameters() if p.requires_grad], lr=config.learning_rate,
                                  weight_decay=config.weight_decay)
    warmup = int(config.warmup_fraction * len(steps))
    scheduler = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda s: min(1.0, (s + 1) / max(1, warmup)) * max(0.0, (len(steps) - s) / max(1, len(steps) - warmup)))
    checkpoint = output / CHECKPOINT
    start, losses = _load_checkpoint(checkpoint, net, optimizer, identity) if config.resume else (0, [])
    with warnings.catch_warnings():  # fast-forward the schedule of a resumed run (no optimizer step yet)
        warnings.simplefilter("ignore", UserWarning)
        for _ in range(start):
            scheduler.step()
    cache: dict[int, Any] = {}
    bar = _bar(len(steps), start, config.progress)
    began, stopped = time.perf_counter(), False
    net.train()
    step = start
    for step in range(start, len(steps)):
        optimizer.zero_grad(set_to_none=True)
        batch = [i for i in steps[step] if _encoded(encoder, train, i, cache) is not None]
        total = 0.0
        for j in range(0, len(batch), config.micro_batch_size if not encoder.family.multimodal else 1):
            micro = [cache[i] for i in batch[j:j + (config.micro_batch_size if not encoder.family.multimodal else 1)]]
            loss = pair_loss(encoder.logits(net, micro), [e.label for e in micro]) * (len(micro) / max(1, len(batch)))
            loss.backward()
            total += float(loss.detach())
        if batch:
            torch.nn.utils.clip_grad_norm_([p for p in net.parameters() if p.requires_grad], 1.0)
            optimizer.step()
        scheduler.step()
        losses.append(total)
        if bar is not None:
            bar.update(1)
            bar.set_postfix(loss=f"{total:.3f}", avg=f"{sum(losses[-20:]) / len(losses[-20:]):.3f}")
        if config.checkpoint_every and (step + 1) % config.checkpoint_every == 0 and step + 1 < len(steps):
            _save_checkpoint(checkpoint, net, optimizer, step + 1, losses, identity)
        if config.time_budget_s is not None and time.perf_counter() - began > config.time_budget_s:
            stopped = step + 1 < len(steps)
            break
    done = min(step + 1, len(steps)) if steps else 0
    if bar is not None:
        bar.close()
    seconds = time.perf_counter() - began
    if stopped or config.checkpoint_every:
        _save_checkpoint(checkpoint, net, optimizer, done, losses, identity)
    save_model(net, scorer, model, output)
    result = TrainResult(output, done, seconds, losses, stopped_early=stopped)
    del net, optimizer
    _finish(result, config, held_out, base, source, len(train), identity)
    return result


def _encoded(encoder: PairEncoder, train: Sequence[Example], index: int, cache: dict[int, Any]) -> Any:
    if index not in cache:
        cache[index] = encoder.encode(train[index])
    return cache[index]


def _bar(total: int, start: int, enabled: bool) -> Any:
    if not enabled:
        return None
    from ..progress import progress_bar  # shown as mm_rag_components.progress's switch says

    return progress_bar(total=total, initial=start, desc="training", unit="step")


def save_model(net: Any, scorer: Any, source: str | Path, output: Path) -> None:
    """Weights (LoRA merged) + config, and the tokenizer/processor files of ``source``."""
    if hasattr(net, "merge_and_unload"):
        net = net.merge_and_unload()
    output.mkdir(parents=True, exist_ok=True)
    for old in output.iterdir():
        if old.is_file() and old.name.endswith(WEIGHT_SUFFIXES):
            old.unlink()
    folder = Path(str(source)).expanduser()
    if folder.is_dir():  # the processor/tokenizer files exactly as the base model ships them
        for item in folder.iterdir():
            if item.is_file() and not item.name.endswith(WEIGHT_SUFFIXES) and item.name != LOCK_NAME:
                shutil.copy2(item, output / item.name)
    else:
        family = scorer.family
        saver = getattr(family, "processor", None) or family.tokenizer
        saver.save_pretrained(output)
    net.eval()
    net.save_pretrained(output)


def evaluate_pairs(scorer: Any, examples: Sequence[Example]) -> dict[str, Any]:
    """Log-odds of every pair through ``scorer.score`` (the normal path) and pair metrics."""
    from ..types import Candidate, Query
    from .data import by_query
    from .metrics import pair_metrics

    logodds: list[float] = []
    labels: list[int] = []
    for (text, image), pairs in by_query(examples).items():
        candidates = [Candidate(id=str(i), modality="image" if e.doc_image else "text", text=e.doc_text, image_path=e.doc_image)
                      for i, e in enumerate(pairs)]
        for point, e in zip(scorer.score(Query(text=text, image=image), candidates), pairs):
            if math.isfinite(point.logodds):
                logodds.append(float(point.logodds))
                labels.append(e.label)
    return {"logodds": logodds, "labels": labels, **pair_metrics(logodds, labels)}


def _finish(result: TrainResult, config: TrainConfig, held_out: Sequence[Example], base: dict[str, Any] | None,
            source: dict[str, Any] | None, n_train: int, identity: dict[str, Any]) -> None:
    """Held-out scores with the saved model, the calibration, the card."""
    from ..calibration import fit_calibration
    from ..scoring.transformers_scorer import TransformersScorer
    from .card import write_card

    metrics: dict[str, Any] = {"train_pairs": n_train, "held_out_pairs": len(held_out), "steps": result.steps,
                               "train_seconds": round(result.seconds, 1),
                               "first_loss": _mean(result.losses[:10]), "last_loss": _mean(result.losses[-10:])}
    if held_out:
        scorer = TransformersScorer(result.output_dir, template=config.template, instruction=config.instruction,
                                    max_length=config.max_length, device=config.device)
        after = evaluate_pairs(scorer, held_out)
        metrics["held_out"] = {k: v for k, v in after.items() if k not in ("logodds", "labels")}
        if base is not None:
            metrics["held_out_base"] = {k: v for k, v in base.items() if k not in ("logodds", "labels")}
        if len(set(after["labels"])) == 2:
            result.calibration = fit_calibration(after["logodds"], after["labels"], "platt")
            result.calibration.save(result.output_dir / "calibration.json")
            from .metrics import calibrated_metrics

            metrics["held_out_calibrated"] = calibrated_metrics(result.calibration, after["logodds"], after["labels"])
    result.metrics = metrics
    write_card(result, config, source or {}, identity)


def _mean(values: Sequence[float]) -> float | None:
    return round(sum(values) / len(values), 4) if values else None


__all__ = ["TrainResult", "evaluate_pairs", "load_trainable", "save_model", "schedule", "train_reranker"]
