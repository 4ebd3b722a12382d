"""Bad suite specs and presets fail before training, naming the file, key/line and a fix."""

import re
import shutil
import tomllib
from pathlib import Path

import pytest

from comet_cl.config import ConfigError, first_seeds, load_suite, packaged_suites, parse_suite, suite_path
from comet_cl.contract import RunConfig
from comet_cl.runner import plan
from comet_cl.strategies import load_preset

REPO = Path(__file__).resolve().parents[1]


def read_config(folder: Path) -> RunConfig:
    return RunConfig.read(folder / "config.json")

GOOD = """name = "tiny"
seeds = [0]
streams = [{ name = "split-mnist", n_experiences = 2, max_per_experience = 100 }]
strategies = ["naive", "ewc"]

[train]
epochs = 1
batch_size = 32
"""


def write(tmp_path, text, name="suite.toml") -> Path:
    p = tmp_path / name
    p.write_text(text)
    return p


def test_every_shipped_suite_and_preset_is_valid():
    """The packaged suites and the diagnostics' specs (benchmarks/diagnostics, run by the
    commands in their headers to produce reports/diagnostics): a spec that stopped loading
    would break the command its results cite."""
    specs = sorted((REPO / "comet_cl" / "suites").glob("*.toml"))
    diagnostics = sorted((REPO / "benchmarks" / "diagnostics").glob("*.toml"))
    assert diagnostics, "benchmarks/diagnostics holds no suite specs"
    for spec in specs + diagnostics:
        suite = load_suite(spec)
        for s in suite["strategies"]:
            load_preset(s["preset"])


def test_unknown_key_names_file_line_and_closest_key(tmp_path):
    p = write(tmp_path, GOOD.replace("batch_size = 32", "batch_sise = 32"))
    with pytest.raises(ConfigError) as e:
        load_suite(p)
    msg = str(e.value)
    assert str(p) in msg and "train.batch_sise" in msg and "line 8" in msg
    assert "did you mean 'batch_size'" in msg


def test_unknown_stream_and_strategy_suggest_closest(tmp_path):
    with pytest.raises(ConfigError, match="unknown stream 'split-mnst'.*did you mean 'split-mnist'"):
        load_suite(write(tmp_path, GOOD.replace('name = "split-mnist"', 'name = "split-mnst"')))
    suite = load_suite(write(tmp_path, GOOD.replace('"ewc"]', '"ewcc"]')))
    with pytest.raises(ConfigError, match="unknown strategy 'ewcc'.*did you mean 'ewc'"):
        plan(suite, tmp_path / "out")


def test_wrong_type_is_named_with_what_was_expected(tmp_path):
    p = write(tmp_path, GOOD.replace("epochs = 1", 'epochs = "one"'))
    with pytest.raises(ConfigError, match=r"'train.epochs' \(line 7\): expected int, got str 'one'"):
        load_suite(p)
    p = write(tmp_path, GOOD.replace("max_per_experience = 100", "max_per_experience = 1.5"))
    with pytest.raises(ConfigError, match="streams\\[0\\].max_per_experience.*expected int"):
        load_suite(p)


def test_missing_required_key_and_bad_toml(tmp_path):
    with pytest.raises(ConfigError, match="'strategies' is required"):
        load_suite(write(tmp_path, 'name = "x"\nstreams = ["split-mnist"]\n'))
    with pytest.raises(ConfigError, match="not valid TOML"):
        load_suite(write(tmp_path, "name = \n"))
    with pytest.raises(ConfigError, match="not found"):
        load_suite(tmp_path / "nope.toml")


def test_preset_with_unknown_hyperparameter_or_method(tmp_path):
    presets = tmp_path / "strategies"
    presets.mkdir()
    (presets / "ewc-typo.toml").write_text('method = "ewc"\n[params]\newc_lamda = 3.0\n')
    (presets / "magic.toml").write_text('method = "ewk"\n')
    with pytest.raises(ConfigError, match="ewc-typo.toml: 'params.ewc_lamda'.*did you mean 'ewc_lambda'"):
        load_preset("ewc-typo", presets)
    with pytest.raises(ConfigError, match="unknown method 'ewk'.*did you mean 'ewc'"):
        load_preset("magic", presets)


def test_results_of_another_config_are_never_mixed_in(tmp_path):
    out = tmp_path / "out"
    runs = plan(parse_suite({"name": "t", "streams": ["split-mnist"], "strategies": ["naive"]}), out)
    assert (runs[0] / "config.json").exists()
    # the same spec again is fine (resume), a changed one is refused with a clear reason
    plan(parse_suite({"name": "t", "streams": ["split-mnist"], "strategies": ["naive"]}), out)
    changed = {"name": "t", "streams": ["split-mnist"], "strategies": ["naive"],
               "train": {"lr": 0.5}}
    with pytest.raises(ConfigError, match="another config"):
        plan(parse_suite(changed), out)


