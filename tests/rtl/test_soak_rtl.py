"""``evhw soak``: a small campaign passes and fills the database, a restarted campaign skips the runs
it recorded, a broken design is caught, saved as a reproducer and replayed, and ``--cluster`` runs
on a Dask scheduler and worker started as separate processes on localhost."""
import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

from cliutil import run

pytestmark = pytest.mark.rtl
HERE = Path(__file__).resolve().parent
ROOT = HERE.parent.parent


def rows(db):
    with sqlite3.connect(db) as c:
        return list(c.execute("SELECT campaign, idx, status, repro, finished, params FROM runs ORDER BY campaign, idx"))


def test_small_campaign_passes_resumes_and_appends(tmp_path, capsys, require_simulator):
    require_simulator("icarus")
    db = tmp_path / "soak.sqlite"

    def soak(runs):
        return run(capsys, "soak", "--runs", str(runs), "--seed", "5", "--simulators", "icarus", "--pes", "1,2",
                   "--nets", "linear,mlp", "--frames", "2", "--workers", "1", "--db", str(db), "--json")

    code, out, err = soak(1)                   # an interrupted campaign: run 0 recorded
    assert code == 0, err
    assert json.loads(out)["runs"] == 1
    first = rows(db)
    code, out, err = soak(2)                   # resumed: run 0 skipped, run 1 added
    assert code == 0, err
    res = json.loads(out)
    assert (res["runs"], res["ok"], res["mismatches"], res["hangs"], res["errors"], res["failures"]) == (2, 2, 0, 0, 0, [])
    assert res["resumed"] == 1
    both = rows(db)
    assert both[0] == first[0] and [(r[1], r[2]) for r in both] == [(0, "ok"), (1, "ok")]
    params = [json.loads(r[5]) for r in both]
    assert {p["simulator"] for p in params} == {"icarus"} and {p["pes"] for p in params} <= {1, 2}
    assert params[0]["seed"] != params[1]["seed"]
    t0 = time.time()
    code, out, err = soak(2)                   # complete: nothing runs, no cluster starts, rows untouched
    assert code == 0, err
    assert json.loads(out)["resumed"] == 2 and time.time() - t0 < 10 and rows(db) == both
    # a second campaign appends; a run that fails before simulating is an error with a reproducer
    code, out, err = run(capsys, "soak", "--runs", "1", "--seed", "6", "--nets", "linear", "--threads", "--workers", "1",
                         "--generator", "soak_standin:generate_refused", "--db", str(db), "--json")
    assert code == 1
    res = json.loads(out)
    assert (res["runs"], res["errors"], len(res["failures"])) == (1, 1, 1)
    after = rows(db)
    assert len(after) == 3 and [r for r in after if r[0] == both[0][0]] == both
    assert "refused by the test generator" in json.loads(
        (tmp_path / "soak-repro" / res["failures"][0] / "run.json").read_text())["message"]


def test_broken_design_is_caught_saved_and_replayed(tmp_path, capsys, require_simulator):
    require_simulator("icarus")
    db = tmp_path / "soak.sqlite"
    base = ["soak", "--runs", "1", "--seed", "3", "--simulators", "icarus", "--pes", "1", "--nets", "linear",
            "--policies", "evnet", "--frames", "2", "--workers", "1", "--threads", "--db", str(db)]
    code, out, err = run(capsys, *base, "--generator", "soak_standin:generate_counting_bug", "--json")
    assert code == 1, err
    res = json.loads(out)
    assert res["mismatches"] == 1 and res["ok"] == 0 and len(res["failures"]) == 1
    assert "runs failed" in err.strip().splitlines()[-1]
    rid = res["failures"][0]
    folder = tmp_path / "soak-repro" / rid
    info = json.loads((folder / "run.json").read_text())
    assert {"net.evnet", "frames.npy", "run.json"} <= {p.name for p in folder.iterdir()}
    assert info["status"] == "mismatch" and "events:input" in info["message"]
    assert info["params"]["generator"] == "soak_standin:generate_counting_bug"
    assert f"--replay {rid}" in info["replay_command"] and "--seed 3" in info["campaign_command"]
    code, out, err = run(capsys, "soak", "--db", str(db), "--replay", rid, "--json")
    assert code == 1
    rep = json.loads(out)
    assert rep["status"] == "mismatch" and rep["recorded"] == "mismatch" and "events:input" in rep["message"]


