"""The benchmark scripts that read results (benchmarks/perf/suite_time.py): right ratios, and a
clear error for a folder that is not results; the diagnostics that drive a model by hand
(benchmarks/diagnostics/fisher_scale.py) still run against the package they import."""

import importlib.util
import json
from pathlib import Path

import pytest

ROOT = Path(__file__).parents[1]
V1 = Path(__file__).parent / "fixtures" / "results-v1"


def _script(name: str, path: str):
    spec = importlib.util.spec_from_file_location(name, ROOT / path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _suite_time():
    return _script("suite_time", "benchmarks/perf/suite_time.py")


def test_suite_time_gives_each_strategys_training_time_as_a_ratio_to_naive(capsys):
    suite_time = _suite_time()
    seconds = {name: sum(json.loads((V1 / f"runs/split-mnist/{name}/seed-0/summary.json")
                                    .read_text())["wall_time"])
               for name in ("naive", "comet", "joint")}
    assert suite_time.main([str(V1)]) == 0
    rows = {line.split(" | ")[0].strip("| "): line for line in capsys.readouterr().out.splitlines()
            if line.startswith("| ") and "---" not in line}
    assert rows["naive"].endswith("| 1.00 |")
    assert f"| {seconds['comet'] / seconds['naive']:.2f} |" in rows["comet"]
    assert f"| {seconds['comet']:.0f} |" in rows["comet"]


def test_suite_time_refuses_a_folder_that_is_not_results_in_one_line(tmp_path, capsys):
    with pytest.raises(SystemExit) as stop:
        _suite_time().main([str(tmp_path)])
    err = capsys.readouterr().err
    assert stop.value.code == 2 and "not a comet-cl results folder" in err and "Traceback" not in err


def test_fisher_scale_trains_both_models_and_reports_each_layers_fisher_and_si_omega(capsys):
    """Two updates instead of 5,000: the real data, models, Fisher and SI importance, only
    not trained."""
    from conftest import require_data
    require_data("mnist")
    fisher_scale = _script("fisher_scale", "benchmarks/diagnostics/fisher_scale.py")
    fisher_scale.main(["--updates", "2", "--fisher-samples", "128"])
    out = capsys.readouterr().out
    heads = [line for line in out.splitlines() if "Fisher sum" in line]
    assert [h.split(":")[0] for h in heads] == ["dense", "comet p_k 0.1"]
    sums = [float(h.rsplit("Fisher sum", 1)[1]) for h in heads]
    assert all(s > 0 for s in sums)
    # the fixed router is buffers, not parameters: it has no Fisher
    assert out.count("blocks.0.layer.weight") == 2 and "router" not in out
    # SI's path integral follows the two updates: every model's importance is positive, and
    # every trained parameter gets its own omega beside its Fisher
    omegas = [float(line.rsplit("omega sum", 1)[1]) for line in out.splitlines()
              if "SI omega sum" in line]
    assert len(omegas) == 2 and all(o > 0 for o in omegas)
    params = [line for line in out.splitlines() if "nonzero" in line]
    assert params and all("omega sum" in line for line in params)
