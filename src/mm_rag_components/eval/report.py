"""The result of an evaluation run: JSON, a Markdown table and a PNG plot.

Metrics are per split (``held_out``, and ``tune`` for the systems run on it); the table and the
plot show the held-out split, where nothing was tuned.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from ..errors import ConfigError
from .names import HELD_OUT, TUNE, metric_label

KEPT_KEYS = ("kept_precision", "kept_recall", "kept_f1", "mean_kept")


@dataclass
class SystemResult:
    """One system: metrics per split (ranking metrics, plus ``kept_*`` for filters), held-out
    latency per query (ms), its settings and what happened (flags, parse statuses)."""

    name: str
    kind: str
    metrics: dict[str, dict[str, float | None]]
    latency_ms: dict[str, float]
    base: str | None = None
    params: dict[str, Any] = field(default_factory=dict)
    details: dict[str, Any] = field(default_factory=dict)


@dataclass
class EvalReport:
    """Everything a run measured; see :meth:`to_markdown`, :meth:`to_json`, :meth:`plot`, :meth:`save`."""

    dataset: dict[str, Any]
    settings: dict[str, Any]
    systems: list[SystemResult]
    sweeps: list[dict[str, Any]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    timing: dict[str, float] = field(default_factory=dict)

    def system(self, name: str) -> SystemResult:
        for result in self.systems:
            if result.name == name:
                return result
        raise ConfigError(f"no system {name!r} in this report; it has {[s.name for s in self.systems]}")

    def held_out(self, name: str, metric: str) -> float | None:
        """One held-out value, e.g. ``report.held_out("fusion", "ndcg@10")``."""
        return self.system(name).metrics[HELD_OUT].get(metric)

    # ------------------------------------------------------------------ JSON
    def to_dict(self) -> dict[str, Any]:
        return _clean({
            "dataset": self.dataset, "settings": self.settings, "systems": [asdict(s) for s in self.systems],
            "sweeps": self.sweeps, "notes": self.notes, "timing": self.timing,
        })

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> EvalReport:
        """A report from :meth:`to_dict` output (e.g. to redraw a saved run)."""
        try:
            systems = [SystemResult(**s) for s in data["systems"]]
            return cls(data["dataset"], data["settings"], systems, data.get("sweeps", []), data.get("notes", []), data.get("timing", {}))
        except (KeyError, TypeError) as exc:
            raise ConfigError(f"not an evaluation report: {exc}") from exc

    @classmethod
    def load(cls, path: str | Path) -> EvalReport:
        """A report from a JSON file written by :meth:`save`."""
        try:
            return cls.from_dict(json.loads(Path(path).read_text(encoding="utf-8")))
        except ValueError as exc:
            raise ConfigError(f"{path}: not JSON: {exc}") from exc

    def to_json(self, indent: int = 2) -> str:
        return json.dumps(self.to_dict(), indent=indent, ensure_ascii=False, allow_nan=False)

    # ------------------------------------------------------------------ Markdown
    def to_markdown(self) -> str:
        """A heading, the run's settings, the held-out table and the notes."""
        metrics = list(self.settings.get("metrics", []))
        has_filter = any(s.kind == "filter" for s in self.systems)
        d = self.dataset
        lines = [
            f"# Evaluation: {d.get('name')} · {d.get('task')}",
            "",
            f"- held-out: {d.get('queries', {}).get(HELD_OUT)} queries ({d.get('items', {}).get(HELD_OUT)} items); "
            f"tune: {d.get('queries', {}).get(TUNE)} queries ({d.get('items', {}).get(TUNE)} items); split by item, "
            f"seed {self.settings.get('seed')}",
            f"- corpus: {d.get('corpus')} entries ({', '.join(d.get('modalities', []))}); "
            f"top-{self.settings.get('depth', self.settings.get('top_n'))} candidates per query, the same for every system",
        ]
        for role, model in self.settings.get("models", {}).items():
            lines.append(f"- {role}: {model}")
        lines.append(
            f"- fusion weight tuned for {self.settings.get('tune_metric')} and filter thresholds for kept-context F1 "
            "on the tune split; everything below is held-out"
        )
        if self.timing:
            spent = ", ".join(f"{k.removesuffix('_s')} {v:.0f} s" for k, v in self.timing.items())
            lines.append(f"- wall time: {spent}" + (f" ({self.settings['machine']})" if self.settings.get("machine") else ""))
        if self.settings.get("command"):
            lines.append(f"- reproduce: `{self.settings['command']}`")
        lines.append("")
        header = ["system", *(metric_label(m) for m in metrics)]
        if has_filter:
            header += ["kept P", "kept R", "kept/q"]
        header += ["ms mean", "ms p50", "ms p95", "setting"]
        lines += ["| " + " | ".join(header) + " |", "|" + "|".join(["---"] + ["---:"] * (len(header) - 2) + ["---"]) + "|"]
        for s in self.systems:
            values = s.metrics.get(HELD_OUT, {})
            row = [f"`{s.name}`", *(_number(values.get(m)) for m in metrics)]
            if has_filter:
                row += [_number(values.get("kept_precision")), _number(values.get("kept_recall")), _number(values.get("mean_kept"), 1)]
            row += [_number(s.latency_ms.get(k), 0) for k in ("mean_ms", "p50_ms", "p95_ms")]
            row.append(_setting(s))
            lines.append("| " + " | ".join(row) + " |")
        if self.notes:
            lines += ["", *(f"- {note}" for note in self.notes)]
        return "\n".join(lines) + "\n"

    # ------------------------------------------------------------------ plot
    def plot(self, path: str | Path) -> Path:
        """A PNG: held-out metrics per system, the fusion sweeps, and filter precision/recall."""
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure

        from .plot import draw

        figure = Figure(figsize=(15, 5.2), dpi=100)
        FigureCanvasAgg(figure)
        draw(figure, self)
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        figure.savefig(path, format="png", bbox_inches="tight")
        return path

    def save(self, folder: str | Path, stem: str = "report") -> dict[str, Path]:
        """Write ``stem.json``, ``stem.md`` and ``stem.png`` into ``folder``; returns the paths."""
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        paths = {"json": folder / f"{stem}.json", "markdown": folder / f"{stem}.md", "png": folder / f"{stem}.png"}
        paths["json"].write_text(self.to_json() + "\n", encoding="utf-8")
        paths["markdown"].write_text(self.to_markdown(), encoding="utf-8")
        self.plot(paths["png"])
        return paths


def _number(value: Any, digits: int = 3) -> str:
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return "–"
    return f"{value:.{digits}f}"


def _setting(result: SystemResult) -> str:
    how = "tuned" if result.params.get("tuned") else "fixed"
    if result.kind == "fusion":
        return f"w = {result.params.get('fusion_weight'):g} ({how})"
    if result.kind == "filter":
        extra = [f"{k}={v}" for k, v in result.params.items() if k not in {"threshold", "tuned", "score_key"}]
        threshold = result.params.get("threshold")
        text = f"τ = {threshold:.4g} ({how})" if threshold is not None else "no threshold"
        return ", ".join([text, *extra])
    return ""


def _clean(value: Any) -> Any:
    """JSON-ready: NaN/inf become ``None``, tuples lists, paths strings."""
    if isinstance(value, dict):
        return {str(k): _clean(v) for k, v in value.items()}
    if isinstance(value, (list, tuple, set, frozenset)):
        return [_clean(v) for v in value]
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, Path):
        return str(value)
    if value is None or isinstance(value, (str, int, bool)):
        return value
    return str(value)


__all__ = ["EvalReport", "HELD_OUT", "KEPT_KEYS", "SystemResult", "TUNE"]
