"""The COMET study's tables (issue 13): what each strategy reaches, what it changes against the
strategy it is contrasted with, and whether the study's goals hold, each verdict following the
95% intervals and nothing else.

A suite declares its study in a ``[study]`` table, so the suite is the one place a comparison
is written (``comet_cl.config`` checks every name)::

    [study]
    metrics = ["acc", "lca"]                    # the columns; the first one decides verdicts
    contrasts = { comet = "naive", comet-ewc = "ewc" }   # strategy -> its reference(s)
    goals = [{ name = "...", strategy = "comet-ewc", above = 95.33 },          # a fixed bar, %
             { name = "...", strategy = "comet-replay", above_strategy = "replay" }]
    speed_level = 0.35                          # optional: updates to this accuracy, every run

A strategy may have several references (a list: a row each), and a reference may name a
strategy of another suite, ``comet-er-200 = "buzzega-split-cifar10-er:er-200"``
(a diagnostic suite held against its parent's runs), when both suites run the same streams and
both results folders are given: a diagnostic need not re-run its parent's reference.

Contrasts and strategy goals are paired by seed: both runs of a seed share the data order and,
in split streams, the class pairs, so the seed's own luck cancels. A claim ("higher", "holds")
is made only where the 95% t-interval excludes zero (or the bar); below 3 seeds nothing is
claimed. ``python -m comet_cl.study RESULTS...`` prints the tables as Markdown, first one
across the suites (:func:`headline`: each contrast read across protocols); the report builds
the per-suite tables from the runs it has already read.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from comet_cl import metrics
from comet_cl.config import split_reference
from comet_cl.contract import tables_main
from comet_cl.report.tables import COLUMN, SPEED_WORDS, Column
from comet_cl.reproduction import mean_ci

MIN_SEEDS = 3  # fewer: the row is shown, no claim is made
SPEED = "steps_to_accuracy"  # the column speed_level adds (computed from the runs' curves)
# How each column is scaled, rounded and ranked: the report's own definitions, plus the speed one
COLUMNS = {**COLUMN, SPEED: Column(SPEED, "updates to level", 1, 0, "min",
                                   "first evaluated update reaching the level (mean over experiences)",
                                   directions=SPEED_WORDS)}


@dataclass(frozen=True)
class Estimate:
    """A mean over seeds with the half-width of its 95% t-interval (None below 2 seeds)."""

    mean: float
    half: float | None
    n: int

    @classmethod
    def of(cls, values: Sequence[float]) -> Estimate | None:
        values = [v for v in values if not math.isnan(v)]
        if not values:
            return None
        mean, half = mean_ci(values)
        return cls(mean, half, len(values))

    def text(self, decimals: int) -> str:
        half = "" if self.half is None else f" +- {self.half:.{decimals}f}"
        return f"{self.mean:.{decimals}f}{half}"

    def sign(self, bar: float = 0.0) -> int:
        """+1 / -1 when the whole interval lies above / below ``bar``, 0 when it holds it or
        when there are too few seeds to say."""
        if self.n < MIN_SEEDS or self.half is None:
            return 0
        if self.mean - self.half > bar:
            return 1
        if self.mean + self.half < bar:
            return -1
        return 0


@dataclass(frozen=True)
class Row:
    """One strategy of one suite: its estimate per metric, and its contrast's paired one."""

    suite: str
    strategy: str
    values: dict[str, Estimate | None]
    contrast: str | None = None
    paired: dict[str, Estimate | None] | None = None
    unpaired: str | None = None  # why the contrast could not be paired at all

    def verdict(self, metric: str) -> str:
        d = (self.paired or {}).get(metric)
        if self.contrast is None:
            return ""
        if self.unpaired:
            return self.unpaired
        if d is None:
            return "not run yet"
        if d.n < MIN_SEEDS:
            return f"no claim ({d.n} paired seed{'s' if d.n != 1 else ''})"
        direction = self.direction(metric)
        if direction is None:
            return "no difference resolved"
        return f"{direction} than {self.contrast}"

    def direction(self, metric: str) -> str | None:
        """The direction of the paired difference in the metric's own words ("better" /
        "worse"; "faster" / "slower" for a speed column, where fewer updates or a higher LCA is
        faster), where its interval excludes zero with at least MIN_SEEDS seeds; None otherwise.
        The one test both the verdict and the other metrics' cells use."""
        d = (self.paired or {}).get(metric)
        s = 0 if d is None or self.unpaired else d.sign()
        if s == 0:
            return None
        column = COLUMNS[metric]
        good, bad = column.directions
        return good if (s < 0) == (column.better == "min") else bad


