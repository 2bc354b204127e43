"""``evhw soak``'s per-run process: a run past ``--run-limit`` is a hang with a reproducer and
nothing it started survives; a run whose process dies is an error naming the signal. No simulator
is needed: the injected generators fail before simulating."""
import json
import os
import time
from pathlib import Path

from cliutil import run


def alive(pid):
    """Running and not a zombie."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return state not in ("Z", "X")


def soak(capsys, tmp_path, generator, *more):
    return run(capsys, "soak", "--runs", "1", "--seed", "4", "--nets", "linear", "--threads", "--workers", "1",
               "--generator", generator, "--db", str(tmp_path / "soak.sqlite"), "--json", *more)


def test_a_run_past_the_wall_clock_limit_is_a_hang_and_its_processes_die(tmp_path, capsys, monkeypatch):
    pids = tmp_path / "pids"
    monkeypatch.setenv("EVHW_TEST_PIDS", str(pids))
    t0 = time.time()
    code, out, err = soak(capsys, tmp_path, "soak_faults:generate_sleeps", "--run-limit", "4")
    assert code == 1, err
    assert time.time() - t0 < 60
    res = json.loads(out)
    assert (res["hangs"], res["errors"], res["ok"], len(res["failures"])) == (1, 0, 0, 1)
    folder = tmp_path / "soak-repro" / res["failures"][0]
    info = json.loads((folder / "run.json").read_text())
    assert info["status"] == "hang" and "wall-clock limit of 4 s" in info["message"]
    assert {"net.evnet", "frames.npy"} <= set(info["files"]) and (folder / "net.evnet").stat().st_size > 0
    started = [int(x) for x in pids.read_text().split()]
    assert len(started) == 2                                 # the run's process and its grandchild
    deadline = time.time() + 10
    while any(alive(p) for p in started) and time.time() < deadline:
        time.sleep(0.2)
    assert not any(alive(p) for p in started), started


def test_a_run_whose_process_dies_is_an_error_naming_the_signal(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("EVHW_TEST_PIDS", str(tmp_path / "pids"))
    code, out, err = soak(capsys, tmp_path, "soak_faults:generate_dies")
    assert code == 1, err
    res = json.loads(out)
    assert (res["errors"], res["hangs"], len(res["failures"])) == (1, 0, 1)
    info = json.loads((tmp_path / "soak-repro" / res["failures"][0] / "run.json").read_text())
    assert info["status"] == "error" and "SIGKILL" in info["message"] and "died" in info["message"]
    assert "net.evnet" in info["files"]


def test_without_a_limit_the_run_stays_in_the_worker(tmp_path, capsys, monkeypatch):
    """--run-limit 0: no child process (the run's pid is the worker's, here this test's)."""
    pids = tmp_path / "pids"
    monkeypatch.setenv("EVHW_TEST_PIDS", str(pids))
    code, out, err = soak(capsys, tmp_path, "soak_faults:generate_refuses", "--run-limit", "0")
    assert code == 1 and json.loads(out)["errors"] == 1
    assert [int(x) for x in pids.read_text().split()] == [os.getpid()]


def test_a_crashed_worker_is_an_error_with_the_message(tmp_path, capsys, monkeypatch):
    """The run kills its Dask worker (processes, not threads): Dask gives up on the task
    (``allowed-failures`` 0 here) and the run is recorded as an error saying so."""
    import dask
    monkeypatch.setenv("EVHW_TEST_PIDS", str(tmp_path / "pids"))
    with dask.config.set({"distributed.scheduler.allowed-failures": 0}):
        code, out, err = run(capsys, "soak", "--runs", "1", "--seed", "4", "--nets", "linear", "--workers", "1",
                             "--generator", "soak_faults:generate_kills_worker",
                             "--db", str(tmp_path / "soak.sqlite"), "--json")
    assert code == 1, err
    res = json.loads(out)
    assert (res["errors"], res["runs"], len(res["failures"])) == (1, 1, 1)
    info = json.loads((tmp_path / "soak-repro" / res["failures"][0] / "run.json").read_text())
    assert info["status"] == "error" and "KilledWorker" in info["message"]
    run_pid, worker_pid = [int(x) for x in (tmp_path / "pids").read_text().split()]
    assert worker_pid != os.getpid() and not alive(worker_pid) and not alive(run_pid)


def test_bad_pool_and_limit_flags_exit_2(tmp_path, capsys):
    for args, word in [(["--structures", "-1"], "--structures"), (["--run-limit", "-3"], "--run-limit"),
                       (["--run-limit", "soon"], "--run-limit")]:
        code, out, err = run(capsys, "soak", "--db", str(tmp_path / "soak.sqlite"), *args)
        assert code == 2 and len(err.strip().splitlines()) == 1 and word in err, (args, err)
    assert not (tmp_path / "soak.sqlite").exists()
