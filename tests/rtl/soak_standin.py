"""Generators for ``evhw soak --generator`` that build the harness stand-in (tests/rtl/standin_top.py)
instead of rtl_gen's array: a correct one, and one with the injected event-count bug."""
from standin_top import generate_standin


def generate_correct(q, *, pes, out_dir, graph=None):
    return generate_standin(q, graph, out_dir=out_dir)


def generate_counting_bug(q, *, pes, out_dir, graph=None):
    """The stand-in that counts every input event twice (``bug="count"``)."""
    return generate_standin(q, graph, out_dir=out_dir, bug="count")


def generate_refused(q, *, pes, out_dir, graph=None):
    """A generator that refuses every network (a run that ends in an error before simulating)."""
    from rtl_gen.errors import UnsupportedHardwareError
    raise UnsupportedHardwareError(f"{q.name}: refused by the test generator")


def generate_stuck(q, *, pes, out_dir, graph=None):
    """The stand-in that never raises ``out.valid`` (a hung design)."""
    return generate_standin(q, graph, out_dir=out_dir, bug="stuck")
