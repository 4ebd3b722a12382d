"""Results folders -> pandas tables -> seaborn figures -> one PDF, plus the tables as CSV.

``build_report(results_dirs, out_pdf)`` reads every run with ``comet_cl.results.iter_runs``,
recomputes each finished run's metrics from its raw records with ``comet_cl.metrics`` (and
checks them against the numbers the run stored), aggregates over seeds (mean and 95%
t-interval) and writes ``out_pdf`` with these CSV files beside it (for ``report.pdf``)::

    report-runs.csv       one row per finished run (seed), unrounded
    report-summary.csv    ACC and forgetting per group x stream x strategy
    report-<stream>.csv   the stream's table: mean, CI and best flag of every column
    report-missing.csv    runs the suite spec asks for that did not finish

Runs made from different suite specs (``suite_hash``) are never pooled: each spec is its own
group, labelled ``"<suite name> (<short hash>)"``. The steps, in order: load -> frame ->
aggregate -> tables -> figures -> pdf.
"""

from __future__ import annotations

import io
import itertools
import textwrap
import warnings
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, replace
from datetime import datetime
from pathlib import Path

import matplotlib
import numpy as np
import pandas as pd
import seaborn as sns
from matplotlib.backends.backend_pdf import PdfPages
from matplotlib.figure import Figure
from pypdf import PdfReader, PdfWriter
from scipy import stats

from comet_cl import __version__, metrics
from comet_cl.results import (
    CHECKPOINT_FILE,
    CONFIG_FILE,
    SUITE_FILE,
    SUMMARY_FILE,
    ResultsError,
    atomic_write_bytes,
    iter_runs,
    read_json,
)

PAGE = (11.69, 8.27)  # A4 landscape, inches
RC = {
    **sns.axes_style("whitegrid"),
    "font.sans-serif": ["DejaVu Sans"],
    "pdf.fonttype": 42,  # TrueType: text stays extractable (pdftotext, pypdf)
    "font.size": 9,
    "axes.titlesize": 10,
    "axes.labelsize": 9,
    "xtick.labelsize": 9,
    "ytick.labelsize": 9,
    "legend.fontsize": 9,
    "figure.titlesize": 11,
}
PALETTE = "colorblind"  # Okabe-Ito-like, safe for the common colour-vision deficiencies
MARKERS = "osD^vPX*"
ROWS_PER_PAGE = 16
STREAMS_PER_SUMMARY_PAGE = 4
MATRICES_PER_PAGE = 6
MAX_ANNOTATED = 12  # heatmaps wider than this are not annotated (cells too small to read)
KEYS = ["group", "stream", "strategy"]
STORED_METRICS = ("acc", "bwt", "forgetting", "fwt", "lca", "steps_to_threshold")  # summary["metrics"]
BEST = "\u25b2"  # ▲
SHORT = "\u2020"  # †
DASH = "\u2014"  # —


class ReportError(Exception):
    """Results that cannot be reported; the message names the folder or file at fault."""


@dataclass(frozen=True)
class ReportResult:
    """What ``build_report`` wrote."""

    pdf: Path
    csvs: list[Path]
    groups: list[str]  # one per suite spec (suite name + short hash)
    missing: int  # rows of the "Missing or unfinished runs" section (report-missing.csv)


@dataclass(frozen=True)
class Column:
    """One column of the per-stream table."""

    key: str
    header: str
    scale: float  # displayed value = stored value * scale
    decimals: int
    better: str | None  # "max", "min" or None (not ranked)
    definition: str
    show_ci: bool = True


COLUMNS = (
    Column("acc", "ACC\n(%)", 100, 1, "max", metrics.METRICS["acc"]),
    Column("bwt", "BWT\n(pp)", 100, 1, "max", metrics.METRICS["bwt"]),
    Column("forgetting", "Forgetting\n(pp)", 100, 1, "min", metrics.METRICS["forgetting"]),
    Column("fwt", "FWT\n(pp)", 100, 1, "max", metrics.METRICS["fwt"]),
    Column("lca", f"LCA_{metrics.BETA}\n(%)", 100, 1, "max", metrics.METRICS["lca"]),
    Column(
        "steps_to_threshold",
        f"Steps to {metrics.THRESHOLD:.0%}\n(minibatches)",
        1,
        1,
        "min",
        metrics.METRICS["steps_to_threshold"],
    ),
    Column(
        "intransigence",
        "Intransigence\n(pp)",
        100,
        1,
        "min",
        metrics.METRICS["intransigence"]
        + "; R_joint = the joint runs' final accuracies, averaged over their seeds",
    ),
    Column("wall_time", "Wall time\n(s)", 1, 1, "min", "Wall time: training seconds (learning-curve probes excluded), summed over experiences"),
    Column("n_params", "Parameters", 1, 0, None, "Parameters: the model's parameter count", False),
)
COLUMN = {c.key: c for c in COLUMNS}


# --------------------------------------------------------------------------------------- load


@dataclass(frozen=True)
class Suite:
    """One suite spec, as a results folder's suite.json gives it."""

    name: str
    hash: str
    spec: dict
    folder: Path

    @property
    def label(self) -> str:
        return group_label(self.name, self.hash)

    def expected(self) -> list[tuple[str, str, int]]:
        """(stream, strategy, seed) of every run the spec asks for, in spec order."""
        try:
            seeds = self.spec["seeds"]
            seeds = range(seeds) if isinstance(seeds, int) else seeds
            streams = [_name(s) for s in self.spec["streams"]]
            strategies = [_name(s) for s in self.spec["strategies"]]
            return [(a, b, int(c)) for a, b, c in itertools.product(streams, strategies, seeds)]
        except (KeyError, TypeError, ValueError) as e:
            raise ReportError(
                f"{self.folder / SUITE_FILE}: its spec does not list seeds, streams and "
                f"strategies ({type(e).__name__}: {e})"
            ) from e


