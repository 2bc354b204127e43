"""`evhw bench sim`: compile and simulation figures of the testbench, checked bit-exact; flags checked first."""
import json
import os

import numpy as np
import pytest

from tests.cliutil import run

KEYS = {"compile_seconds", "compile_cached", "sim_seconds", "sim_cpu_seconds", "cycles", "cycles_per_second",
        "cycles_per_cpu_second", "frames_per_second", "simulator", "pes", "model", "machine", "frames"}


@pytest.fixture(scope="module")
def saved_mlp(tmp_path_factory):
    from evhw.evnet_file import save
    from tests.rtl.tiny_nets import tiny_mlp
    q, g = tiny_mlp()
    path = tmp_path_factory.mktemp("net") / "mlp.evnet"
    save(path, q, g)
    return path


def test_bench_sim_json(capsys, tmp_path, saved_mlp, require_simulator):
    require_simulator("icarus")
    code, out, err = run(capsys, "bench", "sim", "--model", str(saved_mlp), "--pes", "2", "--simulator", "icarus",
                         "--frames", "3", "--json", "-o", str(tmp_path / "b"))
    assert code == 0, err
    res = json.loads(out)
    assert KEYS <= set(res), sorted(KEYS - set(res))
    assert res["simulator"] == "icarus" and res["pes"] == 2 and res["frames"] == 3
    assert res["model"] == str(saved_mlp)
    # never a silent 0 s: a compile that ran now took time; a reused one says so
    if res["compile_cached"]:
        assert res["compile_seconds"] is None or res["compile_seconds"] > 0
    else:
        assert res["compile_seconds"] > 0
    # every pixel of every frame takes at least one cycle (64 inputs, 3 frames)
    assert res["cycles"] >= 3 * 64
    assert res["sim_seconds"] > 0
    assert np.isclose(res["cycles_per_second"], res["cycles"] / res["sim_seconds"])
    assert np.isclose(res["frames_per_second"], 3 / res["sim_seconds"])
    # the simulator's CPU time: positive, and no more than its wall time on this machine's cores
    assert 0 < res["sim_cpu_seconds"] <= res["sim_seconds"] * os.cpu_count() + 0.1
    assert np.isclose(res["cycles_per_cpu_second"], res["cycles"] / res["sim_cpu_seconds"], rtol=1e-2)


@pytest.mark.parametrize("args", [["--pes", "0"], ["--pes", "99"], ["--frames", "0"], ["--simulator", "modelsim"],
                                  ["--threshold", "nan"], ["--pes", "a"], ["--threads", "0"], ["--threads", "65"],
                                  ["--threads", "two"]])
def test_bench_sim_bad_flags(capsys, tmp_path, args):
    code, out, err = run(capsys, "bench", "sim", "-o", str(tmp_path / "b"), *args)
    assert code == 2
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert len(lines) == 1 and args[0] in lines[0], err
    assert not (tmp_path / "b").exists()


def test_bench_sim_unknown_model(capsys, tmp_path):
    code, out, err = run(capsys, "bench", "sim", "--model", "no-such-net", "-o", str(tmp_path / "b"))
    assert code == 2
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert len(lines) == 1 and "no-such-net" in lines[0], err


def test_bench_sim_verilator_threads(capsys, tmp_path, saved_mlp, require_simulator):
    """A two-thread Verilator model (``--threads 2``) is built as one and simulates bit-exact."""
    require_simulator("verilator")
    code, out, err = run(capsys, "bench", "sim", "--model", str(saved_mlp), "--pes", "2", "--simulator", "verilator",
                         "--frames", "3", "--threads", "2", "--json", "-o", str(tmp_path / "b"))
    assert code == 0, err
    res = json.loads(out)
    assert res["threads"] == 2 and res["bit_exact"]
    [model] = list((tmp_path / "b").rglob("Vtop.cpp"))                  # Verilator's generated model
    assert "unsigned Vtop::threads() const { return 2; }" in model.read_text()
    # every C++ compile went through ccache (the [sim] extra installs it): the Verilator runtime
    # objects, the bulk of a small model's compile, are compiled once per machine
    from sim.runner import ccache
    cc = ccache()
    assert cc is not None
    [log] = list((tmp_path / "b").rglob("build.log"))
    compiles = [ln for ln in log.read_text().splitlines() if " -c " in ln and " -o " in ln]
    assert compiles and all(ln.startswith(f"{cc} ") for ln in compiles), compiles[:2]


def test_ccache_is_left_out_when_its_cache_cannot_be_written(tmp_path, monkeypatch):
    """ccache fails every compile when its cache folder cannot be made: then builds go without it."""
    from sim.runner import ccache
    assert ccache() is not None                                   # the [sim] extra installs it
    (tmp_path / "a-file").write_text("")
    monkeypatch.setenv("CCACHE_DIR", str(tmp_path / "a-file" / "cache"))
    assert ccache() is None
    monkeypatch.setenv("CCACHE_DIR", str(tmp_path / "cache"))
    assert ccache() is not None and (tmp_path / "cache").is_dir()
