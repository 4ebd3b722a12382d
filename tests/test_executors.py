"""Cluster executors on real infrastructure: a local two-node Ray cluster (a head and a second
node, each its own `ray start` process) and submitit's local executor (Slurm's code path
without Slurm), on a tiny real suite. Both must give exactly the local executor's numbers, a
worker killed mid-run must lose nothing, and a pre-empted Slurm task must resume.

The Ray cluster belongs to this module: it is started in its own process groups and a temp
dir of its own, and torn down by those (never `ray stop`, which would stop every Ray on the
machine).
"""

import importlib.util
import json
import os
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import pytest

from comet_cl.contract import iter_stored_runs
from comet_cl.runner import run_suite
from conftest import COMET_CL, small_suite

pytestmark = [pytest.mark.slow, pytest.mark.cluster]
needs_ray = pytest.mark.skipif(importlib.util.find_spec("ray") is None,
                               reason="ray is not installed: pip install 'comet-cl[ray]'")
needs_submitit = pytest.mark.skipif(importlib.util.find_spec("submitit") is None,
                                    reason="submitit is not installed: pip install 'comet-cl[slurm]'")
REPO = Path(__file__).resolve().parents[1]

TINY = small_suite("tiny-cluster", strategies=["naive", "comet"],
                   train={"batch_size": 32, "lr": 0.05}, eval={"curve_subset": 50, "curve_stride": 2})


def long_suite(executor: dict) -> str:
    """One run long enough to be killed between its first checkpoint and its summary."""
    return small_suite("long-cluster", strategies=["comet-replay"], stream="permuted-mnist",
                       n_experiences=3, seeds=[3], widths=[128, 128],
                       train={"batch_size": 10, "lr": 0.02}, executor=executor)


LONG = long_suite({"max_retries": 2})


def numbers(out: Path) -> dict:
    """Every finished run's results, by (strategy, seed): what must not depend on where it ran."""
    keys = ("R", "R0", "curves", "metrics", "n_params", "overlap")
    return {(r.config.strategy_name, r.config.seed): {k: r.summary.to_dict()[k] for k in keys}
            for r in iter_stored_runs(out) if r.finished}


def events(run: Path) -> list[dict]:
    return [json.loads(line) for line in (run / "events.jsonl").read_text().splitlines()]


