"""The run contract: typed config and summary, JSON round trips, older schema versions."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from comet_cl import results as res
from comet_cl.contract import (
    SCHEMA_VERSION,
    ContractError,
    Overlap,
    RunConfig,
    RunSummary,
    iter_stored_runs,
    read_run,
)

V1 = Path(__file__).parent / "fixtures" / "results-v1"
COMET = V1 / "runs" / "split-mnist" / "comet" / "seed-0"


def test_a_schema_1_summary_round_trips_to_the_identical_file():
    text = (COMET / "summary.json").read_text()
    summary = RunSummary.from_json(text, COMET / "summary.json")
    assert summary.schema_version == 1 and summary.overlap.chance is None
    assert summary.to_json() == text


def test_a_joint_summary_with_nan_metrics_round_trips():
    path = V1 / "runs" / "split-mnist" / "joint" / "seed-0" / "summary.json"
    summary = RunSummary.read(path)
    assert summary.joint and summary.metrics["forgetting"] is None
    assert summary.to_json() == path.read_text()


def test_a_current_summary_carries_its_version_and_chance_level(tmp_path):
    old = RunSummary.read(COMET / "summary.json")
    new = RunSummary(**{**old.__dict__, "schema_version": SCHEMA_VERSION,
                        "overlap": Overlap(old.overlap.layers, old.overlap.p_k,
                                           old.overlap.matrices, (0.5, 0.6))})
    new.write(tmp_path / "summary.json")
    doc = json.loads((tmp_path / "summary.json").read_text())
    assert doc["schema_version"] == SCHEMA_VERSION and doc["overlap"]["chance"] == [0.5, 0.6]
    assert RunSummary.read(tmp_path / "summary.json") == new


def test_the_config_round_trips_and_names_its_fields():
    doc = json.loads((COMET / "config.json").read_text())
    config = RunConfig.from_dict(doc)
    assert config.to_dict() == doc
    assert (config.stream_name, config.strategy_name, config.variant, config.seed, config.beta) == \
        ("split-mnist", "comet", "comet", 0, 10)


def test_a_newer_schema_is_refused_with_a_clear_message(tmp_path):
    doc = json.loads((COMET / "summary.json").read_text()) | {"schema_version": SCHEMA_VERSION + 1}
    with pytest.raises(ContractError, match="newer comet-cl"):
        RunSummary.from_dict(doc, "x/summary.json")


@pytest.mark.parametrize("drop", ["R", "metrics", "n_params"])
def test_a_summary_lacking_a_record_is_an_error_naming_the_file(drop, tmp_path):
    doc = json.loads((COMET / "summary.json").read_text())
    del doc[drop]
    (tmp_path / "summary.json").write_text(json.dumps(doc))
    with pytest.raises(ContractError, match=f"{tmp_path / 'summary.json'}.*{drop}"):
        RunSummary.read(tmp_path / "summary.json")


def test_runs_are_read_typed_and_their_results_folder_found(tmp_path):
    out = Path(shutil.copytree(V1, tmp_path / "out"))
    (out / "runs" / "split-mnist" / "naive" / "seed-0" / "summary.json").unlink()
    runs = list(iter_stored_runs(out))
    assert [r.config.strategy_name for r in runs] == ["comet", "joint", "naive"]
    assert [r.finished for r in runs] == [True, True, False]
    assert all(res.suite_folder(r.path) == out for r in runs)
    assert read_run(runs[0].path) == runs[0]