@dataclass(frozen=True)
class Run:
    """One run folder, with the group (suite spec) it was made from."""

    group: str
    stream: str
    strategy: str
    seed: int
    path: Path
    config: dict
    summary: dict | None

    @property
    def key(self) -> tuple[str, str, str, int]:
        return (self.group, self.stream, self.strategy, self.seed)


def group_label(name: str, suite_hash: str) -> str:
    """How a suite spec is named in the report: its name and the first 8 hex of its hash."""
    return f"{name} ({suite_hash[:8]})"


def _name(item: str | dict) -> str:
    """A spec entry's name: the entry itself, its 'name', or (a stream entry) its stream's."""
    if isinstance(item, str):
        return item
    return item["name"] if "name" in item else item["stream"]["name"]


def results_folders(results_dirs: Iterable[Path]) -> list[Path]:
    """The given folders, resolved, each once."""
    folders = list(dict.fromkeys(Path(d).resolve() for d in results_dirs))
    if not folders:
        raise ReportError("no results folder given")
    return folders


def load(folders: Sequence[Path]) -> tuple[list[Suite], list[Run]]:
    """Read every results folder; any unreadable one is an error naming it."""
    suites: dict[str, Suite] = {}
    runs: list[Run] = []
    for folder in folders:
        suite, found = _read_folder(folder)
        suites.setdefault(suite.label, suite)
        runs += found
    return list(suites.values()), runs


def _read_folder(folder: Path) -> tuple[Suite, list[Run]]:
    if not (folder / SUITE_FILE).is_file():
        raise ReportError(f"{folder}: not a comet-cl results folder (no {SUITE_FILE})")
    try:
        meta = read_json(folder / SUITE_FILE)
        suite = Suite(meta["name"], meta["suite_hash"], meta["spec"], folder)
        records = list(iter_runs(folder))
    except ResultsError as e:
        raise ReportError(f"{folder}: unreadable results: {e}") from e
    except (KeyError, TypeError) as e:
        raise ReportError(f"{folder / SUITE_FILE}: lacks name, suite_hash or spec ({e})") from e
    if not records:
        raise ReportError(f"{folder}: no runs (no runs/<stream>/<strategy>/seed-<k>/{CONFIG_FILE})")
    return suite, [_run(r.path, r.config, r.summary) for r in records]


def _run(path: Path, config: dict, summary: dict | None) -> Run:
    try:
        return Run(
            group_label(config["suite"], config["suite_hash"]),
            config["stream"]["name"],
            config["strategy"]["name"],
            int(config["seed"]),
            path,
            config,
            summary,
        )
    except (KeyError, TypeError, ValueError) as e:
        raise ReportError(f"{path / CONFIG_FILE}: lacks suite, stream, strategy or seed ({e})") from e


def dedupe(runs: Sequence[Run]) -> tuple[list[Run], list[dict]]:
    """One run per (group, stream, strategy, seed), a finished one first; the others listed."""
    kept: dict[tuple, Run] = {}
    dropped = []
    for run in sorted(runs, key=lambda r: r.summary is None):  # stable: keeps folder order
        first = kept.setdefault(run.key, run)
        if first is not run:
            dropped.append(_missing_row(run.key, f"duplicate of {first.path} (ignored)", run.path))
    return [r for r in runs if kept[r.key] is r], dropped


# -------------------------------------------------------------------------------------- frame


def _same(stored: float | None, got: float) -> bool:
    stored = float("nan") if stored is None else float(stored)
    return (np.isnan(stored) and np.isnan(got)) or abs(stored - got) <= 1e-9


def run_metrics(run: Run) -> dict[str, float]:
    """The run's headline metrics recomputed from R, R0 and the curves, checked against its
    stored ``summary["metrics"]``: a difference means a corrupted file or an older comet-cl."""
    s = run.summary
    if s["joint"]:  # trained on all data at once: only its final accuracy means anything
        got = dict.fromkeys(STORED_METRICS, float("nan")) | {"acc": metrics.acc(s["R"])}
    else:
        got = metrics.summarize(s["R"], s["R0"], s["curves"], run.config["eval"]["beta"])
    stored = s["metrics"]
    bad = [k for k in STORED_METRICS if not _same(stored.get(k), got[k])]
    if bad:
        detail = ", ".join(f"{k} stored {stored.get(k)} vs recomputed {got[k]:.12g}" for k in bad)
        raise ReportError(
            f"{run.path / SUMMARY_FILE}: stored metrics differ from those recomputed from its "
            f"raw matrices ({detail}); the file is corrupted or was written by another comet-cl"
        )
    return got


def joint_final(runs: Sequence[Run]) -> dict[tuple[str, str], np.ndarray]:
    """R_joint per (group, stream): the joint runs' final accuracies, averaged over seeds."""
    finals: dict[tuple[str, str], list] = {}
    for run in runs:
        if run.summary is not None and run.summary.get("joint"):
            finals.setdefault((run.group, run.stream), []).append(run.summary["R"][-1])
    return {k: np.mean(np.asarray(v, dtype=float), axis=0) for k, v in finals.items()}


