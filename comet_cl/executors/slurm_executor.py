"""Runs a suite on Slurm through submitit: one array task per run folder.

The array is submitted once (``sbatch --array`` with ``%array_parallelism``), each task runs
or resumes one folder, and the driver polls the jobs and shows each finished run in the suite
display. A task that Slurm pre-empts or that reaches its time limit gets submitit's signal
shortly before; :class:`RunTask` is checkpointable, so submitit re-queues it (up to
``max_requeues`` times) and the new attempt resumes from the folder's last checkpoint: every
finished experience is kept. The run folders and submitit's logs (``OUT/slurm/``) must be on
a file system the compute nodes share with the submitting machine.

``cluster="local"`` runs the same array as local processes through submitit's own
LocalExecutor (no Slurm needed): how the tests exercise this path.
"""

from __future__ import annotations

import math
import shutil
from pathlib import Path

from comet_cl.config import ConfigError
from comet_cl.executors import RunsFailed, require, suite_root, worker_device
from comet_cl.executors.task import RunOutcome, report, run_folder


class RunTask:
    """The callable submitit pickles for each array task.

    It has submitit's checkpoint protocol (what ``submitit.helpers.Checkpointable`` provides,
    written out so this module imports without submitit): on pre-emption or time-out,
    ``checkpoint`` resubmits the same call, and that call resumes the folder from disk.
    """

    def __init__(self, data_root: str | None, device: str, threads: int):
        self.data_root, self.device, self.threads = data_root, device, threads

    def __call__(self, folder: str) -> RunOutcome:
        return run_folder(folder, self.data_root, self.device, self.threads)

    def checkpoint(self, folder: str):
        from submitit.helpers import DelayedSubmission
        return DelayedSubmission(self, folder)


class SlurmExecutor:
    """``partition`` and ``time`` (minutes per task) go to sbatch; ``array_parallelism``
    caps the array's tasks running at once; ``gpus_per_run`` must be whole GPUs (Slurm
    allocates GPUs, not fractions: share a GPU through Ray instead)."""

    def __init__(self, partition: str | None = None, time: int = 60,
                 array_parallelism: int = 64, cpus_per_run: int = 1,
                 gpus_per_run: float = 0.0, max_requeues: int = 3,
                 log_dir: Path | None = None, cluster: str = "slurm", poll_s: float = 10.0):
        require("submitit", "slurm")  # fail before anything is planned
        if gpus_per_run != math.floor(gpus_per_run):
            raise ConfigError(f"--executor slurm: gpus_per_run {gpus_per_run} is a fraction; "
                              f"Slurm allocates whole GPUs (use --executor ray to share one)")
        self.partition, self.time = partition, time
        self.array_parallelism = array_parallelism
        self.cpus_per_run, self.gpus_per_run = cpus_per_run, int(gpus_per_run)
        self.max_requeues = max_requeues
        self.log_dir, self.cluster, self.poll_s = log_dir, cluster, poll_s

    def run(self, folders: list[Path], *, data_root, device: str, progress) -> None:
        submitit = require("submitit", "slurm")
        if not folders:
            return
        if self.cluster == "slurm" and shutil.which("sbatch") is None:
            raise ConfigError("--executor slurm: sbatch is not on PATH here; submit from a "
                              "Slurm login node (or use --executor local / ray)")
        device = worker_device(device, self.gpus_per_run)
        folders = [Path(f).resolve() for f in folders]
        logs = Path(self.log_dir) if self.log_dir else suite_root(folders[0]) / "slurm"
        executor = submitit.AutoExecutor(folder=logs / "%j", cluster=self.cluster,
                                         slurm_max_num_timeout=self.max_requeues)
        params = {"name": "comet-cl", "timeout_min": self.time,
                  "cpus_per_task": self.cpus_per_run, "tasks_per_node": 1, "nodes": 1,
                  "slurm_array_parallelism": self.array_parallelism}
        if self.gpus_per_run:
            params["gpus_per_node"] = self.gpus_per_run
        if self.partition:
            params["slurm_partition"] = self.partition
        executor.update_parameters(**params)
        root = None if data_root is None else str(Path(data_root).resolve())
        task = RunTask(root, device, self.cpus_per_run)
        jobs = executor.map_array(task, [str(f) for f in folders])
        by_job = {job.job_id: folder for job, folder in zip(jobs, folders)}
        failures = []
        try:
            for job in submitit.helpers.as_completed(jobs, poll_frequency=self.poll_s):
                folder = by_job[job.job_id]
                try:
                    report(progress, folder, job.result())
                except Exception as e:  # the task failed: submitit re-raises its error
                    failures.append((folder, f"job {job.job_id}: {_last_line(e)}"))
                    progress.failed(folder, failures[-1][1])
        except BaseException:
            for job in jobs:  # Ctrl-C: cancel the array; finished experiences are saved
                if not job.done():
                    job.cancel(check=False)
            raise
        if failures:
            raise RunsFailed(failures)


def _last_line(error: Exception) -> str:
    text = str(error).strip()
    return text.splitlines()[-1] if text else type(error).__name__
