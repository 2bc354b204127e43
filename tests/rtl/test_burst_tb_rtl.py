"""The burst testbench's harness (sim/tbwrap.py): random stalls per seed, repeatable, and its file reader."""
import numpy as np
import pytest

from sim.limits import MAX_STALL
from sim.session import simulate
from sim.tbwrap import stat_addresses, wrapper_verilog
from standin_top import generate_standin
from tiny_nets import clip, tiny_linear

pytestmark = pytest.mark.rtl


@pytest.fixture(scope="module")
def standin(tmp_path_factory):
    path = tmp_path_factory.mktemp("burst")
    q, g = tiny_linear()
    return path, q, generate_standin(q, g, out_dir=path)


def test_wrapper_text_follows_the_manifest(standin):
    _, q, manifest = standin
    text = wrapper_verilog(manifest)
    assert f"NPIX = {int(np.prod(q.input.shape))}," in text
    assert f"NOUT = {manifest.output.count}," in text
    assert f"NSTAT = {max(stat_addresses(manifest)) + 1}," in text
    assert sorted(stat_addresses(manifest)) == [0, 1, 2, 3, 4, 5]      # the stand-in's map, flattened


def test_read_hex_honours_addresses_comments_and_x():
    from sim.tb.evhw_top_tb import read_hex
    import tempfile
    from pathlib import Path
    with tempfile.TemporaryDirectory() as d:
        f = Path(d) / "m.hex"
        f.write_text("// header\n1f\n@3\n0a // three\nxx\n")
        assert read_hex(f, 6) == [0x1F, None, None, 0x0A, None, None]


def test_stalls_are_random_per_seed_and_repeatable(standin, require_simulator):
    require_simulator("icarus")
    path, q, _ = standin
    frames = clip((64,))[:3]

    def cycles(seed, run, stall=0.5):
        r = simulate(path, q, frames, simulator="icarus", seed=seed, stall=stall, run_dir=path / run)
        assert r["bit_exact"] and r["counters_match"], (r["mismatches"], r["error"])
        return [f["cycles_tb"] for f in r["per_frame"]]

    a, b, a2 = cycles(1, "a"), cycles(2, "b"), cycles(1, "a2")
    assert a == a2                      # the same seed: the same idle and stall cycles
    assert a != b                       # another seed: other stalls
    calm = cycles(1, "calm", stall=0.0)
    assert all(x > y for x, y in zip(a, calm))          # stalls cost cycles
    worst = cycles(3, "worst", stall=MAX_STALL)
    assert all(x > y for x, y in zip(worst, a))