def test_hung_design_is_reported_as_a_hang(tmp_path, capsys, require_simulator):
    """The stand-in that never sends an output: the simulated-time budget ends the run as a hang."""
    require_simulator("icarus")
    code, out, err = run(capsys, "soak", "--runs", "1", "--seed", "3", "--simulators", "icarus", "--pes", "1",
                         "--nets", "linear", "--policies", "evnet", "--frames", "2", "--workers", "1", "--threads",
                         "--generator", "soak_standin:generate_stuck", "--db", str(tmp_path / "soak.sqlite"), "--json")
    assert code == 1, err
    res = json.loads(out)
    assert (res["hangs"], res["mismatches"], res["errors"], len(res["failures"])) == (1, 0, 0, 1)
    info = json.loads((tmp_path / "soak-repro" / res["failures"][0] / "run.json").read_text())
    assert info["status"] == "hang" and "Timeout" in info["message"] and "0 of 2 frames" in info["message"]


def test_unknown_replay_and_bad_flags_exit_2(tmp_path, capsys):
    db = tmp_path / "soak.sqlite"
    for args, word in [(["--replay", "nope"], "nope"), (["--replay", "../x"], "../x"), (["--pes", "0"], "--pes"),
                       (["--simulators", "modelsim"], "--simulators"), (["--policies", "sparse"], "--policies"),
                       (["--runs", "0"], "--runs"), (["--cluster", "tcp://127.0.0.1:1", "--workers", "2"], "--workers")]:
        code, out, err = run(capsys, "soak", "--db", str(db), *args)
        assert code == 2, (args, err)
        assert len(err.strip().splitlines()) == 1 and word in err, (args, err)
    (tmp_path / "junk.sqlite").write_text("not a database " * 100)
    code, out, err = run(capsys, "soak", "--db", str(tmp_path / "junk.sqlite"), "--runs", "1")
    assert code == 2 and "junk.sqlite" in err and len(err.strip().splitlines()) == 1
    assert (tmp_path / "junk.sqlite").read_text().startswith("not a database")


def _start(cmd, env, log):
    return subprocess.Popen(cmd, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)


def _stop(p):
    if p.poll() is None:
        os.killpg(p.pid, signal.SIGTERM)
        try:
            p.wait(15)
        except subprocess.TimeoutExpired:
            os.killpg(p.pid, signal.SIGKILL)
            p.wait()


def test_campaign_on_a_separate_scheduler(tmp_path, require_simulator):
    """`--cluster` on a `dask scheduler` and `dask worker` running as their own processes on 127.0.0.1."""
    require_simulator("icarus")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), str(HERE)])}
    addr_file = tmp_path / "scheduler.json"
    procs = []
    with open(tmp_path / "dask.log", "w") as log:
        try:
            procs.append(_start([sys.executable, "-m", "distributed.cli.dask_scheduler", "--host", "127.0.0.1",
                                 "--port", "0", "--no-dashboard", "--scheduler-file", str(addr_file)], env, log))
            for _ in range(300):
                if addr_file.exists() and addr_file.stat().st_size:
                    break
                time.sleep(0.1)
            address = json.loads(addr_file.read_text())["address"]
            assert address.startswith("tcp://127.0.0.1:")
            procs.append(_start([sys.executable, "-m", "distributed.cli.dask_worker", address, "--nworkers", "1",
                                 "--nthreads", "1", "--host", "127.0.0.1", "--no-dashboard"], env, log))
            db = tmp_path / "soak.sqlite"
            r = subprocess.run([sys.executable, "-m", "evhw.cli", "soak", "--cluster", address, "--runs", "1",
                                "--seed", "11", "--simulators", "icarus", "--pes", "1", "--nets", "linear",
                                "--frames", "2", "--db", str(db), "--json"], env=env, capture_output=True, text=True,
                               timeout=300)
            assert r.returncode == 0, r.stderr
            res = json.loads(r.stdout)
            assert res["runs"] == 1 and res["ok"] == 1 and res["failures"] == []
            assert [x[2] for x in rows(db)] == ["ok"]
        finally:
            for p in reversed(procs):
                _stop(p)
    assert all(p.poll() is not None for p in procs)