def test_edited_preset_is_refused_for_existing_runs(tmp_path):
    presets = tmp_path / "strategies"
    presets.mkdir()
    shutil.copy(REPO / "comet_cl" / "presets" / "ewc.toml", presets / "ewc.toml")
    suite = parse_suite({"name": "t", "streams": ["split-mnist"], "strategies": ["ewc"]})
    plan(suite, tmp_path / "out", presets_dir=presets)
    (presets / "ewc.toml").write_text('method = "ewc"\n[params]\newc_lambda = 1.0\n')
    with pytest.raises(ConfigError, match="different config \\(differs in: strategy\\)"):
        plan(suite, tmp_path / "out", presets_dir=presets)


def test_strategy_filter_must_name_a_strategy_of_the_suite(tmp_path):
    suite = parse_suite({"name": "t", "streams": ["split-mnist"], "strategies": ["naive", "ewc"]})
    with pytest.raises(ConfigError, match="'nave' is not in suite 't'.*did you mean 'naive'"):
        plan(suite, tmp_path / "out", strategies=["nave"])
    assert len(plan(suite, tmp_path / "out2", strategies=["ewc"], seeds=[0, 1])) == 2


def test_packaged_suites_run_by_name_and_paths_still_work(tmp_path):
    from comet_cl.config import SUITES_DIR
    assert suite_path("quick") == SUITES_DIR / "quick.toml"
    assert suite_path("permuted-mnist") == SUITES_DIR / "permuted_mnist.toml"
    own = tmp_path / "quick.toml"  # a user's own file wins over the packaged suite of that name
    own.write_text('name = "mine"\nstreams = ["split-mnist"]\nstrategies = ["naive"]\n')
    assert suite_path(own) == own and load_suite(own)["name"] == "mine"
    with pytest.raises(ConfigError, match="suite spec not found: qiuck.*did you mean 'quick'"):
        suite_path("qiuck")


def test_stream_limits_and_default_arch_come_from_the_stream_registry(tmp_path):
    def suite(stream: dict) -> dict:
        return parse_suite({"name": "t", "streams": [stream], "strategies": ["naive"]})

    assert suite({"name": "split-cifar10"})["streams"][0]["model"]["arch"] == "conv"
    assert suite({"name": "split-mnist"})["streams"][0]["model"]["arch"] == "mlp"
    assert suite({"name": "split-cifar100", "n_experiences": 20})  # 100 classes, 5 each
    assert suite({"name": "permuted-mnist", "n_experiences": 100})
    with pytest.raises(ConfigError, match="at most 100 for a permuted stream, got 101"):
        suite({"name": "permuted-mnist", "n_experiences": 101})
    with pytest.raises(ConfigError, match="100 classes do not split evenly into 30"):
        suite({"name": "split-cifar100", "n_experiences": 30})


def test_two_entries_of_one_stream_need_labels_and_are_filed_under_them(tmp_path):
    """Two split MNIST entries in one suite (two class orders) would share run folders: the
    suite is refused until one has a label; with labels each entry's runs are filed, read and
    shown under its label, and a suite without labels keeps its run configs (and hash)."""
    twice = GOOD.replace(
        'streams = [{ name = "split-mnist", n_experiences = 2, max_per_experience = 100 }]',
        'streams = [{ name = "split-mnist", n_experiences = 2, max_per_experience = 100 },\n'
        '           { name = "split-mnist", n_experiences = 2, max_per_experience = 100, '
        'class_order = "vandeven" }]')
    with pytest.raises(ConfigError, match=r"two streams share a name in \['split-mnist', "
                                          r"'split-mnist'\].*give one a 'label'"):
        load_suite(write(tmp_path, twice))
    labelled = twice.replace('class_order = "vandeven" }', 'class_order = "vandeven", '
                                                          'label = "split-mnist-vandeven" }')
    runs = plan(load_suite(write(tmp_path, labelled)), tmp_path / "out", strategies=["naive"])
    assert [r.relative_to(tmp_path / "out").parts[:2] for r in runs] == [
        ("runs", "split-mnist"), ("runs", "split-mnist-vandeven")]
    first, second = (read_config(r) for r in runs)
    assert (first.stream_name, second.stream_name) == ("split-mnist", "split-mnist-vandeven")
    assert "label" not in first.stream and second.stream["class_order"] == "vandeven"


@pytest.mark.parametrize("where, old, new", [
    ("strategies[1].name", '"ewc"]', '{ preset = "ewc", name = "../elsewhere" }]'),
    ("strategies[1].name", '"ewc"]', '{ preset = "ewc", name = "ewc strong" }]'),
    ("streams[0].label", "max_per_experience = 100 }", 'max_per_experience = 100, label = "a/b" }'),
    ("'name'", 'name = "tiny"', 'name = ".hidden"')])
def test_a_name_that_is_not_a_folder_name_is_refused(tmp_path, where, old, new):
    """Suite and strategy names and stream labels are folders (results/<suite>,
    runs/<stream>/<strategy>/): a path separator, a leading dot or a space would file runs
    where no reader finds them."""
    with pytest.raises(ConfigError, match=rf"{re.escape(where)}.*must be a folder name"):
        load_suite(write(tmp_path, GOOD.replace(old, new)))
    assert not (tmp_path / "out").exists()


