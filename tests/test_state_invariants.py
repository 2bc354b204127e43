"""The state invariants the hardware's memories rely on (issue: b-elision and d-narrowing), checked by
the golden model's assertion mode (``EventModel(check_state=True)``, :meth:`EventModel.verify_state`):
``b = f(a)`` for every gated element at every frame boundary, ``|d|`` within the threshold bound, and
the max-pool value buffers equal to ``value(a)``; over random networks (max-pools included), every
policy and granularity, and thresholds that change between frames."""
import numpy as np
import pytest
from hypothesis import HealthCheck, given, reject, settings
from hypothesis import strategies as st

from evhw.convert import set_thresholds
from evhw.errors import ConfigError
from evhw.golden import EventModel, Policy, StateInvariantError
from netgen import POLICY_MIX, small_net



@pytest.mark.usefixtures("golden_kernels")
@settings(max_examples=25, deadline=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
@given(st.sampled_from(list(range(8)) + ["mlp"]), st.sampled_from(POLICY_MIX), st.booleans(),
       st.lists(st.tuples(st.sampled_from(["video", "same", "invert", "zeros"]), st.floats(0.0, 0.3)),
                min_size=3, max_size=7))
def test_invariants_hold_on_every_frame(seed, policy, reference, script):
    """Each frame may also bring new thresholds (lowered or raised): elements not reached keep their
    ``d``, which the bound follows (the largest threshold since the sequence started)."""
    q, video = small_net(seed)
    try:
        ths = [set_thresholds(q, th, input_threshold=th) for _, th in script]
    except ConfigError:                 # a threshold past what the accumulator bound allows
        reject()
    m = EventModel(q, policy, ths[0], reference=reference, check_state=True)
    cur = video[0]
    for t, ((kind, _), th) in enumerate(zip(script, ths)):
        cur = {"video": video[t % len(video)], "same": cur, "invert": 255 - cur, "zeros": np.zeros_like(cur)}[kind]
        m.set_thresholds(th)
        m.step(cur)                     # raises StateInvariantError on a broken invariant


def test_d_bound_follows_the_largest_threshold_since_the_sequence_started():
    q, video = small_net(1)
    hi, lo = set_thresholds(q, 0.2), set_thresholds(q, 0.02)
    m = EventModel(q, Policy("evnet"), hi)
    m.set_thresholds(lo)
    assert all(np.array_equal(m.d_bound(g), np.maximum(hi[g], lo[g])) for g in q.gates())
    m.reset()                           # a new sequence starts exact: only the thresholds in force count
    assert all(np.array_equal(m.d_bound(g), lo[g]) for g in q.gates())
    assert all(not m.__class__(q, Policy("skipconv"), hi).d_bound(g).any() for g in q.gates())
    sd = EventModel(q, Policy("sigmadelta"), hi)
    assert all(np.array_equal(sd.d_bound(g), np.maximum(hi[g], 1) // 2) for g in q.gates())


@pytest.mark.parametrize("broken", ["b", "d", "pre", "input", "r"])
def test_a_broken_invariant_is_reported(broken):
    """The assertion mode is not vacuous: each kind of corrupted state is caught, naming the gate."""
    q, video = small_net(2)                  # a CNN with a max-pooled layer
    m = EventModel(q, Policy("evnet"), set_thresholds(q, 0.05), check_state=True)
    for f in video[:3]:
        m.step(f)
    gated = [g for g in q.gates() if g != "input"]
    g = next(n for n in gated if n in m.pre) if broken == "pre" else ("input" if broken == "input" else gated[0])
    if broken == "pre":
        m.pre[g][0, 0] += 1
    elif broken == "d":
        m.d[g][(0,) * m.d[g].ndim] = int(m.d_bound(g).max()) + 1
    elif broken == "r":                 # b = f(a) and |d| <= H still hold: only b - d leaves the range
        g = "input"                     # a frame holds pixels at 0 or 255: push b - d one past the edge
        bound = m.d_bound(g).reshape(m._bshape(m.tensors[g]))
        at = np.argwhere(((m.b[g] == 0) | (m.b[g] == 255)) & (bound >= 1))
        assert len(at), "no pixel at an edge of its range with a threshold >= 1"
        i = tuple(at[0])
        m.d[g][i] = 1 if m.b[g][i] == 0 else -1
    else:
        m.b[g][(0,) * m.b[g].ndim] += 1
    with pytest.raises(StateInvariantError, match=f"gate '{g}'.*{'b - d outside' if broken == 'r' else ''}"):
        m.verify_state(video[2])
