"""`comet-cl status`: what a results folder's runs are doing, read from the folder alone."""

import json
import os
import socket
import subprocess
import sys
from datetime import datetime, timedelta, timezone

import pytest

from comet_cl import progress
from comet_cl import results as res
from comet_cl.cli import main

T0 = datetime(2026, 1, 1, tzinfo=timezone.utc)
SPEC = {"seeds": [0, 1], "streams": [{"stream": {"name": "permuted-mnist"}}],
        "strategies": [{"name": "naive"}, {"name": "comet"}, {"name": "wide"}]}


def _config(seed, name, widths=(100,), tuning=False):
    return {"suite": "s", "suite_hash": "h", "version": "0", "seed": seed,
            "stream": {"name": "permuted-mnist", "n_experiences": 4},
            "model": {"variant": "comet", "arch": "mlp", "widths": list(widths)},
            "strategy": {"name": name, "method": "naive"}, "train": {"iterations": 50},
            "eval": {"beta": 10, **({"split": "valid"} if tuning else {})}}


def _run(out, name, seed, *, minutes=(), phases=4, finished=False, widths=(100,),
         tuning=False, checkpoint=False):
    """A run folder as the runner leaves it: 'started', then one 'experience' event per
    entry of ``minutes`` (the wall minutes each phase took), and a checkpoint if asked."""
    folder = res.run_dir(out / "sweep" if tuning else out, "permuted-mnist", name, seed)
    res.atomic_write_json(folder / "config.json", _config(seed, name, widths, tuning))
    if checkpoint:
        (folder / res.CHECKPOINT_FILE).write_bytes(b"status reads only that it exists")
    if minutes or finished:
        t = T0
        res.append_event(folder, {"event": "started", "time": t.isoformat(), "phases": phases})
        for i, m in enumerate(minutes):
            t += timedelta(minutes=m)
            res.append_event(folder, {"event": "experience", "time": t.isoformat(),
                                      "experience": i, "train_seconds": 60 * m - 5})
    if finished:
        res.atomic_write_json(folder / "summary.json", {
            "joint": False, "R": [[0.9]] * phases, "R0": [0.1], "curves": [], "wall_time": [],
            "n_params": 1, "metrics": {"acc": 0.87}})
    return folder


