"""The report's figures: each one a function of a matplotlib axis and a pandas frame.

They draw only; pages, captions and legends are laid out in ``comet_cl.report.pdf``. Plain
matplotlib (no seaborn): a heatmap is one ``imshow`` plus its annotations, which renders
several times faster than a mesh of cells, and the report draws dozens of them.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import matplotlib
import numpy as np
import pandas as pd
from matplotlib.colors import TwoSlopeNorm

from comet_cl.report.tables import Column, mean_ci

# Okabe-Ito-like "colorblind" palette (seaborn's), then matplotlib's tab20 past 10 strategies.
COLORBLIND = ["#0173b2", "#de8f05", "#029e73", "#d55e00", "#cc78bc", "#ca9161", "#fbafe4",
              "#949494", "#ece133", "#56b4e9"]
MARKERS = "osD^vPX*<>hp"
DASHES = ["-", "--", ":", "-."]
MAX_ANNOTATED = 12  # heatmaps wider than this are not annotated (cells too small to read)


@dataclass(frozen=True)
class Style:
    """How one strategy is drawn in every figure of a group: colour, marker, line style."""

    color: str | tuple
    marker: str
    linestyle: str


def styles(strategies: Sequence[str]) -> dict[str, Style]:
    """A distinct style per strategy for any number of them: up to 10 colour-blind-safe colours,
    up to 20 from tab20, beyond that colours repeat but never with the same marker and dash."""
    n = len(strategies)
    if n <= len(COLORBLIND):
        colors = COLORBLIND
    elif n <= 20:
        colors = [matplotlib.colors.to_hex(c) for c in matplotlib.colormaps["tab20"].colors]
    else:
        cmap = matplotlib.colormaps["turbo"]
        colors = [matplotlib.colors.to_hex(cmap(i / (n - 1))) for i in range(n)]
    return {s: Style(colors[i % len(colors)], MARKERS[i % len(MARKERS)],
                     DASHES[(i // len(MARKERS)) % len(DASHES)]) for i, s in enumerate(strategies)}


def _padded_limits(lo: float, hi: float, floor: float = 0.0, ceil: float = 100.0) -> tuple[float, float]:
    """Axis limits around the data (5% margin, at least 2 units), clipped to [floor, ceil]."""
    if not np.isfinite(lo) or not np.isfinite(hi):
        return floor, ceil
    pad = max(2.0, 0.05 * (hi - lo))
    return max(floor, lo - pad), min(ceil, hi + pad)


def _dodge(i: int, n: int, width: float) -> float:
    """Horizontal offset of the i-th of n series, so lines that coincide stay visible."""
    return 0.0 if n <= 1 else (i - (n - 1) / 2) * width / (n - 1)


def ci_lines(ax, frame: pd.DataFrame, x: str, y: str, style: dict[str, Style], *,
             dodge: float = 0.0, scale: float = 100.0) -> tuple[float, float]:
    """Per strategy: mean over seeds of ``y`` against ``x`` as a line with its 95% CI band.
    ``dodge``: total horizontal spread of the strategies' points (x units). Returns the y
    range the lines and bands cover."""
    lo, hi = np.inf, -np.inf
    names = [s for s in style if s in set(frame.strategy)]
    for i, strategy in enumerate(names):
        part = frame[frame.strategy == strategy]
        wide = part.pivot_table(index="seed", columns=x, values=y, aggfunc="first")
        mean, half, n = mean_ci(wide.to_numpy() * scale, axis=0)
        xs = wide.columns.to_numpy(dtype=float) + _dodge(i, len(names), dodge)
        st = style[strategy]
        ax.plot(xs, mean, color=st.color, marker=st.marker, linestyle=st.linestyle,
                markersize=4, linewidth=1.3, label=f"{strategy} (n={int(n.max())})")
        band = np.nan_to_num(half)
        ax.fill_between(xs, mean - band, mean + band, color=st.color, alpha=0.15, linewidth=0)
        lo, hi = min(lo, np.nanmin(mean - band)), max(hi, np.nanmax(mean + band))
    return lo, hi


def accuracy_over_stream(ax, seen: pd.DataFrame, style: dict[str, Style]) -> None:
    """Mean accuracy on the experiences seen so far after each experience; joint training
    (trained on everything at once) as a dashed level. The y axis spans the data."""
    cont, joint = seen[~seen.joint], seen[seen.joint]
    lo, hi = ci_lines(ax, cont, "step", "acc", style, dodge=0.3)
    for strategy, part in joint.groupby("strategy", sort=False):
        level = part.groupby("seed").acc.first().mean() * 100
        ax.axhline(level, color=style[strategy].color, linestyle="--", linewidth=1.3,
                   label=f"{strategy}: all data at once (n={part.seed.nunique()})")
        lo, hi = min(lo, level), max(hi, level)
    ax.set_ylim(*_padded_limits(lo, hi))
    ax.xaxis.get_major_locator().set_params(integer=True)
    ax.set(title="Average accuracy on the experiences seen so far",
           xlabel="trained up to experience i (strategies offset sideways to stay visible)",
           ylabel="mean accuracy on experiences 0..i (%)")


def learning_curves(ax, curves: pd.DataFrame, style: dict[str, Style], beta: int) -> None:
    """Accuracy after b = 0..beta minibatches, averaged over experiences (area = LCA_beta)."""
    lo, hi = ci_lines(ax, curves, "minibatch", "acc", style, dodge=0.4)
    ax.set_ylim(*_padded_limits(lo, hi))
    ax.set(title=f"Learning curves: first {beta} minibatches of each experience (area = LCA_{beta})",
           xlabel="minibatches trained on the experience",
           ylabel="accuracy on that experience (%)")


def metric_bars(ax, agg_stream: pd.DataFrame, raw_stream: pd.DataFrame, col: Column,
                style: dict[str, Style], title: str) -> None:
    """Mean over seeds as bars with 95% CI error bars, and each seed as a dot."""
    part = agg_stream[~agg_stream[f"{col.key}_mean"].isna()].reset_index(drop=True)
    means = part[f"{col.key}_mean"] * col.scale
    ax.bar(part.index, means, yerr=part[f"{col.key}_ci"].fillna(0) * col.scale, capsize=4,
           color=[style[s].color for s in part.strategy], edgecolor="black", linewidth=0.5)
    for i, strategy in enumerate(part.strategy):
        seeds = raw_stream.loc[raw_stream.strategy == strategy, col.key] * col.scale
        ax.scatter(np.full(len(seeds), i), seeds, s=12, color="black", zorder=3)
    ax.axhline(0, color="black", linewidth=0.8)
    ax.set_xticks(part.index, part.strategy, rotation=30 if len(part) > 4 else 0,
                  ha="right" if len(part) > 4 else "center")
    ax.set(title=title, xlabel="strategy", ylabel=col.header.replace("\n", " "))


def heatmap(ax, matrix: np.ndarray, *, cmap: str, fmt: str, title: str, xlabel: str,
            ylabel: str, vmin: float | None = None, vmax: float | None = None, norm=None,
            yticklabels: Sequence[str] | None = None):
    """An annotated heatmap (imshow); returns the image for a colour bar."""
    m = np.asarray(matrix, dtype=float)
    image = ax.imshow(m, cmap=cmap, vmin=None if norm else vmin, vmax=None if norm else vmax,
                      norm=norm, aspect="equal", interpolation="nearest")
    rows, cols = m.shape
    if cols <= MAX_ANNOTATED:
        size = 9 if cols <= 6 else 7
        for (i, j), v in np.ndenumerate(m):
            r, g, b, _ = image.cmap(image.norm(v))
            dark = 0.299 * r + 0.587 * g + 0.114 * b < 0.5
            ax.text(j, i, format(v, fmt), ha="center", va="center", fontsize=size,
                    color="white" if dark else "black")
    ax.set_xticks(range(cols))
    ax.set_yticks(range(rows), yticklabels if yticklabels is not None else range(rows))
    ax.grid(False)
    ax.set(title=title, xlabel=xlabel, ylabel=ylabel)
    return image


def accuracy_matrix(ax, cells: pd.DataFrame, title: str):
    """R of one strategy (mean over seeds, %): rows = trained up to, columns = evaluated on."""
    mean = cells.pivot_table(index="row", columns="col", values="acc", aggfunc="mean").to_numpy() * 100
    joint = bool(cells.joint.any())
    return heatmap(ax, mean, vmin=0, vmax=100, cmap="viridis", fmt=".0f", title=title,
                   xlabel="evaluated on experience",
                   ylabel="trained on" if joint else "trained up to experience",
                   yticklabels=["all"] if joint else None)


def overlap_heatmap(ax, cells: pd.DataFrame, title: str):
    """One layer's task x task mask overlap (mean over seeds), coloured as the difference
    from the measured chance level (overlap of unrelated inputs) when there is one: blue
    below, red above, white at chance, the scale spanning the data, not 0-1."""
    mean = cells.pivot_table(index="row", columns="col", values="overlap", aggfunc="mean").to_numpy()
    chance = float(cells.chance.mean())
    if np.isnan(chance):
        return heatmap(ax, mean, cmap="viridis", fmt=".2f", title=title,
                       vmin=float(mean.min()), vmax=float(mean.max()),
                       xlabel="experience (test set)", ylabel="experience (test set)")
    reach = max(float(np.abs(mean - chance).max()), 1e-3)
    norm = TwoSlopeNorm(vcenter=chance, vmin=chance - reach, vmax=chance + reach)
    return heatmap(ax, mean, cmap="RdBu_r", fmt=".2f", title=title, norm=norm,
                   xlabel="experience (test set)", ylabel="experience (test set)")


def sweep_scores(ax, points: pd.DataFrame, style: dict[str, Style]) -> None:
    """Validation accuracy of every sweep point of one stream (mean, 95% CI, seeds as dots),
    one row per point, the chosen point of each strategy ringed."""
    labels = []
    for i, r in enumerate(points.itertuples()):
        mean, half, _ = mean_ci(np.asarray(r.valid_acc) * 100)
        st = style.get(r.strategy, Style("black", "o", "-"))
        ax.errorbar(mean, i, xerr=np.nan_to_num(half), fmt=st.marker, color=st.color, capsize=3)
        ax.scatter(np.asarray(r.valid_acc) * 100, np.full(len(r.valid_acc), i), s=10, color="black",
                   zorder=3)
        if r.chosen:
            ax.scatter([mean], [i], s=160, facecolors="none", edgecolors="black", linewidths=1.5,
                       zorder=4)
        labels.append(f"{r.strategy}: {r.point}")
    ax.set_yticks(range(len(labels)), labels)
    ax.invert_yaxis()
    ax.set(xlabel="validation accuracy (%)", title="Validation sweep (ring: chosen point)")
