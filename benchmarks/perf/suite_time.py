"""Training time of finished suite runs, per strategy, as a ratio to `naive` of the same suite.

Issue 9 item 5 (suite time) from results already on disk: every run's summary stores the
training seconds of each experience (`wall_time`: the recorder's clock, probes excluded), so a
protocol suite run for the reproduction is also its own timing, with no second run. The ratio is
taken against naive's mean over the same suite and stream, so runs made two at a time on this
machine compare with naive runs made the same way.

A ratio here is what a user of the suite pays, and differs from `bench_methods.py`'s (one
process, interleaved, one epoch): the protocols run thousands of updates per experience, so a
once-per-experience cost (EWC's Fisher pass, COMET's mask precompute) weighs less.

    PYTHONPATH=. .venv/bin/python benchmarks/perf/suite_time.py reports/vandeven-split-mnist-class [...]
"""

from __future__ import annotations

import argparse
import sys

import pandas as pd

from comet_cl import load_results
from comet_cl.report.load import ReportError
from comet_cl.results import ResultsError


def suite_times(frame: pd.DataFrame) -> pd.DataFrame:
    """One row per (group, stream, strategy): runs, mean and total training seconds, and the
    ratio of the mean to naive's mean on the same group and stream (NaN without naive runs)."""
    rows = (frame.groupby(["group", "stream", "strategy"], sort=False)["wall_time"]
            .agg(runs="count", mean_s="mean", total_s="sum").reset_index())
    naive = rows[rows.strategy == "naive"].set_index(["group", "stream"])["mean_s"]
    key = pd.MultiIndex.from_frame(rows[["group", "stream"]])
    rows["x_naive"] = rows["mean_s"].to_numpy() / naive.reindex(key).to_numpy()
    return rows


def markdown(rows: pd.DataFrame) -> str:
    lines = []
    for (group, stream), part in rows.groupby(["group", "stream"], sort=False):
        lines += [f"{group}, {stream}: {part.total_s.sum() / 3600:.2f} h of training over "
                  f"{int(part.runs.sum())} runs", "",
                  "| strategy | runs | s / run | x naive |", "| --- | ---: | ---: | ---: |"]
        lines += [f"| {r.strategy} | {r.runs} | {r.mean_s:.0f} | "
                  + ("" if pd.isna(r.x_naive) else f"{r.x_naive:.2f}") + " |"
                  for r in part.itertuples()]
        lines.append("")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("results", nargs="+", help="results folders (comet-cl run --out)")
    args = parser.parse_args(argv)
    try:
        frame = load_results(*args.results)
    except (ReportError, ResultsError) as e:  # a folder that is not results: one line, not a traceback
        parser.error(str(e))
    print(markdown(suite_times(frame)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
