"""The gate rule, one component shared by the input gate (``top``) and every PE's gate unit.

The paper's neuron keeps ``b`` (best estimate) and ``d`` (untransmitted change) per gate element and
evaluates ``d += v - b; b = v; fire = |d| > H``, sending ``d`` and clearing it when it fires (and
always under memory loss). The hardware keeps one word instead, ``r = b - d``: the value transmitted
so far (the sum of the element's sent changes). In ``r`` the rule reads (docs/semantics.md §4, State
invariants; docs/architecture.md §4):

* ``dn = v - r`` (equal to the paper's ``d + v - b``), sent when ``fire``;
* ``fire = |dn| > H`` (on a flush frame ``dn != 0``: every change is sent);
* ``r`` becomes ``v`` when the element fires or under memory loss, else it stays.

``r`` is always a value the element once had, so it needs the value's bits: neither ``b`` nor a
value-wide ``d`` is stored. Combinational: the caller registers its inputs. ``hn`` is ``-H``, given by
the caller so that it can compute it a stage early (the PE does, to keep the comparison off the
threshold read's path).
"""
from amaranth import *
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

__all__ = ["GateRule"]


class GateRule(wiring.Component):
    """``GateRule(value_shape, th_w)``: ``v`` the element's new value and ``r`` its transmitted value
    (both ``value_shape``), ``h`` the threshold (unsigned, ``th_w``) and ``hn = -h``; ``flush`` and
    ``memloss`` the frame's flags. Out: ``dn`` (the change, sent when ``fire``), ``fire`` and
    ``r_next`` (what the element keeps)."""

    def __init__(self, *, value_shape, th_w):
        value_shape = Shape.cast(value_shape)
        self.dn_w = value_shape.width + 1                  # v - r never overflows
        super().__init__({
            "v": In(value_shape), "r": In(value_shape),
            "h": In(unsigned(th_w)), "hn": In(signed(th_w + 1)),
            "flush": In(1), "memloss": In(1),
            "dn": Out(signed(self.dn_w)), "fire": Out(1), "r_next": Out(value_shape),
        })

    def elaborate(self, platform):
        m = Module()
        v, r = Signal(signed(self.dn_w)), Signal(signed(self.dn_w))     # signed, so v - r is too
        m.d.comb += [
            v.eq(self.v), r.eq(self.r),
            self.dn.eq(v - r),
            self.fire.eq(Mux(self.flush, self.dn != 0, (self.dn > self.h) | (self.dn < self.hn))),
            self.r_next.eq(Mux(self.memloss | self.fire, self.v, self.r)),
        ]
        return m
