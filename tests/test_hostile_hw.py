"""Hostile input and interruptions on the hardware side (`evhw generate`, `evhw sim`, `evhw report`).

* A signal to `evhw sim` kills every process it started (compiler, simulator), and leaves no
  results file a rerun would read (real subprocesses; /proc is walked for the descendants).
* A truncated simulator binary in the build cache is detected and rebuilt.
* Bad build folders, outputs and flags: exit code 2 and one line naming the file, field or flag.
"""
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from rtl_gen.export import generate
from tests.rtl.tiny_nets import tiny_mlp

ROOT = Path(__file__).resolve().parent.parent


# ------------------------------------------------------------------------------------------ /proc
def processes():
    """``{pid: (ppid, sid, state, cmdline)}`` of every process (zombies have state Z)."""
    out = {}
    for d in Path("/proc").iterdir():
        if not d.name.isdigit():
            continue
        try:
            stat = (d / "stat").read_text()
            cmd = (d / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        fields = stat[stat.rindex(")") + 2:].split()
        out[int(d.name)] = (int(fields[1]), int(fields[3]), fields[0], cmd)
    return out


def signal_masks(pid):
    """The blocked, ignored and caught signal masks of ``pid`` (from /proc)."""
    try:
        lines = Path(f"/proc/{pid}/status").read_text().splitlines()
    except OSError:
        return {}
    return {k: v.strip() for k, _, v in (ln.partition(":") for ln in lines) if k in ("SigBlk", "SigIgn", "SigCgt")}


def descendants(root, procs):
    found, todo = set(), [root]
    while todo:
        p = todo.pop()
        for pid, (ppid, *_rest) in procs.items():
            if ppid == p and pid not in found:
                found.add(pid)
                todo.append(pid)
    return found


def watch_until(proc, pred, timeout):
    """Poll the descendants of ``proc`` until ``pred(cmdlines)``; returns (pids, sessions) seen so far."""
    pids, sessions = set(), {proc.pid}
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        procs = processes()
        new = descendants(proc.pid, procs)
        pids |= new
        sessions |= {procs[p][1] for p in new if p in procs}
        if pred([procs[p][3] for p in new if p in procs]):
            return pids, sessions
        if proc.poll() is not None:
            out, err = proc.communicate()
            pytest.fail(f"evhw sim ended before the awaited process started: {err[-2000:]}")
        time.sleep(0.05)
    proc.kill()
    pytest.fail("the awaited process did not start")


def alive(pids, sessions):
    return [(pid, v[3]) for pid, v in processes().items()
            if v[2] != "Z" and (pid in pids or v[1] in sessions)]


def assert_all_gone(pids, sessions, within=5.0):
    end = time.monotonic() + within
    while alive(pids, sessions) and time.monotonic() < end:
        time.sleep(0.1)
    assert alive(pids, sessions) == []


@pytest.fixture(scope="module")
def mlp_build(tmp_path_factory):
    q, g = tiny_mlp()
    path = tmp_path_factory.mktemp("hostile") / "build"
    generate(q, pes=1, out_dir=path, graph=g)
    frames = tmp_path_factory.mktemp("frames") / "many.npy"
    np.save(frames, np.random.default_rng(0).integers(0, 256, (400, 64), dtype=np.uint8))
    return path, q, frames


def start_sim(build, frames, simulator):
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.Popen([sys.executable, "-m", "evhw.cli", "sim", str(build), "--video", str(frames),
                             "--frames", "400", "--simulator", simulator], cwd=ROOT, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True,
                            preexec_fn=_default_sigint)


def _default_sigint():
    # a test run started in the background of a non-interactive shell inherits SIGINT ignored
    # (POSIX), and so would the CLI: give it the disposition an interactive Ctrl-C meets
    signal.signal(signal.SIGINT, signal.SIG_DFL)


# ------------------------------------------------------------------------------------------ signals
def test_sigterm_during_simulation_kills_the_simulator(mlp_build, require_simulator):
    require_simulator("icarus")
    build, _, frames = mlp_build
    proc = start_sim(build, frames, "icarus")
    pids, sessions = watch_until(proc, lambda cmds: any("vvp" in c for c in cmds), timeout=120)
    time.sleep(0.5)                                   # the simulator is running frames
    proc.send_signal(signal.SIGTERM)
    proc.wait(timeout=30)          # prompt, with room for a loaded machine
    assert_all_gone(pids, sessions)
    assert not (build / "runs" / "icarus" / "results.json").exists()


def test_sigint_during_the_cxx_compile_kills_the_compiler(mlp_build, require_simulator):
    require_simulator("verilator")
    build, _, frames = mlp_build
    proc = start_sim(build, frames, "verilator")
    compiling = ("g++", "cc1plus", "clang", " make ", "/make ")
    pids, sessions = watch_until(proc, lambda cmds: any(any(k in f" {c}" for k in compiling) for c in cmds),
                                 timeout=120)
    masks = signal_masks(proc.pid)
    proc.send_signal(signal.SIGINT)
    try:
        proc.wait(timeout=30)          # prompt, with room for a loaded machine
    except subprocess.TimeoutExpired:  # say what was still running and what the CLI printed
        procs = processes()
        alive_now = [procs[p][3] for p in descendants(proc.pid, procs) if p in procs]
        proc.kill()
        out, err = proc.communicate()
        pytest.fail(f"evhw sim still running 30 s after SIGINT; its signal masks then {masks}, this "
                    f"process's {signal_masks(os.getpid())}; descendants {alive_now}; stderr {err[-2000:]!r}")
    assert proc.returncode == 130, proc.returncode      # interrupted, not a run that finished anyway
    assert_all_gone(pids, sessions)


# ------------------------------------------------------------------------------------------ cache
def test_truncated_simulator_binary_is_rebuilt(tmp_path, require_simulator):
    require_simulator("icarus")
    from sim.session import simulate
    q, g = tiny_mlp()
    generate(q, pes=1, out_dir=tmp_path / "b", graph=g)
    frames = np.random.default_rng(1).integers(0, 256, (2, 64), dtype=np.uint8)
    assert simulate(tmp_path / "b", q, frames, simulator="icarus")["bit_exact"]
    vvp = tmp_path / "b" / "sim_build" / "icarus" / "sim.vvp"
    size = vvp.stat().st_size
    with open(vvp, "r+b") as f:
        f.truncate(size // 2)
    res = simulate(tmp_path / "b", q, frames, simulator="icarus")
    assert res["bit_exact"] and res["error"] is None
    assert vvp.stat().st_size == size


# ------------------------------------------------------------------------------------------ CLI
from hypothesis import HealthCheck, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

from cliutil import run  # noqa: E402


def one_error_line(code, out, err, *names):
    assert code == 2, (out, err)
    assert "Traceback" not in err and err.count("\n") == 1, err
    assert err.startswith("evhw: error:"), err
    for n in names:
        assert str(n) in err, (n, err)


@pytest.fixture(scope="module")
def saved_mlp(tmp_path_factory):
    from evhw.evnet_file import save
    q, g = tiny_mlp()
    path = tmp_path_factory.mktemp("net") / "mlp.evnet"
    save(path, q, g)
    return path


def test_generate_output_is_a_file(capsys, tmp_path, saved_mlp):
    f = tmp_path / "taken.txt"
    f.write_text("keep me")
    one_error_line(*run(capsys, "generate", str(saved_mlp), "-o", str(f)), f, "is a file")
    one_error_line(*run(capsys, "generate", str(saved_mlp), "-o", str(f / "build")), f, "which is a file")
    assert f.read_text() == "keep me" and sorted(p.name for p in tmp_path.iterdir()) == ["taken.txt"]


def test_refused_generate_leaves_no_folder(capsys, tmp_path):
    from evhw.convert import convert
    from evhw.evnet_file import save
    from tests.netgen import random_cnn
    g = random_cnn(1, size=8)                  # a layer the v1 hardware does not build
    save(tmp_path / "cnn.evnet", convert(g, np.random.default_rng(0).integers(0, 256, (4, 1, 8, 8))), g)
    code, out, err = run(capsys, "generate", str(tmp_path / "cnn.evnet"), "-o", str(tmp_path / "out" / "build"))
    one_error_line(code, out, err)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["cnn.evnet"]


@pytest.mark.parametrize("text", ["", '{"version": 2, "top": "evh'])
def test_sim_on_a_truncated_manifest(capsys, mlp_build, tmp_path, text):
    import shutil
    build, _, frames = mlp_build
    b = tmp_path / "b"
    shutil.copytree(build, b, ignore=shutil.ignore_patterns("sim_build", "runs"))
    (b / "manifest.json").write_text(text)
    one_error_line(*run(capsys, "sim", str(b), "--video", str(frames), "--frames", "2", "--simulator", "icarus"),
                   b / "manifest.json")


def test_sim_on_an_edited_pes(capsys, mlp_build, tmp_path):
    import json
    import shutil
    build, _, frames = mlp_build
    b = tmp_path / "b"
    shutil.copytree(build, b, ignore=shutil.ignore_patterns("sim_build", "runs"))
    d = json.loads((b / "manifest.json").read_text())
    d["pes"] = 4
    (b / "manifest.json").write_text(json.dumps(d, indent=1))
    one_error_line(*run(capsys, "sim", str(b), "--video", str(frames), "--frames", "2", "--simulator", "icarus"),
                   b / "manifest.json")


FILES = ["manifest.json", "evhw_top.v", "net.evnet", "evhw_build.json", "mem/pe0_weights.hex"]


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(command=st.sampled_from(["sim", "report"]), victim=st.sampled_from(FILES),
       action=st.sampled_from(["truncate", "delete", "garbage", "directory"]), cut=st.floats(0, 0.99),
       garbage=st.binary(min_size=0, max_size=64))
def test_fuzz_damaged_build(capsys, mlp_build, tmp_path_factory, command, victim, action, cut, garbage):
    """Any damage to any file of a build: exit 2, one line naming that file, no traceback."""
    import shutil
    build, _, frames = mlp_build
    b = tmp_path_factory.mktemp("fuzz") / "b"
    shutil.copytree(build, b, ignore=shutil.ignore_patterns("sim_build", "runs"))
    f = b / victim
    data = f.read_bytes()
    if action == "truncate":
        f.write_bytes(data[:int(len(data) * cut)])
    elif action == "delete":
        f.unlink()
    elif action == "garbage":
        f.write_bytes(garbage if garbage != data else garbage + b"x")
    else:
        f.unlink()
        f.mkdir()
    args = (["sim", str(b), "--video", str(frames), "--frames", "2", "--simulator", "icarus"] if command == "sim"
            else ["report", str(b), "--device", "ice40-up5k"])
    one_error_line(*run(capsys, *args), victim.split("/")[-1])
    shutil.rmtree(b.parent)


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(flag=st.sampled_from(["--frames", "--stall", "--simulator", "--policy", "--reset-every", "--seed",
                             "--threshold"]),
       value=st.one_of(st.integers(-5, 0).map(str), st.sampled_from(["-1", "1e9", "nan", "inf", "x", "", "0.99",
                                                                     "modelsim"])))
def test_fuzz_sim_flags(capsys, mlp_build, flag, value):
    """Bad `evhw sim` flag values: exit 2 naming the flag, no traceback, nothing simulated."""
    build, _, frames = mlp_build
    valid = {"--frames": lambda v: v.isdigit() and int(v) >= 1, "--stall": lambda v: False,
             "--simulator": lambda v: False, "--policy": lambda v: False,
             "--reset-every": lambda v: False, "--seed": lambda v: v.lstrip("-").isdigit(),
             "--threshold": lambda v: v in ("0", "-0", "1e9")}
    if flag == "--stall" and value in ("0", "-0"):
        return
    if valid[flag](value) or (flag == "--seed"):
        return                                          # a valid value: not this test's business
    code, out, err = run(capsys, "sim", str(build), "--video", str(frames), "--frames", "2", "--simulator",
                         "icarus", "--policy", "skipconv" if flag == "--reset-every" else "evnet", flag, value)
    assert code == 2 and "Traceback" not in err, err
    assert flag in err or flag.lstrip("-") in err, err


def test_a_mismatch_exits_1_not_2(capsys, tmp_path, require_simulator):
    """A simulation that runs and finds the RTL wrong is not an error: its own exit code (1)."""
    require_simulator("icarus")
    from tests.rtl.standin_top import generate_standin
    from tests.rtl.tiny_nets import clip, tiny_linear
    q, g = tiny_linear()
    generate_standin(q, g, out_dir=tmp_path / "b", bug="count")       # counts every event twice
    np.save(tmp_path / "f.npy", clip((64,)))
    code, out, err = run(capsys, "sim", str(tmp_path / "b"), "--video", str(tmp_path / "f.npy"), "--frames", "3",
                         "--simulator", "icarus", "--json")
    assert code == 1, err
    import json
    res = json.loads(out)
    assert not res["bit_exact"] and res["error"] is None and res["mismatches"][0]["what"] == "events:input"


def test_results_of_another_or_unfinished_run_never_count(tmp_path):
    import json

    from sim.job import ResultsError, read_results, write_results
    path = tmp_path / "results.json"
    with pytest.raises(ResultsError, match="wrote no results"):
        read_results(path, "run-b")
    write_results(path, "run-a", {"frames": [], "bit_exact": True})
    assert read_results(path, "run-a")["bit_exact"] is True
    with pytest.raises(ResultsError, match="not the complete results of this run"):
        read_results(path, "run-b")                         # left by an earlier (orphaned) simulator
    path.write_text(json.dumps({"frames": [], "bit_exact": True, "run_id": "run-b"}))
    with pytest.raises(ResultsError, match="not the complete results of this run"):
        read_results(path, "run-b")                         # no completion marker
    path.write_text('{"frames": [{"frame": 0')
    with pytest.raises(ResultsError, match="unreadable"):
        read_results(path, "run-b")                         # cut off mid-write
