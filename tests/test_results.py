"""The run lock and the results writers: one holder per run folder, stale locks taken over,
failed writes named."""

import errno
import json
import os
import pickle
import socket
import subprocess
import sys

import pytest

from comet_cl import results
from comet_cl.results import LOCK_FILE, RunLock, RunLocked


def test_a_held_lock_refuses_a_second_holder_and_names_the_first(tmp_path):
    with RunLock(tmp_path) as lock:
        held = json.loads((tmp_path / LOCK_FILE).read_text())
        assert held == {"pid": os.getpid(), "host": socket.gethostname()}
        with pytest.raises(RunLocked) as e:
            with RunLock(tmp_path):
                pass
        assert str(e.value) == (f"{tmp_path}: skipped, locked by pid {os.getpid()} on "
                                f"{socket.gethostname()}")
        assert lock.previous is None
    assert not (tmp_path / LOCK_FILE).exists()  # released and removed
    with RunLock(tmp_path):  # free again
        pass


def test_a_lock_left_by_a_dead_process_is_taken_over(tmp_path):
    # A process that took the lock and was killed: its file stays, its flock went with it.
    code = ("import sys, os\nfrom comet_cl.results import RunLock\n"
            "RunLock(sys.argv[1]).__enter__()\nos._exit(0)")
    subprocess.run([sys.executable, "-c", code, str(tmp_path)], check=True, timeout=60)
    dead = json.loads((tmp_path / LOCK_FILE).read_text())
    assert dead["pid"] != os.getpid()
    with RunLock(tmp_path) as lock:
        assert lock.previous == dead
        assert json.loads((tmp_path / LOCK_FILE).read_text())["pid"] == os.getpid()


def test_a_process_holding_the_lock_blocks_another_process(tmp_path):
    code = ("import sys, time\nfrom comet_cl.results import RunLock\n"
            "with RunLock(sys.argv[1]):\n    print('held', flush=True)\n    time.sleep(60)")
    holder = subprocess.Popen([sys.executable, "-c", code, str(tmp_path)],
                              stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        with pytest.raises(RunLocked, match=f"locked by pid {holder.pid} on "):
            with RunLock(tmp_path):
                pass
    finally:
        holder.kill()
        holder.wait()
    with RunLock(tmp_path) as lock:  # killed: taken over
        assert lock.previous["pid"] == holder.pid


def test_run_locked_survives_a_process_pool(tmp_path):
    e = pickle.loads(pickle.dumps(RunLocked(tmp_path, "pid 1 on h")))
    assert e.folder == tmp_path and e.holder == "pid 1 on h" and "skipped" in str(e)


def test_failed_writes_name_the_file_and_leave_no_temp(tmp_path, monkeypatch):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    with pytest.raises(results.ResultsWriteError, match=f"cannot write {blocker}/a.json: "):
        results.atomic_write_json(blocker / "a.json", {})

    def full(fd):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(results.os, "fsync", full)
    with pytest.raises(results.ResultsWriteError,
                       match=r"a.json: no space left on device \(writing 3 bytes; .* free"):
        results.atomic_write_json(tmp_path / "a.json", {})
    with pytest.raises(results.ResultsWriteError, match="events.jsonl: no space left"):
        results.append_event(tmp_path, {"event": "x"})
    assert not list(tmp_path.glob(".*.tmp"))


def test_stale_temp_files_are_removed_and_torn_event_lines_skipped(tmp_path):
    (tmp_path / ".checkpoint.pt.abc123.tmp").write_bytes(b"half")
    (tmp_path / "summary.json").write_text("{}")
    assert [p.name for p in results.remove_stale_temp(tmp_path)] == [".checkpoint.pt.abc123.tmp"]
    assert (tmp_path / "summary.json").exists()
    (tmp_path / "events.jsonl").write_text('{"event": "started"}\n{"event": "exp')
    assert results.read_events(tmp_path) == [{"event": "started"}]
    results.repair_events(tmp_path)
    results.append_event(tmp_path, {"event": "resumed"})
    assert results.read_events(tmp_path) == [{"event": "started"}, {"event": "resumed"}]
