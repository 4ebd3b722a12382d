"""Results folders -> typed runs -> pandas frames. No matplotlib here: this is also the
Python API's way to get results as a frame (``comet_cl.load_results``).

Every number is recomputed from a run's raw records (``R``, ``R0``, the learning curves) with
``comet_cl.metrics``; the metrics a summary stored are only checked against the recomputed
ones, and only those it has, so a summary written before a metric existed still reads.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from comet_cl import metrics
from comet_cl import results as res
from comet_cl.results import shown
from comet_cl import sweep as sweep_rule
from comet_cl.contract import ContractError, RunConfig, RunSummary, expected_runs, read_run

KEYS = ["group", "stream", "strategy"]
SWEEP_FILE = sweep_rule.SWEEP_FILE


class ReportError(Exception):
    """Results that cannot be reported; the message names the folder or file at fault."""


@dataclass(frozen=True)
class Suite:
    """One suite spec, as a results folder's suite.json gives it (and its sweep, if any)."""

    name: str
    hash: str
    spec: dict
    folder: Path
    sweep: dict | None = None

    @property
    def label(self) -> str:
        return group_label(self.name, self.hash)

    def expected(self) -> list[tuple[str, str, int]]:
        """(stream, strategy, seed) of every run the spec asks for, in spec order."""
        try:
            return expected_runs(self.spec, self.folder / res.SUITE_FILE)
        except ContractError as e:
            raise ReportError(str(e)) from e


@dataclass(frozen=True)
class Run:
    """One run folder, typed, with the group (suite spec) it was made from."""

    group: str
    path: Path
    config: RunConfig
    summary: RunSummary | None

    @property
    def stream(self) -> str:
        return self.config.stream_name

    @property
    def strategy(self) -> str:
        return self.config.strategy_name

    @property
    def seed(self) -> int:
        return self.config.seed

    @property
    def key(self) -> tuple[str, str, str, int]:
        return (self.group, self.stream, self.strategy, self.seed)


def group_label(name: str, suite_hash: str) -> str:
    """How a suite spec is named in the report: its name and the first 8 hex of its hash."""
    return f"{name} ({suite_hash[:8]})"


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
    try:
        meta = res.read_suite_file(folder)
    except res.ResultsError as e:
        raise ReportError(str(e)) from e
    try:
        sweep = res.read_json(folder / SWEEP_FILE) if (folder / SWEEP_FILE).is_file() else None
        suite = Suite(meta["name"], meta["suite_hash"], meta["spec"], folder, sweep)
        stored = [read_run(f) for f in res.run_folders(folder)]
    except ContractError as e:
        raise ReportError(str(e)) from e
    except res.ResultsError as e:
        raise ReportError(f"{folder}: unreadable results: {e}") from e
    except (KeyError, TypeError) as e:
        raise ReportError(f"{folder / res.SUITE_FILE}: lacks name, suite_hash or spec ({e})") from e
    if not stored:
        raise ReportError(f"{folder}: no runs (no runs/<stream>/<strategy>/seed-<k>/{res.CONFIG_FILE})")
    return suite, [Run(group_label(s.config.suite, s.config.suite_hash), s.path, s.config, s.summary)
                   for s in stored]


def dedupe(runs: Sequence[Run]) -> tuple[list[Run], list[dict]]:
    """One run per (group, stream, strategy, seed), a finished one first; the others listed."""
    kept: dict[tuple, Run] = {}
    dropped = []
    for run in sorted(runs, key=lambda r: r.summary is None):  # stable: keeps folder order
        first = kept.setdefault(run.key, run)
        if first is not run:
            dropped.append(_missing_row(run.key, f"duplicate of {shown(first.path)} (ignored)", run.path))
    return [r for r in runs if kept[r.key] is r], dropped


# ------------------------------------------------------------------------------ run metrics


def _same(stored: float | None, got: float) -> bool:
    stored = float("nan") if stored is None else float(stored)
    return (np.isnan(stored) and np.isnan(got)) or abs(stored - got) <= 1e-9