PAPER = """name = "paper"
seeds = [0]
streams = [{ name = "split-mnist", n_experiences = 2, max_per_experience = 100, model = { options = { k_rule = "round" } } }]
strategies = ["comet", "comet-paper",
              { preset = "comet-paper", name = "comet-paper-deep", model_config = { widths = [30, 30, 30] } }]

[model]
widths = [25, 25]
p_k = 0.1
"""


def test_the_papers_comet_preset_reaches_the_run_config_and_builds_the_papers_model(tmp_path):
    """A preset's model_config sits between the suite's [model] and the strategy entry's own;
    variant options merge key by key. comet-paper: softplus, k = floor(p_k N)."""
    import torch

    from comet_cl.models import build_model
    without = PAPER.replace(', model = { options = { k_rule = "round" } }', '')
    folders = plan(parse_suite(tomllib.loads(without)), tmp_path / "out")
    models = {c.strategy_name: c.model for c in map(read_config, folders)}
    assert models["comet"]["activation"] == "relu" and models["comet"]["options"] == {}
    paper, deep = models["comet-paper"], models["comet-paper-deep"]
    assert paper["activation"] == "softplus" and paper["options"] == {"k_rule": "floor"}
    assert paper["widths"] == [25, 25] and deep["widths"] == [30, 30, 30]
    net = build_model("mlp", paper["variant"], in_shape=(1, 28, 28), n_classes=10,
                      widths=deep["widths"], p_k=paper["p_k"], activation=paper["activation"],
                      **paper["options"])
    assert net.router.ks == [3, 3, 3]  # floor(0.1 * 30); 25 units would give 2, round gives 3
    assert isinstance(net.blocks[0].act, torch.nn.Softplus)
    # a stream's own options merge with the preset's, and the preset's win
    both = plan(parse_suite(tomllib.loads(PAPER)), tmp_path / "out2", strategies=["comet-paper"])
    assert read_config(both[0]).model["options"] == {"k_rule": "floor"}


def test_a_preset_model_config_with_an_unknown_key_or_option_is_refused(tmp_path):
    presets = tmp_path / "strategies"
    presets.mkdir()
    (presets / "odd.toml").write_text('method = "naive"\nmodel = "dense"\n'
                                      '[model_config]\nactivation = "softplus"\n'
                                      'options = { k_rule = "floor" }\n')
    (presets / "typo.toml").write_text('method = "naive"\n[model_config]\nwidht = [3]\n')
    with pytest.raises(ConfigError, match="k_rule"):
        plan(parse_suite(tomllib.loads(GOOD.replace('["naive", "ewc"]', '["odd"]'))),
             tmp_path / "a", presets_dir=presets)
    with pytest.raises(ConfigError, match="widht"):
        load_preset("typo", presets)


@pytest.mark.parametrize("name", sorted({p.stem for p in packaged_suites().values()}))
def test_every_packaged_suite_plans_its_tuning_and_final_runs(name, tmp_path):
    """Every strategy of every packaged suite resolves to a preset and model, and every sweep
    grid names a strategy of the suite and settings it takes, before anything trains."""
    from comet_cl import sweep
    suite = load_suite(suite_path(name))
    tuning = sweep.tuning_suite(suite)
    if tuning is not None:
        assert set(suite["sweep"]["grid"]) <= {s["name"] for s in suite["strategies"]}
        assert len(plan(tuning, tmp_path / "sweep", seeds=[0])) == len(tuning["strategies"])
    folders = plan(suite, tmp_path / "out", seeds=[0])
    assert len(folders) == len(suite["strategies"]) * len(suite["streams"])


def test_dump_toml_reads_back_as_written():
    from comet_cl.config import dump_toml
    table = {"name": 'a "quoted" \\ name\nover two lines\t', "seeds": [0, 1], "flag": True, "small": 1e-05,
             "streams": [{"name": "split-mnist", "class_order": "random"}],
             "strategies": ["naive", {"preset": "ewc", "params": {"ewc_lambda": 1e8}}],
             "model": {"widths": [64, 64], "options": {"k_rule": "floor"}}, "eval": {}}
    assert tomllib.loads(dump_toml(table)) == table
    with pytest.raises(TypeError, match="cannot write"):
        dump_toml({"x": object()})


def test_first_seeds_keeps_the_specs_order_then_fills_from_zero():
    assert first_seeds([0, 1, 2], 2) == [0, 1]
    assert first_seeds([0, 1], 4) == [0, 1, 2, 3]  # the packaged suites: 0..n-1 as before
    assert first_seeds(list(range(1, 21)), 5) == [1, 2, 3, 4, 5]
    assert first_seeds([5, 2], 4) == [5, 2, 0, 1]
    with pytest.raises(ConfigError, match="--seeds: must be at least 1"):
        first_seeds([0], 0)
