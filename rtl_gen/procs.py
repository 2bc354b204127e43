"""Child processes that die with their parent: the simulators (sim/) and the FPGA tools (evhw report).

:func:`run_group` starts a command as the leader of a new process group (its own session) and
waits for it. Whatever it starts (make, the C++ compiler, the simulator) stays in that group, and
the whole group is killed when the wait ends for any reason: normal exit (stray grandchildren),
an exception, ``KeyboardInterrupt`` (SIGINT), SIGTERM or SIGHUP to this process (then re-raised as
``SystemExit(128 + signal)``). On Linux the child also gets ``PR_SET_PDEATHSIG`` (SIGTERM): if this
process is killed outright, the child is told and kills its own group (:func:`die_with_parent`).
"""
from __future__ import annotations

import ctypes
import ctypes.util
import os
import signal
import subprocess
import sys
import threading

__all__ = ["run_group", "die_with_parent", "kill_group"]

_PR_SET_PDEATHSIG = 1


def _set_pdeathsig():                       # runs in the child between fork and exec
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0)
    except (OSError, AttributeError):
        pass


def kill_group(pgid):
    """SIGKILL every process of group ``pgid`` (no error when it is already gone)."""
    try:
        os.killpg(pgid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass


def run_group(cmd, *, env=None, cwd=None, stdout=None, stderr=None, timeout=None):
    """Run ``cmd`` in its own process group; kill the group when this returns or raises. Returns
    the exit code; raises :class:`subprocess.TimeoutExpired` (the group killed) after ``timeout`` s."""
    linux = sys.platform.startswith("linux")
    proc = subprocess.Popen(cmd, env=env, cwd=cwd, stdin=subprocess.DEVNULL, stdout=stdout, stderr=stderr,
                            start_new_session=True, preexec_fn=_set_pdeathsig if linux else None)
    previous = {}

    def on_signal(signum, frame):
        kill_group(proc.pid)
        raise SystemExit(128 + signum)

    if threading.current_thread() is threading.main_thread():
        for sig in (signal.SIGTERM, signal.SIGHUP):
            previous[sig] = signal.signal(sig, on_signal)
    try:
        return proc.wait(timeout=timeout)
    finally:
        kill_group(proc.pid)
        try:
            proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            pass
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def die_with_parent():
    """In a child started by :func:`run_group`: when SIGTERM arrives (the parent died or was told to
    stop), kill this process's whole group, i.e. everything it started, then itself."""
    def on_term(signum, frame):
        kill_group(os.getpgrp())
        os._exit(128 + signum)
    signal.signal(signal.SIGTERM, on_term)
    if sys.platform.startswith("linux") and os.getppid() == 1:     # the parent died before we got here
        on_term(signal.SIGTERM, None)
