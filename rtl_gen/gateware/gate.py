"""The gate rule, one component shared by the input gate (``top``) and every PE's gate unit.

Per evaluated element (docs/semantics.md §4): ``dn = d + v - b``; ``fire = |dn| > H`` (on a flush
frame ``dn != 0``: every change is sent); the element's new state is ``b = v`` and
``d = 0`` if it fired or under memory loss, else ``dn``; a firing element sends ``dn``.
Combinational: the caller registers its inputs. ``hn`` is ``-H``, given by the caller so that it can
compute it a stage early (the PE does, to keep the comparison off the threshold read's path).
"""
from amaranth import *
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

__all__ = ["GateRule"]


class GateRule(wiring.Component):
    """``GateRule(value_w, delta_w, th_w)``: ``v``/``b`` values (signed, ``value_w`` bits), ``d`` the
    untransmitted change (signed, ``delta_w``), ``h`` the threshold (unsigned, ``th_w``) and ``hn = -h``;
    ``flush`` and ``memloss`` the frame's flags. Out: ``dn`` (the change, sent when ``fire``),
    ``fire`` and ``d_next`` (what the element keeps)."""

    def __init__(self, *, value_w, delta_w, th_w):
        self.dn_w = max(value_w, delta_w) + 2               # d + v - b never overflows
        super().__init__({
            "v": In(signed(value_w)), "b": In(signed(value_w)), "d": In(signed(delta_w)),
            "h": In(unsigned(th_w)), "hn": In(signed(th_w + 1)),
            "flush": In(1), "memloss": In(1),
            "dn": Out(signed(self.dn_w)), "fire": Out(1), "d_next": Out(signed(self.dn_w)),
        })

    def elaborate(self, platform):
        m = Module()
        m.d.comb += [
            self.dn.eq(self.d + self.v - self.b),
            self.fire.eq(Mux(self.flush, self.dn != 0, (self.dn > self.h) | (self.dn < self.hn))),
            self.d_next.eq(Mux(self.memloss | self.fire, 0, self.dn)),
        ]
        return m
