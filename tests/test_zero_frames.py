"""A run that checked no frame is never bit-exact: scoreboard, simulation summary and job (no simulator runs)."""
from types import SimpleNamespace

import numpy as np
import pytest

from evhw.golden import Policy
from sim.runner import SimError
from sim.scoreboard import Scoreboard, expected_frames
from sim.session import simulate, summarize
from specnets import passthrough


def test_empty_scoreboard_is_not_bit_exact():
    sb = Scoreboard([])
    assert not sb.bit_exact and not sb.counters_match


def test_scoreboard_needs_every_frame_checked():
    q = passthrough((1, 2, 2))
    frames = np.full((2, 1, 2, 2), 7, np.uint8)
    sb = Scoreboard(expected_frames(q, frames, Policy("evnet")))
    assert not sb.bit_exact                              # nothing checked yet
    for t, e in enumerate(sb.expected):
        sb.check(t, outputs=e.output, stats={"events": e.events, "evaluated": e.evaluated, "updates": e.updates})
    assert sb.bit_exact and sb.counters_match           # positive control


def test_summary_of_zero_frames_is_not_bit_exact():
    tb = {"frames": [], "bit_exact": True, "counters_match": True, "error": None,   # what a tb could claim
          "simulator": "icarus", "mismatches": [], "mismatch_counts": {}, "passed": True, "seconds": 0.0,
          "log": ""}
    s = summarize(tb, SimpleNamespace(pes=1), policy="evnet", n_frames=0)   # only pes is read
    assert s["bit_exact"] is False and s["counters_match"] is False


@pytest.mark.parametrize("frames, sequences", [(np.zeros((0, 1, 2, 2), np.uint8), 1),
                                               (np.zeros((2, 1, 2, 2), np.uint8), 0)])
def test_simulate_refuses_zero_frames(tmp_path, frames, sequences):
    with pytest.raises(SimError, match="nothing to simulate"):
        simulate(tmp_path, passthrough((1, 2, 2)), frames, sequences=sequences)
    assert not any(tmp_path.iterdir())                 # refused before writing a job
