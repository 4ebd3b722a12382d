"""The COMET study's tables (comet_cl/study.py) and its [study] table in suite specs."""

import pytest

from comet_cl import results as res
from comet_cl.config import ConfigError, parse_suite
from comet_cl.contract import read_suites
from comet_cl.study import headline, markdown, tables
from conftest import write_finished_run

T95_3 = 4.303  # t quantile, 2 degrees of freedom


def _spec(study: dict) -> dict:
    return {"name": "s", "streams": ["split-mnist"],
            "strategies": ["naive", "comet", "ewc", "comet-ewc"], "study": study}


def _write(out, spec: dict, runs) -> None:
    """A results folder as `comet-cl run` leaves it: suite.json and one finished run folder
    per (strategy, seed, acc, curve)."""
    res.atomic_write_json(out / "suite.json", {"name": spec["name"], "spec": parse_suite(spec)})
    for name, seed, acc, curve in runs:
        write_finished_run(out, "s", name, seed, acc, [curve], {"acc": acc, "lca": curve[0][1]})


def test_contrasts_are_paired_by_seed_and_claimed_only_where_the_interval_clears_zero(tmp_path):
    study = {"contrasts": {"comet": "naive", "comet-ewc": "ewc"}, "speed_level": 0.5,
             "goals": [{"name": "beats a bar", "strategy": "comet-ewc", "above": 70.0},
                       {"name": "beats ewc", "strategy": "comet-ewc", "above_strategy": "ewc"}]}
    curve = lambda at: [(0, 0.1), (at, 0.6)]  # noqa: E731  reaches 0.5 at `at`
    naive = [0.50, 0.60, 0.70]  # seeds differ by 10 points: unpaired, nothing would separate
    runs = [("naive", s, a, curve(40)) for s, a in enumerate(naive)]
    runs += [("comet", s, a + d, curve(20)) for s, (a, d) in enumerate(zip(naive, [.02, .03, .02]))]
    runs += [("ewc", s, a, curve(40)) for s, a in enumerate([0.80, 0.81, 0.82])]
    runs += [("comet-ewc", s, a, curve(40)) for s, a in enumerate([0.80, 0.83, 0.80])]
    _write(tmp_path, _spec(study), runs)
    study = tables(read_suites([tmp_path]))
    row = {r.strategy: r for r in study.rows}
    assert study.columns == {"s": ["acc", "steps_to_accuracy"]} and study.levels == {"s": 0.5}
    d = row["comet"].paired["acc"]  # +2, +3, +2 points, paired: mean 2.33, half 1.43
    assert d.n == 3 and d.mean == pytest.approx(7 / 3)
    assert d.half == pytest.approx(T95_3 * (1 / 3) ** 0.5 / 3 ** 0.5, rel=1e-3)
    assert row["comet"].verdict("acc") == "better than naive"
    assert row["comet"].values["steps_to_accuracy"].mean == 20  # the fixed level, from curves
    assert row["comet"].verdict("steps_to_accuracy") == "faster than naive"  # fewer updates
    assert row["comet-ewc"].verdict("acc") == "no difference resolved"  # 0, +2, -2
    assert row["naive"].contrast is None and row["naive"].verdict("acc") == ""
    bar, paired = study.goals
    assert bar.estimate.mean == pytest.approx(81.0) and bar.verdict == "holds"  # 81 +- 4.3 > 70
    assert paired.verdict == "not resolved (the bar is inside our 95% CI)"
    text = markdown(study)
    assert ("| strategy | seeds | acc | updates to 50% | contrast | difference (acc) | verdict "
            "| difference (updates to 50%) |") in text
    # the second metric's paired difference and the direction its interval resolves (fewer
    # updates: faster); comet-ewc's is 0 on every seed (no direction)
    assert ("| comet | 3 | 62.3 +- 24.9 | 20 +- 0 | naive | 2.33 +- 1.43 | better than naive "
            "| -20.00 +- 0.00 (faster) |") in text
    assert "| naive | 3 | 60.0 +- 24.8 | 40 +- 0 |  |  |  |  |" in text
    assert "| ewc | 0.00 +- 4.97 | no difference resolved | 0.00 +- 0.00 |" in text
    assert "| s | beats a bar | comet-ewc | 70.00 | 81.00 +- 4.30 | holds |" in text