@dataclass(frozen=True)
class Goal:
    suite: str
    name: str
    strategy: str
    bar: str  # what it must clear, in words
    estimate: Estimate | None  # ours (fixed bar) or the paired difference (strategy bar)
    sign: int  # +1 holds, -1 fails (the interval clears the bar the other way), 0 unresolved

    @property
    def verdict(self) -> str:
        if self.estimate is None:
            return "not run yet"
        if self.estimate.n < MIN_SEEDS:
            return f"no verdict yet ({self.estimate.n} seed{'s' if self.estimate.n != 1 else ''})"
        return {1: "holds", -1: "does not hold", 0: "not resolved (the bar is inside our 95% CI)"}[
            self.sign]


def _scores(runs: Iterable, study: dict) -> dict[str, dict[str, dict[int, float]]]:
    """metric -> strategy -> seed -> value (percent where the metric is a fraction), from the
    finished ``runs`` (anything with ``config`` and ``summary``, None when unfinished: the
    contract's StoredRun, the report's Run); ``speed_level`` adds the updates to that accuracy."""
    wanted = list(study["metrics"]) + ([SPEED] if "speed_level" in study else [])
    scores: dict[str, dict[str, dict[int, float]]] = {m: {} for m in wanted}
    for run in runs:
        if run.summary is None:
            continue
        name, seed, summary = run.config.strategy_name, run.config.seed, run.summary
        for m in study["metrics"]:
            value = summary.metrics.get(m)
            scores[m].setdefault(name, {})[seed] = (
                float("nan") if value is None else COLUMNS[m].scale * float(value))
        if "speed_level" in study:
            value = (metrics.steps_to_accuracy(summary.curves, study["speed_level"])
                     if summary.curves else float("nan"))
            scores[SPEED].setdefault(name, {})[seed] = value
    return scores


def _paired(a: dict[int, float], b: dict[int, float]) -> Estimate | None:
    return Estimate.of([a[s] - b[s] for s in sorted(set(a) & set(b))])


@dataclass(frozen=True)
class Study:
    """The study over some results folders: rows, goals, and per suite its columns (metric
    keys, the first decides verdicts) and its fixed speed level, if any."""

    rows: list[Row]
    goals: list[Goal]
    columns: dict[str, list[str]]
    levels: dict[str, float]


def _reference_scores(ref: str, name: str, spec: dict, study: dict, scores: dict,
                      others: dict[str, tuple[dict, list]], scored: dict[str, dict]
                      ) -> tuple[dict | None, str | None]:
    """The scores (as :func:`_scores`) a contrast's reference is read from, or None with the
    reason: another suite must be among those given and run the same streams (pairing by seed
    is only pairing when the seed means the same data). ``scored``: another suite's scores
    under this study, kept so its runs are scored once however many rows refer to it."""
    suite, _ = split_reference(ref)
    if suite is None or suite == spec.get("name", name):
        return scores, None
    if suite not in others:
        return None, f"not paired: give {suite}'s results folder too"
    other, runs = others[suite]
    if [e["stream"] for e in other["streams"]] != [e["stream"] for e in spec["streams"]]:
        return None, f"not paired: {suite} runs other streams"
    if suite not in scored:
        scored[suite] = _scores(runs, study)
    return scored[suite], None


