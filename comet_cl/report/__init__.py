"""The report: results folders -> pandas frames -> figures -> one PDF, plus the tables as CSV.

``build_report(results_dirs, out_pdf)`` reads every run through the typed run contract
(``comet_cl.contract``), recomputes each finished run's metrics from its raw records with
``comet_cl.metrics`` (checking them against those the run stored), aggregates over seeds
(mean and 95% t-interval) and writes ``out_pdf`` with these CSV files beside it (for
``report.pdf``)::

    report-runs.csv       one row per finished run (seed), unrounded
    report-summary.csv    ACC and forgetting per group x stream x strategy
    report-<stream>.csv   the stream's table: mean, CI and best flag of every column
    report-missing.csv    runs the suite spec asks for that did not finish
    report-sweep.csv      the validation sweep's points (when OUT/sweep.json exists)

Runs made from different suite specs (``suite_hash``) are never pooled: each spec is its own
group, labelled ``"<suite name> (<short hash>)"``.

The package is split by step: ``load`` (folders -> typed runs -> frames; no matplotlib, so
``comet_cl.load_results`` stays light), ``tables`` (aggregation, marks, text tables),
``figures`` (each figure a function of an axis and a frame) and ``pdf`` (pages, layout, the
file). ``build_report`` and ``ReportResult`` are imported from ``pdf`` on first use.
"""

from __future__ import annotations

from comet_cl.report.load import ReportError, load_results

__all__ = ["ReportError", "ReportResult", "build_report", "load_results"]


def __getattr__(name: str):
    if name in ("build_report", "ReportResult"):
        from comet_cl.report import pdf
        return getattr(pdf, name)
    raise AttributeError(f"module 'comet_cl.report' has no attribute {name!r}")
