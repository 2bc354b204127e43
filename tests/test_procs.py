"""rtl_gen.procs.run_group: a child and everything it starts die when the wait ends, timeouts included."""
import os
import subprocess
import time

import pytest

from rtl_gen.procs import run_group


def _group_alive(pgid):
    try:
        os.killpg(pgid, 0)
        return True
    except ProcessLookupError:
        return False


def test_timeout_kills_the_whole_group(tmp_path):
    pidfile = tmp_path / "pid"
    with pytest.raises(subprocess.TimeoutExpired):
        run_group(["sh", "-c", f"sleep 30 & echo $$ > {pidfile}; wait"], timeout=1.0)
    pgid = int(pidfile.read_text())
    deadline = time.monotonic() + 5
    while _group_alive(pgid) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not _group_alive(pgid), "the background sleep outlived its group leader"


def test_stray_grandchild_is_killed_on_normal_exit(tmp_path):
    pidfile = tmp_path / "pid"
    assert run_group(["sh", "-c", f"sleep 30 & echo $$ > {pidfile}; exit 0"]) == 0
    pgid = int(pidfile.read_text())
    deadline = time.monotonic() + 5
    while _group_alive(pgid) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not _group_alive(pgid)