def tables(suites: Iterable[tuple[str, dict, Iterable]]) -> Study:
    """The study over ``(name, spec, runs)`` of each suite (runs as :func:`_scores` takes
    them); suites whose spec has no [study] table are left out, but their runs can be a
    contrast's reference (``"suite:strategy"``)."""
    rows, goals, columns, levels = [], [], {}, {}
    suites = [(name, spec, list(runs)) for name, spec, runs in suites]
    others = {spec.get("name", name): (spec, runs) for name, spec, runs in suites}
    for name, spec, runs in suites:
        study = spec.get("study")
        if not study:
            continue
        scores = _scores(runs, study)
        columns[name] = list(scores)
        if "speed_level" in study:
            levels[name] = study["speed_level"]
        contrasts, scored = study.get("contrasts", {}), {}
        for strategy in [s["name"] for s in spec["strategies"]]:
            values = {m: Estimate.of(list(scores[m].get(strategy, {}).values())) for m in scores}
            refs = contrasts.get(strategy)
            if refs is None:
                rows.append(Row(name, strategy, values))
            for ref in [refs] if isinstance(refs, str) else refs or []:  # a row per contrast
                ref_scores, unpaired = _reference_scores(ref, name, spec, study, scores, others,
                                                             scored)
                ref_name = split_reference(ref)[1]
                paired = None if ref_scores is None else {
                    m: _paired(scores[m].get(strategy, {}), ref_scores[m].get(ref_name, {}))
                    for m in scores}
                rows.append(Row(name, strategy, values, ref, paired, unpaired))
        head = study["metrics"][0]
        for goal in study.get("goals", []):
            ours = scores[head].get(goal["strategy"], {})
            if "above" in goal:
                est = Estimate.of(list(ours.values()))
                bar, sign = f"{goal['above']:.2f}", (0 if est is None else est.sign(goal["above"]))
            else:
                est = _paired(ours, scores[head].get(goal["above_strategy"], {}))
                bar, sign = goal["above_strategy"] + " (paired)", (0 if est is None else est.sign())
            goals.append(Goal(name, goal["name"], goal["strategy"], bar, est, sign))
    return Study(rows, goals, columns, levels)


def _header(metric: str, level: float | None = None) -> str:
    if metric == SPEED:
        return f"updates to {100 * level:g}%"
    return metric.replace("_", " ")


NOTE = (f"Claims only where the 95% t-interval excludes zero (or the bar), with at least "
        f"{MIN_SEEDS} seeds; 'no difference resolved' means the interval holds zero.")


def _difference(row: Row, metric: str, word: bool = False) -> str:
    """The paired difference's text; with ``word``, followed by the direction the interval
    resolves (e.g. "better" / "worse", "faster" / "slower" than the contrast), for a column
    without its own verdict."""
    if row.contrast is None:
        return ""
    d = (row.paired or {}).get(metric)
    if d is None:
        return "-"
    direction = row.direction(metric) if word else None
    return d.text(2) + (f" ({direction})" if direction else "")


def cells(study: Study) -> dict[str, tuple[list[str], list[list[str]]]]:
    """Per suite: the header and the text of every cell (what the Markdown and the PDF show).
    Every metric gets its paired difference; the first metric's decides the verdict column,
    the others say their own direction where their interval resolves one. Why: the learning-
    speed question (issue 13) is whether COMET's LCA differs from the dense net's in the
    continual streams, which the per-strategy means alone cannot tell (seed spread)."""
    out = {}
    for suite, cols in study.columns.items():
        head, level = cols[0], study.levels.get(suite)
        header = (["strategy", "seeds"] + [_header(c, level) for c in cols]
                  + ["contrast", f"difference ({_header(head)})", "verdict"]
                  + [f"difference ({_header(c, level)})" for c in cols[1:]])
        body = []
        for r in (r for r in study.rows if r.suite == suite):
            first = r.values.get(head)
            body.append([r.strategy, str(0 if first is None else first.n)]
                        + ["-" if r.values[c] is None else r.values[c].text(COLUMNS[c].decimals)
                           for c in cols]
                        + [r.contrast or "", _difference(r, head), r.verdict(head)]
                        + [_difference(r, c, word=True) for c in cols[1:]])
        out[suite] = (header, body)
    return out


