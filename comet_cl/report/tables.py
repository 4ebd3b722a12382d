"""Aggregation over seeds (mean, 95% t-interval) and the report's tables as text.

A best value is marked only where the data can say so: the best mean of a column must come
from at least two seeds, and its 95% interval must clear every other ranked strategy's
interval (a single seed counts as a point). A column where the top strategies' intervals
overlap has no mark: the ranking is not resolved by the seeds run.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import pandas as pd
from scipy.special import stdtrit  # the t quantile; scipy.stats costs 1.3 s more to import

from comet_cl import metrics
from comet_cl.report.load import KEYS

BEST = "\u25b2"  # ▲
SHORT = "\u2020"  # †
DASH = "\u2014"  # —


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
    # what a resolved paired difference is called, the good way first: a speed column says
    # "faster", as the study's prose does, where "better" would leave the reader to work it out
    directions: tuple[str, str] = ("better", "worse")


SPEED_WORDS = ("faster", "slower")
COLUMNS = (
    Column("acc", "ACC\n(%)", 100, 1, "max", metrics.METRICS["acc"]),
    Column("bwt", "BWT\n(pp)", 100, 1, "max", metrics.METRICS["bwt"]),
    Column("forgetting", "Forgetting\n(pp)", 100, 1, "min", metrics.METRICS["forgetting"]),
    Column("fwt", "FWT\n(pp)", 100, 1, "max", metrics.METRICS["fwt"]),
    Column("lca", f"LCA_{metrics.BETA}\n(%)", 100, 1, "max", metrics.METRICS["lca"],
           directions=SPEED_WORDS),
    Column("steps_to_threshold", f"Steps to {metrics.THRESHOLD:.0%}\n(minibatches)", 1, 1, "min",
           metrics.METRICS["steps_to_threshold"], directions=SPEED_WORDS),
    Column("intransigence", "Intransigence\n(pp)", 100, 1, "min",
           metrics.METRICS["intransigence"]
           + "; R_joint = the joint runs' final accuracies, averaged over their seeds"),
    Column("wall_time", "Wall time\n(s)", 1, 1, "min",
           "Wall time: training seconds (learning-curve probes excluded), summed over experiences"),
    Column("n_params", "Parameters", 1, 0, None, "Parameters: the model's parameter count", False),
)
COLUMN = {c.key: c for c in COLUMNS}


def seeds_text(n: int) -> str:
    """'1 seed', '3 seeds'."""
    return f"{n} seed" if n == 1 else f"{n} seeds"


def mean_ci(values, axis: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Mean, half-width of the 95% t-interval (NaN for fewer than 2 values) and n, ignoring NaN."""
    a = np.asarray(values, dtype=float)
    n = np.sum(~np.isnan(a), axis=axis)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN slices give NaN, as wanted
        mean = np.nanmean(a, axis=axis)
        sd = np.nanstd(a, axis=axis, ddof=1)
        half = stdtrit(n - 1, 0.975) * sd / np.sqrt(n)
    return mean, np.where(n > 1, half, np.nan), n


def aggregate(raw: pd.DataFrame, plan: pd.DataFrame) -> pd.DataFrame:
    """One row per (group, stream, strategy) of the plan: n finished, n_expected, and the
    mean, CI, n and best flag of every column."""
    finished = dict(tuple(raw.groupby(KEYS)))
    rows = []
    for key, n_expected in plan.groupby(KEYS, sort=False).size().items():
        sub = finished.get(key, raw.iloc[:0])
        row = dict(zip(KEYS, key), n=len(sub), n_expected=int(n_expected), joint=bool(sub.joint.any()))
        for col in COLUMNS:
            mean, half, n = mean_ci(sub[col.key])
            row[f"{col.key}_mean"], row[f"{col.key}_ci"] = float(mean), float(half)
            row[f"{col.key}_n"] = int(n)
        rows.append(row)
    return mark_best(pd.DataFrame(rows))


def _separated_best(part: pd.DataFrame, col: Column) -> int | None:
    """Index of the row whose mean is best AND whose interval clears every other row's, or None."""
    means, halves = part[f"{col.key}_mean"], part[f"{col.key}_ci"]
    valid = means.notna()
    if not valid.any():
        return None
    sign = 1.0 if col.better == "max" else -1.0
    score = sign * means[valid]
    best = score.idxmax()
    if part.at[best, f"{col.key}_n"] < 2 or np.isnan(halves[best]):
        return None
    others = score.drop(best)
    if others.empty:
        return None
    reach = others + halves[others.index].fillna(0.0)  # a single seed is a point
    return best if (score[best] - halves[best] > reach).all() else None


def mark_best(agg: pd.DataFrame) -> pd.DataFrame:
    """Flag, per (group, stream) and ranked column, the best mean when n >= 2 and its 95%
    interval is separated from every other continual strategy's; joint is not ranked."""
    for col in COLUMNS:
        best = pd.Series(False, index=agg.index)
        if col.better is not None:
            for _, part in agg[~agg.joint].groupby(["group", "stream"]):
                idx = _separated_best(part, col)
                if idx is not None:
                    best[idx] = True
        agg[f"{col.key}_best"] = best
    return agg


def summary_frame(agg: pd.DataFrame) -> pd.DataFrame:
    """ACC and forgetting per group, stream and strategy (the CSV of the summary page)."""
    cols = [f"{k}_{s}" for k in ("acc", "forgetting") for s in ("mean", "ci")]
    return agg[[*KEYS, "n", "n_expected", *cols]]


# ---------------------------------------------------------------------------------- as text


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