@pytest.fixture
def out(tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    res.atomic_write_json(out / "suite.json", {"name": "s", "spec": SPEC})
    _run(out, "naive", 0, minutes=[2, 2, 2, 2], finished=True)
    _run(out, "comet", 0, minutes=[3, 5], checkpoint=True)   # stopped half-way (no lock)
    _run(out, "comet", 1)                   # waiting: planned, never started
    _run(out, "wide", 0, widths=(900,))     # waiting, and nothing of its cost has run
    _run(out, "comet@p_k=0.1", 0, minutes=[1], tuning=True, checkpoint=True)
    return out


def test_status_reads_states_progress_and_the_time_left(out):
    folder = progress.scan(out)
    runs = {(r.config.strategy_name, r.config.seed): r for r in folder.runs}
    assert {k: (r.state, r.done, r.phases) for k, r in runs.items()} == {
        ("naive", 0): ("finished", 4, 4), ("comet", 0): ("stopped", 2, 4),
        ("comet", 1): ("waiting", 0, 4), ("wide", 0): ("waiting", 0, 4),
        ("comet@p_k=0.1", 0): ("stopped", 1, 4)}
    assert runs[("naive", 0)].acc == 0.87 and runs[("comet@p_k=0.1", 0)].tuning
    everything = list(runs.values())
    # its own phases: 3 and 5 minutes, so 4 a phase and two left
    assert runs[("comet", 0)].seconds_per_phase == 240.0
    assert progress.seconds_left(runs[("comet", 0)], everything) == 480.0
    # never started: timed from the runs of its cost, whatever their names (naive's, its
    # seed 0's and the tuning run's: the median of 2, 4 and 1 minutes a phase); a run of
    # another width has no estimate
    assert progress.seconds_per_phase(runs[("comet", 1)], everything) == (120.0, True)
    assert progress.seconds_left(runs[("comet", 1)], everything) == 480.0
    assert progress.seconds_left(runs[("wide", 0)], everything) is None
    assert folder.not_planned == [("permuted-mnist", "naive", 1), ("permuted-mnist", "wide", 1)]


def test_a_stopped_run_without_its_checkpoint_is_shown_to_start_over(out):
    """A results folder cloned from git has its logs but no checkpoints: the phases it logged
    are trained again, and the status says so instead of promising a resume."""
    folder = res.run_dir(out, "permuted-mnist", "comet", 0)  # 2 of 4 phases, 4 min each
    (folder / res.CHECKPOINT_FILE).unlink()
    state = progress.read_progress(folder)
    assert (state.state, state.done, state.restarts) == ("stopped", 0, True)
    assert progress.seconds_left(state, progress.scan(out).runs) == 4 * 240.0
    text = progress.render(progress.scan(out))
    assert "  stopped      0/4        4.0    16 min  runs/permuted-mnist/comet/seed-0  " \
           "no checkpoint: starts over" in text
    assert "stopped runs resume from their last checkpoint; 1 without one (a folder copied " \
           "or cloned without its checkpoints) start over" in text


def test_status_works_while_the_first_sweep_runs(tmp_path):
    """Until the sweep has chosen, only OUT/sweep holds a suite.json: the status shows the
    tuning runs instead of calling the folder no results folder."""
    out = tmp_path / "out"
    res.atomic_write_json(out / "sweep" / "suite.json", {"name": "s-sweep", "spec": SPEC})
    _run(out, "comet@p_k=0.1", 0, minutes=[2], tuning=True, checkpoint=True)
    _run(out, "comet@p_k=0.5", 0, tuning=True)
    folder = progress.scan(out)
    assert folder.suite == "s" and folder.not_planned == []
    assert sorted((r.config.strategy_name, r.state, r.tuning) for r in folder.runs) == [
        ("comet@p_k=0.1", "stopped", True), ("comet@p_k=0.5", "waiting", True)]
    lines = progress.render(folder).splitlines()
    assert "  tuning runs:  0 finished, 0 running, 1 stopped, 1 waiting" in lines
    assert "  final runs:   none yet: planned once the sweep has chosen" in lines
    with pytest.raises(res.ResultsError, match="not a comet-cl results folder"):
        progress.scan(tmp_path / "empty")  # neither suite.json: still refused


def test_status_without_any_timing_says_so_instead_of_about_0_min(tmp_path):
    """Before any run of their cost has finished a phase, no time is promised."""
    out = tmp_path / "out"
    res.atomic_write_json(out / "sweep" / "suite.json", {"name": "s-sweep", "spec": SPEC})
    _run(out, "comet@p_k=0.1", 0, tuning=True)
    _run(out, "comet@p_k=0.5", 0, tuning=True)
    text = progress.render(progress.scan(out))
    assert "  left: 2 without an estimate (no run of their cost has finished a phase)" in \
        text.splitlines()
    assert "about 0 min" not in text and "0 planned" not in text


def test_the_wall_time_left_with_processes_side_by_side(out):
    """Each process takes the next run when its own ends: 10 minutes left on one, nothing on
    the other, then three runs of 5: the second process takes two of them, the first the
    third at minute 10; all done at minute 15."""
    assert progress.side_by_side([600.0], [300.0, 300.0, 300.0], 2) == 900.0
    assert progress.side_by_side([], [300.0, 300.0], 1) == 600.0  # one process: the sum
    assert progress.side_by_side([120.0, 60.0], [], 2) == 120.0
    # two runs being run (this process holds both locks): the status says the wall time
    seed0, seed1 = (res.run_dir(out, "permuted-mnist", "comet", s) for s in (0, 1))
    with res.RunLock(seed0), res.RunLock(seed1):
        text = progress.render(progress.scan(out))
    # comet 0: 8 minutes left (2 phases of 4), comet 1: 8 (4 phases of 2, borrowed), then
    # the tuning run's 3 phases of 1 minute start at minute 8: all by minute 11 (the run of
    # unknown cost adds nothing, as in the sum, whose line says so)
    assert "with 2 runs side by side as now, each process taking the next run when its own " \
           "ends: about 11 min" in text
    assert "about 19 min of training, one run at a time" in text


def test_a_phase_resumed_part_way_is_not_timed(out):
    folder = res.run_dir(out, "permuted-mnist", "comet", 0)  # phases of 3 and 5 minutes
    t = T0 + timedelta(hours=1)
    res.append_event(folder, {"event": "resumed", "time": t.isoformat(), "from_experience": 2,
                              "from_step": 40, "phases": 4})
    res.append_event(folder, {"event": "experience", "experience": 2,
                              "time": (t + timedelta(minutes=1)).isoformat()})
    res.append_event(folder, {"event": "resumed", "time": (t + timedelta(hours=1)).isoformat(),
                              "from_experience": 3, "phases": 4})
    res.append_event(folder, {"event": "experience", "experience": 3,
                              "time": (t + timedelta(hours=1, minutes=7)).isoformat()})
    state = progress.read_progress(folder)
    assert (state.done, state.seconds_per_phase) == (4, 300.0)  # 3, 5 and 7 minutes: not the 1


def test_a_run_being_run_names_its_holder_without_taking_its_lock(out):
    folder = res.run_dir(out, "permuted-mnist", "comet", 0)
    with res.RunLock(folder):
        state = progress.read_progress(folder)
        assert state.state == "running" and state.holder == f"pid {os.getpid()} on " + \
            socket.gethostname()
        with pytest.raises(res.RunLocked):  # status took no lock: the holder still has it
            with res.RunLock(folder):
                pass
    # a record naming another host (a shared folder on a cluster) cannot be checked here
    (folder / res.LOCK_FILE).write_text(json.dumps({"pid": 2 ** 22 + 1, "host": "x"}))
    assert res.lock_holder(folder) == "pid 4194305 on x (another host: not checked from here)"
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                          capture_output=True, text=True).stdout.strip()
    (folder / res.LOCK_FILE).write_text(json.dumps({"pid": int(dead),
                                                    "host": socket.gethostname()}))
    # a lock file a killed holder left behind (its process gone) names no one
    assert res.lock_holder(folder) is None and progress.read_progress(folder).state == "stopped"


