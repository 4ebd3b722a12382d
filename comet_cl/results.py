"""The on-disk layout of results: written by the runner, read by the report.

A suite's output folder holds ``suite.json`` and one folder per run::

    OUT/suite.json                               name, spec hash, version, the resolved spec
    OUT/runs/<stream>/<strategy>/seed-<k>/
        config.json                              the run's resolved config (written first)
        events.jsonl                             append-only log, one JSON object per line
        checkpoint.pt                            state after the last finished experience
        summary.json                             written atomically when the run finishes

A run is finished exactly when ``summary.json`` exists: it is only ever written by an atomic
rename, so a half-written file is never read as a result.
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

SUITE_FILE = "suite.json"
CONFIG_FILE = "config.json"
EVENTS_FILE = "events.jsonl"
CHECKPOINT_FILE = "checkpoint.pt"
SUMMARY_FILE = "summary.json"


class ResultsError(Exception):
    """A results folder that cannot be read as results."""


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` so that readers see the old file or the new one, never half."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        os.fchmod(fd, 0o644)  # mkstemp makes 0600; results are meant to be shared
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def atomic_write_json(path: Path, obj: Any) -> None:
    atomic_write_bytes(path, (json.dumps(obj, indent=1, sort_keys=True) + "\n").encode())


def append_event(run_dir: Path, event: dict) -> None:
    """Append one line to the run's event log (flushed and fsynced: it is the audit trail)."""
    with open(Path(run_dir) / EVENTS_FILE, "a") as f:
        f.write(json.dumps(event, sort_keys=True) + "\n")
        f.flush()
        os.fsync(f.fileno())


def read_json(path: Path) -> Any:
    try:
        return json.loads(Path(path).read_text())
    except (OSError, ValueError) as e:
        raise ResultsError(f"cannot read {path}: {e}") from e


def run_dir(out: Path, stream: str, strategy: str, seed: int) -> Path:
    return Path(out) / "runs" / stream / strategy / f"seed-{seed}"


@dataclass(frozen=True)
class RunRecord:
    """One run folder as found on disk: its config, and its summary when it finished."""

    path: Path
    config: dict
    summary: dict | None

    @property
    def finished(self) -> bool:
        return self.summary is not None


def iter_runs(out: Path) -> Iterator[RunRecord]:
    """Every run folder under ``out`` (finished or not), in a stable order."""
    out = Path(out)
    for cfg in sorted(out.glob(f"runs/*/*/seed-*/{CONFIG_FILE}")):
        summary_path = cfg.parent / SUMMARY_FILE
        summary = read_json(summary_path) if summary_path.exists() else None
        yield RunRecord(cfg.parent, read_json(cfg), summary)