def runs_frame(runs: Sequence[Run]) -> pd.DataFrame:
    """One row per finished run: its identity, recomputed metrics, wall time and size."""
    r_joint = joint_final(runs)
    return pd.DataFrame([_run_row(r, r_joint.get((r.group, r.stream))) for r in runs if r.summary])


def _run_row(run: Run, r_joint: np.ndarray | None) -> dict:
    """One finished run's row; a summary lacking a field is an error naming its file."""
    s = run.summary
    try:
        return {"group": run.group, "suite": run.config["suite"],
                "suite_hash": run.config["suite_hash"], "stream": run.stream,
                "strategy": run.strategy, "seed": run.seed, "joint": bool(s["joint"]),
                "experiences": len(s["R"][-1]), **run_metrics(run),
                "intransigence": _intransigence(run, r_joint),
                "wall_time": float(np.sum(s["wall_time"])), "n_params": int(s["n_params"]),
                "path": str(run.path)}
    except (KeyError, TypeError, ValueError, AttributeError, IndexError) as e:
        raise ReportError(f"{run.path / SUMMARY_FILE}: malformed summary ({type(e).__name__}: {e})") from e


def _intransigence(run: Run, r_joint: np.ndarray | None) -> float:
    if r_joint is None or run.summary["joint"]:
        return float("nan")
    try:
        return metrics.intransigence(run.summary["R"], r_joint)
    except ValueError as e:
        raise ReportError(f"{run.path / SUMMARY_FILE}: cannot compare with joint training: {e}") from e


def plan_frame(suites: Sequence[Suite], runs: Sequence[Run]) -> pd.DataFrame:
    """Every run that should exist: the specs' runs, then any other found on disk, in order."""
    rows = [(s.label, *key) for s in suites for key in s.expected()]
    rows += [r.key for r in runs]
    return pd.DataFrame(list(dict.fromkeys(rows)), columns=[*KEYS, "seed"])


def missing_frame(plan: pd.DataFrame, runs: Sequence[Run], dropped: list[dict]) -> pd.DataFrame:
    """Runs of the plan without a summary: unfinished, never started, or duplicates."""
    found = {r.key: r for r in runs}
    rows = []
    for key in plan.itertuples(index=False, name=None):
        run = found.get(key)
        if run is None:
            rows.append(_missing_row(key, "not started (no run folder)", None))
        elif run.summary is None:
            saved = "checkpoint saved" if (run.path / CHECKPOINT_FILE).exists() else "no checkpoint"
            rows.append(_missing_row(key, f"unfinished (no {SUMMARY_FILE}; {saved})", run.path))
    return pd.DataFrame(rows + dropped, columns=[*KEYS, "seed", "status", "path"])


def _missing_row(key: tuple, status: str, path: Path | None) -> dict:
    return dict(zip([*KEYS, "seed"], key), status=status, path="" if path is None else str(path))


# ---------------------------------------------------------------------------------- aggregate


