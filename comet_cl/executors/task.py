"""What a cluster worker runs for one run folder, and what it sends back.

The function is the same for Ray tasks and Slurm array tasks, so both executors share one
behaviour: set the thread count to the cores the scheduler granted, run or resume the folder
through ``runner.execute_run``, and return a small :class:`RunOutcome` (the metrics, not the
whole summary: the folder on the shared file system holds that).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

try:
    # The run-folder lock: execute_run raises RunLocked when another live process holds the
    # folder (e.g. a straggler of a retried task). Until the lock lands, no run reports locked.
    from comet_cl.results import RunLocked
except ImportError:  # pragma: no cover - removed once the lock is on main
    class RunLocked(Exception):
        """Stand-in with the lock's interface until comet_cl.results provides it."""

        def __init__(self, folder, holder: str):
            super().__init__(folder, holder)
            self.folder, self.holder = Path(folder), holder


@dataclass(frozen=True)
class RunOutcome:
    """One run folder's result as a worker reports it: its metrics when it finished, or
    who holds it when it was locked (that process writes the summary, so this executor
    neither counts nor repeats the run)."""

    folder: str
    metrics: dict | None = None
    holder: str | None = None


def run_folder(folder: str, data_root: str | None, device: str, threads: int) -> RunOutcome:
    """Run or resume ``folder`` in this worker process."""
    import torch

    from comet_cl.runner import execute_run
    torch.set_num_threads(max(1, int(threads)))
    try:
        summary = execute_run(Path(folder), data_root=data_root, device=device)
    except RunLocked as e:
        return RunOutcome(str(folder), holder=e.holder)
    return RunOutcome(str(folder), summary["metrics"])


def report(progress, folder: Path, outcome: RunOutcome) -> None:
    """Show a worker's outcome in the suite's display."""
    if outcome.holder is not None:
        progress.skipped(RunLocked(folder, outcome.holder))
    else:
        progress.finished(folder, outcome.metrics)