def processes(*needles: str) -> list[int]:
    """Pids (not this one) whose command line contains every needle."""
    found = []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit() or int(proc.name) == os.getpid():
            continue
        try:
            cmd = (proc / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        if all(n in cmd for n in needles):
            found.append(int(proc.name))
    return found


def wait_for(condition, timeout: float, what: str, poll: float = 0.05):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(poll)
    raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")


@pytest.fixture(scope="module")
def specs(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("specs")
    (tmp / "tiny.toml").write_text(TINY)
    (tmp / "long.toml").write_text(LONG)
    return tmp / "tiny.toml", tmp / "long.toml"


@pytest.fixture(scope="module")
def local_tiny(specs, tmp_path_factory):
    """The reference: the tiny suite through the local executor, in this process."""
    out = tmp_path_factory.mktemp("local") / "out"
    run_suite(specs[0], out)
    found = numbers(out)
    assert len(found) == 4
    assert all(run["R"][0][0] > 0.9 for run in found.values())  # real learning to compare
    return found


@pytest.fixture(scope="module")
def local_long(specs, tmp_path_factory):
    """The reference for the interrupted runs: the long run, uninterrupted, in this process."""
    out = tmp_path_factory.mktemp("local-long") / "out"
    run_suite(specs[1], out)
    return numbers(out)


@pytest.fixture(scope="module")
def ray_cluster():
    """A head and a second node on this machine, 1 CPU each; yields the head's address."""
    if importlib.util.find_spec("ray") is None:
        pytest.skip("ray is not installed: pip install 'comet-cl[ray]'")
    ray_bin = str(Path(sys.executable).with_name("ray"))
    temp = tempfile.mkdtemp(prefix="ray-", dir="/tmp")  # short: Ray's socket paths are limited
    port = _free_port()
    address = f"127.0.0.1:{port}"
    # Ray 2.60 authenticates with a token; this cluster gets its own, and this process (the
    # driver) presents it. Nothing is read from or written to ~/.ray.
    auth = {"RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN": secrets.token_hex(32)}
    saved = {k: os.environ.get(k) for k in auth}
    os.environ.update(auth)
    env = {**os.environ, "PYTHONPATH": str(REPO), "RAY_USAGE_STATS_ENABLED": "0"}
    common = ["--block", "--num-cpus", "1", "--num-gpus", "0", "--node-ip-address", "127.0.0.1",
              "--dashboard-agent-listen-port", "0", "--disable-usage-stats"]
    nodes = []
    log = open(Path(temp) / "ray-start.log", "w")

    def start(*args):
        nodes.append(subprocess.Popen([ray_bin, "start", *args, *common], env=env,
                                      start_new_session=True, stdout=log, stderr=log))
    try:
        start("--head", "--port", str(port), "--include-dashboard=false", "--temp-dir", temp)
        wait_for(lambda: _listening(port), 120, "the Ray head", 0.5)
        start("--address", address)
        import ray
        ray.init(address=address, log_to_driver=False, configure_logging=False)
        try:
            wait_for(lambda: sum(n["Alive"] for n in ray.nodes()) >= 2, 120,
                     "the second Ray node", 0.5)
        finally:
            ray.shutdown()  # each executor connects on its own
        yield address
    finally:
        for node in nodes:
            _kill_group(node)
        for pid in processes(temp):  # workers live in their own sessions; they name our temp dir
            _kill(pid)
        log.close()
        shutil.rmtree(temp, ignore_errors=True)
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


def _free_port() -> int:
    import socket
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _listening(port: int) -> bool:
    import socket
    with socket.socket() as s:
        s.settimeout(1)
        return s.connect_ex(("127.0.0.1", port)) == 0


def _kill_group(proc: subprocess.Popen) -> None:
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    proc.wait(timeout=30)


def _kill(pid: int) -> None:
    try:
        os.kill(pid, signal.SIGKILL)
    except ProcessLookupError:
        pass


# ---- Ray --------------------------------------------------------------------------------

@needs_ray
def test_ray_cluster_gives_the_local_executors_results(specs, local_tiny, ray_cluster, tmp_path):
    """Through a two-node Ray cluster, bit for bit the local numbers. With the run-folder lock,
    one folder is held by this process meanwhile: Ray skips it, runs the rest, and the next
    invocation finishes it."""
    from comet_cl import results
    from comet_cl.executors.ray_executor import RayExecutor
    from comet_cl.runner import plan_suite
    out = tmp_path / "ray"
    executor = RayExecutor(address=ray_cluster)
    lock = getattr(results, "RunLock", None)  # None until the run-folder lock lands on main
    if lock is not None:
        held = plan_suite(specs[0], out)[0]
        with lock(held):
            run_suite(specs[0], out, executor=executor)
        assert not (held / "summary.json").exists() and len(numbers(out)) == 3
    runs = run_suite(specs[0], out, executor=executor)
    assert len(runs) == 4
    assert numbers(out) == local_tiny  # the same R matrices, curves, metrics, to the bit


@needs_ray
def test_ray_worker_killed_mid_run_loses_nothing(specs, local_long, ray_cluster, tmp_path):
    """SIGKILL the Ray worker once the run has checkpointed: Ray retries the task, the retry
    resumes from the checkpoint, and the results are those of an uninterrupted run."""
    from comet_cl.executors import ExecutorOptions, make_executor
    out = tmp_path / "ray"
    executor = make_executor(ExecutorOptions(kind="ray", address=ray_cluster, max_retries=2))
    finished: list = []
    driver = threading.Thread(target=lambda: finished.append(run_suite(specs[1], out,
                                                                       executor=executor)))
    driver.start()
    run = out / "runs" / "permuted-mnist" / "comet-replay" / "seed-3"
    wait_for(lambda: (run / "checkpoint.pt").exists(), 240, "the run's first checkpoint")
    workers = processes("ray::comet-cl run")
    assert len(workers) == 1, workers
    os.kill(workers[0], signal.SIGKILL)
    driver.join(timeout=300)
    assert not driver.is_alive() and finished, "the suite did not finish after the kill"

    log = [e["event"] for e in events(run)]
    assert log[0] == "started" and "resumed" in log and log[-1] == "finished"
    done = [e["experience"] for e in events(run) if e["event"] == "experience"]
    assert sorted(set(done)) == [0, 1, 2]

    assert numbers(out) == local_long


def test_an_executor_without_its_extra_is_one_clear_line(specs, tmp_path, monkeypatch, capsys):
    """Asking for an executor whose package is missing: exit 2, the pip command, no traceback,
    and nothing planned."""
    from comet_cl.cli import main
    monkeypatch.setitem(sys.modules, "ray", None)  # what an absent package looks like to import
    monkeypatch.setitem(sys.modules, "submitit", None)
    for kind in ("ray", "slurm"):
        out = tmp_path / kind
        assert main(["run", str(specs[0]), "--out", str(out), "--executor", kind, "--quiet"]) == 2
        err = capsys.readouterr().err
        assert f"pip install 'comet-cl[{kind}]'" in err
        assert "Traceback" not in err and len(err.strip().splitlines()) == 1
        assert not out.exists()


# ---- Slurm via submitit -------------------------------------------------------------------

@needs_submitit
def test_slurm_path_through_submitits_local_executor_gives_the_local_results(
        specs, local_tiny, tmp_path):
    from comet_cl.executors.slurm_executor import SlurmExecutor
    out = tmp_path / "slurm"
    executor = SlurmExecutor(cluster="local", time=5, poll_s=0.5)
    run_suite(specs[0], out, executor=executor)
    assert numbers(out) == local_tiny
    assert list((out / "slurm").glob("*/*_submitted.pkl"))  # submitit's folder, beside the runs


@needs_submitit
def test_preempted_slurm_task_requeues_and_resumes(specs, local_long, tmp_path):
    """Pre-emption as Slurm signals it (USR2 to the task): submitit checkpoints and re-queues
    the task, and the new attempt resumes the folder to the uninterrupted run's numbers."""
    from comet_cl.executors.slurm_executor import SlurmExecutor
    out = tmp_path / "slurm"
    executor = SlurmExecutor(cluster="local", time=10, poll_s=0.5, max_requeues=2)
    driver = threading.Thread(target=run_suite, args=(specs[1], out),
                              kwargs={"executor": executor})
    driver.start()
    run = out / "runs" / "permuted-mnist" / "comet-replay" / "seed-3"
    wait_for(lambda: (run / "checkpoint.pt").exists(), 240, "the run's first checkpoint")
    tasks = processes("submitit.core._submit", str(out / "slurm"))
    assert len(tasks) == 1, tasks
    os.kill(tasks[0], signal.SIGUSR2)
    driver.join(timeout=300)
    assert not driver.is_alive()

    log = [e["event"] for e in events(run)]
    assert "resumed" in log and log[-1] == "finished"
    assert numbers(out) == local_long


def test_executor_settings_come_from_the_spec_and_the_command_line(specs, tmp_path):
    from comet_cl.config import ConfigError, load_suite
    from comet_cl.executors import ExecutorOptions
    suite = load_suite(specs[1])
    assert suite["executor"] == {"max_retries": 2}
    options = ExecutorOptions(kind="ray").merged(suite["executor"], gpus_per_run=0.25,
                                                 cpus_per_run=None)
    assert (options.max_retries, options.gpus_per_run, options.cpus_per_run) == (2, 0.25, 1)

    bad = tmp_path / "bad.toml"
    bad.write_text(long_suite({"gpus_per_run": -1}))
    with pytest.raises(ConfigError, match=r"bad.toml: .executor.gpus_per_run.*must be >= 0"):
        load_suite(bad)
    bad.write_text(long_suite({"cpus_per_rum": 2}))
    with pytest.raises(ConfigError, match="executor.cpus_per_rum.*did you mean 'cpus_per_run'"):
        load_suite(bad)
    with pytest.raises(ConfigError, match="--workers is for --executor local"):
        ExecutorOptions(kind="ray", workers=4)
    from comet_cl.executors.slurm_executor import SlurmExecutor
    with pytest.raises(ConfigError, match="whole GPUs"):
        SlurmExecutor(gpus_per_run=0.5)