def run_metrics(run: Run) -> dict[str, float]:
    """The run's headline metrics recomputed from R, R0 and the curves, checked against the
    metrics its summary stored (those it has: an older summary may lack newer metrics). A
    difference means a corrupted file or a comet-cl whose definitions differ."""
    s = run.summary
    got = metrics.summarize(s.R, s.R0, s.curves, run.config.beta) if not s.joint else \
        {k: float("nan") for k in metrics.summarize([[0.0]])} | {"acc": metrics.acc(s.R)}
    bad = [k for k in got if k in s.metrics and not _same(s.metrics[k], got[k])]
    if bad:
        detail = ", ".join(f"{k} stored {s.metrics[k]} vs recomputed {got[k]:.12g}" for k in bad)
        raise ReportError(
            f"{run.path / res.SUMMARY_FILE}: stored metrics differ from those recomputed from its "
            f"raw matrices ({detail}); the file is corrupted or was written by another comet-cl"
        )
    return got


def joint_final(runs: Sequence[Run]) -> dict[tuple[str, str], np.ndarray]:
    """R_joint per (group, stream): the joint runs' final accuracies, averaged over seeds."""
    finals: dict[tuple[str, str], list] = {}
    for run in runs:
        if run.summary is not None and run.summary.joint:
            finals.setdefault((run.group, run.stream), []).append(run.summary.R[-1])
    return {k: np.mean(np.asarray(v, dtype=float), axis=0) for k, v in finals.items()}


def runs_frame(runs: Sequence[Run]) -> pd.DataFrame:
    """One row per finished run: its identity, recomputed metrics, wall time and size."""
    r_joint = joint_final(runs)
    return pd.DataFrame([_run_row(r, r_joint.get((r.group, r.stream))) for r in runs if r.summary])


def _run_row(run: Run, r_joint: np.ndarray | None) -> dict:
    """One finished run's row; a summary that cannot be read is an error naming its file."""
    s = run.summary
    try:
        return {"group": run.group, "suite": run.config.suite,
                "suite_hash": run.config.suite_hash, "stream": run.stream,
                "strategy": run.strategy, "seed": run.seed, "joint": s.joint,
                "experiences": s.n_experiences, **run_metrics(run),
                "intransigence": _intransigence(run, r_joint),
                "wall_time": float(np.sum(s.wall_time)), "n_params": s.n_params,
                "schema_version": s.schema_version, "path": shown(run.path)}
    except (KeyError, TypeError, ValueError, AttributeError, IndexError) as e:
        raise ReportError(f"{run.path / res.SUMMARY_FILE}: malformed summary ({type(e).__name__}: {e})") from e


def _intransigence(run: Run, r_joint: np.ndarray | None) -> float:
    if r_joint is None or run.summary.joint:
        return float("nan")
    try:
        return metrics.intransigence(run.summary.R, r_joint)
    except ValueError as e:
        raise ReportError(f"{run.path / res.SUMMARY_FILE}: cannot compare with joint training: {e}") from e


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
            saved = "checkpoint saved" if (run.path / res.CHECKPOINT_FILE).exists() else "no checkpoint"
            rows.append(_missing_row(key, f"unfinished (no {res.SUMMARY_FILE}; {saved})", run.path))
    return pd.DataFrame(rows + dropped, columns=[*KEYS, "seed", "status", "path"])


def _missing_row(key: tuple, status: str, path: Path | None) -> dict:
    return dict(zip([*KEYS, "seed"], key), status=status, path="" if path is None else shown(path))


# ------------------------------------------------------------- long frames for the figures


def _finished(runs: Sequence[Run]) -> list[Run]:
    return [r for r in runs if r.summary is not None]


def seen_frame(runs: Sequence[Run]) -> pd.DataFrame:
    """Accuracy averaged over the experiences seen so far, after each experience (continual
    runs) or once, after all data (joint): group, stream, strategy, seed, joint, step, acc."""
    rows = []
    for r in _finished(runs):
        R = r.summary.R
        for i in range(len(R)):
            value = metrics.acc(R) if r.summary.joint else metrics.acc([row[: i + 1] for row in R[: i + 1]])
            rows.append((*r.key, r.summary.joint, i, value))
    return pd.DataFrame(rows, columns=[*KEYS, "seed", "joint", "step", "acc"])