def test_a_bar_the_interval_falls_below_does_not_hold_and_few_seeds_claim_nothing(tmp_path):
    study = {"contrasts": {"comet": "naive"},
             "goals": [{"name": "high bar", "strategy": "comet", "above": 95.0}]}
    runs = [("naive", s, 0.5, [(0, 0.1)]) for s in range(2)]
    runs += [("comet", s, 0.9 + s / 100, [(0, 0.1)]) for s in range(2)]
    _write(tmp_path, _spec(study), runs)
    got = tables(read_suites([tmp_path]))
    comet = next(r for r in got.rows if r.strategy == "comet")
    assert comet.verdict("acc") == "no claim (2 paired seeds)"  # 40 points, but 2 seeds
    assert got.goals[0].verdict == "no verdict yet (2 seeds)"
    _write(tmp_path, _spec(study), runs + [("comet", 2, 0.91, [(0, 0.1)])])
    assert tables(read_suites([tmp_path])).goals[0].verdict == "does not hold"  # 90.67 +- 1.4 < 95


def test_unfinished_runs_and_suites_without_a_study_are_left_out(tmp_path):
    spec = _spec({})
    del spec["study"]
    _write(tmp_path / "plain", spec, [("naive", 0, 0.5, [(0, 0.1)])])
    _write(tmp_path / "st", _spec({"contrasts": {"comet": "naive"}}),
           [("naive", 0, 0.5, [(0, 0.1)])])
    (res.run_dir(tmp_path / "st", "split-mnist", "naive", 0) / "summary.json").unlink()
    got = tables(read_suites([tmp_path / "plain", tmp_path / "st"]))
    assert list(got.columns) == ["s"] and got.goals == [] and got.levels == {}
    assert all(v is None for r in got.rows for v in r.values.values())
    assert next(r for r in got.rows if r.strategy == "comet").verdict("acc") == "not run yet"


def test_a_contrast_can_name_another_suites_strategy_paired_by_seed(tmp_path):
    """A diagnostic suite held against its parent suite's runs ("parent:ewc"), paired by
    seed when both folders are given and both suites run the same streams."""
    parent = {**_spec({}), "name": "parent"}
    del parent["study"]
    _write(tmp_path / "parent", parent,
           [("ewc", s, a, [(0, 0.1)]) for s, a in enumerate([0.50, 0.60, 0.70])])
    diag = {**_spec({"contrasts": {"comet": ["parent:ewc", "naive"]}}), "name": "diag"}
    _write(tmp_path / "diag", diag,
           [("comet", s, a, [(0, 0.1)]) for s, a in enumerate([0.55, 0.66, 0.74])])
    row, own = [r for r in tables(read_suites([tmp_path / "diag", tmp_path / "parent"])).rows
                if r.strategy == "comet"]  # a row per reference, in the order written
    assert row.paired["acc"].mean == pytest.approx(5.0) and row.paired["acc"].n == 3
    assert row.verdict("acc") == "better than parent:ewc"  # +5, +6, +4: the seeds cancel
    assert own.contrast == "naive" and own.verdict("acc") == "not run yet"
    alone = next(r for r in tables(read_suites([tmp_path / "diag"])).rows if r.strategy == "comet")
    assert alone.contrast == "parent:ewc"
    assert alone.verdict("acc") == "not paired: give parent's results folder too"
    _write(tmp_path / "other", {**parent, "streams": ["permuted-mnist"]},
           [("ewc", 0, 0.5, [(0, 0.1)])])
    other = next(r for r in tables(read_suites([tmp_path / "diag", tmp_path / "other"])).rows
                 if r.strategy == "comet")
    assert other.verdict("acc") == "not paired: parent runs other streams"


