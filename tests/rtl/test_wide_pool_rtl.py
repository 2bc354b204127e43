"""A max-pool window wider than 256 positions: the PE's pool-window counters are sized from the plan
(``HwPlan.pool_w``), not a fixed 8 bits that would wrap and pool the wrong window."""
import numpy as np
import pytest

from evhw.convert import convert
from evhw.ir import GraphBuilder
from rtl_gen.plan import HwPlan
from sim.session import simulate

pytestmark = pytest.mark.rtl

SIDE = 260


def _wide_pool_net():
    rng = np.random.default_rng(7)
    b = GraphBuilder((1, 2, SIDE), name="wide-pool")
    x = b.op("relu", b.conv("input", rng.normal(0, 1.0, (2, 1, 1, 1)), rng.normal(0, .1, 2), name="conv"))
    x = b.op("flatten", b.op("maxpool", x, kernel=(1, SIDE), stride=(1, SIDE), name="pool"), name="flat")
    b.linear(x, rng.normal(0, .5, (3, 4)), rng.normal(0, .1, 3), name="fc")
    frames = rng.integers(0, 256, (4, 1, 2, SIDE))
    frames[1:, :, :, :200] = frames[0, :, :, :200]          # the change lies past position 255 of the window
    return convert(b.build(), frames[:2]), frames


def test_pool_counter_width_comes_from_the_plan():
    q, _ = _wide_pool_net()
    plan = HwPlan.from_qnet(q, pes=1)
    assert max(l.pool[1] for l in plan.layers) == SIDE
    assert (SIDE - 1) < 2 ** plan.pool_w and plan.pool_w > 8


def test_wide_pool_is_bit_exact(tmp_path, require_simulator):
    require_simulator("icarus")
    from rtl_gen.export import generate
    q, frames = _wide_pool_net()
    generate(q, pes=1, out_dir=tmp_path)
    res = simulate(tmp_path, q, frames, policy="evnet", simulator="icarus", run_dir=tmp_path / "run")
    assert res["error"] is None, res["error"]
    assert res["bit_exact"] and res["counters_match"], res["mismatches"]
