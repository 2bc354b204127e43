"""Generators for ``evhw soak --generator`` that fail the way a run's process can fail: hang (with
a grandchild process) or die by a signal. ``EVHW_TEST_PIDS`` (a file): the processes they start."""
import os
import signal
import subprocess
import time


def _note(*pids):
    with open(os.environ["EVHW_TEST_PIDS"], "a") as f:
        f.write("".join(f"{p}\n" for p in pids))


def generate_sleeps(q, *, pes, out_dir, graph=None):
    """Never returns; starts a grandchild that would outlive it unless its group is killed."""
    child = subprocess.Popen(["sleep", "300"])
    _note(os.getpid(), child.pid)
    while True:
        time.sleep(1)


def generate_dies(q, *, pes, out_dir, graph=None):
    """The run's process is killed outright (a crashed simulator or an out-of-memory kill)."""
    _note(os.getpid())
    os.kill(os.getpid(), signal.SIGKILL)


def generate_refuses(q, *, pes, out_dir, graph=None):
    """Notes the process it runs in, then refuses the network."""
    _note(os.getpid())
    raise ValueError("refused by soak_faults")


def generate_kills_worker(q, *, pes, out_dir, graph=None):
    """Kills the Dask worker the run's process belongs to (its parent): a worker crash."""
    _note(os.getpid(), os.getppid())
    os.kill(os.getppid(), signal.SIGKILL)
    time.sleep(30)