HEADLINE_NOTE = ("Each cell: the paired difference (mean +- 95% CI over seeds) and the direction "
                 "its interval resolves; blank: the suite has no such contrast.")


def _headline_cell(row: Row, metric: str) -> str:
    """A contrast's paired difference in a headline cell: the estimate and, in one word, what
    its interval resolves (or why nothing is claimed); without a difference, the verdict says
    why (not paired, and why; not run yet)."""
    d = (row.paired or {}).get(metric)
    if row.unpaired or d is None:
        return row.verdict(metric)
    if d.n < MIN_SEEDS:
        return f"{d.text(2)} ({d.n} seed{'s' if d.n != 1 else ''}: no claim)"
    return f"{d.text(2)} {row.direction(metric) or 'unresolved'}"


def headline(study: Study) -> dict[str, tuple[list[str], list[list[str]]]]:
    """Per deciding metric that two or more suites share: one table across them, a row per
    contrast ("comet-ewc vs ewc") and a column per suite, each cell the paired difference with
    its 95% CI and the direction its interval resolves. Why: the study's question is where
    COMET helps and where it hurts, which is one comparison read across protocols; the
    per-suite tables hold it in a different place in each. Suites whose deciding metric
    differs (the learning-speed stream decides on LCA) get no column here."""
    by_metric: dict[str, list[str]] = {}
    for suite, cols in study.columns.items():
        by_metric.setdefault(cols[0], []).append(suite)
    out = {}
    for metric, suites in by_metric.items():
        if len(suites) < 2:
            continue
        grid: dict[tuple[str, str], dict[str, str]] = {}
        for r in study.rows:
            if r.suite in suites and r.contrast is not None:
                grid.setdefault((r.strategy, r.contrast), {})[r.suite] = _headline_cell(r, metric)
        header = [f"{_header(metric)}: strategy vs contrast"] + suites
        out[metric] = (header, [[f"{a} vs {b}"] + [cells.get(s, "") for s in suites]
                                for (a, b), cells in grid.items()])
    return out


GOAL_HEADER = ["suite", "goal", "strategy", "bar", "ours (95% CI)", "verdict"]


def goal_cells(goals: list[Goal]) -> list[list[str]]:
    return [[g.suite, g.name, g.strategy, g.bar,
             "-" if g.estimate is None else g.estimate.text(2), g.verdict] for g in goals]


def _md_table(header: list[str], body: list[list[str]]) -> list[str]:
    return (["| " + " | ".join(header) + " |", "| " + " | ".join("---" for _ in header) + " |"]
            + ["| " + " | ".join(row) + " |" for row in body])


def markdown(study: Study) -> str:
    out = []
    for metric, (header, body) in headline(study).items():
        out += [f"**Across suites: the paired difference in {_header(metric)}** ({HEADLINE_NOTE})",
                ""]
        out += _md_table(header, body) + [""]
    for suite, (header, body) in cells(study).items():
        out += [f"**{suite}** (mean +- 95% CI over seeds; the difference is paired by seed)", ""]
        out += _md_table(header, body) + [""]
    if study.goals:
        out += ["**Goals** (issue 13: to test, not to tune towards)", ""]
        out += _md_table(GOAL_HEADER, goal_cells(study.goals)) + [""]
    out.append(NOTE)
    return "\n".join(out) + "\n"


def main(argv: list[str] | None = None) -> int:
    """``python -m comet_cl.study RESULTS...``: the tables as Markdown."""
    return tables_main(argv, "python -m comet_cl.study", __doc__.split("\n\n")[0],
                       lambda suites: markdown(tables(suites)))


if __name__ == "__main__":
    raise SystemExit(main())
