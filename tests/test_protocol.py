"""Published-protocol machinery on real MNIST: iterations budgets, the domain-incremental split
stream, Adam settings, and validation sweeps that choose on held-out training data only."""

import json
import re
import tomllib

import pytest
import torch

from comet_cl import data
from comet_cl.config import ConfigError, parse_suite
from comet_cl.loaders import TensorBatchLoader, tensor_batches
from comet_cl.contract import iter_stored_runs
from comet_cl.runner import plan_suite, run_suite
from comet_cl.streams import STREAMS, make_stream
from comet_cl.strategies import make_optimizer
from conftest import write_finished_run


def _mnist_or_skip():
    try:
        data.find("mnist")
    except data.DataError as e:
        pytest.skip(f"MNIST not found: {e}")


def test_iterations_budget_cycles_shuffled_full_minibatches():
    n, batch = 10, 4
    loader = TensorBatchLoader(torch.arange(n).view(n, 1).to(torch.uint8), torch.arange(n),
                               torch.arange(n), lambda x: x, batch, shuffle=True,
                               generator=torch.Generator().manual_seed(0), n_batches=7)
    batches = [b[1] for b in loader]
    assert len(loader) == 7 and len(batches) == 7
    assert all(len(b) == batch for b in batches)  # drop_last: every update sees a full batch
    # 2 full batches per pass: each pass covers 8 distinct samples, a fresh order each pass
    passes = [torch.cat(batches[i:i + 2]) for i in range(0, 6, 2)]
    assert all(len(set(p.tolist())) == 8 for p in passes)
    assert len({tuple(p.tolist()) for p in passes}) == 3
    with pytest.raises(ValueError, match="at least one full minibatch"):
        TensorBatchLoader(torch.zeros(3, 1), torch.arange(3), torch.arange(3), lambda x: x, 4,
                          shuffle=True, generator=torch.Generator(), n_batches=1)


@pytest.mark.parametrize("skip", [0, 1, 3, 6])
def test_a_skipped_start_serves_the_rest_of_the_same_minibatches(skip):
    """A run resumed mid-phase skips the minibatches it trained on, and draws the rest exactly
    as the uninterrupted loader does (the generator moves the same way), across passes."""
    def loader(skip):
        n = 10
        return TensorBatchLoader(torch.arange(n).view(n, 1).to(torch.uint8), torch.arange(n),
                                 torch.arange(n), lambda x: x, 4, shuffle=True,
                                 generator=torch.Generator().manual_seed(0), n_batches=7,
                                 skip=skip)
    full, rest = [b[1].tolist() for b in loader(0)], loader(skip)
    assert len(rest) == 7 - skip and [b[1].tolist() for b in rest] == full[skip:]
    assert len(rest) == len(list(rest)) == 7  # the skip is for the first pass only: then whole


def test_domain_incremental_split_mnist_labels_the_position_in_the_pair():
    _mnist_or_skip()
    kind = STREAMS["split-mnist-domain"]
    assert kind.incremental == "domain" and STREAMS["split-mnist"].incremental == "class"
    assert kind.n_outputs(5) == 2 and STREAMS["split-mnist"].n_outputs(5) == 10
    dom = make_stream("split-mnist-domain", max_per_experience=400, max_test_per_experience=200)
    cls = make_stream("split-mnist", max_per_experience=400, max_test_per_experience=200)
    for d, c in zip([*dom.train_stream, *dom.test_stream], [*cls.train_stream, *cls.test_stream]):
        _, y_dom, ids_dom, _ = next(iter(tensor_batches(d.dataset, 400, shuffle=False)))
        x_c, y_cls, ids_cls, _ = next(iter(tensor_batches(c.dataset, 400, shuffle=False)))
        assert torch.equal(ids_dom, ids_cls)  # the same images ...
        pair = sorted(set(y_cls.tolist()))
        assert len(pair) == 2 and set(y_dom.tolist()) == {0, 1}
        assert torch.equal(y_dom, (y_cls == pair[1]).long())  # ... labelled first/second


