"""Runs a suite on a Ray cluster: one Ray task per run folder.

Each task asks Ray for ``cpus_per_run`` CPUs and ``gpus_per_run`` of a GPU (0.25: four runs
share one GPU; Ray sets ``CUDA_VISIBLE_DEVICES`` for the task). A task whose worker process
or node dies is retried up to ``max_retries`` times; the retry finds the folder's checkpoint
and resumes from the last finished experience, so a lost worker costs only its unfinished
experience. A straggler of the first attempt cannot write into the folder at the same time:
the run-folder lock turns it away (reported as ``skip``). Errors raised by the run itself
(bad data, a bug) are not retried: they are collected and raised together at the end, after
every other run has finished.

The run folders must be on a file system every node can reach (NFS, a shared mount), at the
same path: workers receive absolute paths.
"""

from __future__ import annotations

from pathlib import Path

from comet_cl.executors import RunsFailed, require, worker_device
from comet_cl.executors.task import report, run_folder


class RayExecutor:
    """``address``: a running cluster (``host:port``, or ``auto``); None starts a Ray instance
    on this machine for the duration of the suite (or uses ``RAY_ADDRESS`` when set)."""

    def __init__(self, address: str | None = None, cpus_per_run: int = 1,
                 gpus_per_run: float = 0.0, max_retries: int = 3):
        require("ray", "ray")  # fail before anything is planned
        self.address = address
        self.cpus_per_run = cpus_per_run
        self.gpus_per_run = gpus_per_run
        self.max_retries = max_retries

    def run(self, folders: list[Path], *, data_root, device: str, progress) -> None:
        ray = require("ray", "ray")
        if not folders:
            return
        device = worker_device(device, self.gpus_per_run)
        started = not ray.is_initialized()
        if started:
            ray.init(address=self.address, include_dashboard=False, log_to_driver=False,
                     configure_logging=False)
        try:
            self._run(ray, folders, data_root, device, progress)
        finally:
            if started:
                ray.shutdown()

    def _run(self, ray, folders, data_root, device, progress) -> None:
        task = ray.remote(run_folder).options(
            num_cpus=self.cpus_per_run, num_gpus=self.gpus_per_run,
            max_retries=self.max_retries, retry_exceptions=False, name="comet-cl run")
        root = None if data_root is None else str(Path(data_root).resolve())
        pending = {task.remote(str(Path(f).resolve()), root, device, self.cpus_per_run): Path(f)
                   for f in folders}
        failures = []
        try:
            while pending:
                ready, _ = ray.wait(list(pending), num_returns=1)
                for ref in ready:
                    folder = pending.pop(ref)
                    try:
                        report(progress, folder, ray.get(ref))
                    except ray.exceptions.RayError as e:
                        failures.append((folder, _reason(e)))
                        progress.failed(folder, failures[-1][1])
        except BaseException:
            for ref in pending:  # Ctrl-C: stop the cluster's work too; checkpoints stay
                ray.cancel(ref, force=True)
            raise
        if failures:
            raise RunsFailed(failures)


def _reason(error: Exception) -> str:
    """The last line of a Ray error: the run's own exception, not Ray's traceback."""
    cause = getattr(error, "cause", None)
    text = f"{type(cause).__name__}: {cause}" if cause is not None else str(error)
    return text.strip().splitlines()[-1] if text.strip() else type(error).__name__
