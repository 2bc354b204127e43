"""The simulators really load the memory images, and one cached simulator build serves every build
whose Verilog is the same (tests/test_readmem.py checks the same without a simulator).

Per simulator, with a shared cache (``EVHW_SIM_CACHE``): build A simulates bit-exact; build B, a copy
of A whose readout bias word in ``mem/pe0_params.hex`` was edited and re-hashed, mismatches A's
network on exactly that output and, with the network of that bias as its ``net.evnet`` (the
testbench's golden model), simulates bit-exact (so the image, not the Verilog,
holds the contents); build C, generated from the network with its weights reordered, has the same
Verilog as A and simulates bit-exact. A, B and C share one compiled binary (compiled once).
"""
import hashlib
import json
import shutil

import numpy as np
import pytest

from evhw.evnet_file import dumps, loads
from rtl_gen.builddir import RECORD
from rtl_gen.export import generate
from rtl_gen.plan import HwPlan
from sim.session import simulate
from sim.tbwrap import WRAPPER_FILE
from tiny_nets import clip, tiny_mlp

pytestmark = pytest.mark.rtl


def rehash(path, name):
    rec = json.loads((path / RECORD).read_text())
    rec["sha256"][name] = hashlib.sha256((path / name).read_bytes()).hexdigest()
    (path / RECORD).write_text(json.dumps(rec))


def copy_net(q):
    return loads(dumps(q, None))[0]


def reordered_weights(q):
    q = copy_net(q)
    for layer in q.layers():
        for t in layer.terms:
            w = getattr(t, "weight", None)
            if w is not None and np.ndim(w) >= 2:
                w[...] = np.asarray(w).reshape(len(w), -1)[:, ::-1].reshape(np.shape(w))
    return q


def edit_readout_bias(build, q):
    """Move the readout bias of output 0 one step towards zero in ``build``'s params image (and forge
    the record); return the network with that bias."""
    plan = HwPlan.from_qnet(q, pes=1)
    out = plan.layers[-1]
    assert out.readout
    row = out.pbase[0]                           # output channel 0: PE 0, local channel 0
    bias = int(plan.params[0][row][0])
    step = -1 if bias > 0 else 1
    f = build / "mem" / "pe0_params.hex"
    lines = f.read_text().splitlines()
    mask = (1 << plan.bias_w) - 1
    word = int(lines[row], 16)
    lines[row] = format((word & ~mask) | ((bias + step) & mask), f"0{len(lines[row])}x")
    f.write_text("\n".join(lines) + "\n")
    rehash(build, "mem/pe0_params.hex")
    q2 = copy_net(q)
    q2.layers()[-1].bias[0] += step
    return q2


@pytest.mark.parametrize("simulator", ["icarus", "verilator"])
def test_images_are_loaded_and_one_binary_serves_them(simulator, tmp_path, monkeypatch, require_simulator):
    require_simulator(simulator)
    cache = tmp_path / "cache"
    monkeypatch.setenv("EVHW_SIM_CACHE", str(cache))
    q, g = tiny_mlp()
    frames = clip(tuple(q.input.shape))[:3]
    a, b, c = tmp_path / "a", tmp_path / "b", tmp_path / "c"
    generate(q, pes=1, out_dir=a, graph=g)
    res = simulate(a, q, frames, simulator=simulator, seed=1)
    assert res["bit_exact"], res["mismatches"]
    [binary_dir] = list(cache.glob(f"{simulator}-*"))
    stamp = (binary_dir / "evhw_build.json").read_text()
    mtime = (binary_dir / "evhw_build.json").stat().st_mtime_ns

    shutil.copytree(a, b, ignore=shutil.ignore_patterns("runs", "sim_build"))
    q_b = edit_readout_bias(b, q)
    res = simulate(b, q, frames, simulator=simulator, seed=1)      # the testbench's golden: b's net.evnet = q
    assert not res["bit_exact"]
    assert {m["what"] for m in res["mismatches"]} == {"output[0]"}, res["mismatches"]
    (b / "net.evnet").write_bytes(dumps(q_b, g))
    rehash(b, "net.evnet")
    res = simulate(b, q_b, frames, simulator=simulator, seed=1)
    assert res["bit_exact"], res["mismatches"]

    q_c = reordered_weights(q)
    generate(q_c, pes=1, out_dir=c, graph=g)
    assert (c / "evhw_top.v").read_bytes() == (a / "evhw_top.v").read_bytes()
    assert (c / "mem" / "pe0_weights.hex").read_bytes() != (a / "mem" / "pe0_weights.hex").read_bytes()
    res = simulate(c, q_c, frames, simulator=simulator, seed=1)
    assert res["bit_exact"], res["mismatches"]

    assert list(cache.glob(f"{simulator}-*")) == [binary_dir]            # compiled once, reused twice
    assert (binary_dir / "evhw_build.json").read_text() == stamp
    assert (binary_dir / "evhw_build.json").stat().st_mtime_ns == mtime
    for d in (a, c):             # the build folders hold the harness source only, no simulator build
        assert sorted(x.name for x in (d / "sim_build").iterdir()) == [WRAPPER_FILE]