def test_status_command_prints_the_runs_left_and_refuses_a_folder_that_is_not_results(
        out, capsys, tmp_path):
    assert main(["status", str(out)]) == 0
    text = capsys.readouterr().out
    lines = text.splitlines()
    assert "  final runs:   1 finished, 0 running, 1 stopped, 2 waiting, 2 not planned yet" in lines
    assert "  tuning runs:  0 finished, 0 running, 1 stopped, 0 waiting" in lines
    row = next(line for line in lines if line.endswith("runs/permuted-mnist/comet/seed-1"))
    assert row.split()[:4] == ["waiting", "0/4", "2.0*", "8"]
    assert "runs/permuted-mnist/naive/seed-0" not in text  # finished: only with --all
    # comet seed 0: 2 phases x 4 min; seed 1: 4 x 2 (borrowed); the tuning run 3 x 1; wide: -
    assert "left: about 19 min of training, one run at a time, for the 3 planned" in text
    assert "; 1 without an estimate" in text
    assert "not planned yet (no run folder, not in the time left): naive, wide" in text
    # suite 's' is no packaged suite: the command names a placeholder for its file
    assert f"  go on with: comet-cl run SUITE.toml --out {res.shown(out)}" in lines
    assert main(["status", "--all", str(out)]) == 0
    assert "runs/permuted-mnist/naive/seed-0  ACC 87.00" in capsys.readouterr().out
    # a folder that is no results folder: one line, exit 2, nothing printed for the others
    assert main(["status", str(out), str(tmp_path)]) == 2
    captured = capsys.readouterr()
    assert captured.out == "" and "not a comet-cl results folder (no suite.json)" in captured.err


@pytest.mark.parametrize("where, text, why", [
    ("suite.json", '{"name": "s"}', "its spec does not list seeds, streams and strategies"),
    ("runs/permuted-mnist/comet/seed-1/config.json", "{bad", "cannot read"),
    ("runs/permuted-mnist/comet/seed-1/config.json", '{"suite": "s"}', "not a run config"),
    ("runs/permuted-mnist/naive/seed-0/summary.json", '{"R": []}', "summary.json"),
])
def test_status_names_a_malformed_file_in_one_line(out, capsys, where, text, why):
    (out / where).write_text(text)
    assert main(["status", str(out)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("comet-cl: error: ") and why in err and len(err.splitlines()) == 1


def test_status_names_a_packaged_suite_in_the_command_that_goes_on(out):
    res.atomic_write_json(out / "suite.json", {"name": "vandeven-permuted-mnist", "spec": SPEC})
    assert progress.scan(out).resume_command == (
        f"comet-cl run vandeven-permuted-mnist --out {res.shown(out)}")


def test_status_answers_without_importing_torch(out):
    code = ("import sys; from comet_cl.cli import main; rc = main(['status', sys.argv[1]]); "
            "assert 'torch' not in sys.modules, 'torch imported'; sys.exit(rc)")
    done = subprocess.run([sys.executable, "-c", code, str(out)], capture_output=True, text=True,
                          timeout=60)
    assert done.returncode == 0, done.stderr
