"""The reproduction table: a suite's published figures against ours, with a verdict.

A protocol suite declares what it reproduces in a ``[published]`` table (source, metric and
one figure per strategy, in percent, as the paper prints them): the suite is the one place a
published number is written. :func:`table` reads finished runs from results folders and gives,
per strategy, the published figure, ours (mean and 95% t-interval over seeds), the difference
and a verdict by :data:`TOLERANCE`. ``python -m comet_cl.reproduction RESULTS...`` prints it as
Markdown (reports/README.md holds the table for reports/).
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path


from comet_cl import results as res
from comet_cl.contract import iter_stored_runs

TOLERANCE = 1.5  # points: "reproduced" when |ours - published| <= this


@dataclass(frozen=True)
class Row:
    """One strategy of one protocol suite."""

    suite: str
    source: str
    strategy: str
    published: float  # percent
    seeds: int
    mean: float | None  # percent
    half: float | None  # half-width of the 95% interval, percent; None below 2 seeds

    @property
    def difference(self) -> float | None:
        return None if self.mean is None else self.mean - self.published

    @property
    def verdict(self) -> str:
        if self.mean is None:
            return "not run yet"
        if self.seeds < 3:
            return f"preliminary ({self.seeds} seed{'s' if self.seeds > 1 else ''})"
        if abs(self.difference) <= TOLERANCE:
            return "reproduced"
        side = "above" if self.difference > 0 else "below"
        if self.half is not None and abs(self.difference) <= self.half:
            return f"{side} (published figure inside our 95% CI)"
        return side


def mean_ci(values) -> tuple[float, float | None]:
    """Mean and half-width of the 95% t-interval (None below 2 values): the report's own."""
    from comet_cl.report.tables import mean_ci as report_mean_ci
    mean, half, n = report_mean_ci(values)
    return float(mean), (None if n < 2 else float(half))


def table(folders: list[Path]) -> list[Row]:
    rows = []
    for folder in folders:
        suite = res.read_json(Path(folder) / res.SUITE_FILE)
        published = suite["spec"].get("published")
        if not published:
            continue
        metric = published.get("metric", "acc")
        scores: dict[str, list[float]] = {}
        for run in iter_stored_runs(folder):
            if run.finished:
                scores.setdefault(run.config.strategy_name, []).append(
                    100 * run.summary.metrics[metric])
        for strategy, figure in published["figures"].items():
            got = scores.get(strategy, [])
            mean, half = mean_ci(got) if got else (None, None)
            rows.append(Row(suite["name"], published["source"], strategy, float(figure),
                            len(got), mean, half))
    return rows


def markdown(rows: list[Row]) -> str:
    lines = ["| protocol | strategy | published | ours (mean +- 95% CI) | seeds | difference | verdict |",
             "| --- | --- | ---: | ---: | ---: | ---: | --- |"]
    for r in rows:
        ours = "-" if r.mean is None else (
            f"{r.mean:.2f}" + ("" if r.half is None else f" +- {r.half:.2f}"))
        diff = "-" if r.difference is None else f"{r.difference:+.2f}"
        lines.append(f"| {r.suite} | {r.strategy} | {r.published:.2f} | {ours} | {r.seeds} | "
                     f"{diff} | {r.verdict} |")
    sources = sorted({(r.suite, r.source) for r in rows})
    lines += [""] + [f"- {suite}: {source}" for suite, source in sources]
    lines += ["", f"Verdict: 'reproduced' when ours is within {TOLERANCE} points of the published "
                  f"figure with at least 3 seeds; 'above' / 'below' otherwise, noting when the "
                  f"published figure still lies inside our 95% interval (more seeds would tell)."]
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    print(markdown(table([Path(p) for p in sys.argv[1:]])), end="")