@pytest.mark.parametrize("seed", [1, 2])
def test_vandeven_class_order_draws_their_pairs_and_labels(seed):
    """class_order = "vandeven" gives, for seed s, the digit pairs and Domain-IL labels of van
    de Ven & Tolias' data.py with seed s: np.random.seed(s); p = np.random.permutation(10);
    experience t holds the digits d with p[d] in {2t, 2t+1}, labelled p[d] - 2t."""
    import numpy as np
    _mnist_or_skip()
    np.random.seed(seed)
    p = np.random.permutation(list(range(10)))  # their line, verbatim
    opts = dict(class_order="vandeven", seed=seed, max_per_experience=300,
                max_test_per_experience=100)
    dom, cls = make_stream("split-mnist-domain", **opts), make_stream("split-mnist", **opts)
    for t, (d, c) in enumerate(zip(dom.train_stream, cls.train_stream)):
        _, y_dom, ids_dom, _ = next(iter(tensor_batches(d.dataset, 300, shuffle=False)))
        _, digit, ids_cls, _ = next(iter(tensor_batches(c.dataset, 300, shuffle=False)))
        assert torch.equal(ids_dom, ids_cls)
        assert set(digit.tolist()) == {d_ for d_ in range(10) if p[d_] // 2 == t}
        assert torch.equal(y_dom, torch.as_tensor(p)[digit] - 2 * t)
    other = make_stream("split-mnist", **{**opts, "seed": seed + 1})
    assert [set(e.dataset.targets) for e in other.train_stream] != [
        set(e.dataset.targets) for e in cls.train_stream]
    with pytest.raises(ValueError, match="vandeven"):
        make_stream("split-mnist", class_order="van-de-ven")


def test_adam_settings_reach_the_optimizer():
    model = torch.nn.Linear(3, 2)
    opt = make_optimizer(model, {"optimizer": "adam", "lr": 1e-4, "betas": [0.8, 0.99]})
    assert isinstance(opt, torch.optim.Adam)
    assert opt.defaults["lr"] == 1e-4 and opt.defaults["betas"] == (0.8, 0.99)




TOML_SWEPT = """name = "swept"
seeds = [0, 1]
streams = [{ name = "split-mnist", n_experiences = 2, max_per_experience = 600, max_test_per_experience = 200 }]
strategies = ["naive", { preset = "naive", name = "tuned" }]
[model]
widths = [32]
[train]
iterations = 12
batch_size = 32
optimizer = "adam"
lr = 1e-3
[eval]
curve_subset = 50
curve_stride = 4
[sweep]
seeds = [0]
valid_fraction = 0.25
[sweep.grid.tuned]
lr = [1e-5, 3e-3]
p_k = [0.5]
"""
SWEPT = tomllib.loads(TOML_SWEPT)


@pytest.mark.slow
def test_sweep_chooses_on_validation_then_runs_final_runs_with_the_choice(tmp_path, capsys):
    _mnist_or_skip()
    out = tmp_path / "out"
    pending = plan_suite(SWEPT, out, unfinished=True)
    assert {p.parts[-5] for p in pending} == {"sweep"}  # the tuning runs come first
    runs = run_suite(SWEPT, out)
    sweep = json.loads((out / "sweep.json").read_text())
    table = sweep["streams"]["split-mnist"]["tuned"]
    assert [p["values"] for p in table["points"]] == [{"lr": 1e-5, "p_k": 0.5},
                                                      {"lr": 3e-3, "p_k": 0.5}]
    # the tuning runs trained on 75% of each experience and were scored on the other 25%
    tuning = {r.config.strategy_name: r for r in iter_stored_runs(out / "sweep")}
    assert set(tuning) == {"tuned@lr=1e-05,p_k=0.5", "tuned@lr=0.003,p_k=0.5"}
    for record in tuning.values():
        assert record.config.eval["split"] == "valid"
        assert record.config.stream["valid_fraction"] == 0.25
        assert record.config.seed == 0
    scores = [p["mean"] for p in table["points"]]
    assert scores == [tuning[n].summary.metrics["acc"] for n in sorted(tuning, reverse=True)]
    best = table["points"][scores.index(max(scores))]["values"]
    assert table["chosen"] == best and best["lr"] == 3e-3  # 12 steps at lr 1e-5 learn nothing
    # final runs: full training data, test sets, the chosen value, every suite seed
    final = {(r.config.strategy_name, r.config.seed): r for r in iter_stored_runs(out)}
    assert set(final) == {(s, k) for s in ("naive", "tuned") for k in (0, 1)}
    assert len(runs) == 4
    for (name, _), record in final.items():
        assert record.finished and "split" not in record.config.eval
        assert record.config.stream["valid_fraction"] == 0.0
        assert record.config.train["lr"] == (3e-3 if name == "tuned" else 1e-3)
    # the choice never read a test-set number: changing the test results changes nothing
    summary = final[("tuned", 0)].path / "summary.json"
    doctored = json.loads(summary.read_text())
    doctored["metrics"]["acc"] = 0.0
    summary.write_text(json.dumps(doctored))
    run_suite(SWEPT, out)
    assert json.loads((out / "sweep.json").read_text()) == sweep
    # the choice written out as a preset that says where it came from, and loads by name
    from comet_cl.strategies import load_preset
    from comet_cl.sweep import main as sweep_main
    presets = tmp_path / "presets"
    suite_file = tmp_path / "swept.toml"
    suite_file.write_text(TOML_SWEPT)
    # a suite name nobody packaged, or another suite's results: one line, and nothing written
    for suite_arg, why in [("no-such-suite", "suite spec not found: no-such-suite"),
                           ("vandeven-split-mnist-class", "holds the tuning runs 'swept-sweep'"),
                           ("split-mnist", "not those of suite 'split-mnist'")]:  # no [sweep]
        with pytest.raises(SystemExit) as stop:
            sweep_main([suite_arg, str(out), "--presets", str(presets)])
        assert stop.value.code == 2 and why in capsys.readouterr().err
    assert not presets.exists()
    assert sweep_main([str(suite_file), str(out), "--presets", str(presets)]) == 0
    preset = load_preset("swept-tuned", presets)
    assert preset.train == {"lr": 3e-3} and preset.model_config == {"p_k": 0.5}
    assert preset.method == "naive" and "validation sweep of suite 'swept'" in preset.source
    assert "lr=1e-05, p_k=0.5: " in preset.source and "highest final average accuracy" in preset.source
    # the values the sweep replaced, as the runs had them before it (suite [train], stream model)
    assert "as the 'naive' preset (the sweep replaced its lr 0.001, p_k 0.5)" in preset.source
    # a one-seed sweep's margin is untested, and the source does not claim an interval for it
    assert "(one seed: not tested)." in preset.source and "95% CI" not in preset.source


def _points(*scores):
    return [{"values": {"c": i}, "valid_acc": list(v), "mean": sum(v) / len(v)}
            for i, v in enumerate(scores)]


def test_sweep_margin_says_whether_the_choice_is_resolved_from_the_runner_up():
    from comet_cl.sweep import margin, margin_text
    # clearly ahead on every seed: the paired interval clears zero
    clear = margin(_points([0.50, 0.52, 0.51], [0.80, 0.82, 0.81], [0.70, 0.71, 0.73]), 1)
    assert clear["runner_up"] == {"c": 2}
    assert clear["difference"] == pytest.approx(0.0967, abs=1e-4) and clear["separable"] is True
    # ahead on the mean, behind on one seed: the interval straddles zero
    noisy = margin(_points([0.70, 0.60, 0.66], [0.64, 0.66, 0.63]), 0)
    assert noisy["separable"] is False and noisy["half"] > noisy["difference"] > 0
    assert margin_text(noisy).endswith(" pp: not separable")
    assert margin_text(clear) == "+9.7 \u00b1 3.8 pp: separable"
    # one seed cannot say; a one-point grid has no runner-up
    one = margin(_points([0.66], [0.63], [0.65]), 0)
    assert one["half"] is None and one["separable"] is None and one["runner_up"] == {"c": 2}
    assert margin_text(one) == "+1.0 pp (one seed: not tested)"
    assert margin(_points([0.5]), 0) is None


def test_a_grid_point_reads_the_same_everywhere_as_in_its_tuning_runs_name():
    from comet_cl.sweep import label, values_text
    point = {"widths": [400, 400], "p_k": 0.1, "lr": 1e-05, "gamma": 1.0}
    assert values_text(point) == "widths=400-400, p_k=0.1, lr=1e-05, gamma=1"
    assert label("comet", point) == "comet@" + values_text(point).replace(", ", ",")


def test_choosing_for_some_strategies_keeps_every_other_finished_sweep(tmp_path):
    from comet_cl.sweep import SWEEP_FILE, choose
    suite = parse_suite({**SWEPT, "seeds": [0], "strategies": [
        {"preset": "naive", "name": "a"}, {"preset": "naive", "name": "b"}],
        "sweep": {"seeds": [0, 1], "valid_fraction": 0.25,
                  "grid": {"a": {"lr": [0.1, 0.2]}, "b": {"lr": [0.1, 0.2]}}}})
    scores = {"a@lr=0.1": (0.5, 0.6), "a@lr=0.2": (0.7, 0.8), "b@lr=0.1": (0.9, 0.9)}
    for name, accs in scores.items():
        for seed, acc in enumerate(accs):
            write_finished_run(tmp_path / "sweep", "swept-sweep", name, seed, acc)
    with pytest.raises(ConfigError, match="2 tuning runs .* have not finished"):
        choose(suite, tmp_path, ["b"])  # b@lr=0.2 has not run
    assert choose(suite, tmp_path, ["a"]) == {("split-mnist", "a"): {"lr": 0.2}}
    for seed in (0, 1):
        write_finished_run(tmp_path / "sweep", "swept-sweep", "b@lr=0.2", seed, 0.1)
    assert choose(suite, tmp_path, ["b"]) == {("split-mnist", "b"): {"lr": 0.1}}
    table = json.loads((tmp_path / SWEEP_FILE).read_text())["streams"]["split-mnist"]
    assert set(table) == {"a", "b"}  # a's finished sweep stays beside b's
    assert table["a"]["chosen"] == {"lr": 0.2} and table["a"]["margin"]["runner_up"] == {"lr": 0.1}
    assert table["b"]["margin"]["separable"] is True


def test_a_control_follows_its_models_chosen_point_and_needs_its_tuning_runs(tmp_path):
    """[sweep] follow: the paper's controls run at the point COMET was tuned to (matched
    active units), with no grid of their own; asking for the control alone still waits for
    the model's tuning runs, and its final runs are planned with the model's choice."""
    from comet_cl.sweep import SWEEP_FILE, choose, tuning_names
    smaller = {"preset": "naive", "name": "smaller", "model": "smaller"}
    spec = {**SWEPT, "seeds": [0], "strategies": ["naive", "comet", smaller],
        "sweep": {"seeds": [0], "valid_fraction": 0.25, "grid": {"comet": {"p_k": [0.1, 0.5]}},
                  "follow": {"smaller": "comet"}}}
    suite = parse_suite(spec)
    assert tuning_names(suite, ["smaller"]) == ["comet@p_k=0.1", "comet@p_k=0.5"]
    write_finished_run(tmp_path / "sweep", "swept-sweep", "comet@p_k=0.1", 0, 0.7)
    with pytest.raises(ConfigError, match="1 tuning runs .* have not finished"):
        choose(suite, tmp_path, ["smaller"])
    write_finished_run(tmp_path / "sweep", "swept-sweep", "comet@p_k=0.5", 0, 0.6)
    assert choose(suite, tmp_path, ["smaller"]) == {("split-mnist", "smaller"): {"p_k": 0.1}}
    assert choose(suite, tmp_path) == {("split-mnist", "comet"): {"p_k": 0.1},
                                       ("split-mnist", "smaller"): {"p_k": 0.1}}
    assert json.loads((tmp_path / SWEEP_FILE).read_text())["follow"] == {"smaller": "comet"}
    from comet_cl.runner import plan
    folders = plan(suite, tmp_path, strategies=["smaller"],
                   chosen_values=choose(suite, tmp_path, ["smaller"]))
    config = json.loads((folders[0] / "config.json").read_text())
    assert config["model"]["p_k"] == 0.1  # not the suite's 0.5


@pytest.mark.parametrize("follow, match", [
    ({"smaller": "naive"}, "'sweep.follow.smaller'.*unknown swept strategy 'naive'"),
    ({"smaler": "comet"}, "'sweep.follow.smaler'.*unknown key"),
    ({"comet": "comet"}, "'comet' cannot follow its own choice"),
])
def test_a_bad_follow_table_is_refused_with_the_key_named(follow, match):
    spec = {**SWEPT, "strategies": ["naive", "comet", "smaller"],
            "sweep": {"grid": {"comet": {"p_k": [0.1, 0.5]}}, "follow": follow}}
    with pytest.raises(ConfigError, match=match):
        parse_suite(spec)


STAGED = {**SWEPT, "seeds": [0], "strategies": ["naive", "comet", "comet-ewc"],
          "sweep": {"seeds": [0], "valid_fraction": 0.25,
                    "grid": {"comet": {"p_k": [0.1, 0.9]}, "comet-ewc": {"ewc_lambda": [1.0, 100.0]}},
                    "follow": {"comet-ewc": "comet"}}}


def test_a_follower_with_a_grid_is_tuned_at_its_leaders_choice_in_a_second_stage(tmp_path):
    """comet-ewc follows comet and has its own lambda grid: its tuning runs wait for comet's
    choice and run at it (p_k 0.9 here, not the suite's 0.5); its final runs take both."""
    from comet_cl import results as res
    from comet_cl.sweep import SWEEP_FILE, choose, tuned_presets
    out = tmp_path / "out"

    def finish(folders, acc_of):  # what a finished run leaves, its ACC chosen by name
        for f in folders:
            res.atomic_write_json(f / "summary.json", {
                "joint": False, "R": [[acc_of(f.parts[-2])]], "R0": [0.1], "curves": [],
                "wall_time": [], "n_params": 1, "metrics": {}})

    first = plan_suite(STAGED, out, strategies=["comet-ewc"], unfinished=True)
    assert sorted(p.parts[-2] for p in first) == ["comet@p_k=0.1", "comet@p_k=0.9"]
    finish(first, lambda name: 0.8 if name.endswith("0.9") else 0.6)
    second = plan_suite(STAGED, out, strategies=["comet-ewc"], unfinished=True)
    assert sorted(p.parts[-2] for p in second) == ["comet-ewc@p_k=0.9,ewc_lambda=1",
                                                   "comet-ewc@p_k=0.9,ewc_lambda=100"]
    assert {json.loads((p / "config.json").read_text())["model"]["p_k"] for p in second} == {0.9}
    listed = json.loads((out / "sweep" / "suite.json").read_text())["spec"]["strategies"]
    assert len(listed) == 4  # the sweep folder lists both stages' runs
    suite = parse_suite(STAGED)
    with pytest.raises(ConfigError, match="2 tuning runs .* have not finished"):
        choose(suite, out, ["comet-ewc"])
    finish(second, lambda name: 0.7 if name.endswith("=100") else 0.5)
    finals = plan_suite(STAGED, out, strategies=["comet-ewc"])
    config = json.loads((finals[0] / "config.json").read_text())
    assert config["model"]["p_k"] == 0.9 and config["strategy"]["params"]["ewc_lambda"] == 100.0
    entry = json.loads((out / SWEEP_FILE).read_text())["streams"]["split-mnist"]["comet-ewc"]
    assert entry["chosen"] == {"ewc_lambda": 100.0} and entry["at"] == {"p_k": 0.9}
    preset = tomllib.loads(tuned_presets(suite, out)["swept-comet-ewc"])
    assert preset["model_config"]["p_k"] == 0.9 and preset["params"]["ewc_lambda"] == 100.0
    assert "at the point comet's sweep chose (p_k=0.9)" in preset["source"]


def test_a_control_following_a_tuned_follower_waits_for_both_stages_and_takes_both_points(tmp_path):
    """smaller-ewc follows comet-ewc, which is tuned at comet's choice: asking for the
    control alone runs comet's grid, then comet-ewc's at its choice, then the control's
    finals at p_k and lambda both chosen (a dense net of p_k x width units with EWC)."""
    from comet_cl import results as res
    spec = {**STAGED, "strategies": [*STAGED["strategies"],
                                     {"preset": "ewc", "name": "smaller-ewc", "model": "smaller"}],
            "sweep": {**STAGED["sweep"], "follow": {"comet-ewc": "comet", "smaller-ewc": "comet-ewc"}}}
    out = tmp_path / "out"
    first = plan_suite(spec, out, strategies=["smaller-ewc"], unfinished=True)
    assert sorted(p.parts[-2] for p in first) == ["comet@p_k=0.1", "comet@p_k=0.9"]
    stage = first
    while stage and stage[0].parts[-5] == "sweep":  # each stage's tuning runs, then the next
        for f in stage:  # p_k 0.9 and lambda 100 score best
            acc = 0.8 if f.parts[-2].endswith(("0.9", "=100")) else 0.6
            res.atomic_write_json(f / "summary.json", {"joint": False, "R": [[acc]], "R0": [0.1],
                                  "curves": [], "wall_time": [], "n_params": 1, "metrics": {}})
        stage = plan_suite(spec, out, strategies=["smaller-ewc"], unfinished=True)
        assert len(stage) <= 2
    finals = plan_suite(spec, out, strategies=["smaller-ewc"])
    config = json.loads((finals[0] / "config.json").read_text())
    assert finals[0].parts[-2] == "smaller-ewc" and config["model"]["variant"] == "smaller"
    assert config["model"]["p_k"] == 0.9 and config["strategy"]["params"]["ewc_lambda"] == 100.0


@pytest.mark.slow
def test_run_suite_runs_both_sweep_stages_then_the_final_runs(tmp_path):
    _mnist_or_skip()
    out = tmp_path / "out"
    finals = run_suite(STAGED, out, strategies=["comet-ewc"])
    assert [(p / "summary.json").is_file() for p in finals] == [True]
    tuned = sorted(r.config.strategy_name for r in iter_stored_runs(out / "sweep") if r.finished)
    entry = json.loads((out / "sweep.json").read_text())["streams"]["split-mnist"]["comet-ewc"]
    at = f"comet-ewc@p_k={entry['at']['p_k']:g}"
    assert tuned == [f"{at},ewc_lambda=1", f"{at},ewc_lambda=100", "comet@p_k=0.1", "comet@p_k=0.9"]
    chosen = json.loads((finals[0] / "config.json").read_text())
    assert chosen["model"]["p_k"] == entry["at"]["p_k"]  # the leader's choice, whichever it was
    assert chosen["strategy"]["params"]["ewc_lambda"] == entry["chosen"]["ewc_lambda"]


@pytest.mark.parametrize("follow, grid, match", [
    ({"comet-ewc": "comet", "comet": "comet-si"}, {"comet-si": {"si_c": [1.0]}},
     "'comet-ewc' has a grid of its own and follows 'comet', which follows 'comet-si'"),
    ({"comet-ewc": "comet"}, {"comet-ewc": {"p_k": [0.5], "ewc_lambda": [1.0]}},
     "'comet-ewc' takes p_k from 'comet's choice, so its own grid cannot set it too"),
])
def test_a_tuned_follower_needs_a_leader_tuned_by_its_grid_alone_on_other_keys(follow, grid, match):
    spec = {**STAGED, "strategies": [*STAGED["strategies"], "comet-si"],
            "sweep": {**STAGED["sweep"], "grid": {**STAGED["sweep"]["grid"], **grid},
                      "follow": follow}}
    with pytest.raises(ConfigError, match=match):
        parse_suite(spec)


def test_a_grid_named_by_another_strategy_is_tuned_on_that_grid(tmp_path):
    """[sweep.grid] dense-ewc = "ewc": the same tuning runs as the grid written out twice, and
    a name that is no table of its own is refused with the strategies that have one."""
    shared = {**STAGED, "strategies": [*STAGED["strategies"], "comet-si",
                                       {"preset": "ewc", "name": "dense-ewc", "model": "dense"}],
              "sweep": {**STAGED["sweep"], "grid": {**STAGED["sweep"]["grid"],
                                                    "comet-si": {"si_c": [0.1, 1.0]},
                                                    "dense-ewc": "comet-ewc"},
                        "follow": {"comet-ewc": "comet", "comet-si": "comet", "dense-ewc": "comet"}}}
    copied = {**shared, "sweep": {**shared["sweep"], "grid": {
        **shared["sweep"]["grid"], "dense-ewc": {"ewc_lambda": [1.0, 100.0]}}}}
    assert parse_suite(shared) == parse_suite(copied)
    from comet_cl import results as res

    def second_stage(spec, out):  # COMET's p_k 0.9 chosen, then the followers' grids
        for f in plan_suite(spec, out, strategies=["dense-ewc"], unfinished=True):
            res.atomic_write_json(f / "summary.json", {
                "joint": False, "R": [[0.8 if f.parts[-2].endswith("0.9") else 0.6]],
                "R0": [0.1], "curves": [], "wall_time": [], "n_params": 1, "metrics": {}})
        return sorted(p.parts[-2] for p in plan_suite(spec, out, strategies=["dense-ewc"],
                                                      unfinished=True))
    assert second_stage(shared, tmp_path / "a") == second_stage(copied, tmp_path / "b") == [
        "dense-ewc@p_k=0.9,ewc_lambda=1", "dense-ewc@p_k=0.9,ewc_lambda=100"]
    for target, why in [("comet-ewcc", "no strategy 'comet-ewcc' has a grid; a shared grid names "
                                       "a strategy with a table of its own (comet, comet-ewc); "
                                       "did you mean 'comet-ewc'?"),
                        ("naive", "no strategy 'naive' has a grid"),
                        ("dense-ewc", "'dense-ewc' has no grid of its own (it shares the grid "
                                      "of 'comet-ewc')")]:
        bad = {**shared, "sweep": {**shared["sweep"], "grid": {**shared["sweep"]["grid"],
                                                               "comet-si": target}}}
        with pytest.raises(ConfigError, match=re.escape(f"'sweep.grid.comet-si': {why}")):
            parse_suite(bad)
    bad = {**shared, "sweep": {**shared["sweep"], "grid": {**shared["sweep"]["grid"], "comet-si": 3}}}
    with pytest.raises(ConfigError, match="'sweep.grid.comet-si': expected a table or a name"):
        parse_suite(bad)


def test_a_tuned_preset_name_says_which_suite_tuned_it():
    from comet_cl.strategies import available_presets
    from comet_cl.sweep import tuned_for, tuned_name
    name = tuned_name("vandeven-split-mnist-class", None, "ewc-online")
    assert name == "vandeven-split-mnist-class-ewc-online"
    assert tuned_for(name) == "vandeven-split-mnist-class"
    assert tuned_name("s", "split-mnist", "si") == "s-split-mnist-si"
    assert [n for n in ("ewc", "comet-ewc", "ewc-online", "naive") if tuned_for(n)] == []
    assert tuned_for("vandeven-split-mnist-domain-si") == "vandeven-split-mnist-domain"
    assert "vandeven-split-mnist-domain-si" in available_presets()  # shipped, and recognised


def test_the_sweep_folder_lists_every_tuning_run_whichever_strategies_a_command_names(tmp_path):
    """`--strategies a` then `--strategies b` must not leave OUT/sweep/suite.json naming b's
    tuning runs only: it is what the report counts missing tuning runs from."""
    spec = {**SWEPT, "strategies": SWEPT["strategies"] + [{"preset": "naive", "name": "other"}],
            "sweep": {**SWEPT["sweep"], "grid": {**SWEPT["sweep"]["grid"],
                                                 "other": {"lr": [1e-4, 1e-2]}}}}
    out = tmp_path / "out"
    listed = lambda: [s["name"] for s in json.loads(  # noqa: E731
        (out / "sweep" / "suite.json").read_text())["spec"]["strategies"]]
    every = ["tuned@lr=1e-05,p_k=0.5", "tuned@lr=0.003,p_k=0.5", "other@lr=0.0001",
             "other@lr=0.01"]
    todo = plan_suite(spec, out, strategies=["other"], unfinished=True)
    assert sorted(p.parts[-2] for p in todo) == ["other@lr=0.0001", "other@lr=0.01"]
    assert listed() == every
    todo = plan_suite(spec, out, strategies=["tuned"], unfinished=True)
    assert sorted(p.parts[-2] for p in todo) == ["tuned@lr=0.003,p_k=0.5", "tuned@lr=1e-05,p_k=0.5"]
    assert listed() == every
    # a selection with no grid plans no tuning run and goes straight to its final runs
    assert [p.parts[-2] for p in plan_suite(spec, out, strategies=["naive"])] == ["naive"] * 2


def test_sweep_spec_mistakes_fail_before_anything_runs(tmp_path):
    bad_grid = {**SWEPT, "sweep": {"grid": {"nope": {"lr": [1e-3]}}}}
    with pytest.raises(ConfigError, match="'sweep.grid.nope': unknown key"):
        parse_suite(bad_grid)
    empty = {**SWEPT, "sweep": {"grid": {"tuned": {"lr": []}}}}
    with pytest.raises(ConfigError, match="non-empty list"):
        parse_suite(empty)
    with pytest.raises(ConfigError, match="valid_fraction.*\\(0, 1\\)"):
        parse_suite({**SWEPT, "sweep": {"valid_fraction": 0.0}})
    with pytest.raises(ConfigError, match="strategy 'tuned@not_a_param=1': 'params.not_a_param': unknown key"):
        plan_suite({**SWEPT, "sweep": {"grid": {"tuned": {"not_a_param": [1]}}}},
                   tmp_path / "out")
    assert not (tmp_path / "out").exists()  # refused before any folder was written


def test_reproduction_table_compares_published_figures_with_finished_runs(tmp_path):
    from comet_cl import results as res
    from comet_cl.contract import read_suites
    from comet_cl.reproduction import markdown, table
    out = tmp_path / "r"
    spec = {**SWEPT, "sweep": None, "published": {
        "source": "Someone 2019, Table 1", "figures": {"naive": 50.0, "tuned": 90.0}}}
    del spec["sweep"]
    suite = parse_suite(spec)
    res.atomic_write_json(out / "suite.json", {"name": "swept", "spec": suite})
    runs = [("naive", seed, acc) for seed, acc in enumerate([0.50, 0.52, 0.51])]  # near 50.0
    runs += [("tuned", seed, acc) for seed, acc in enumerate([0.60, 0.63, 0.60])]  # +10, +11, +9
    for name, seed, acc in runs:
        write_finished_run(out, "swept", name, seed, acc)
    rows = {r.strategy: r for r in table(read_suites([out]))}
    assert rows["naive"].seeds == 3 and rows["naive"].mean == pytest.approx(51.0)
    assert rows["naive"].half == pytest.approx(4.303 * 1.0 / 3 ** 0.5, rel=1e-3)
    assert rows["naive"].verdict == "reproduced"  # |51 - 50| <= 1.5
    # tuned: 61 +- ..., 29 points below its 90.0; its gain over naive, paired by seed, is
    # +10 +- 2.48 against the published +40
    assert rows["tuned"].seeds == 3 and rows["tuned"].verdict == "below; not explained"
    assert rows["tuned"].published_gain == pytest.approx(40.0)
    assert rows["tuned"].gain == pytest.approx(10.0)
    assert rows["tuned"].gain_half == pytest.approx(4.303 * 1.0 / 3 ** 0.5, rel=1e-3)
    assert rows["naive"].gain is None and rows["naive"].published_gain is None
    text = markdown(list(rows.values()))
    assert "| swept | naive | 50.00 | 51.00 +- 2.48 | 3 | +1.00 | reproduced |  |  |" in text
    assert "Someone 2019, Table 1" in text
    assert "Explained" not in text

    # the suite explains the miss: the verdict says so and the table lists the explanation
    spec["published"]["explained"] = {"tuned": "their code gives 60 too (diagnostics/x.md)"}
    res.atomic_write_json(out / "suite.json", {"name": "swept", "spec": parse_suite(spec)})
    rows = {r.strategy: r for r in table(read_suites([out]))}
    assert rows["tuned"].verdict == "below; explained"
    assert rows["naive"].verdict == "reproduced"  # nothing to explain, nothing added
    assert "- swept / tuned: their code gives 60 too (diagnostics/x.md)" in markdown(
        list(rows.values()))


def test_published_explanations_name_published_strategies_and_are_text():
    spec = {**SWEPT, "published": {"source": "s", "figures": {"naive": 50.0}}}
    del spec["sweep"]
    with pytest.raises(ConfigError, match=r"'published.explained.tuned': unknown key \(valid: naive\)"):
        parse_suite({**spec, "published": {**spec["published"], "explained": {"tuned": "x"}}})
    with pytest.raises(ConfigError, match="published.explained.naive.*expected"):
        parse_suite({**spec, "published": {**spec["published"], "explained": {"naive": 3}}})
    assert parse_suite({**spec, "published": {**spec["published"], "explained": {
        "naive": "why"}}})["published"]["explained"] == {"naive": "why"}


def test_verdict_says_when_the_published_figure_is_inside_our_interval():
    from comet_cl.reproduction import Row
    row = lambda mean, half, seeds=5: Row("s", "src", "x", 60.0, seeds, mean, half)  # noqa: E731
    assert row(61.0, 5.0).verdict == "reproduced"
    assert row(64.0, 5.0).verdict == "above (published inside our CI); not explained"
    assert Row("s", "src", "x", 60.0, 5, 64.0, 5.0, explanation="m").verdict == (
        "above (published inside our CI); explained")
    assert row(52.0, 5.0).verdict == "below; not explained"
    assert row(52.0, 5.0, seeds=2).verdict == "preliminary (2 seeds)"


@pytest.mark.parametrize("train", [{"optimizer": "adam", "lr": 1e-3},
                                   {"optimizer": "sgd", "lr": 0.05, "momentum": 0.9}])
def test_fused_optimizer_is_opt_in_and_takes_the_same_steps(train):
    """[train] fused: torch's one-kernel update; same math, last-bit rounding only."""
    def trained(fused: bool):
        torch.manual_seed(0)
        model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(64, 32), torch.nn.ReLU(),
                                    torch.nn.Linear(32, 4))
        opt = make_optimizer(model, {**train, "fused": fused})
        g = torch.Generator().manual_seed(1)
        for _ in range(50):
            x, y = torch.randn(16, 64, generator=g), torch.randint(0, 4, (16,), generator=g)
            opt.zero_grad()
            torch.nn.functional.cross_entropy(model(x), y).backward()
            opt.step()
        return opt, torch.cat([p.detach().flatten() for p in model.parameters()])
    plain, a = trained(False)
    fused, b = trained(True)
    assert not plain.defaults.get("fused") and fused.defaults["fused"] is True
    assert torch.allclose(a, b, atol=1e-5)
    with pytest.raises(ConfigError, match="fused"):
        parse_suite({"name": "t", "streams": ["split-mnist"], "strategies": ["naive"],
                     "train": {"fused": "yes"}})
