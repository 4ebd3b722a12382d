"""Pages and the PDF: frames -> laid-out A4 pages -> one bookmarked PDF, tables as CSV.

Layout is fixed, not constrained: every page has the same title band, content box and footer
band, tables are split so that their notes end above the footer, and the legend of the line
plots has its own column at the right, so no entry is ever cut by a page edge however many
strategies a suite has.
"""

from __future__ import annotations

import io
import textwrap
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import matplotlib
import numpy as np
import pandas as pd
from matplotlib.backends.backend_pdf import PdfPages
from matplotlib.figure import Figure
from pypdf import PdfReader, PdfWriter

from comet_cl import __version__, metrics
from comet_cl import results as res
from comet_cl import reproduction
from comet_cl import study as comet_study
from comet_cl.report import figures, tables
from comet_cl.report.load import (
    KEYS,
    ReportError,
    Run,
    Suite,
    curve_frame,
    dedupe,
    load,
    matrix_frame,
    missing_frame,
    overlap_frame,
    plan_frame,
    results_folders,
    runs_frame,
    seen_frame,
    sweep_frame,
)
from comet_cl.report.tables import COLUMN, seeds_text
from comet_cl.results import shown

PAGE = (11.69, 8.27)  # A4 landscape, inches
RC = {
    "figure.facecolor": "white", "axes.facecolor": "white", "axes.edgecolor": ".8",
    "axes.grid": True, "grid.color": ".85", "axes.axisbelow": True, "axes.labelcolor": ".15",
    "text.color": ".15", "xtick.color": ".15", "ytick.color": ".15",
    "font.sans-serif": ["DejaVu Sans"],
    "pdf.fonttype": 42,  # TrueType: text stays extractable (pdftotext, pypdf)
    "font.size": 9, "axes.titlesize": 10, "axes.labelsize": 9, "xtick.labelsize": 9,
    "ytick.labelsize": 9, "legend.fontsize": 9, "figure.titlesize": 11,
}
TOP = 0.90  # content starts below the title band
BOTTOM = 0.06  # and ends above the footer band
ROW_HEIGHT = 0.28 / PAGE[1]  # one table row, figure fraction
NOTE_LINE = 8 * 1.45 / 72 / PAGE[1]  # one line of notes at 8 pt, figure fraction
NOTE_WIDTH = 190  # characters per notes line
STREAMS_PER_SUMMARY_PAGE = 4
MATRICES_PER_PAGE = 6


@dataclass(frozen=True)
class ReportResult:
    """What ``build_report`` wrote."""

    pdf: Path
    csvs: list[Path]
    groups: list[str]  # one per suite spec (suite name + short hash)
    missing: int  # rows of the "Missing or unfinished runs" section (report-missing.csv)


# -------------------------------------------------------------------------------- page kit


def _chunks(items: Sequence, size: int) -> list[Sequence]:
    return [items[i: i + size] for i in range(0, len(items), size)]


def _page(title: str, caption: str | None = None) -> Figure:
    """An A4 landscape page with a title and, for a figure page, a caption under it."""
    fig = Figure(figsize=PAGE)
    fig.suptitle(title, x=0.03, y=0.975, ha="left", fontweight="bold")
    if caption:
        fig.text(0.03, 0.94, textwrap.fill(caption, 175), fontsize=8.5, va="top")
    return fig


def _wrap(notes: Sequence[str]) -> str:
    return "\n".join(textwrap.fill(n, NOTE_WIDTH, subsequent_indent="   ") for n in notes)


def _notes(fig: Figure, notes: Sequence[str], top: float) -> None:
    fig.text(0.03, top, _wrap(notes), va="top", ha="left", fontsize=8, linespacing=1.4)


def _notes_height(notes: Sequence[str]) -> float:
    return (_wrap(notes).count("\n") + 1) * NOTE_LINE


