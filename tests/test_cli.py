"""The command as a careless or unlucky user meets it: every bad value, file and folder ends
with exit 2 and one line naming the file, key and line; nothing is left behind; Ctrl-C ends
with one line and exit 130; --help and list never import torch."""

from __future__ import annotations

import errno
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from comet_cl import cli, data
from comet_cl.results import LOCK_FILE, RunLock
from conftest import COMET_CL, small_suite

ROOT = os.geteuid() == 0
NOT_AS_ROOT = pytest.mark.skipif(ROOT, reason="root writes into read-only folders")

GOOD = """name = "cli"
seeds = [0]
streams = [{ name = "split-mnist", n_experiences = 2, max_per_experience = 100 }]
strategies = ["naive"]

[model]
widths = [16]
p_k = 0.5
arch = "mlp"

[train]
epochs = 1
batch_size = 32
lr = 0.01

[eval]
beta = 2
curve_stride = 2
curve_subset = 50
"""

# (what to change in GOOD, the key and line the message must name, what it must say)
BAD_VALUES = {
    "n_experiences 0": ("n_experiences = 2", "n_experiences = 0",
                        "'streams[0].n_experiences' (line 3)", "must be at least 1"),
    "n_experiences -3": ("n_experiences = 2", "n_experiences = -3",
                         "'streams[0].n_experiences' (line 3)", "must be at least 1"),
    "n_experiences 3 of 10 classes": ("n_experiences = 2", "n_experiences = 3",
                                      "'streams[0].n_experiences' (line 3)",
                                      "10 classes do not split evenly into 3"),
    "n_experiences 100000 permuted": ('"split-mnist", n_experiences = 2',
                                      '"permuted-mnist", n_experiences = 100000',
                                      "'streams[0].n_experiences' (line 3)",
                                      "at most 100 for a permuted stream"),
    "lr nan": ("lr = 0.01", "lr = nan", "'train.lr' (line 14)", "expected a finite number"),
    "lr inf": ("lr = 0.01", "lr = inf", "'train.lr' (line 14)", "expected a finite number"),
    "lr negative": ("lr = 0.01", "lr = -0.1", "'train.lr' (line 14)", "must be > 0"),
    "epochs 0": ("epochs = 1", "epochs = 0", "'train.epochs' (line 12)", "must be > 0"),
    "batch_size 0": ("batch_size = 32", "batch_size = 0", "'train.batch_size' (line 13)",
                     "must be > 0"),
    "optimizer": ("lr = 0.01", 'lr = 0.01\noptimizer = "adma"', "'train.optimizer' (line 15)",
                  "unknown optimizer 'adma'; did you mean 'adam'"),
    "seeds empty": ("seeds = [0]", "seeds = []", "'seeds' (line 2)", "must not be empty"),
    "seed -1": ("seeds = [0]", "seeds = [-1]", "'seeds' (line 2)", "must be >= 0"),
    "curve_stride 0": ("curve_stride = 2", "curve_stride = 0", "'eval.curve_stride' (line 18)",
                       "must be > 0"),
    "beta 0": ("beta = 2", "beta = 0", "'eval.beta' (line 17)", "must be > 0"),
    "curve_subset 0": ("curve_subset = 50", "curve_subset = 0",
                       "'eval.curve_subset' (line 19)", "must be > 0"),
    "p_k 0": ("p_k = 0.5", "p_k = 0", "'model.p_k' (line 8)", "must be in (0, 1]"),
    "p_k 1.5": ("p_k = 0.5", "p_k = 1.5", "'model.p_k' (line 8)", "must be in (0, 1]"),
    "widths empty": ("widths = [16]", "widths = []", "'model.widths' (line 7)",
                     "must not be empty"),
    "widths 0": ("widths = [16]", "widths = [0, 100]", "'model.widths' (line 7)",
                 "must be > 0, got 0"),
    "arch": ('arch = "mlp"', 'arch = "mpl"', "'model.arch' (line 9)",
             "unknown arch 'mpl'; did you mean 'mlp'"),
    "activation": ('arch = "mlp"', 'arch = "mlp"\nactivation = "rleu"',
                   "'model.activation' (line 10)", "unknown activation 'rleu'"),
    "max_per_experience 0": ("max_per_experience = 100", "max_per_experience = 0",
                             "'streams[0].max_per_experience' (line 3)", "must be > 0"),
    "valid_fraction 1": ("max_per_experience = 100", "max_per_experience = 100, "
                         "valid_fraction = 1.0", "'streams[0].valid_fraction' (line 3)",
                         "must be in [0, 1)"),
    "class_order": ("max_per_experience = 100", "max_per_experience = 100, "
                    "class_order = [0, 1, 2]", "'streams[0].class_order' (line 3)",
                    "permutation of 0..9"),
    "class_order name": ("max_per_experience = 100", "max_per_experience = 100, "
                         "class_order = 'sorted'", "'streams[0].class_order' (line 3)",
                         "'vandeven'"),
    "strategies empty": ('strategies = ["naive"]', "strategies = []", "'strategies' (line 4)",
                         "must not be empty"),
    "strategy params": ('strategies = ["naive"]',
                        'strategies = [{ preset = "ewc", params = { ewc_lamda = 1.0 } }]',
                        "'params.ewc_lamda'", "did you mean 'ewc_lambda'"),
    "strategy train": ('strategies = ["naive"]',
                       'strategies = [{ preset = "naive", train = { lr = 0 } }]',
                       "'strategies[0].train.lr' (line 4)", "must be > 0"),
    "method param range": ('strategies = ["naive"]',
                           'strategies = [{ preset = "replay", params = { mem_size = 0 } }]',
                           "strategy 'replay'", "buffer size must be a positive integer"),
    "method param value": ('strategies = ["naive"]',
                           'strategies = [{ preset = "ewc", params = { mode = "onlin" } }]',
                           "strategy 'ewc'", "expected one of separate, online"),
    "model options": ("widths = [16]", "widths = [16]\noptions = { top_k = 2 }",
                      "'model.options' ['top_k']", "not options of model variant 'dense'"),
}


