"""One owner per limit, choice list and width: the CLI's choices and ranges are the owners' values."""
from __future__ import annotations

import click

from evhw.cli import cli
from evhw.golden import POLICIES
from evhw.qnet import MULT_BITS
from rtl_gen.devices import DEVICES, IO_MODES
from rtl_gen.limits import HW_POLICIES, MAX_PES, MULT_WIDTH
from sim.limits import MAX_STALL, SIMULATORS


def option(path, name):
    ctx = click.Context(cli)
    cmd = cli
    for p in path:
        cmd = cmd.get_command(ctx, p)
    return next(o for o in cmd.params if o.name == name)


def test_cli_reads_the_owners():
    assert tuple(option(["eval"], "policy").type.choices) == POLICIES
    assert tuple(option(["sim"], "policy").type.choices) == HW_POLICIES
    assert set(HW_POLICIES) < set(POLICIES)
    pes = option(["generate"], "pes").type
    assert (pes.min, pes.max) == (1, MAX_PES)
    assert tuple(option(["sim"], "simulator").type.choices) == SIMULATORS
    assert tuple(option(["bench", "hw"], "simulator").type.choices) == SIMULATORS
    assert option(["sim"], "stall").type.max == MAX_STALL
    assert tuple(option(["report"], "device").type.choices) == tuple(DEVICES)
    assert tuple(option(["report"], "io").type.choices) == IO_MODES


def test_multiplier_width_follows_the_quantizer():
    """The converter's multipliers fit the hardware's register: MULT_BITS unsigned bits plus a sign."""
    import numpy as np

    from evhw.convert import requant_params
    assert MULT_WIDTH == MULT_BITS + 1
    m, _ = requant_params(np.array([1e-6, 0.37, 0.5, 0.9999999, 1.0, 3.0]))
    assert np.all(m >= 1 << (MULT_BITS - 1)) and np.all(m < 1 << MULT_BITS)
