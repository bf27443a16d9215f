"""Options of a training run, validated in one place (each refusal a one-line ``ConfigError``)."""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields
from typing import Any

from ..errors import ConfigError
from ..scoring.templates import DEFAULT_TEMPLATE
from ..validate import boolean, integer, no_unknown, number, one_of, positive_int, text

METHODS = ("full", "lora")


@dataclass
class TrainConfig:
    """How to train.

    ``method``: ``"full"`` fine-tuning or ``"lora"`` (needs ``peft``; merged into the weights when
    saved). ``batch_size`` pairs per optimizer step, ``micro_batch_size`` pairs per forward (text
    models; VLMs take one pair per forward): gradients accumulate over ``batch_size /
    micro_batch_size`` forwards. ``epochs`` or ``max_steps`` (wins when set) bound the run;
    ``time_budget_s`` stops it early (and saves) when exceeded. ``freeze_vision`` keeps the vision
    tower fixed (the projector still learns). ``train_layers`` trains only the last k decoder
    layers and the final norm (faster: the backward pass stops there). ``checkpoint_every`` steps (0: only at the end) a
    checkpoint goes to ``<output>/checkpoint/``; ``resume`` continues from it.
    """

    template: str = DEFAULT_TEMPLATE
    instruction: str | None = None
    method: str = "full"
    learning_rate: float = 2e-5
    weight_decay: float = 0.0
    warmup_fraction: float = 0.1
    epochs: int = 1
    max_steps: int | None = None
    batch_size: int = 8
    micro_batch_size: int = 4
    max_length: int | None = 512
    freeze_vision: bool = True
    train_layers: int | None = None
    lora_r: int = 8
    lora_alpha: int = 16
    lora_dropout: float = 0.0
    seed: int = 0
    checkpoint_every: int = 0
    resume: bool = False
    time_budget_s: float | None = None
    threads: int | None = None
    device: str | None = None
    progress: bool = True

    def __post_init__(self) -> None:
        self.template = text("template", self.template)
        self.instruction = text("instruction", self.instruction, optional=True)
        self.method = one_of("method", self.method, METHODS)
        self.learning_rate = number("learning_rate", self.learning_rate, minimum=0.0, maximum=1.0)
        if self.learning_rate <= 0:
            raise ConfigError(f"learning_rate must be > 0, got {self.learning_rate}")
        self.weight_decay = number("weight_decay", self.weight_decay, minimum=0.0, maximum=1.0)
        self.warmup_fraction = number("warmup_fraction", self.warmup_fraction, minimum=0.0, maximum=0.9)
        self.epochs = positive_int("epochs", self.epochs)
        self.max_steps = positive_int("max_steps", self.max_steps, optional=True)
        self.batch_size = positive_int("batch_size", self.batch_size)
        self.micro_batch_size = positive_int("micro_batch_size", self.micro_batch_size)
        if self.micro_batch_size > self.batch_size:
            raise ConfigError(f"micro_batch_size ({self.micro_batch_size}) must not exceed batch_size ({self.batch_size})")
        self.max_length = integer("max_length", self.max_length, minimum=16, optional=True)
        self.freeze_vision = boolean("freeze_vision", self.freeze_vision)
        self.train_layers = positive_int("train_layers", self.train_layers, optional=True)
        self.lora_r = positive_int("lora_r", self.lora_r)
        self.lora_alpha = positive_int("lora_alpha", self.lora_alpha)
        self.lora_dropout = number("lora_dropout", self.lora_dropout, minimum=0.0, maximum=0.9)
        self.seed = integer("seed", self.seed, minimum=0)
        self.checkpoint_every = integer("checkpoint_every", self.checkpoint_every, minimum=0)
        self.resume = boolean("resume", self.resume)
        self.time_budget_s = number("time_budget_s", self.time_budget_s, minimum=1.0, optional=True)
        self.threads = positive_int("threads", self.threads, optional=True)
        self.device = text("device", self.device, optional=True)
        self.progress = boolean("progress", self.progress)

    @classmethod
    def from_kwargs(cls, **options: Any) -> TrainConfig:
        no_unknown("TrainConfig", options, [f.name for f in fields(cls)])
        return cls(**options)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def identity(self) -> dict[str, Any]:
        """What must match for a resume to continue the same run."""
        keep = ("template", "instruction", "method", "learning_rate", "weight_decay", "warmup_fraction", "epochs",
                "max_steps", "batch_size", "max_length", "freeze_vision", "train_layers", "lora_r", "lora_alpha", "lora_dropout", "seed")
        return {k: getattr(self, k) for k in keep}


__all__ = ["METHODS", "TrainConfig"]
