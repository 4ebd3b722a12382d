"""Stopping a run and going on with it: a SIGKILL mid-way resumes to the numbers of an
uninterrupted run, SIGTERM stops parallel workers too, and a run folder is clean (each event row
once, no temp file, no stale checkpoint) after a kill at any point."""

import json
import os
import signal
import subprocess
import time
from pathlib import Path

import pytest

from comet_cl.runner import run_suite
from conftest import COMET_CL, SMALL, numbers, small_suite, summaries

pytestmark = pytest.mark.slow


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


# ---- one process per run folder, and a clean folder after any kill -------------------------



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
