"""The reproduction table: a suite's published figures against ours, with a verdict.

A protocol suite declares what it reproduces in a ``[published]`` table (source, metric and
one figure per strategy, in percent, as the paper prints them): the suite is the one place a
published number is written. :func:`table` takes each suite's finished runs and gives,
per strategy, the published figure, ours (mean and 95% t-interval over seeds), the difference
and a verdict by :data:`TOLERANCE`. A figure ours misses (3 seeds or more, off by more than the
tolerance) is either explained, by the suite's ``[published] explained`` line for it (what was
measured, and where), or flagged "not explained": the table itself shows what is still owed.
``python -m comet_cl.reproduction RESULTS...`` prints it as Markdown (reports/README.md holds
the table for reports/).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from comet_cl.contract import tables_main

TOLERANCE = 1.5  # points: "reproduced" when |ours - published| <= this
BASELINE = "naive"  # the gains are over this strategy, paired by seed


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
    # Gain over naive: the published one, and ours as the mean (and 95% half-width) of the
    # per-seed differences to naive's run on the same seed (same data order and, in split
    # streams, the same class pairs): seed noise shared by both cancels.
    published_gain: float | None = None
    gain: float | None = None
    gain_half: float | None = None
    explanation: str | None = None  # the suite's [published] explained line for it

    @property
    def difference(self) -> float | None:
        return None if self.mean is None else self.mean - self.published

    @property
    def missed(self) -> bool:
        """Ours is off by more than the tolerance, with enough seeds to say so."""
        return (self.mean is not None and self.seeds >= 3
                and abs(self.difference) > TOLERANCE)

    @property
    def verdict(self) -> str:
        """'reproduced', 'above' / 'below' (noting a published figure inside our interval),
        'preliminary' below 3 seeds or 'not run yet'; a missed figure adds whether the suite
        explains it."""
        if not self.missed:
            return self._closeness
        return f"{self._closeness}; " + ("explained" if self.explanation else "not explained")

    @property
    def _closeness(self) -> str:
        if self.mean is None:
            return "not run yet"
        if self.seeds < 3:
            return f"preliminary ({self.seeds} seed{'s' if self.seeds > 1 else ''})"
        if abs(self.difference) <= TOLERANCE:
            return "reproduced"
        side = "above" if self.difference > 0 else "below"
        if self.half is not None and abs(self.difference) <= self.half:
            return f"{side} (published inside our CI)"
        return side


def mean_ci(values) -> tuple[float, float | None]:
    """Mean and half-width of the 95% t-interval (None below 2 values): the report's own."""
    from comet_cl.report.tables import mean_ci as report_mean_ci
    mean, half, n = report_mean_ci(values)
    return float(mean), (None if n < 2 else float(half))


def table(suites: Iterable[tuple[str, dict, Iterable]]) -> list[Row]:
    """The rows of ``(name, spec, runs)`` of each suite (``contract.read_suites`` reads them
    from results folders; the report passes its own runs): runs are anything with ``config``
    and ``summary`` (None when unfinished). Suites without [published] are left out."""
    rows = []
    for name, spec, runs in suites:
        published = spec.get("published")
        if not published:
            continue
        metric = published.get("metric", "acc")
        scores: dict[str, dict[int, float]] = {}
        for run in runs:
            if run.summary is not None:
                scores.setdefault(run.config.strategy_name, {})[run.config.seed] = (
                    100 * run.summary.metrics[metric])
        figures = published["figures"]
        base = scores.get(BASELINE, {})
        for strategy, figure in figures.items():
            got = scores.get(strategy, {})
            mean, half = mean_ci(list(got.values())) if got else (None, None)
            gain = gain_half = published_gain = None
            if strategy != BASELINE and BASELINE in figures:
                published_gain = float(figure) - float(figures[BASELINE])
                paired = [got[s] - base[s] for s in sorted(set(got) & set(base))]
                if paired:
                    gain, gain_half = mean_ci(paired)
            rows.append(Row(name, published["source"], strategy, float(figure),
                            len(got), mean, half, published_gain, gain, gain_half,
                            published.get("explained", {}).get(strategy)))
    return rows


HEADER = ["protocol", "strategy", "published", "ours (mean +- 95% CI)", "seeds", "difference",
          "verdict", "gain over naive: published", "ours (paired, 95% CI)"]
VERDICT_RULE = (f"Verdict: 'reproduced' when ours is within {TOLERANCE} points of the published "
                f"figure with at least 3 seeds; 'above' / 'below' otherwise, with 'published "
                f"inside our CI' when the published figure still lies inside our 95% interval "
                f"(more seeds would tell); a figure missed with 3 seeds or more is 'explained' "
                f"(by a measurement, listed above) or 'not explained'.")
GAIN_RULE = ("Gain over naive: the published figure minus the paper's naive; ours, the mean of "
             "per-seed differences to our naive run on the same seed (same data order and class "
             "pairs), with its 95% t-interval: it holds a method against the paper even where "
             "the naive baselines differ.")


PAGE_HEADER = ["strategy", "published", "ours\n(mean +- 95% CI)", "seeds", "difference",
               "verdict", "gain over naive:\npublished", "gain, ours\n(paired, 95% CI)"]
"""The report page's column names: :data:`HEADER` without the protocol (a page per suite),
over two lines where long."""


def cells(rows: list[Row]) -> list[list[str]]:
    """The table's cells as text, one list per row in :data:`HEADER` order (the README's
    Markdown and the report's page and CSV show the same text)."""
    out = []
    for r in rows:
        ours = "-" if r.mean is None else (
            f"{r.mean:.2f}" + ("" if r.half is None else f" +- {r.half:.2f}"))
        diff = "-" if r.difference is None else f"{r.difference:+.2f}"
        pub_gain = "" if r.published_gain is None else f"{r.published_gain:+.2f}"
        gain = "" if r.published_gain is None else "-" if r.gain is None else (
            f"{r.gain:+.2f}" + ("" if r.gain_half is None else f" +- {r.gain_half:.2f}"))
        out.append([r.suite, r.strategy, f"{r.published:.2f}", ours, str(r.seeds), diff,
                    r.verdict, pub_gain, gain])
    return out


def sources(rows: list[Row]) -> list[str]:
    """One line per suite: where its published figures come from."""
    return [f"{suite}: {source}" for suite, source in sorted({(r.suite, r.source) for r in rows})]


def explanations(rows: list[Row]) -> list[str]:
    """One line per missed figure the suite explains: what was measured, and where."""
    return [f"{r.suite} / {r.strategy}: {r.explanation}" for r in rows
            if r.missed and r.explanation]


def markdown(rows: list[Row]) -> str:
    lines = ["| " + " | ".join(HEADER) + " |",
             "| --- | --- | ---: | ---: | ---: | ---: | --- | ---: | ---: |"]
    lines += ["| " + " | ".join(row) + " |" for row in cells(rows)]
    lines += [""] + [f"- {line}" for line in sources(rows)]
    explained = explanations(rows)
    if explained:
        lines += ["", "Explained (each suite's `[published] explained`):", ""]
        lines += [f"- {line}" for line in explained]
    lines += ["", VERDICT_RULE, GAIN_RULE]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    """``python -m comet_cl.reproduction RESULTS...``: the tables as Markdown."""
    return tables_main(argv, "python -m comet_cl.reproduction", __doc__.split("\n\n")[0],
                       lambda suites: markdown(table(suites)))


if __name__ == "__main__":
    raise SystemExit(main())
