"""The on-disk layout of results: written by the runner, read by the report.

A suite's output folder holds ``suite.json`` and one folder per run::

    OUT/suite.json                               name, spec hash, version, the resolved spec
    OUT/runs/<stream>/<strategy>/seed-<k>/
        config.json                              the run's resolved config (written first)
        events.jsonl                             append-only log, one JSON object per line
        checkpoint.pt                            state after the last finished experience
        summary.json                             written atomically when the run finishes
        run.lock                                 while a process runs it: its pid and host

A run is finished exactly when ``summary.json`` exists: it is only ever written by an atomic
rename, so a half-written file is never read as a result.

One process at a time runs a folder: :class:`RunLock` holds an exclusive ``flock`` on
``run.lock`` (the kernel drops it when the holder dies, however it dies, so a lock left by
a killed process is simply taken over) and writes the holder's pid and host into it, which
is what a second process is told when it finds the run locked (:class:`RunLocked`).
"""

from __future__ import annotations

import errno
import fcntl
import json
import os
import shutil
import socket
import tempfile
from pathlib import Path
from typing import Any

SUITE_FILE = "suite.json"
CONFIG_FILE = "config.json"
EVENTS_FILE = "events.jsonl"
CHECKPOINT_FILE = "checkpoint.pt"
SUMMARY_FILE = "summary.json"
LOCK_FILE = "run.lock"
TUNING_DIR = "sweep"  # a suite's tuning runs live in OUT/sweep, a results folder of their own
TUNING_SUFFIX = "-sweep"  # ... whose suite is named like the suite, with this added
TEMP_GLOB = ".*.tmp"  # what atomic_write_bytes leaves behind when killed mid-write


def shown(path: Path | str) -> str:
    """A path as results and reports record it: relative to the working directory when under
    it (as a user typed it, so committed results do not carry one machine's absolute paths),
    else as given."""
    try:
        return str(Path(path).resolve().relative_to(Path.cwd().resolve()))
    except (ValueError, OSError):
        return str(path)


class ResultsError(Exception):
    """A results folder that cannot be read as results."""


class ResultsWriteError(ResultsError):
    """A results file that cannot be written (a full disk, a read-only or missing folder)."""