def curve_frame(runs: Sequence[Run], beta: int) -> pd.DataFrame:
    """Accuracy after b = 0..beta minibatches of each experience, averaged over experiences
    (A-GEM's Z_b, the integrand of LCA): group, stream, strategy, seed, minibatch, acc."""
    rows = []
    for r in _finished(runs):
        curves = [dict(map(tuple, c)) for c in r.summary.curves]
        if r.summary.joint or not curves or any(beta not in c for c in curves):
            continue
        rows += [(*r.key, b, float(np.mean([c[b] for c in curves]))) for b in range(beta + 1)]
    return pd.DataFrame(rows, columns=[*KEYS, "seed", "minibatch", "acc"])


def matrix_frame(runs: Sequence[Run]) -> pd.DataFrame:
    """Every cell of every run's R: group, stream, strategy, seed, joint, row, col, acc."""
    rows = [(*r.key, r.summary.joint, i, j, v)
            for r in _finished(runs) for i, row in enumerate(r.summary.R) for j, v in enumerate(row)]
    return pd.DataFrame(rows, columns=[*KEYS, "seed", "joint", "row", "col", "acc"])


def overlap_frame(runs: Sequence[Run]) -> pd.DataFrame:
    """Every stored mask-overlap cell: group, stream, strategy, seed, model, layer, p_k,
    chance (NaN when the summary predates its measurement), row, col, overlap."""
    rows = []
    for r in _finished(runs):
        o = r.summary.overlap
        if o is None:
            continue
        model = json.dumps(dict(r.config.model), sort_keys=True)
        for li, (layer, m) in enumerate(zip(o.layers, o.matrices)):
            chance = float("nan") if o.chance is None else o.chance[li]
            rows += [(*r.key, model, layer, o.p_k, chance, i, j, v)
                     for i, row in enumerate(m) for j, v in enumerate(row)]
    return pd.DataFrame(rows, columns=[*KEYS, "seed", "model", "layer", "p_k", "chance",
                                       "row", "col", "overlap"])


def sweep_frame(suites: Sequence[Suite]) -> pd.DataFrame:
    """Every validation-sweep point: group, stream, strategy, rule, point (its values as
    text), values, valid mean, per-seed scores, chosen, runner-up (the next best point), and on
    the chosen row its margin over the runner-up in words (comet_cl.sweep.margin). Empty when
    no suite has a sweep."""
    rows = []
    for suite in suites:
        if suite.sweep is None:
            continue
        try:
            for stream, by_strategy in suite.sweep["streams"].items():
                for strategy, entry in by_strategy.items():
                    chosen = entry["chosen"]
                    margin = sweep_rule.entry_margin(entry)
                    second = margin and margin["runner_up"]
                    for p in entry["points"]:
                        rows.append({"group": suite.label, "stream": stream, "strategy": strategy,
                                     "rule": suite.sweep.get("rule", ""), "grid": entry["grid"],
                                     "point": sweep_rule.values_text(p["values"]),
                                     "values": p["values"], "mean": float(p["mean"]),
                                     "valid_acc": [float(v) for v in p["valid_acc"]],
                                     "chosen": p["values"] == chosen,
                                     "runner_up": p["values"] == second,
                                     "margin": sweep_rule.margin_text(margin)
                                     if p["values"] == chosen else ""})
        except (KeyError, TypeError, AttributeError, ValueError) as e:
            raise ReportError(f"{suite.folder / SWEEP_FILE}: malformed sweep ({type(e).__name__}: {e})") from e
    return pd.DataFrame(rows, columns=[*KEYS, "rule", "grid", "point", "values", "mean",
                                       "valid_acc", "chosen", "runner_up", "margin"])


def load_results(*results_dirs: Path | str) -> pd.DataFrame:
    """One row per finished run of the given results folders, metrics recomputed from the raw
    matrices: the frame a researcher analyses (no matplotlib imported)."""
    suites, found = load(results_folders(results_dirs))
    runs, _ = dedupe(found)
    return runs_frame(runs)