def run(capsys, *argv) -> tuple[int, str, str]:
    code = cli.main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


def one_line(err: str) -> str:
    assert err.strip() and "\n" not in err.strip(), f"expected one line, got:\n{err}"
    assert "Traceback" not in err
    return err.strip()


@pytest.mark.parametrize("case", list(BAD_VALUES))
def test_a_bad_value_is_one_line_exit_2_no_folder_and_the_fix_runs_into_the_same_out(
        case, tmp_path, capsys):
    old, new, key, why = BAD_VALUES[case]
    assert old in GOOD
    spec, out = tmp_path / "suite.toml", tmp_path / "out"
    spec.write_text(GOOD.replace(old, new))
    code, _, err = run(capsys, "run", spec, "--out", out, "--quiet")
    line = one_line(err)
    assert code == 2 and line.startswith("comet-cl: error: ")
    assert str(spec) in line and key in line and why in line, line
    assert not out.exists()  # refused before anything was written

    spec.write_text(GOOD)
    code, stdout, err = run(capsys, "run", spec, "--out", out, "--plan-only")
    assert code == 0, err
    assert (Path(stdout.split()[0]) / "config.json").is_file()


@pytest.mark.slow
def test_sweep_only_runs_the_tuning_runs_and_the_choice_and_no_final_run(tmp_path, capsys):
    spec, out = tmp_path / "suite.toml", tmp_path / "out"
    spec.write_text(GOOD)
    code, _, err = run(capsys, "run", spec, "--out", out, "--sweep-only", "--quiet")
    assert code == 2 and one_line(err).endswith(
        "--sweep-only: suite 'cli' has no [sweep] grid in it: nothing to tune")
    assert not out.exists()  # refused before anything was written

    spec.write_text(GOOD + '\n[sweep]\nseeds = [0]\nvalid_fraction = 0.2\n'
                           '[sweep.grid.naive]\nlr = [0.001, 0.1]\n')
    code, stdout, err = run(capsys, "run", spec, "--out", out, "--sweep-only", "--quiet")
    assert code == 0, err
    chosen = json.loads((out / "sweep.json").read_text())["streams"]["split-mnist"]["naive"]
    assert [p["values"] for p in chosen["points"]] == [{"lr": 0.001}, {"lr": 0.1}]
    assert "validation sweep" in stdout and "naive" in stdout
    assert len(list((out / "sweep" / "runs").glob("*/*/seed-0/summary.json"))) == 2
    assert not (out / "runs").exists()  # the final runs are neither planned nor run
    code, stdout, _ = run(capsys, "run", spec, "--out", out, "--sweep-only", "--plan-only")
    assert code == 0 and stdout == ""  # every tuning run finished; still no final run
    assert not (out / "runs").exists()
    code, stdout, _ = run(capsys, "run", spec, "--out", out, "--plan-only")
    assert code == 0 and "runs/split-mnist/naive/seed-0" in stdout  # without it, the finals


