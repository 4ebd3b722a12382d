"""Executors: where the planned run folders of a suite execute.

Every executor has one method, ``run(folders, *, data_root, device, progress)``, and relies on
one contract: a run folder is self-contained (``runner.execute_run`` needs nothing else), a
finished run is skipped, an unfinished one resumes from its last checkpoint, and the
run-folder lock keeps two processes from running one folder at once. So a cluster executor
only has to get ``execute_run(folder)`` called somewhere that can reach the folder, and may
call it again (a retry, a requeue) without losing or doubling anything:

- ``local``: this machine, ``workers`` processes (``runner.LocalExecutor``);
- ``ray``: one Ray task per run on a Ray cluster (``RayExecutor``, extra ``comet-cl[ray]``);
- ``slurm``: one Slurm array task per run through submitit (``SlurmExecutor``, extra
  ``comet-cl[slurm]``).

Ray and submitit are optional and imported only when asked for; asking for one that is not
installed is a one-line :class:`MissingExtra` error naming the pip command.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass, replace
from pathlib import Path

from comet_cl.config import ConfigError

KINDS = ("local", "ray", "slurm")


class MissingExtra(ConfigError):
    """An executor was asked for whose optional package is not installed."""


class RunsFailed(RuntimeError):
    """Some runs of a suite failed on the cluster (the others finished and are saved)."""

    def __init__(self, failures: list[tuple[Path, str]]):
        self.failures = failures
        lines = "\n".join(f"  {folder}: {why}" for folder, why in failures)
        super().__init__(f"{len(failures)} run(s) failed (run the same command again to "
                         f"retry them; finished runs are kept):\n{lines}")


def require(module: str, extra: str):
    """Import an optional dependency, or fail with the one line that says how to get it."""
    try:
        return importlib.import_module(module)
    except ImportError:
        raise MissingExtra(f"--executor {extra} needs {module}, which is not installed: "
                           f"pip install 'comet-cl[{extra}]'") from None


@dataclass(frozen=True)
class ExecutorOptions:
    """Where runs execute and what each gets. The suite spec's ``[executor]`` table sets the
    per-run resources (``config.EXECUTOR_KEYS``); the command line overrides any of them.

    cpus_per_run: CPU cores per run (also its torch thread count). gpus_per_run: a GPU
    fraction per run; 0.25 packs four runs onto one GPU (Ray; Slurm takes whole GPUs).
    max_retries: how often a run whose worker died is retried (Ray) or a pre-empted / timed-out
    task re-queued (Slurm). time: minutes per Slurm task. array_parallelism: Slurm array tasks
    running at once.
    """

    kind: str = "local"
    workers: int = 1
    address: str | None = None
    cpus_per_run: int = 1
    gpus_per_run: float = 0.0
    max_retries: int = 3
    partition: str | None = None
    time: int = 60
    array_parallelism: int = 64

    def __post_init__(self):
        if self.kind not in KINDS:
            raise ConfigError(f"--executor {self.kind}: unknown (choose from {', '.join(KINDS)})")
        if self.kind != "local" and self.workers != 1:
            raise ConfigError(f"--workers is for --executor local; --executor {self.kind} runs "
                              f"as many at once as the cluster has room for (--cpus-per-run, "
                              f"--gpus-per-run)")
        if self.cpus_per_run < 1:
            raise ConfigError(f"cpus_per_run must be >= 1, got {self.cpus_per_run}")
        if self.gpus_per_run < 0:
            raise ConfigError(f"gpus_per_run must be >= 0, got {self.gpus_per_run}")
        for key in ("max_retries", "time", "array_parallelism", "workers"):
            if getattr(self, key) < (0 if key == "max_retries" else 1):
                raise ConfigError(f"{key} must be positive, got {getattr(self, key)}")

    def merged(self, spec_table: dict | None = None, **overrides) -> "ExecutorOptions":
        """These options, then the spec's ``[executor]`` table (``config.EXECUTOR_KEYS``), then
        the non-None overrides."""
        return replace(self, **(spec_table or {}),
                       **{k: v for k, v in overrides.items() if v is not None})


def make_executor(options: ExecutorOptions):
    """The executor ``options.kind`` names, configured from ``options``."""
    if options.kind == "local":
        from comet_cl.runner import LocalExecutor
        return LocalExecutor(options.workers)
    if options.kind == "ray":
        from comet_cl.executors.ray_executor import RayExecutor
        return RayExecutor(address=options.address, cpus_per_run=options.cpus_per_run,
                           gpus_per_run=options.gpus_per_run, max_retries=options.max_retries)
    from comet_cl.executors.slurm_executor import SlurmExecutor
    return SlurmExecutor(partition=options.partition, time=options.time,
                         array_parallelism=options.array_parallelism,
                         cpus_per_run=options.cpus_per_run, gpus_per_run=options.gpus_per_run,
                         max_requeues=options.max_retries)


def worker_device(device: str, gpus_per_run: float) -> str:
    """The device a cluster worker trains on: ``auto`` means CUDA only when the scheduler gave
    the run a GPU share, so a CPU-only run never lands on a GPU it was not given."""
    if gpus_per_run > 0 and device == "cpu":
        raise ConfigError("gpus_per_run > 0 with --device cpu: drop one of them")
    if device == "auto":
        return "cuda" if gpus_per_run > 0 else "cpu"
    return device


def suite_root(folder: Path) -> Path:
    """The results folder a run folder belongs to (OUT in OUT/runs/<stream>/<strategy>/seed-k)."""
    return Path(folder).resolve().parents[3]
