"""Draw an :class:`~mm_rag_components.eval.report.EvalReport` on a matplotlib ``Figure``
(object API only: no pyplot, no global backend change). The report is read, never imported:
this module knows only the report's fields."""

from __future__ import annotations

from typing import Any

from .names import HELD_OUT, metric_label


def draw(figure: Any, report: Any) -> None:
    """Up to three panels: held-out metrics per system; fusion sweeps; filter precision/recall."""
    filters = [s for s in report.systems if s.kind == "filter"]
    sweeps = [s for s in report.sweeps if s["parameter"] == "fusion_weight"]
    panels = 1 + bool(sweeps) + bool(filters)
    axes = figure.subplots(1, panels, gridspec_kw={"width_ratios": [2.2] + [1.0] * (panels - 1)}) if panels > 1 else [figure.subplots()]
    _metrics_panel(axes[0], report)
    position = 1
    if sweeps:
        _sweep_panel(axes[position], report, sweeps)
        position += 1
    if filters:
        _filter_panel(axes[position], filters)
    handles, labels = axes[0].get_legend_handles_labels()
    figure.legend(handles, labels, loc="lower center", ncol=min(len(labels), 5), fontsize=7, frameon=False)
    figure.subplots_adjust(bottom=0.18 + 0.035 * ((len(labels) - 1) // 5 + 1), wspace=0.3)
    title = f"{report.dataset.get('name')} · {report.dataset.get('task')} · held-out ({report.dataset.get('queries', {}).get(HELD_OUT)} queries)"
    figure.suptitle(title)


def _colours(n: int) -> list[Any]:
    from matplotlib import colormaps

    cmap = colormaps["tab10" if n <= 10 else "tab20"]
    return [cmap(i % cmap.N) for i in range(n)]


def _metrics_panel(ax: Any, report: Any) -> None:
    metrics = list(report.settings.get("metrics", []))
    systems = report.systems
    width = 0.8 / max(len(systems), 1)
    for i, (system, colour) in enumerate(zip(systems, _colours(len(systems)))):
        values = [system.metrics.get(HELD_OUT, {}).get(m) or 0.0 for m in metrics]
        xs = [j - 0.4 + width * (i + 0.5) for j in range(len(metrics))]
        ax.bar(xs, values, width=width, label=system.name, color=colour)
    ax.set_xticks(range(len(metrics)), [metric_label(m) for m in metrics])
    ax.set_ylim(0, 1)
    ax.set_ylabel("held-out")
    ax.set_title("ranking quality per system")
    ax.grid(axis="y", alpha=0.3)


def _sweep_panel(ax: Any, report: Any, sweeps: list[dict[str, Any]]) -> None:
    metric = sweeps[0]["objective"]
    for sweep, colour in zip(sweeps, _colours(len(sweeps))):
        xs = [p["value"] for p in sweep["points"]]
        ax.plot(xs, [p["tune"] for p in sweep["points"]], "--", color=colour, alpha=0.6, label=f"{sweep['system']} (tune)")
        held = [p["held_out"] for p in sweep["points"]]
        if all(h is not None for h in held):
            ax.plot(xs, held, "-o", color=colour, markersize=3, label=f"{sweep['system']} (held-out)")
        ax.axvline(sweep["chosen"], color=colour, linestyle=":", alpha=0.8)
    baseline = next((s for s in report.systems if s.kind == "retriever"), None)
    value = baseline.metrics.get(HELD_OUT, {}).get(metric) if baseline else None
    if value is not None:
        ax.axhline(value, color="black", linewidth=1, label="retriever (held-out)")
    ax.set_xscale("symlog", linthresh=0.05)
    values = sorted({p["value"] for s in sweeps for p in s["points"]})
    ticks = [v for v in (0, 0.1, 1, 10, 100, 1000) if values and v <= values[-1]]
    ax.set_xticks(ticks, [f"{v:g}" for v in ticks])
    ax.set_xlim(left=0)
    ax.set_xlabel("w in retrieval + w·p (dotted: chosen on tune)")
    ax.set_ylabel(metric)
    ax.set_title("fusion sweep")
    ax.legend(fontsize=7)
    ax.grid(alpha=0.3)


def _filter_panel(ax: Any, filters: list[Any]) -> None:
    keys = [("kept_precision", "precision"), ("kept_recall", "recall"), ("kept_f1", "F1")]
    width = 0.8 / len(keys)
    for i, ((key, label), colour) in enumerate(zip(keys, _colours(len(keys)))):
        values = [f.metrics.get(HELD_OUT, {}).get(key) or 0.0 for f in filters]
        xs = [j - 0.4 + width * (i + 0.5) for j in range(len(filters))]
        ax.bar(xs, values, width=width, label=label, color=colour)
    for j, f in enumerate(filters):
        kept = f.metrics.get(HELD_OUT, {}).get("mean_kept")
        if kept is not None:
            ax.annotate(f"{kept:.1f}/q", (j, 1.01), ha="center", va="bottom", fontsize=7)
    names = [f.name.removesuffix("+filter").replace("[", "\n[") for f in filters]
    ax.set_xticks(range(len(filters)), names, fontsize=6.5, rotation=30, ha="right", rotation_mode="anchor")
    ax.set_ylim(0, 1.25)
    ax.set_yticks([0, 0.2, 0.4, 0.6, 0.8, 1.0])
    ax.set_title("filters on each system: kept context")
    ax.legend(fontsize=6.5, loc="upper center", ncol=3, frameon=False)
    ax.grid(axis="y", alpha=0.3)


__all__ = ["draw"]