def mean_ci(values, axis: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Mean, half-width of the 95% t-interval (NaN for fewer than 2 values) and n, ignoring NaN."""
    a = np.asarray(values, dtype=float)
    n = np.sum(~np.isnan(a), axis=axis)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN slices give NaN, as wanted
        mean = np.nanmean(a, axis=axis)
        sd = np.nanstd(a, axis=axis, ddof=1)
        half = stats.t.ppf(0.975, n - 1) * sd / np.sqrt(n)
    return mean, np.where(n > 1, half, np.nan), n


def aggregate(raw: pd.DataFrame, plan: pd.DataFrame) -> pd.DataFrame:
    """One row per (group, stream, strategy) of the plan: n finished, n_expected, and the
    mean, CI and best flag of every column."""
    finished = dict(tuple(raw.groupby(KEYS)))
    rows = []
    for key, n_expected in plan.groupby(KEYS, sort=False).size().items():
        sub = finished.get(key, raw.iloc[:0])
        row = dict(zip(KEYS, key), n=len(sub), n_expected=int(n_expected), joint=bool(sub.joint.any()))
        for col in COLUMNS:
            mean, half, _ = mean_ci(sub[col.key])
            row[f"{col.key}_mean"], row[f"{col.key}_ci"] = float(mean), float(half)
        rows.append(row)
    return _mark_best(pd.DataFrame(rows))


def _mark_best(agg: pd.DataFrame) -> pd.DataFrame:
    """Flag the best displayed mean per (group, stream) and column; joint is not ranked."""
    for col in COLUMNS:
        best = pd.Series(False, index=agg.index)
        if col.better is not None:
            for _, part in agg[~agg.joint].groupby(["group", "stream"]):
                shown = (part[f"{col.key}_mean"] * col.scale).round(col.decimals)
                best[part.index] = shown == (shown.max() if col.better == "max" else shown.min())
        agg[f"{col.key}_best"] = best
    return agg


def summary_frame(agg: pd.DataFrame) -> pd.DataFrame:
    """ACC and forgetting per group, stream and strategy (the CSV of the summary page)."""
    cols = [f"{k}_{s}" for k in ("acc", "forgetting") for s in ("mean", "ci")]
    return agg[[*KEYS, "n", "n_expected", *cols]]


# ------------------------------------------------------------------------------------- tables


def _cell(row: pd.Series, col: Column, mark_short: bool = False) -> str:
    """'mean ± CI' at the column's precision, with the best and too-few-seeds marks."""
    mean, half = row[f"{col.key}_mean"] * col.scale, row[f"{col.key}_ci"] * col.scale
    if np.isnan(mean):
        return DASH
    text = f"{mean:,.{col.decimals}f}"
    if col.show_ci:
        text += " \u00b1 " + (DASH if np.isnan(half) else f"{half:,.{col.decimals}f}")
    if row[f"{col.key}_best"]:
        text += f" {BEST}"
    if mark_short and row.n < row.n_expected:
        text += f" {SHORT}"
    return text


def stream_columns(agg_stream: pd.DataFrame, beta: int) -> list[Column]:
    """The stream's columns: LCA at the suite's beta; intransigence only when a joint run
    finished for the stream."""
    has_joint = bool((agg_stream.joint & (agg_stream.n > 0)).any())
    lca = COLUMN["lca"]
    if beta != metrics.BETA:
        lca = replace(lca, header=f"LCA_{beta}\n(%)",
                      definition=f"{lca.definition}; this suite: beta = {beta}")
    return [lca if c.key == "lca" else c for c in COLUMNS
            if c.key != "intransigence" or has_joint]


def stream_table(agg_stream: pd.DataFrame, cols: Sequence[Column]) -> tuple[pd.DataFrame, np.ndarray]:
    """The stream's table as text, and which cells hold a best value."""
    table = pd.DataFrame({"Strategy": agg_stream.strategy,
                          "n": [f"{r.n}/{r.n_expected}" for r in agg_stream.itertuples()]})
    for col in cols:
        table[col.header] = [_cell(r, col) for _, r in agg_stream.iterrows()]
    best = np.column_stack([np.zeros(len(agg_stream), bool)] * 2
                           + [agg_stream[f"{c.key}_best"].to_numpy() for c in cols])
    return table, best


def summary_table(agg_group: pd.DataFrame, streams: Sequence[str]) -> tuple[pd.DataFrame, np.ndarray]:
    """Strategies x (stream ACC, stream forgetting) for the summary page."""
    strategies = list(dict.fromkeys(agg_group.strategy))
    table = pd.DataFrame({"Strategy": strategies})
    best = [np.zeros(len(strategies), bool)]
    for stream in streams:
        part = agg_group[agg_group.stream == stream].set_index("strategy").reindex(strategies)
        for col in (COLUMN["acc"], COLUMN["forgetting"]):
            table[f"{stream}\n{col.header.replace(chr(10), ' ')}"] = [
                DASH if pd.isna(r.n) else _cell(r, col, mark_short=True) for _, r in part.iterrows()]
            best.append(part[f"{col.key}_best"].fillna(False).to_numpy(bool))
    return table, np.column_stack(best)


def missing_table(missing: pd.DataFrame) -> pd.DataFrame:
    """The missing runs with their seeds folded into one row per group, stream, strategy, status."""
    folded = (missing.assign(folder=[str(Path(p).parent) if p else DASH for p in missing.path])
              .groupby([*KEYS, "status"], sort=False)
              .agg(seeds=("seed", lambda s: ", ".join(map(str, sorted(s)))),
                   folder=("folder", lambda f: ", ".join(dict.fromkeys(f)))).reset_index())
    return folded.rename(columns=str.capitalize)[
        ["Group", "Stream", "Strategy", "Seeds", "Status", "Folder"]]


# ------------------------------------------------------------------------------------ figures


def _palette(strategies: Sequence[str]) -> dict[str, tuple[tuple, str]]:
    """A colour and marker per strategy, the same in every figure of a group."""
    colors = sns.color_palette(PALETTE, len(strategies))
    return {s: (colors[i], MARKERS[i % len(MARKERS)]) for i, s in enumerate(strategies)}


def _page(title: str, caption: str | None = None) -> Figure:
    """An A4 landscape page with a title; with a caption, a figure page (constrained layout)."""
    fig = Figure(figsize=PAGE, layout="constrained" if caption else None)
    fig.suptitle(title, x=0.03, ha="left", fontweight="bold")
    if caption:
        fig.text(0.03, 0.945, caption, fontsize=9)
        fig.get_layout_engine().set(rect=(0.01, 0.04, 0.98, 0.9))
    return fig


def _heatmap(ax, matrix, *, vmin: float, vmax: float, cmap: str, fmt: str, title: str,
             xlabel: str, ylabel: str, center: float | None = None, yticklabels="auto"):
    """An annotated heatmap without colour bar (see ``_colorbar``); returns its mesh."""
    m = np.asarray(matrix, dtype=float)
    sns.heatmap(m, ax=ax, vmin=vmin, vmax=vmax, cmap=cmap, center=center, cbar=False,
                square=True, annot=m.shape[1] <= MAX_ANNOTATED, fmt=fmt,
                annot_kws={"fontsize": 9 if m.shape[1] <= 6 else 8}, linewidths=0.5,
                linecolor="white", yticklabels=yticklabels)
    ax.set(title=title, xlabel=xlabel, ylabel=ylabel)
    ax.tick_params(axis="y", rotation=0)
    return ax.collections[0]


def _colorbar(fig: Figure, mesh, axes, label: str, mark: float | None = None) -> None:
    """One colour bar for a page of heatmaps; ``mark`` draws a reference level on it."""
    bar = fig.colorbar(mesh, ax=axes, label=label, shrink=0.7)
    if mark is not None:
        bar.ax.axhline(mark, color="black", linewidth=2)


def _ci_line(ax, x, ys, *, label: str, style: tuple[tuple, str]) -> None:
    """Mean over seeds (rows of ``ys``) as a line, with its 95% CI as a band."""
    mean, half, n = mean_ci(ys, axis=0)
    color, marker = style
    ax.plot(x, mean, color=color, marker=marker, markersize=4, label=f"{label} (n={n.max()})")
    ax.fill_between(x, mean - half, mean + half, color=color, alpha=0.2, linewidth=0)


def _bars(ax, agg_stream: pd.DataFrame, raw_stream: pd.DataFrame, col: Column,
          palette: dict, title: str) -> None:
    """Mean over seeds as bars with 95% CI error bars, and each seed as a dot."""
    part = agg_stream[~agg_stream[f"{col.key}_mean"].isna()].reset_index(drop=True)
    means = part[f"{col.key}_mean"] * col.scale
    ax.bar(part.index, means, yerr=part[f"{col.key}_ci"].fillna(0) * col.scale, capsize=4,
           color=[palette[s][0] for s in part.strategy], edgecolor="black", linewidth=0.5)
    for i, strategy in enumerate(part.strategy):
        seeds = raw_stream.loc[raw_stream.strategy == strategy, col.key] * col.scale
        ax.scatter(np.full(len(seeds), i), seeds, s=12, color="black", zorder=3)
    ax.axhline(0, color="black", linewidth=0.8)
    ax.set_xticks(part.index, part.strategy, rotation=30 if len(part) > 4 else 0)
    ax.set(title=title, xlabel="strategy", ylabel=col.header.replace("\n", " "))


def _finished(runs: Sequence[Run], strategy: str) -> list[dict]:
    return [r.summary for r in runs if r.strategy == strategy and r.summary is not None]


def accuracy_matrix_pages(title: str, runs: Sequence[Run], strategies: Sequence[str]) -> list[Figure]:
    """R (mean over seeds, %) as a heatmap per strategy, six to a page."""
    drawn = [(s, _finished(runs, s)) for s in strategies]
    drawn = [(s, summ) for s, summ in drawn if summ]
    pages = []
    for chunk in _chunks(drawn, MATRICES_PER_PAGE):
        fig = _page(title, "Cell (i, j): accuracy (%) on experience j's test set after training on "
                           "experiences 0..i, mean over seeds; joint: after training on all data.")
        rows = 1 if len(chunk) <= 3 else 2
        axes = fig.subplots(rows, -(-len(chunk) // rows), squeeze=False).ravel()
        for ax, (strategy, summaries) in zip(axes, chunk):
            joint = summaries[0]["joint"]
            mean = np.mean([s["R"] for s in summaries], axis=0) * 100
            mesh = _heatmap(ax, mean, vmin=0, vmax=100, cmap="viridis", fmt=".0f",
                            title=f"{strategy} (n={len(summaries)})",
                            xlabel="evaluated on experience",
                            ylabel="trained on" if joint else "trained up to experience",
                            yticklabels=["all"] if joint else "auto")
        for ax in axes[len(chunk):]:
            ax.set_visible(False)
        _colorbar(fig, mesh, axes[: len(chunk)], "test accuracy (%)")
        pages.append(fig)
    return pages


def _beta(runs: Sequence[Run]) -> int:
    """The LCA horizon the runs were evaluated with (one suite spec: one value)."""
    return runs[0].config["eval"]["beta"] if runs else metrics.BETA


def _comet_overlaps(runs: Sequence[Run], strategy: str) -> list[dict]:
    """Finished summaries of the strategy's COMET-model runs that hold a mask overlap."""
    return [r.summary for r in runs if r.strategy == strategy and r.summary is not None
            and r.summary.get("overlap") and r.config["model"].get("variant") == "comet"]


def _seen_average(R) -> list[float]:
    """ACC of the first i+1 experiences after training on them, for each i."""
    return [metrics.acc([row[: i + 1] for row in R[: i + 1]]) for i in range(len(R))]


def _early_curve(curves, beta: int) -> list[float]:
    """Accuracy after b = 0..beta minibatches, averaged over experiences (A-GEM's Z_b)."""
    return [float(np.mean([dict(map(tuple, c))[b] for c in curves])) for b in range(beta + 1)]


def curves_page(title: str, runs: Sequence[Run], agg_stream: pd.DataFrame,
                raw_stream: pd.DataFrame, palette: dict) -> Figure:
    """Accuracy over the stream, early learning curves, forgetting and FWT bars."""
    fig = _page(title, "Lines: mean over seeds; bands and error bars: 95% CI (Student t); "
                       "dots: single seeds. n: finished seeds.")
    (acc_ax, lca_ax), (fgt_ax, fwt_ax) = fig.subplots(2, 2)
    beta = _beta(runs)
    for strategy in agg_stream.strategy:
        summaries = _finished(runs, strategy)
        if not summaries:
            continue
        if summaries[0]["joint"]:
            joint_acc = np.mean([metrics.acc(s["R"]) for s in summaries]) * 100
            acc_ax.axhline(joint_acc, color=palette[strategy][0], linestyle="--",
                           label=f"{strategy}: all data at once (n={len(summaries)})")
            continue
        T = len(summaries[0]["R"])
        _ci_line(acc_ax, range(T), [np.multiply(_seen_average(s["R"]), 100) for s in summaries],
                 label=strategy, style=palette[strategy])
        _ci_line(lca_ax, range(beta + 1),
                 [np.multiply(_early_curve(s["curves"], beta), 100) for s in summaries],
                 label=strategy, style=palette[strategy])
    acc_ax.set(title="Average accuracy on the experiences seen so far",
               xlabel="trained up to experience i",
               ylabel="mean accuracy on experiences 0..i (%)")
    acc_ax.xaxis.get_major_locator().set_params(integer=True)
    lca_ax.set(title=f"Learning curves: first {beta} minibatches of each experience "
                     f"(area = LCA_{beta})",
               xlabel="minibatches trained on the experience",
               ylabel="accuracy on that experience (%)")
    handles = {}  # one legend for both line panels: label -> handle
    for ax in (acc_ax, lca_ax):
        ax.set_ylim(0, 102)
        for handle, label in zip(*ax.get_legend_handles_labels()):
            handles.setdefault(label, handle)
    if handles:  # under the caption, in room taken from the panels; up to 5 per row
        ncols = min(len(handles), 5)
        rows = -(-len(handles) // ncols)
        fig.get_layout_engine().set(rect=(0.01, 0.04, 0.98, 0.89 - 0.03 * rows))
        fig.legend(handles.values(), handles.keys(), loc="upper center",
                   bbox_to_anchor=(0.5, 0.935), ncols=ncols, frameon=False)
    _bars(fgt_ax, agg_stream, raw_stream, COLUMN["forgetting"], palette,
          "Forgetting (lower is better)")
    _bars(fwt_ax, agg_stream, raw_stream, COLUMN["fwt"], palette,
          "Forward transfer (higher is better)")
    return fig


def overlap_page(title: str, strategy: str, summaries: Sequence[dict]) -> Figure:
    """COMET's task-by-task mask overlap per masked layer (mean over seeds), chance = p_k."""
    overlap = summaries[0]["overlap"]
    p_k = overlap["p_k"]
    mean = np.mean([s["overlap"]["matrices"] for s in summaries], axis=0)
    fig = _page(f"{title}: {strategy}, mask overlap between tasks; chance level p_k = {p_k:g}",
                f"Cell (i, j): mean fraction of active units shared by inputs of experiences i and "
                f"j, per masked layer, mean over {len(summaries)} seeds; p_k = kept fraction.")
    axes = fig.subplots(1, len(overlap["layers"]), squeeze=False).ravel()
    for ax, layer, matrix in zip(axes, overlap["layers"], mean):
        mesh = _heatmap(ax, matrix, vmin=0, vmax=1, cmap="vlag", center=p_k, fmt=".2f",
                        title=f"layer {layer}", xlabel="experience (test set)",
                        ylabel="experience (test set)")
    _colorbar(fig, mesh, axes, f"mean mask overlap |m(a) AND m(b)| / k\n"
                               f"(black line: chance level p_k = {p_k:g})", mark=p_k)
    return fig


# ---------------------------------------------------------------------------------- pdf pages


def _chunks(items: Sequence, size: int) -> list[Sequence]:
    return [items[i : i + size] for i in range(0, len(items), size)]


def _draw_table(fig: Figure, table: pd.DataFrame, best: np.ndarray | None, top: float) -> float:
    """Draw ``table`` from ``top`` (figure fraction) down; return where it ends."""
    chars = [3 + max(len(line) for v in [c, *table[c]] for line in str(v).split("\n"))
             for c in table.columns]  # 3: padding, and room for the bold header
    width = min(0.94, 0.075 * sum(chars) / PAGE[0])
    height = 0.36 * (len(table) + 1) / PAGE[1]
    ax = fig.add_axes((0.03, top - height, width, height))
    ax.axis("off")
    drawn = ax.table(cellText=table.to_numpy().tolist(), colLabels=list(table.columns),
                     colWidths=[n / sum(chars) for n in chars], cellLoc="center", bbox=(0, 0, 1, 1))
    drawn.auto_set_font_size(False)
    drawn.set_fontsize(9)
    for (r, c), cell in drawn.get_celld().items():
        cell.set_edgecolor("0.75")
        if r == 0:
            cell.set_facecolor("0.9")
            cell.get_text().set_fontweight("bold")
        elif best is not None and best[r - 1, c]:
            cell.get_text().set_fontweight("bold")
    return top - height


def table_pages(title: str, table: pd.DataFrame, best: np.ndarray | None,
                notes: Sequence[str]) -> list[Figure]:
    """``table`` on as many pages as its rows need, with ``notes`` under it on each page."""
    pages = []
    for start in range(0, max(len(table), 1), ROWS_PER_PAGE):
        fig = _page(title if start == 0 else f"{title} (continued)")
        rows = slice(start, start + ROWS_PER_PAGE)
        bottom = _draw_table(fig, table.iloc[rows], None if best is None else best[rows], 0.90)
        _notes(fig, notes, bottom - 0.04)
        pages.append(fig)
    return pages


def _notes(fig: Figure, notes: Sequence[str], top: float) -> None:
    text = "\n".join(textwrap.fill(n, 165, subsequent_indent="   ") for n in notes)
    fig.text(0.03, top, text, va="top", ha="left", fontsize=9, linespacing=1.4)


TABLE_NOTES = [
    f"Each cell: mean \u00b1 half-width of the 95% confidence interval over seeds (Student t, "
    f"n\u22121 degrees of freedom); '\u00b1 {DASH}' when only one seed finished; '{DASH}' "
    f"where the metric does not apply (joint training, trained on all data at once, has only ACC).",
    f"{BEST} and bold: best value of the column among the continual strategies (higher is "
    f"better for ACC, BWT, FWT and LCA; lower for forgetting, steps, intransigence and wall "
    f"time). Joint training is an upper bound and is not ranked.",
    "Accuracies in %, differences in percentage points (pp). The CSV files beside this PDF "
    "hold the unrounded values, accuracies as fractions.",
]


def stream_notes(columns: Sequence[Column]) -> list[str]:
    """The legend of a stream table and the definition each of its columns uses."""
    return [*TABLE_NOTES, "n: finished seeds / seeds the suite asks for (the rest are listed "
            "under 'Missing or unfinished runs').", "Definitions (design/metrics.md):",
            *[f"\u2022 {c.definition}" for c in columns]]


def summary_notes() -> list[str]:
    """The legend of the summary table and its two definitions."""
    return [*TABLE_NOTES, f"{SHORT}: fewer finished seeds than the suite asks for "
            "(see 'Missing or unfinished runs').",
            f"\u2022 {metrics.METRICS['acc']}", f"\u2022 {metrics.METRICS['forgetting']}"]


MISSING_NOTES = [
    f"A run is finished exactly when its {SUMMARY_FILE} exists. Unfinished: the run folder has "
    f"{CONFIG_FILE} but no {SUMMARY_FILE} (crashed, stopped or still running; `comet-cl run` "
    "resumes it). Not started: the suite spec asks for it but there is no run folder. "
    "Duplicate: the same run was found in two of the given folders; the first finished copy "
    "is used. Missing runs count in the tables' n_expected, never in n.",
]


def title_page(folders: Sequence[Path], suites: Sequence[Suite], runs: Sequence[Run],
               missing: pd.DataFrame, made: str, contents: Sequence[str]) -> Figure:
    """Suites, provenance of the results (from their summaries) and the contents."""
    fig = Figure(figsize=PAGE)
    fig.text(0.03, 0.93, "comet-cl benchmark report", fontsize=18, fontweight="bold")
    summaries = [r.summary for r in runs if r.summary is not None]
    versions = sorted({k for s in summaries for k in s.get("versions", {})})
    rows = [
        ("Suites", "; ".join(f"{s.label}, hash {s.hash}" for s in suites)),
        ("Results folders", "; ".join(map(str, folders))),
        ("Runs", f"{len(summaries)} finished, {len(missing)} missing or unfinished"),
        ("Report made", f"{made} by comet-cl {__version__}"),
        ("Finished", _span(s.get("finished_at") for s in summaries)),
        ("git commit", _distinct(s.get("git_commit") for s in summaries)),
        ("Machine", _distinct(s.get("machine") for s in summaries)),
        ("Device", _distinct(s.get("device") for s in summaries)),
        *[(k, _distinct(s.get("versions", {}).get(k) for s in summaries)) for k in versions],
    ]
    _draw_key_values(fig, rows, top=0.88)
    fig.text(0.03, 0.30, "Contents\n" + "\n".join(f"  {i}. {c}" for i, c in enumerate(contents, 1)),
             va="top", fontsize=10, linespacing=1.5)
    return fig


def _draw_key_values(fig: Figure, rows: Sequence[tuple[str, str]], top: float) -> None:
    height = 0.26 * len(rows) / PAGE[1]
    ax = fig.add_axes((0.03, top - height, 0.94, height))
    ax.axis("off")
    drawn = ax.table(cellText=[[k, textwrap.shorten(v, 150)] for k, v in rows], colWidths=[0.16, 0.84],
                     cellLoc="left", edges="open", bbox=(0, 0, 1, 1))
    drawn.auto_set_font_size(False)
    drawn.set_fontsize(10)
    for (_, c), cell in drawn.get_celld().items():
        if c == 0:
            cell.get_text().set_fontweight("bold")


def _distinct(values: Iterable) -> str:
    """'x' when every run agrees, else each value with its run count."""
    counts = pd.Series([str(v) if v is not None else "unknown" for v in values]).value_counts()
    if len(counts) <= 1:
        return counts.index[0] if len(counts) else "unknown"
    return "; ".join(f"{v} ({n} runs)" for v, n in counts.items())


def _span(stamps: Iterable[str | None]) -> str:
    known = sorted(s for s in stamps if s)
    return f"{known[0]} to {known[-1]}" if known else "unknown"


# ---------------------------------------------------------------------------------------- pdf


def _section(title: str, figs: Iterable[Figure]) -> Iterator[tuple[str | None, Figure]]:
    """Pages of one section: the first one carries the bookmark title."""
    for i, fig in enumerate(figs):
        yield (title if i == 0 else None), fig


def stream_section(group: str, stream: str, runs: Sequence[Run], agg_stream: pd.DataFrame,
                   raw_stream: pd.DataFrame, palette: dict) -> Iterator[Figure]:
    """A stream's table page(s), then its figures."""
    title = f"Stream {stream} \u2014 {group}"
    cols = stream_columns(agg_stream, _beta(runs))
    yield from table_pages(title, *stream_table(agg_stream, cols), stream_notes(cols))
    if raw_stream.empty:
        return
    strategies = list(agg_stream.strategy)
    yield from accuracy_matrix_pages(f"{title}: accuracy matrix R (mean over seeds)", runs, strategies)
    yield curves_page(title, runs, agg_stream, raw_stream, palette)
    for strategy in strategies:
        comet = _comet_overlaps(runs, strategy)
        if comet:
            yield overlap_page(title, strategy, comet)


def summary_pages(group: str, agg_group: pd.DataFrame) -> Iterator[Figure]:
    """ACC and forgetting of every strategy on every stream of the group, a few streams a page."""
    streams = list(dict.fromkeys(agg_group.stream))
    for chunk in _chunks(streams, STREAMS_PER_SUMMARY_PAGE):
        yield from table_pages(f"Summary across streams \u2014 {group}",
                               *summary_table(agg_group, chunk), summary_notes())


def missing_pages(missing: pd.DataFrame) -> list[Figure]:
    """The 'Missing or unfinished runs' section; it says so when there are none."""
    title = "Missing or unfinished runs"
    if not missing.empty:
        return table_pages(title, missing_table(missing), None, MISSING_NOTES)
    fig = _page(title)
    _notes(fig, ["None: every run the suite specs ask for finished.", *MISSING_NOTES], 0.88)
    return [fig]


def pages(folders: Sequence[Path], suites: Sequence[Suite], runs: Sequence[Run],
          raw: pd.DataFrame, agg: pd.DataFrame, missing: pd.DataFrame,
          made: str) -> Iterator[tuple[str | None, Figure]]:
    """Every page of the report, in order, each with its bookmark title (or None)."""
    groups = list(dict.fromkeys(agg.group))
    streams = list(dict.fromkeys(zip(agg.group, agg.stream)))
    contents = [*(f"Summary across streams \u2014 {g}" for g in groups), "Missing or unfinished runs",
                *(f"Stream {s} \u2014 {g}" for g, s in streams)]
    yield "Title", title_page(folders, suites, runs, missing, made, contents)
    for group in groups:
        yield from _section(contents[groups.index(group)], summary_pages(group, agg[agg.group == group]))
    yield from _section("Missing or unfinished runs", missing_pages(missing))
    for group, stream in streams:
        palette = _palette(list(dict.fromkeys(agg[agg.group == group].strategy)))
        sel = [r for r in runs if (r.group, r.stream) == (group, stream)]
        yield from _section(f"Stream {stream} \u2014 {group}", stream_section(
            group, stream, sel, agg[(agg.group == group) & (agg.stream == stream)],
            raw[(raw.group == group) & (raw.stream == stream)], palette))


def write_pdf(path: Path, pages: Iterable[tuple[str | None, Figure]], made: str) -> None:
    """Render the pages (A4 landscape, page-numbered) into one PDF with bookmarks."""
    buf, bookmarks = io.BytesIO(), []
    with matplotlib.rc_context(RC), PdfPages(buf, metadata={"Title": "comet-cl report",
                                                           "Creator": f"comet-cl {__version__}"}) as pdf:
        for number, (bookmark, fig) in enumerate(pages):
            fig.text(0.03, 0.015, f"comet-cl report, {made}", fontsize=8, color="0.4")
            fig.text(0.97, 0.015, f"page {number + 1}", fontsize=8, color="0.4", ha="right")
            pdf.savefig(fig)
            if bookmark:
                bookmarks.append((bookmark, number))
    writer = PdfWriter(clone_from=PdfReader(buf))
    for bookmark, number in bookmarks:
        writer.add_outline_item(title=bookmark, page_number=number)
    out = io.BytesIO()
    writer.write(out)
    atomic_write_bytes(path, out.getvalue())


def _slug(name: str) -> str:
    return "".join(c if c.isalnum() or c in "-_." else "_" for c in name)


def write_csvs(out_pdf: Path, raw: pd.DataFrame, agg: pd.DataFrame,
               missing: pd.DataFrame) -> list[Path]:
    """The report's tables as CSV beside the PDF: runs, summary, one per stream, missing."""
    tables = {"runs": raw, "summary": summary_frame(agg), "missing": missing}
    tables |= {_slug(s): agg[agg.stream == s] for s in dict.fromkeys(agg.stream)}
    paths = []
    for suffix, frame in tables.items():
        path = out_pdf.with_name(f"{out_pdf.stem}-{suffix}.csv")
        atomic_write_bytes(path, frame.to_csv(index=False).encode())
        paths.append(path)
    return paths


def build_report(results_dirs: Sequence[Path], out_pdf: Path) -> ReportResult:
    """Read the results folders and write the PDF report and its CSV tables beside it.

    Raises ReportError, naming the folder or file, for an empty, unreadable or inconsistent
    folder (nothing is written then)."""
    folders = results_folders(results_dirs)
    suites, found = load(folders)
    runs, dropped = dedupe(found)
    raw = runs_frame(runs)
    if raw.empty:
        raise ReportError(f"no finished runs in {', '.join(map(str, folders))}")
    plan = plan_frame(suites, runs)
    agg = aggregate(raw, plan)
    missing = missing_frame(plan, runs, dropped)
    out_pdf = Path(out_pdf)
    out_pdf.parent.mkdir(parents=True, exist_ok=True)
    made = datetime.now().astimezone().strftime("%Y-%m-%d %H:%M %Z")
    write_pdf(out_pdf, pages(folders, suites, runs, raw, agg, missing, made), made)
    csvs = write_csvs(out_pdf, raw, agg, missing)
    return ReportResult(out_pdf, csvs, list(dict.fromkeys(agg.group)), len(missing))