def write_error(path: Path, e: OSError, size: int | None = None) -> ResultsWriteError:
    """One line for a failed write: which file, why, and on a full disk how much was needed."""
    why = e.strerror or str(e)
    if e.errno == errno.ENOSPC:
        try:
            free = shutil.disk_usage(next(p for p in Path(path).parents if p.exists())).free
            room = f"; {free:,} bytes free there"
        except (OSError, StopIteration):
            room = ""
        need = f" (writing {size:,} bytes{room})" if size is not None else ""
        return ResultsWriteError(f"cannot write {path}: no space left on device{need}")
    where = f" ({e.filename})" if e.filename and str(e.filename) != str(path) else ""
    return ResultsWriteError(f"cannot write {path}: {why}{where}")


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` so that readers see the old file or the new one, never half.
    A failed write raises :class:`ResultsWriteError` naming the file."""
    path = Path(path)
    tmp = None
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
        os.fchmod(fd, 0o644)  # mkstemp makes 0600; results are meant to be shared
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except OSError as e:
        if tmp is not None:
            Path(tmp).unlink(missing_ok=True)
        raise write_error(path, e, len(data)) from e
    except BaseException:
        if tmp is not None:
            Path(tmp).unlink(missing_ok=True)
        raise


def remove_stale_temp(run_dir: Path) -> list[Path]:
    """Delete the temp files of atomic writes a killed process left (call under the lock)."""
    stale = sorted(Path(run_dir).glob(TEMP_GLOB))
    for p in stale:
        p.unlink(missing_ok=True)
    return stale


def atomic_write_json(path: Path, obj: Any) -> None:
    atomic_write_bytes(path, (json.dumps(obj, indent=1, sort_keys=True) + "\n").encode())


def append_event(run_dir: Path, event: dict) -> None:
    """Append one line to the run's event log (flushed and fsynced: it is the audit trail)."""
    path = Path(run_dir) / EVENTS_FILE
    line = json.dumps(event, sort_keys=True) + "\n"
    try:
        with open(path, "a") as f:
            f.write(line)
            f.flush()
            os.fsync(f.fileno())
    except OSError as e:
        raise write_error(path, e, len(line)) from e


def repair_events(run_dir: Path) -> None:
    """Cut a torn last line (a kill mid-append), so the next row starts on a line of its own
    (call under the lock)."""
    path = Path(run_dir) / EVENTS_FILE
    if not path.exists():
        return
    raw = path.read_bytes()
    if raw and not raw.endswith(b"\n"):
        with open(path, "r+b") as f:
            f.truncate(raw.rfind(b"\n") + 1)


def restart_events(run_dir: Path) -> int:
    """Empty the log of a run that starts from nothing although phases were logged: its
    checkpoint is gone (a folder copied or cloned without it: checkpoints are not kept in
    git), so those phases are trained again, and rows of the lost attempt would stand twice
    beside the new ones. Returns how many phases the lost attempt had logged (call under the
    lock)."""
    lost = len(logged_experiences(read_events(run_dir)))
    if lost:
        atomic_write_bytes(Path(run_dir) / EVENTS_FILE, b"")
    return lost


def logged_experiences(events: list[dict]) -> set:
    """The experiences whose 'experience' row the log holds (each phase logs one)."""
    return {e.get("experience") for e in events if e.get("event") == "experience"}


def read_events(run_dir: Path) -> list[dict]:
    """The run's event log; a torn last line (a kill mid-append) is skipped."""
    path = Path(run_dir) / EVENTS_FILE
    if not path.exists():
        return []
    events = []
    for line in path.read_text().splitlines():
        try:
            events.append(json.loads(line))
        except ValueError:
            continue
    return events


def read_json(path: Path) -> Any:
    try:
        return json.loads(Path(path).read_text())
    except (OSError, ValueError) as e:
        raise ResultsError(f"cannot read {path}: {e}") from e


class RunLocked(Exception):
    """Another live process holds this run's lock: the caller skips the run (an executor
    reports it and goes on; the run is finished, or resumed, by the holder)."""

    def __init__(self, folder, holder: str):
        super().__init__(folder, holder)  # both in args: it pickles across a process pool
        self.folder, self.holder = Path(folder), holder

    def __str__(self) -> str:
        return f"{self.folder}: skipped, locked by {self.holder}"


def _this_holder() -> dict:
    return {"pid": os.getpid(), "host": socket.gethostname()}


class RunLock:
    """``with RunLock(run_dir):`` holds the run's exclusive lock, or raises RunLocked.

    An ``flock`` on ``run.lock``: non-blocking, held for the life of the open file, released
    by the kernel when the process exits or is killed, so a stale lock (its pid dead) is
    taken over without anyone deciding it is stale. The file records the holder's pid and
    host for the message a second process gets, and is removed on release.
    """

    def __init__(self, run_dir: Path):
        self.path = Path(run_dir) / LOCK_FILE
        self.fd: int | None = None
        self.previous: dict | None = None  # a dead holder's record, when one was taken over

    def __enter__(self) -> "RunLock":
        while True:
            try:
                fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
            except OSError as e:
                raise write_error(self.path, e) from e
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                held = os.read(fd, 4096).decode(errors="replace")
                os.close(fd)
                raise RunLocked(self.path.parent, _describe(*_read_holder(held))) from None
            try:  # the file we locked may have been removed by a releasing holder: retry
                same = os.stat(self.path).st_ino == os.fstat(fd).st_ino
            except FileNotFoundError:
                same = False
            if same:
                break
            os.close(fd)
        old = os.read(fd, 4096).decode(errors="replace")
        try:
            self.previous = json.loads(old) if old.strip() else None
        except ValueError:
            self.previous = None
        os.ftruncate(fd, 0)
        os.pwrite(fd, json.dumps(_this_holder()).encode(), 0)
        self.fd = fd
        return self

    def __exit__(self, *exc) -> None:
        if self.fd is not None:
            self.path.unlink(missing_ok=True)  # while still held: no one locks a dead inode
            os.close(self.fd)
            self.fd = None


def lock_holder(run_dir: Path) -> str | None:
    """Who runs ``run_dir`` now ('pid 123 on host'), or None when no process does. Read
    without taking the lock: taking it, even for an instant, would turn away a worker that
    starts the run at that moment. On Linux the kernel's table of held flocks
    (``/proc/locks``, by device and inode) says whether the lock is held; without it (another
    system) a live pid on this host does. A record naming another host (a shared results
    folder on a cluster) cannot be checked from here, and says so."""
    path = Path(run_dir) / LOCK_FILE
    try:
        record = path.read_text()
        st = path.stat()
    except OSError:
        return None  # no lock file: the holder released it (it is removed on release)
    host, pid = _read_holder(record)
    who = _describe(host, pid)
    if host is not None and host != socket.gethostname():
        return f"{who} (another host: not checked from here)"
    try:
        table = Path("/proc/locks").read_text()
    except OSError:
        table = None
    if table is not None:
        key = (os.major(st.st_dev), os.minor(st.st_dev), st.st_ino)
        for line in table.splitlines():
            fields = line.split()
            if "FLOCK" not in fields:
                continue
            for field in fields:
                parts = field.split(":")
                if len(parts) == 3:
                    try:
                        if (int(parts[0], 16), int(parts[1], 16), int(parts[2])) == key:
                            return who
                    except ValueError:
                        pass
        return None
    if pid is None:
        return None
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return None
    except PermissionError:
        pass  # alive, another user's
    return who


def _read_holder(held: str) -> tuple[str | None, int | None]:
    """The host and pid a lock file's record names; (None, None) for a record that is not one
    (a holder that died while writing it, another program's file)."""
    try:
        h = json.loads(held)
        return str(h["host"]), int(h["pid"])
    except (ValueError, KeyError, TypeError):
        return None, None


def _describe(host: str | None, pid: int | None) -> str:
    return "another process" if host is None else f"pid {pid} on {host}"


def read_suite_file(out: Path) -> dict:
    """The ``suite.json`` of results folder ``out`` (what the runner wrote there: the suite's
    name, hash and spec). A folder without one is named as not a results folder, the reason
    every reader of results gives (the report, the study's and the reproduction's tables)."""
    if not (Path(out) / SUITE_FILE).is_file():
        raise ResultsError(f"{out}: not a comet-cl results folder (no {SUITE_FILE})")
    return read_json(Path(out) / SUITE_FILE)


def run_dir(out: Path, stream: str, strategy: str, seed: int) -> Path:
    return Path(out) / "runs" / stream / strategy / f"seed-{seed}"


def suite_folder(run: Path) -> Path:
    """The results folder (``OUT``) holding the run folder ``run``: the inverse of ``run_dir``."""
    return Path(run).parents[3]


def run_folders(out: Path) -> list[Path]:
    """Every run folder under ``out`` that holds a config (finished or not), sorted."""
    return [cfg.parent for cfg in sorted(Path(out).glob(f"runs/*/*/seed-*/{CONFIG_FILE}"))]