def test_the_headline_reads_each_contrast_across_the_suites_that_decide_on_the_same_metric(
        tmp_path):
    """One row per contrast, one column per suite; a suite deciding on another metric (the
    learning-speed stream's LCA) is left out, and a contrast a suite lacks is blank."""
    naive = [0.50, 0.60, 0.70]
    a = {**_spec({"contrasts": {"comet": "naive", "comet-ewc": "ewc"}}), "name": "a"}
    _write(tmp_path / "a", a, [("naive", s, x, [(0, 0.1)]) for s, x in enumerate(naive)]
           + [("comet", s, x + 0.02, [(0, 0.1)]) for s, x in enumerate(naive)])
    b = {**_spec({"contrasts": {"comet": "naive"}}), "name": "b"}
    _write(tmp_path / "b", b, [("naive", s, x, [(0, 0.1)]) for s, x in enumerate(naive)]
           + [("comet", s, x + d, [(0, 0.1)]) for s, (x, d) in enumerate(zip(naive, [.01, -.01, 0]))])
    c = {**_spec({"metrics": ["lca", "acc"], "contrasts": {"comet": "naive"}}), "name": "c"}
    _write(tmp_path / "c", c, [("naive", 0, 0.5, [(0, 0.1)]), ("comet", 0, 0.6, [(0, 0.2)])])
    study = tables(read_suites([tmp_path / "a", tmp_path / "b", tmp_path / "c"]))
    header, body = headline(study)["acc"]
    assert header == ["acc: strategy vs contrast", "a", "b"] and list(headline(study)) == ["acc"]
    assert body == [["comet vs naive", "2.00 +- 0.00 better", "0.00 +- 2.48 unresolved"],
                    ["comet-ewc vs ewc", "not run yet", ""]]
    text = markdown(study)
    assert "| comet vs naive | 2.00 +- 0.00 better | 0.00 +- 2.48 unresolved |" in text
    assert text.index("Across suites") < text.index("**a**")
    _write(tmp_path / "b", b, [("naive", s, 0.5, [(0, 0.1)]) for s in range(2)]
           + [("comet", s, 0.6, [(0, 0.1)]) for s in range(2)])  # b's seed 2 gone: 2 seeds
    (res.run_dir(tmp_path / "b", "split-mnist", "comet", 2) / "summary.json").unlink()
    _, body = headline(tables(read_suites([tmp_path / "a", tmp_path / "b"])))["acc"]
    assert body[0][2] == "10.00 +- 0.00 (2 seeds: no claim)"
    assert "Across suites" not in markdown(tables(read_suites([tmp_path / "a"])))  # one suite


@pytest.mark.parametrize("study, match", [
    ({"contrasts": {"comet": "nave"}}, "unknown strategy 'nave'; did you mean 'naive'"),
    ({"contrasts": {"comet": "parent:"}}, "'parent:' must read 'suite:strategy'"),
    ({"contrasts": {"comet": ["naive", "nave"]}}, "unknown strategy 'nave'"),
    ({"contrasts": {"comet": []}}, "a name or a non-empty list of names"),
    ({"contrasts": {"smoe": "naive"}}, "study.contrasts.smoe'.*unknown key"),
    ({"metrics": ["accuracy"]}, "unknown metric 'accuracy'; did you mean 'acc'"),
    ({"metrics": ["intransigence"]}, "unknown metric 'intransigence'"),  # not in a summary
    ({"speed_level": 35}, "speed_level.*must be in"),
    ({"goals": [{"name": "g", "strategy": "comet"}]}, "needs one bar"),
    ({"goals": [{"name": "g", "strategy": "comet", "above": 1.0, "above_strategy": "naive"}]},
     "needs one bar"),
    ({"goals": [{"name": "g", "strategy": "comet", "above_strategy": "replay"}]},
     "unknown strategy 'replay'"),
    ({"goals": [{"strategy": "comet", "above": 1.0}]}, "study.goals\\[0\\].name' is required"),
    ({"goals": ["comet above naive"]}, "must be a table"),
    ({"verdicts": True}, "study.verdicts'.*unknown key"),
])
def test_a_bad_study_table_is_refused_with_the_key_named(study, match):
    with pytest.raises(ConfigError, match=match):
        parse_suite(_spec(study))


@pytest.mark.parametrize("module", ["comet_cl.study", "comet_cl.reproduction"])
def test_the_table_commands_print_markdown_and_refuse_bad_folders_in_one_line(
        module, tmp_path, capsys):
    import importlib
    main = importlib.import_module(module).main
    spec = {**_spec({"contrasts": {"comet": "naive"}}),
            "published": {"source": "a paper", "figures": {"naive": 50.0}}}
    _write(tmp_path / "s", spec, [("naive", 0, 0.5, [(0, 0.1)]), ("comet", 0, 0.6, [(0, 0.1)])])
    assert main([str(tmp_path / "s")]) == 0
    printed = capsys.readouterr().out
    assert ("| comet | 1 | 60.0 | naive |" if module.endswith("study")
            else "| s | naive | 50.00 | 50.00 | 1 |") in printed
    for bad, why in [(tmp_path / "nowhere", "not a comet-cl results folder (no suite.json)"),
                     (tmp_path, "not a comet-cl results folder (no suite.json)")]:
        with pytest.raises(SystemExit) as stop:
            main([str(bad)])
        err = capsys.readouterr().err
        assert stop.value.code == 2 and why in err and "Traceback" not in err
    summary = res.run_dir(tmp_path / "s", "split-mnist", "naive", 0) / "summary.json"
    summary.write_text("{ not json")
    with pytest.raises(SystemExit) as stop:
        main([str(tmp_path / "s")])
    err = capsys.readouterr().err
    assert stop.value.code == 2 and "summary.json" in err
    assert summary.read_text() == "{ not json"  # left as it was, for inspection
