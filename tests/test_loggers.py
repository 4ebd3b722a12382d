"""Loggers by Avalanche's own classes, chosen per command; they never change results."""

from __future__ import annotations

import csv
from pathlib import Path

import pytest

from comet_cl.config import ConfigError
from comet_cl.loggers import check, evaluator
from conftest import require_data
SPEC = {
    "name": "logged",
    "seeds": [0],
    "streams": [{"name": "split-mnist", "n_experiences": 2, "max_per_experience": 100,
                 "max_test_per_experience": 50}],
    "strategies": ["naive"],
    "model": {"arch": "mlp", "widths": [32], "p_k": 0.5},
    "train": {"epochs": 1, "batch_size": 25},
    "eval": {"beta": 2, "curve_subset": 50},
}


def test_an_unknown_logger_is_a_clear_error():
    with pytest.raises(ConfigError, match="unknown logger 'tensorbord'; did you mean 'tensorboard'"):
        check(["tensorbord"])
    assert evaluator([], Path(".")) is None


@pytest.mark.slow
def test_csv_and_tensorboard_logs_land_in_the_run_folder_and_leave_results_unchanged(tmp_path):
    from comet_cl.contract import read_run
    from comet_cl.runner import run_suite
    require_data("mnist")
    plain = run_suite(SPEC, tmp_path / "plain", device="cpu")
    logged = run_suite(SPEC, tmp_path / "logged", device="cpu",
                       log=("csv", "tensorboard"))
    run = logged[0]
    with open(run / "csv" / "training_results.csv") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) >= 2 and all(0 <= float(r["training_accuracy"]) <= 1 for r in rows)
    assert list((run / "tensorboard").glob("events.out.tfevents.*"))
    assert read_run(run).summary.R == read_run(plain[0]).summary.R