def test_a_bad_preset_value_names_the_preset_file_and_leaves_nothing(tmp_path, capsys):
    (tmp_path / "strategies").mkdir()
    preset = tmp_path / "strategies" / "fast.toml"
    preset.write_text('method = "naive"\n\n[train]\nlr = -1.0\n')
    (tmp_path / "suites").mkdir()
    spec = tmp_path / "suites" / "s.toml"
    spec.write_text(GOOD.replace('["naive"]', '["fast"]'))
    code, _, err = run(capsys, "run", spec, "--out", tmp_path / "out")
    line = one_line(err)
    assert code == 2 and str(preset) in line and "'train.lr' (line 4): must be > 0" in line
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("content, why", [
    (b"\x00\x01\x02\xff\xfe binary", "not a text file"),
    ('name = "café"\n'.encode("latin-1"), "not a text file (TOML must be UTF-8; byte 0xe9"),
    (b"name = \n", "not valid TOML"),
])
def test_unreadable_spec_files_are_one_line(tmp_path, capsys, content, why):
    spec = tmp_path / "s.toml"
    spec.write_bytes(content)
    code, _, err = run(capsys, "run", spec, "--out", tmp_path / "out")
    line = one_line(err)
    assert code == 2 and str(spec) in line and why in line
    assert not (tmp_path / "out").exists()


@NOT_AS_ROOT
def test_a_spec_without_read_permission_is_one_line(tmp_path, capsys):
    spec = tmp_path / "s.toml"
    spec.write_text(GOOD)
    spec.chmod(0)
    code, _, err = run(capsys, "run", spec, "--out", tmp_path / "out")
    assert code == 2 and "cannot read: Permission denied" in one_line(err)


def test_out_that_is_a_file_or_below_a_file_is_one_line(tmp_path, capsys):
    spec, blocker = tmp_path / "s.toml", tmp_path / "a-file"
    spec.write_text(GOOD)
    blocker.write_text("x")
    code, _, err = run(capsys, "run", spec, "--out", blocker, "--plan-only")
    assert code == 2 and f"--out {blocker}: is a file, not a folder" in one_line(err)
    code, _, err = run(capsys, "run", spec, "--out", blocker / "sub", "--plan-only")
    line = one_line(err)
    assert code == 2 and f"cannot write {blocker / 'sub' / 'suite.json'}" in line
    assert "Not a directory" in line


@NOT_AS_ROOT
def test_read_only_out_and_report_folder_are_one_line(tmp_path, capsys):
    spec, locked = tmp_path / "s.toml", tmp_path / "ro"
    spec.write_text(GOOD)
    locked.mkdir()
    locked.chmod(0o555)
    code, _, err = run(capsys, "run", spec, "--out", locked / "out", "--plan-only")
    assert code == 2 and "Permission denied" in one_line(err)
    code, _, err = run(capsys, "report", tmp_path, "-o", locked / "r.pdf")
    assert code == 2 and f"cannot write {locked / 'r.pdf'}" in one_line(err)


def test_report_into_an_impossible_place_fails_before_reading_results(tmp_path, capsys):
    blocker = tmp_path / "a-file"
    blocker.write_text("x")
    code, _, err = run(capsys, "report", tmp_path / "no-results", "-o", blocker / "r.pdf")
    line = one_line(err)
    assert code == 2 and f"cannot write {blocker / 'r.pdf'}" in line