def rows_per_page(notes: Sequence[str]) -> int:
    """How many table rows fit between the title band and the notes, which end above the footer."""
    room = TOP - BOTTOM - 0.04 - _notes_height(notes)
    return max(3, int(room / ROW_HEIGHT) - 2)  # the header row is two lines tall


def _draw_table(fig: Figure, table: pd.DataFrame, best: np.ndarray | None, top: float) -> float:
    """Draw ``table`` from ``top`` (figure fraction) down; return where it ends."""
    chars = [3 + max(len(line) for v in [c, *table[c]] for line in str(v).split("\n"))
             for c in table.columns]  # 3: padding, and room for the bold header
    natural = 0.075 * sum(chars) / PAGE[0]  # the width its text needs at the full font size
    width = min(0.94, natural)
    header = 2 if any("\n" in str(c) for c in table.columns) else 1  # lines in the header
    height = ROW_HEIGHT * (len(table) + header)
    ax = fig.add_axes((0.03, top - height, width, height))
    ax.axis("off")
    drawn = ax.table(cellText=table.to_numpy().tolist(), colLabels=list(table.columns),
                     colWidths=[n / sum(chars) for n in chars], cellLoc="center", bbox=(0, 0, 1, 1))
    drawn.auto_set_font_size(False)
    drawn.set_fontsize(8.5 * width / natural)  # a table wider than the page: smaller text
    for (r, c), cell in drawn.get_celld().items():
        cell.set_edgecolor("0.75")
        cell.set_height(header if r == 0 else 1)  # relative: the bbox scales them to fit
        if r == 0:
            cell.set_facecolor("0.9")
            cell.get_text().set_fontweight("bold")
        elif best is not None and best[r - 1, c]:
            cell.get_text().set_fontweight("bold")
    return top - height


def table_pages(title: str, table: pd.DataFrame, best: np.ndarray | None,
                notes: Sequence[str], empty: str = "Nothing to show.") -> list[Figure]:
    """``table`` on as many pages as its rows need, with ``notes`` under it on each page; an
    empty one is a page saying ``empty`` (the caller knows why it is empty), then the notes."""
    if table.empty:
        fig = _page(title)
        _notes(fig, [empty, *notes], 0.88)
        return [fig]
    pages, per_page = [], rows_per_page(notes)
    for start in range(0, max(len(table), 1), per_page):
        fig = _page(title if start == 0 else f"{title} (continued)")
        rows = slice(start, start + per_page)
        bottom = _draw_table(fig, table.iloc[rows], None if best is None else best[rows], TOP)
        _notes(fig, notes, bottom - 0.03)
        pages.append(fig)
    return pages


def _legend(fig: Figure, axes: Sequence, left: float) -> None:
    """One legend for the given axes, in its own column from ``left`` to the page's edge."""
    handles = {}
    for ax in axes:
        for handle, label in zip(*ax.get_legend_handles_labels()):
            handles.setdefault(label, handle)
    if handles:
        fig.legend(handles.values(), handles.keys(), loc="upper left", bbox_to_anchor=(left, TOP - 0.04),
                   ncols=1 if len(handles) <= 24 else 2, frameon=False, fontsize=8,
                   title="strategy (finished seeds)", title_fontsize=8, alignment="left")


# ----------------------------------------------------------------------------- figure pages


