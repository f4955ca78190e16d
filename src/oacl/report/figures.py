"""The report's matplotlib figures (Agg backend); the sections embed them as inline PNGs
(html.png_img)."""

from __future__ import annotations

import numpy as np


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def timings_chart(names: list[str], totals: list[float]):
    """Total wall time per rule, one horizontal bar each."""
    fig, ax = _pyplot().subplots(figsize=(6.5, 0.35 * len(names) + 0.9))
    ax.barh(names, totals, color="#4a78a8")
    ax.set_xlabel("total wall time (s)")
    ax.invert_yaxis()
    return fig


def bar_chart(title: str, sets: list[str], series: list[tuple[str, list, list]]):
    """Accuracy (%) per test set: one bar per (label, means, stds) of ``series``."""
    fig, ax = _pyplot().subplots(figsize=(max(5.0, 0.9 * len(sets) + 1.5), 3.0))
    width = 0.8 / max(1, len(series))
    x = np.arange(len(sets))
    for i, (label, means, stds) in enumerate(series):
        ax.bar(
            x + (i - (len(series) - 1) / 2) * width,
            means,
            width,
            yerr=stds,
            capsize=2,
            label=label,
        )
    ax.set_xticks(x, sets, rotation=25, ha="right")
    ax.set_ylabel("accuracy (%)")
    ax.set_ylim(0, 100)
    ax.set_title(title, fontsize=10)
    ax.legend(fontsize=8)
    ax.grid(axis="y", alpha=0.3)
    return fig


def curves_chart(dataset: str, models: dict):
    """Training loss and kNN accuracy per epoch of each model ({model: metrics records})."""
    fig, (a1, a2) = _pyplot().subplots(1, 2, figsize=(10, 3.2))
    for model, recs in sorted(models.items()):
        xs = [r.get("epoch", i + 1) for i, r in enumerate(recs)]
        a1.plot(
            xs,
            [r.get("loss") if r.get("loss") is not None else np.nan for r in recs],
            marker=".",
            label=model,
        )
        knn = [(x, r["knn_acc"]) for x, r in zip(xs, recs) if r.get("knn_acc") is not None]
        if knn:
            a2.plot(*zip(*knn), marker="o", label=model)
    a1.set(title=f"{dataset}: training loss", xlabel="epoch", ylabel="loss")
    a2.set(title=f"{dataset}: kNN accuracy (val)", xlabel="epoch", ylabel="accuracy")
    for a in (a1, a2):
        a.grid(alpha=0.3)
        if a.lines:
            a.legend(fontsize=7)
    return fig