def test_a_full_disk_names_the_file_and_the_room_needed(tmp_path, capsys, monkeypatch):
    spec, out = tmp_path / "s.toml", tmp_path / "out"
    spec.write_text(GOOD)

    def full(fd):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    import comet_cl.results
    monkeypatch.setattr(comet_cl.results.os, "fsync", full)
    code, _, err = run(capsys, "run", spec, "--out", out, "--plan-only")
    line = one_line(err)
    assert code == 2 and f"cannot write {out / 'suite.json'}: no space left on device" in line
    assert "bytes; " in line and "bytes free there" in line
    assert not list(out.glob(".*.tmp"))  # the partial temp file is gone


def test_argument_errors_exit_2_at_once(capsys):
    for argv in (["run", "quick", "--workers", "0"], ["run", "quick", "--seeds", "-1"],
                 ["run"], ["nonsense"]):
        with pytest.raises(SystemExit) as e:
            cli.main(argv)
        assert e.value.code == 2
        assert "usage: comet-cl" in capsys.readouterr().err


def test_help_list_and_argument_errors_do_not_import_torch():
    """What makes them answer at once (torch and Avalanche take seconds to import)."""
    probe = ("import sys\nfrom comet_cl import cli\n"
             "for argv in (['--help'], ['list'], ['run', 'quick', '--workers', 'x']):\n"
             "    try:\n        cli.main(argv)\n    except SystemExit:\n        pass\n"
             "print('HEAVY', sorted(m for m in ('torch', 'avalanche', 'numpy', 'matplotlib')"
             " if m in sys.modules))")
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 0, done.stderr
    assert "HEAVY []" in done.stdout
    assert "permuted-mnist" in done.stdout and "comet-replay" in done.stdout


def test_list_says_what_exists(capsys):
    code, out, _ = run(capsys, "list")
    assert code == 0
    for word in ("permuted-mnist", "split-cifar100", "comet-replay", "ewc-online", "  quick\n"):
        assert word in out
    assert "smoe" in out and "methods:" not in out
    code, out, _ = run(capsys, "list", "--all")
    assert code == 0 and "methods: naive, joint" in out and "variants dense, comet" in out


def test_a_reader_that_stops_reading_ends_it_quietly_with_exit_141():
    """``comet-cl list | head -1``: the pipe's reader is gone before the output is written; the
    command ends as a shell tool killed by SIGPIPE does: exit 141, nothing on stderr (it was
    "comet-cl: error: Broken pipe", exit 2)."""
    read_end, write_end = os.pipe()
    os.close(read_end)
    try:
        done = subprocess.run(COMET_CL + ["list"], stdout=write_end, stderr=subprocess.PIPE,
                              text=True, timeout=120)
    finally:
        os.close(write_end)
    assert (done.returncode, done.stderr) == (141, "")


def test_a_broken_pipe_other_than_stdout_stays_an_error(monkeypatch):
    """Only stdout's reader going away is quiet: a broken pipe while stdout is still read (a
    worker's socket) is reported like any other error."""
    read_end, write_end = os.pipe()
    stdout = os.fdopen(write_end, "w")
    monkeypatch.setattr(sys, "stdout", stdout)
    try:
        assert not cli._stdout_closed(BrokenPipeError(32, "Broken pipe"))
        assert not cli._stdout_closed(ConnectionResetError(104, "reset"))
        os.close(read_end)
        assert cli._stdout_closed(BrokenPipeError(32, "Broken pipe"))
    finally:
        monkeypatch.undo()
        stdout.close()


def test_data_command_reports_each_dataset_and_fails_when_one_is_missing(tmp_path, capsys):
    found = {}
    for name in ("mnist", "cifar10"):
        try:
            found[name] = data.find(name)
        except data.DataNotFoundError:
            found[name] = None
    code, out, _ = run(capsys, "data", "mnist", "cifar10")
    assert code == (0 if all(found.values()) else 1)
    for name, source in found.items():
        line = next(x for x in out.splitlines() if x.startswith(name + " "))
        assert (str(source.files[0].parent) in line) if source else ("NOT FOUND" in line)
    empty = tmp_path / "empty"
    empty.mkdir()
    code, out, _ = run(capsys, "data", "mnist", "--data-root", empty)
    assert code == 1 and "NOT FOUND" in out and str(empty) in out
    code, _, err = run(capsys, "data", "mnsit")
    assert code == 2 and "unknown dataset 'mnsit'" in one_line(err)