def sweep_table(sweep: pd.DataFrame) -> tuple[pd.DataFrame, np.ndarray]:
    """The validation sweep of one group: a row per point, the chosen one marked."""
    rows = []
    for r in sweep.itertuples():
        mean, half, n = mean_ci(r.valid_acc)
        ci = DASH if np.isnan(half) else f"{half * 100:.1f}"
        rows.append({"Stream": r.stream, "Strategy": r.strategy, "Point": r.point,
                     "Validation ACC (%)": f"{r.mean * 100:.1f} \u00b1 {ci}",
                     "Per seed (%)": ", ".join(f"{v * 100:.1f}" for v in r.valid_acc),
                     "Chosen": "\u2713" if r.chosen else "runner-up" if r.runner_up else "",
                     "Ahead of runner-up": r.margin})
    table = pd.DataFrame(rows, columns=["Stream", "Strategy", "Point", "Validation ACC (%)",
                                        "Per seed (%)", "Chosen", "Ahead of runner-up"])
    return table, np.column_stack([sweep.chosen.to_numpy(bool)] * len(table.columns)) \
        if len(table) else np.zeros((0, len(table.columns)), bool)


TABLE_NOTES = [
    f"Each cell: mean \u00b1 half-width of the 95% confidence interval over seeds (Student t, "
    f"n\u22121 degrees of freedom); '\u00b1 {DASH}' when only one seed finished; '{DASH}' "
    f"where the metric does not apply (joint training, trained on all data at once, has only ACC).",
    f"{BEST} and bold: the column's best mean among the continual strategies, marked only when it "
    f"comes from 2 or more seeds and its 95% interval is clear of every other strategy's (a "
    f"single seed counts as a point); no mark: the seeds run do not resolve the ranking. Higher "
    f"is better for ACC, BWT, FWT and LCA; lower for forgetting, steps, intransigence and wall "
    f"time. Joint training is an upper bound and is not ranked.",
    "Accuracies in %, differences in percentage points (pp). The CSV files beside this PDF "
    "hold the unrounded values, accuracies as fractions.",
]


def stream_notes(columns: Sequence[Column]) -> list[str]:
    """The legend of a stream table and the definition each of its columns uses."""
    return [*TABLE_NOTES, "n: finished seeds / seeds the suite asks for (the rest are listed "
            "under 'Missing or unfinished runs').", "Definitions (design/metrics.md):",
            *[f"\u2022 {c.definition}" for c in columns]]


def strategies_table(runs: Sequence) -> tuple[pd.DataFrame, list[str]]:
    """What each strategy of a group trains (from its runs' configs), labelled as the COMET
    paper's design or this project's extension (comet_cl.catalog), and the notes that say
    what each label present means."""
    from comet_cl.catalog import ARCH_DESIGN, VARIANT_DESIGN
    unknown = ("?", "not in this version's registry")
    rows, variants, archs = {}, {}, {}
    for run in runs:
        if run.strategy in rows:
            continue
        model = run.config.model
        variant, arch = model["variant"], model.get("arch", "")
        variants[variant] = VARIANT_DESIGN.get(variant, unknown)
        archs[arch] = ARCH_DESIGN.get(arch, unknown)
        settings = ", ".join([model.get("activation", "relu")] + [
            f"{k} {v}" for k, v in sorted((model.get("options") or {}).items())])
        rows[run.strategy] = {
            "Strategy": run.strategy, "Method": run.config.method,
            "Model": f"{variant} / {arch} {'x'.join(map(str, model.get('widths', [])))}",
            "Units": settings, "Design": f"{variants[variant][0]}; {archs[arch][0]} arch"}
    notes = ["Design: what the COMET paper (Shaier et al., ICLR 2025) defines or uses as a "
             "control, and what is this project's extension or added baseline. A preset's "
             "source (comet_cl/presets) says where its hyperparameters come from."]
    notes += [f"\u2022 {v}: {label}, {what}" for v, (label, what) in variants.items()]
    notes += [f"\u2022 {a} arch: {label}, {what}" for a, (label, what) in archs.items()]
    return pd.DataFrame(list(rows.values())), notes


def summary_notes() -> list[str]:
    """The legend of the summary table and its two definitions."""
    return [*TABLE_NOTES, f"{SHORT}: fewer finished seeds than the suite asks for "
            "(see 'Missing or unfinished runs').",
            f"\u2022 {metrics.METRICS['acc']}", f"\u2022 {metrics.METRICS['forgetting']}"]


def sweep_notes(rule: str, follow: dict[str, str] | None = None,
                swept: Collection[str] = ()) -> list[str]:
    """The sweep table's legend. ``follow``: followers and their leaders (sweep.json);
    ``swept``: the strategies with grid points of their own in the table, so a follower among
    them is named as tuned at its leader's choice, the others as run at it."""
    followed = []
    for tuned, lead in ((False, "Run at another strategy's chosen point, with no grid of their "
                                "own: "),
                        (True, "Tuned at another strategy's chosen point (their grid run there, "
                               "a second stage): ")):
        named = [f"{a} at {b}'s" for a, b in (follow or {}).items() if (a in swept) == tuned]
        followed += [lead + "; ".join(named) + "."] if named else []
    return [f"Validation sweep: each point of the grid trained and scored on the validation "
            f"split; selection rule: {rule or 'not stated'}. Bold and \u2713: the chosen point, "
            f"used by the runs on the following pages. Validation ACC: mean \u00b1 95% CI over "
            f"seeds ('\u00b1 {DASH}' for one seed). Ahead of runner-up: the chosen point's "
            f"validation ACC minus the next best point's, paired by seed, with the 95% CI "
            f"(pp); 'separable' when that interval clears zero. A one-seed sweep cannot test "
            f"it, and a choice that is not separable is as good as its runner-up on the "
            f"evidence."] + followed