def accuracy_matrix_pages(title: str, cells: pd.DataFrame, strategies: Sequence[str]) -> list[Figure]:
    """R (mean over seeds, %) as a heatmap per strategy, six to a page."""
    drawn = [s for s in strategies if (cells.strategy == s).any()]
    pages = []
    for chunk in _chunks(drawn, MATRICES_PER_PAGE):
        fig = _page(title, "Cell (i, j): accuracy (%) on experience j's test set after training on "
                           "experiences 0..i, mean over seeds; joint: after training on all data.")
        rows = 1 if len(chunk) <= 3 else 2
        grid = fig.add_gridspec(rows, 3, left=0.05, right=0.88, top=TOP - 0.03, bottom=BOTTOM + 0.03,
                                wspace=0.35, hspace=0.35)
        for k, strategy in enumerate(chunk):
            ax = fig.add_subplot(grid[k // 3, k % 3])
            part = cells[cells.strategy == strategy]
            image = figures.accuracy_matrix(ax, part, f"{strategy} (n={part.seed.nunique()})")
        fig.colorbar(image, cax=fig.add_axes((0.91, 0.2, 0.015, 0.6)), label="test accuracy (%)")
        pages.append(fig)
    return pages


def _class_incremental(cells: pd.DataFrame) -> bool:
    """True when no continual run scored above 0 on any experience before training on it
    (R[j-1][j] = 0 for every j): classes not seen yet cannot be predicted, so FWT is just -R0."""
    ahead = cells[~cells.joint & (cells.col == cells.row + 1)]
    return not ahead.empty and bool((ahead.acc == 0).all())


def curves_page(title: str, seen: pd.DataFrame, curves: pd.DataFrame, cells: pd.DataFrame,
                agg_stream: pd.DataFrame, raw_stream: pd.DataFrame,
                style: dict[str, figures.Style], beta: int) -> Figure:
    """Accuracy over the stream, early learning curves, forgetting and FWT bars."""
    fig = _page(title, "Lines: mean over seeds; bands and error bars: 95% CI (Student t); "
                       "dots: single seeds; n: finished seeds. Line plots: the y axis spans the data.")
    grid = fig.add_gridspec(2, 2, left=0.06, right=0.78, top=TOP - 0.02, bottom=BOTTOM + 0.07,
                            wspace=0.22, hspace=0.58)
    acc_ax, lca_ax = fig.add_subplot(grid[0, 0]), fig.add_subplot(grid[0, 1])
    fgt_ax, fwt_ax = fig.add_subplot(grid[1, 0]), fig.add_subplot(grid[1, 1])
    figures.accuracy_over_stream(acc_ax, seen, style)
    figures.learning_curves(lca_ax, curves, style, beta)
    _legend(fig, (acc_ax, lca_ax), 0.805)
    figures.metric_bars(fgt_ax, agg_stream, raw_stream, COLUMN["forgetting"], style,
                        "Forgetting (lower is better)")
    fwt_title = "Forward transfer (higher is better)"
    if _class_incremental(cells):
        fwt_title += ("\ncaveat: R[j-1][j] = 0 in every run (class-incremental: unseen classes "
                      "cannot be predicted),\nso FWT here is only -R0 and says nothing about transfer")
    figures.metric_bars(fwt_ax, agg_stream, raw_stream, COLUMN["fwt"], style, fwt_title)
    return fig


def _overlap_groups(overlaps: pd.DataFrame) -> list[tuple[list[str], pd.DataFrame]]:
    """Strategies whose stored overlaps are identical (same routed model, same seeds, same
    numbers: a fixed router gives every method the same masks) share one page."""
    groups: list[tuple[list[str], pd.DataFrame]] = []
    for _, by_model in overlaps.groupby("model", sort=False):
        for strategy, part in by_model.groupby("strategy", sort=False):
            values = part.sort_values(["seed", "layer", "row", "col"])
            for names, first in groups:
                ref = first.sort_values(["seed", "layer", "row", "col"])
                if len(ref) == len(values) and (ref.model.iloc[0] == values.model.iloc[0]) \
                        and np.array_equal(ref.seed.to_numpy(), values.seed.to_numpy()) \
                        and np.allclose(ref.overlap.to_numpy(), values.overlap.to_numpy()):
                    names.append(strategy)
                    break
            else:
                groups.append(([strategy], part))
    return groups


def overlap_pages(title: str, overlaps: pd.DataFrame) -> list[Figure]:
    """Task-by-task mask overlap per masked layer, once per routed model (strategies with
    identical masks share the page), against the measured chance level of each layer."""
    pages = []
    for names, part in _overlap_groups(overlaps):
        n, p_k = part.seed.nunique(), float(part.p_k.iloc[0])
        measured = not part.chance.isna().any()
        fig = _page(f"{title}: mask overlap between tasks ({', '.join(names)})",
                    "Cell (i, j): mean fraction of active units shared by inputs of experiences i and j "
                    f"(|m(a) AND m(b)| / k), per masked layer, mean over {seeds_text(n)}. "
                    + ("Colour: difference from the layer's measured chance level, the overlap of "
                       "unrelated inputs (each input's pixels shuffled on its own); white = chance."
                       if measured else
                       "Chance level not measured: these summaries predate it (schema 1); p_k = "
                       f"{p_k:g} is only a lower reference, since inputs that share no structure "
                       "still overlap more than p_k beyond the first layer."))
        layers = list(dict.fromkeys(part.layer))
        grid = fig.add_gridspec(1, len(layers), left=0.05, right=0.95, top=TOP - 0.06,
                                bottom=BOTTOM + 0.08, wspace=0.45)
        for k, layer in enumerate(layers):
            ax = fig.add_subplot(grid[0, k])
            cells = part[part.layer == layer]
            chance = float(cells.chance.mean())
            sub = f"chance (measured) {chance:.2f}" if measured else f"p_k = {p_k:g}"
            image = figures.overlap_heatmap(ax, cells, f"{layer}\n{sub}")
            fig.colorbar(image, ax=ax, shrink=0.6, location="bottom", pad=0.12,
                         label="mask overlap" + (" (white: chance)" if measured else ""))
        pages.append(fig)
    return pages


def sweep_pages(group: str, sweep: pd.DataFrame, style: dict[str, figures.Style],
                follow: dict[str, str] | None = None) -> Iterator[Figure]:
    """The validation sweep of a group: its table, then its scores per stream. ``follow``:
    the strategies run at another's chosen point (sweep.json), named in the notes."""
    title = f"Validation sweep \u2014 {group}"
    yield from table_pages(title, *tables.sweep_table(sweep),
                           tables.sweep_notes(sweep.rule.iloc[0], follow, set(sweep.strategy)))
    for stream, points in sweep.groupby("stream", sort=False):
        fig = _page(f"{title}: {stream}", "Validation accuracy per grid point: mean and 95% CI "
                    "over seeds, dots: single seeds; ringed: the chosen point.")
        ax = fig.add_axes((0.30, BOTTOM + 0.06, 0.62, TOP - BOTTOM - 0.12))
        figures.sweep_scores(ax, points.reset_index(drop=True), style)
        yield fig


# ------------------------------------------------------------------------------- sections


MISSING_NOTES = [
    f"A run is finished exactly when its {res.SUMMARY_FILE} exists. Unfinished: the run folder has "
    f"{res.CONFIG_FILE} but no {res.SUMMARY_FILE} (crashed, stopped or still running; `comet-cl run` "
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
    versions = sorted({k for s in summaries for k in s.versions})
    rows = [
        ("Suites", "; ".join(f"{s.label}, hash {s.hash}" for s in suites)),
        ("Results folders", "; ".join(map(shown, folders))),
        ("Runs", f"{len(summaries)} finished, {len(missing)} missing or unfinished"),
        ("Report made", f"{made} by comet-cl {__version__}"),
        ("Finished", _span(s.finished_at for s in summaries)),
        ("git commit", _distinct(s.git_commit[:10] if s.git_commit else None for s in summaries)),
        ("Machine", _distinct(s.machine for s in summaries)),
        ("Device", _distinct(s.device for s in summaries)),
        ("Summary schema", _distinct(s.schema_version for s in summaries)),
        *[(k, _distinct(s.versions.get(k) for s in summaries)) for k in versions],
    ]
    height = 0.26 * len(rows) / PAGE[1]
    ax = fig.add_axes((0.03, 0.88 - height, 0.94, height))
    ax.axis("off")
    drawn = ax.table(cellText=[[k, textwrap.shorten(v, 110)] for k, v in rows], colWidths=[0.16, 0.84],
                     cellLoc="left", edges="open", bbox=(0, 0, 1, 1))
    drawn.auto_set_font_size(False)
    drawn.set_fontsize(10)
    for (_, c), cell in drawn.get_celld().items():
        if c == 0:
            cell.get_text().set_fontweight("bold")
    listing = "\n".join(f"  {i}. {c}" for i, c in enumerate(contents, 1))
    fig.text(0.03, 0.86 - height - 0.03, "Contents\n" + listing, va="top", fontsize=10 if len(contents) < 12 else 8,
             linespacing=1.4)
    return fig


def _distinct(values: Iterable) -> str:
    """'x' when every run agrees, else how many values there are and each one with its run
    count, the commonest first (the count comes first: a long list is cut to fit the page)."""
    counts = pd.Series([str(v) if v is not None else "unknown" for v in values]).value_counts()
    if len(counts) <= 1:
        return counts.index[0] if len(counts) else "unknown"
    listed = "; ".join(f"{v} ({n} run{'s' if n > 1 else ''})" for v, n in counts.items())
    return f"{len(counts)} values: {listed}"


def _span(stamps: Iterable[str | None]) -> str:
    known = sorted(s for s in stamps if s)
    return f"{known[0]} to {known[-1]}" if known else "unknown"


def _section(title: str, figs: Iterable[Figure]) -> Iterator[tuple[str | None, Figure]]:
    """Pages of one section: the first one carries the bookmark title."""
    for i, fig in enumerate(figs):
        yield (title if i == 0 else None), fig


def stream_section(group: str, stream: str, runs: Sequence[Run], agg_stream: pd.DataFrame,
                   raw_stream: pd.DataFrame, style: dict[str, figures.Style]) -> Iterator[Figure]:
    """A stream's table page(s), then its figures."""
    title = f"Stream {stream} \u2014 {group}"
    beta = runs[0].config.beta if runs else metrics.BETA
    cols = tables.stream_columns(agg_stream, beta)
    yield from table_pages(title, *tables.stream_table(agg_stream, cols), tables.stream_notes(cols))
    if raw_stream.empty:
        return
    cells = matrix_frame(runs)
    yield from accuracy_matrix_pages(f"{title}: accuracy matrix R (mean over seeds)", cells,
                                     list(agg_stream.strategy))
    yield curves_page(title, seen_frame(runs), curve_frame(runs, beta), cells, agg_stream,
                      raw_stream, style, beta)
    overlaps = overlap_frame(runs)
    if not overlaps.empty:
        yield from overlap_pages(title, overlaps)


def summary_pages(group: str, agg_group: pd.DataFrame) -> Iterator[Figure]:
    """ACC and forgetting of every strategy on every stream of the group, a few streams a page."""
    streams = list(dict.fromkeys(agg_group.stream))
    for chunk in _chunks(streams, STREAMS_PER_SUMMARY_PAGE):
        yield from table_pages(f"Summary across streams \u2014 {group}",
                               *tables.summary_table(agg_group, chunk), tables.summary_notes())


def missing_pages(missing: pd.DataFrame) -> list[Figure]:
    """The 'Missing or unfinished runs' section; it says so when there are none."""
    title = "Missing or unfinished runs"
    if not missing.empty:
        return table_pages(title, tables.missing_table(missing), None, MISSING_NOTES)
    fig = _page(title)
    _notes(fig, ["None: every run the suite specs ask for finished.", *MISSING_NOTES], 0.88)
    return [fig]


def study_frames(study: comet_study.Study) -> dict[str, pd.DataFrame]:
    """The COMET study's tables (comet_cl.study) as frames: one per suite, and the goals."""
    frames = {suite: pd.DataFrame(body, columns=header)
              for suite, (header, body) in comet_study.cells(study).items()}
    if study.goals:
        frames["Goals"] = pd.DataFrame(comet_study.goal_cells(study.goals),
                                       columns=comet_study.GOAL_HEADER)
    return frames


def headline_frames(study: comet_study.Study) -> dict[str, pd.DataFrame]:
    """The study's tables across suites (comet_study.headline), one per deciding metric; none
    unless two or more suites of the report decide on the same metric."""
    return {metric: pd.DataFrame(body, columns=header)
            for metric, (header, body) in comet_study.headline(study).items()}


def study_pages(study: comet_study.Study) -> Iterator[Figure]:
    for metric, frame in headline_frames(study).items():  # first: each contrast read across
        yield from table_pages(f"COMET study \u2014 across suites ({metric})", frame, None,
                               [comet_study.HEADLINE_NOTE, comet_study.NOTE])
    for name, frame in study_frames(study).items():  # on the page: 'difference' over '(lca)'
        frame = frame.rename(columns=lambda h: h.replace(" (", "\n("))
        yield from table_pages(f"COMET study \u2014 {name}", frame, None, [comet_study.NOTE])


def reproduction_frame(rows: Sequence[reproduction.Row]) -> pd.DataFrame:
    """The reproduction table (comet_cl.reproduction): published figures against ours, every
    suite (the CSV)."""
    return pd.DataFrame(reproduction.cells(rows), columns=reproduction.HEADER)


def reproduction_pages(rows: Sequence[reproduction.Row]) -> Iterator[Figure]:
    """One page (or more) per protocol suite: its rows, sources, explanations and the rules."""
    for suite in dict.fromkeys(r.suite for r in rows):
        mine = [r for r in rows if r.suite == suite]
        frame = pd.DataFrame([row[1:] for row in reproduction.cells(mine)],
                             columns=reproduction.PAGE_HEADER)
        notes = [*reproduction.sources(mine),
                 *(f"Explained: {line}" for line in reproduction.explanations(mine)),
                 reproduction.VERDICT_RULE, reproduction.GAIN_RULE]
        yield from table_pages(f"Reproduction \u2014 {suite}", frame, None, notes)


def pages(folders: Sequence[Path], suites: Sequence[Suite], runs: Sequence[Run],
          raw: pd.DataFrame, agg: pd.DataFrame, missing: pd.DataFrame, sweep: pd.DataFrame,
          made: str, study: comet_study.Study,
          reproduced: Sequence[reproduction.Row]) -> Iterator[tuple[str | None, Figure]]:
    """Every page of the report, in order, each with its bookmark title (or None)."""
    groups = list(dict.fromkeys(agg.group))
    swept = [g for g in groups if (sweep.group == g).any()]
    streams = list(dict.fromkeys(zip(agg.group, agg.stream)))
    contents = [*(x for g in groups for x in (f"Summary across streams \u2014 {g}",
                                              f"Strategies \u2014 {g}")),
                *(["Reproduction: published figures"] if reproduced else []),
                *(["COMET study: contrasts and goals"] if study.columns else []),
                "Missing or unfinished runs",
                *(f"Validation sweep \u2014 {g}" for g in swept),
                *(f"Stream {s} \u2014 {g}" for g, s in streams)]
    yield "Title", title_page(folders, suites, runs, missing, made, contents)
    style = {g: figures.styles(list(dict.fromkeys(agg[agg.group == g].strategy))) for g in groups}
    for group in groups:
        yield from _section(f"Summary across streams \u2014 {group}",
                            summary_pages(group, agg[agg.group == group]))
        table, notes = tables.strategies_table([r for r in runs if r.group == group])
        yield from _section(f"Strategies \u2014 {group}",
                            table_pages(f"Strategies \u2014 {group}", table, None, notes,
                                        empty="Nothing to show yet: none of its runs has "
                                              "finished."))
    if reproduced:
        yield from _section("Reproduction: published figures", reproduction_pages(reproduced))
    if study.columns:
        yield from _section("COMET study: contrasts and goals", study_pages(study))
    yield from _section("Missing or unfinished runs", missing_pages(missing))
    follows = {suite.label: (suite.sweep or {}).get("follow") for suite in suites}
    for group in swept:
        yield from _section(f"Validation sweep \u2014 {group}",
                            sweep_pages(group, sweep[sweep.group == group], style[group],
                                        follows.get(group)))
    for group, stream in streams:
        sel = [r for r in runs if (r.group, r.stream) == (group, stream)]
        yield from _section(f"Stream {stream} \u2014 {group}", stream_section(
            group, stream, sel, agg[(agg.group == group) & (agg.stream == stream)],
            raw[(raw.group == group) & (raw.stream == stream)], style[group]))


def write_pdf(path: Path, pages: Iterable[tuple[str | None, Figure]], made: str) -> None:
    """Render the pages (A4 landscape, page-numbered) into one PDF with bookmarks."""
    buf, bookmarks = io.BytesIO(), []
    with matplotlib.rc_context(RC):
        with PdfPages(buf, metadata={"Title": "comet-cl report",
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
    res.atomic_write_bytes(path, out.getvalue())


def _slug(name: str) -> str:
    return "".join(c if c.isalnum() or c in "-_." else "_" for c in name)


def write_csvs(out_pdf: Path, raw: pd.DataFrame, agg: pd.DataFrame, missing: pd.DataFrame,
               sweep: pd.DataFrame, study: comet_study.Study,
               reproduced: Sequence[reproduction.Row]) -> list[Path]:
    """The report's tables as CSV beside the PDF: runs, summary, one per stream, missing, the
    validation sweep, the reproduction table and the COMET study (contrasts; goals; across
    suites, per deciding metric) when there are any."""
    frames = {"runs": raw, "summary": tables.summary_frame(agg), "missing": missing}
    frames |= {_slug(s): agg[agg.stream == s] for s in dict.fromkeys(agg.stream)}
    if not sweep.empty:
        frames["sweep"] = sweep.drop(columns=["grid", "values"])
    if reproduced:
        frames["reproduction"] = reproduction_frame(reproduced)
    study_tables = study_frames(study)
    goals = study_tables.pop("Goals", None)
    if study_tables:
        frames["study"] = pd.concat([f.assign(suite=name) for name, f in study_tables.items()])
    if goals is not None:
        frames["study-goals"] = goals
    frames |= {f"study-across-{metric}": f for metric, f in headline_frames(study).items()}
    paths = []
    for suffix, frame in frames.items():
        path = out_pdf.with_name(f"{out_pdf.stem}-{suffix}.csv")
        res.atomic_write_bytes(path, frame.to_csv(index=False).encode())
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
    agg = tables.aggregate(raw, plan)
    missing = missing_frame(plan, runs, dropped)
    sweep = sweep_frame(suites)
    by_suite = [(s, [r for r in runs if r.group == s.label]) for s in suites]
    study = comet_study.tables((s.label, s.spec, mine) for s, mine in by_suite)
    reproduced = reproduction.table((s.name, s.spec, mine) for s, mine in by_suite)
    out_pdf = Path(out_pdf)
    out_pdf.parent.mkdir(parents=True, exist_ok=True)
    made = datetime.now().astimezone().strftime("%Y-%m-%d %H:%M %Z")
    write_pdf(out_pdf, pages(folders, suites, runs, raw, agg, missing, sweep, made, study,
                             reproduced), made)
    csvs = write_csvs(out_pdf, raw, agg, missing, sweep, study, reproduced)
    return ReportResult(out_pdf, csvs, list(dict.fromkeys(agg.group)), len(missing))


__all__ = ["KEYS", "ReportError", "ReportResult", "build_report"]