def test_debug_shows_the_traceback(tmp_path, capsys):
    spec = tmp_path / "s.toml"
    spec.write_bytes(b"\x00\xff")
    from comet_cl.config import ConfigError
    with pytest.raises(ConfigError, match="not a text file"):
        cli.main(["--debug", "run", str(spec)])


def test_run_one_of_a_locked_folder_skips_and_says_who_holds_it(tmp_path, capsys):
    spec = tmp_path / "s.toml"
    spec.write_text(GOOD)
    code, stdout, _ = run(capsys, "run", spec, "--out", tmp_path / "out", "--plan-only")
    folder = Path(stdout.split()[0])
    with RunLock(folder):
        code, out, err = run(capsys, "run-one", folder)
    assert code == 0, err
    assert f"{folder}: skipped, locked by pid {os.getpid()} on " in out
    assert not (folder / "events.jsonl").exists()  # nothing was run
    code, _, err = run(capsys, "run-one", tmp_path)
    assert code == 2 and "not a planned run folder" in one_line(err)


# ---- Ctrl-C, and two processes on one results folder: real processes ----------------------

def interruptible(n_experiences: int = 3, per_experience: int = 3000) -> str:
    """Two naive runs on the whole test set: long enough to be interrupted mid-way."""
    return small_suite("ctrl-c", strategies=["naive"], stream="permuted-mnist",
                       n_experiences=n_experiences, per_experience=per_experience,
                       test_per_experience=None, widths=[64], train={"batch_size": 16})


def wait_for(predicate, timeout: float, every: float = 0.05) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(every)
    return False


def _ctrl_c_as_at_a_terminal():
    """In the child: SIGINT back to its default. A shell starts background jobs (``cmd &``,
    ``nohup``) with SIGINT ignored, the child inherits that, and Python then rightly leaves
    Ctrl-C ignored; these tests are about a command started from a terminal."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


@pytest.mark.slow
def test_ctrl_c_during_start_up_is_one_line_and_exit_130(tmp_path):
    if not Path("/proc/self/maps").exists():
        pytest.skip("needs /proc to see when the command is importing torch")
    proc = subprocess.Popen(COMET_CL + ["run", "quick", "--out", str(tmp_path / "o")],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            preexec_fn=_ctrl_c_as_at_a_terminal)

    def importing_torch() -> bool:
        try:
            return "libtorch" in Path(f"/proc/{proc.pid}/maps").read_text()
        except OSError:
            return False

    # Not a fixed sleep: on a loaded machine the interpreter itself may still be starting
    # (before comet-cl's handler exists). Once torch's libraries are mapped, the command is
    # in its own start-up, which is the moment this test is about.
    assert wait_for(importing_torch, 120, every=0.02), "the command never imported torch"
    proc.send_signal(signal.SIGINT)
    assert_interrupted_in_one_line(proc)


def assert_interrupted_in_one_line(proc: subprocess.Popen) -> str:
    """The interrupted command exits 130 with one line saying so, no traceback; its stderr."""
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, err
    assert "interrupted" in one_line(err) and "KeyboardInterrupt" not in err
    return err


@pytest.mark.slow
def test_ctrl_c_with_two_workers_is_one_line_and_workers_stay_quiet(tmp_path):
    from conftest import require_data
    require_data("mnist")
    spec, out = tmp_path / "s.toml", tmp_path / "out"
    spec.write_text(interruptible())
    proc = subprocess.Popen(COMET_CL + ["run", str(spec), "--out", str(out), "--workers", "2",
                                        "--quiet"], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, start_new_session=True,
                            preexec_fn=_ctrl_c_as_at_a_terminal)
    started = wait_for(lambda: len(list(out.glob("runs/*/*/*/events.jsonl"))) == 2, 240)
    os.killpg(proc.pid, signal.SIGINT)  # what a terminal's Ctrl-C does: the whole group
    err = assert_interrupted_in_one_line(proc)
    assert started, err


@pytest.mark.slow
def test_two_processes_on_one_results_folder_do_each_run_once(tmp_path):
    from conftest import require_data
    require_data("mnist")
    spec, out = tmp_path / "s.toml", tmp_path / "out"
    spec.write_text(interruptible(n_experiences=2, per_experience=500))
    argv = COMET_CL + ["run", str(spec), "--out", str(out), "--quiet"]
    procs = [subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for _ in range(2)]
    done = [p.communicate(timeout=600) for p in procs]
    assert [p.returncode for p in procs] == [0, 0], done
    folders = sorted(out.glob("runs/*/*/seed-*"))
    assert len(folders) == 2
    for folder in folders:
        events = [json.loads(x)["event"] for x in (folder / "events.jsonl").read_text().split("\n")
                  if x]
        assert events == ["started", "experience", "experience", "finished"], (folder, events)
        assert (folder / "summary.json").is_file() and not (folder / LOCK_FILE).exists()


def test_strategies_may_be_space_or_comma_separated(tmp_path, capsys):
    spec = tmp_path / "suite.toml"
    spec.write_text(GOOD.replace('strategies = ["naive"]', 'strategies = ["naive", "ewc", "si"]'))
    code, stdout, err = run(capsys, "run", spec, "--out", tmp_path / "a", "--plan-only",
                            "--strategies", "naive,si")
    assert code == 0, err
    assert sorted(Path(p).parts[-2] for p in stdout.split()) == ["naive", "si"]
    code, stdout, _ = run(capsys, "run", spec, "--out", tmp_path / "b", "--plan-only",
                          "--strategies", "ewc", "si")
    assert sorted(Path(p).parts[-2] for p in stdout.split()) == ["ewc", "si"]
    code, _, err = run(capsys, "run", spec, "--out", tmp_path / "c", "--plan-only",
                       "--strategies", "naive,sii")
    assert code == 2 and "'sii' is not in suite 'cli'; did you mean 'si'?" in one_line(err)


def test_seeds_n_runs_the_first_n_of_the_specs_seeds(tmp_path, capsys):
    """A suite over van de Ven's seeds 1..20 with --seeds 2 plans seeds 1 and 2 (it once planned
    0 and 1: a seed 0 the spec never declared, added to its folder's suite.json); more seeds than
    the spec lists continue with the smallest unused ones."""
    spec = tmp_path / "suite.toml"
    assert "seeds = [0]" in GOOD
    spec.write_text(GOOD.replace("seeds = [0]", "seeds = [3, 1, 7]"))

    def planned(out, n):
        code, stdout, err = run(capsys, "run", spec, "--out", tmp_path / out, "--plan-only",
                                "--seeds", n)
        assert code == 0, err
        return [int(Path(p).name.removeprefix("seed-")) for p in stdout.split()]

    assert sorted(planned("a", "2")) == [1, 3]
    assert sorted(planned("b", "5")) == [0, 1, 2, 3, 7]
    assert sorted(planned("c", "3")) == [1, 3, 7]
    assert json.loads((tmp_path / "a" / "suite.json").read_text())["spec"]["seeds"] == [1, 3]


def test_run_prints_each_sweep_choice_and_whether_it_is_resolved(tmp_path, capsys):
    # the fixture predates stored margins: the lead is recomputed from its points
    (tmp_path / "sweep.json").write_text(
        (Path(__file__).parent / "fixtures" / "sweep.json").read_text())
    cli._print_sweep(tmp_path, None)
    lines = capsys.readouterr().out.strip().splitlines()
    assert lines[0].startswith("validation sweep (") and len(lines) == 3
    naive, comet = lines[1].split(), lines[2].split()
    assert naive[:3] == ["split-mnist", "naive", "lr=0.01;"] and lines[1].endswith("not separable")
    assert comet[:2] == ["split-mnist", "comet"]
    assert lines[2].endswith("lr=0.1, p_k=0.1; vs lr=0.01, p_k=0.1: +4.0 \u00b1 0.0 pp: separable")
    cli._print_sweep(tmp_path, ["comet"])  # only the strategies that ran
    assert [l.split()[1] for l in capsys.readouterr().out.strip().splitlines()[1:]] == ["comet"]
    cli._print_sweep(tmp_path / "nowhere", None)  # no sweep: nothing said
    assert capsys.readouterr().out == ""
