"""Icarus-only preparation of the generated Verilog: one clocked process per module and clock.

Yosys writes every flip-flop of the design as its own process, ``always @(posedge clk) q <= d;``:
hundreds per PE. Icarus schedules each process on every clock edge; sharing one process per module
and clock saves 10-27 % of its simulation time (docs/benchmarks.md, `docs/bench/icarus_regroup.py`).
:func:`group_registers` moves every such one-statement
process of a module into a single ``always @(posedge clk) begin ... end`` per clock at the end of
the module. Same semantics: each statement is a non-blocking assignment to its own register, so
their order within one process does not matter. Multi-line processes are left as they are.
Verilator and synthesis read the Verilog as generated.
"""
from __future__ import annotations

import re

__all__ = ["REGROUP_VERSION", "group_registers"]

#: Part of the Icarus build fingerprint: a changed transform rebuilds cached simulators.
REGROUP_VERSION = 1

_MODULE = re.compile(r"(?=^module )", re.M)
_FLOP = re.compile(r"^  always @\(posedge (\\?\S+?) ?\)\n    ([^\n]*<=[^\n]*;)\n", re.M)


def _group_module(text):
    flops = {}

    def take(m):
        flops.setdefault(m.group(1), []).append(m.group(2))
        return ""

    body = _FLOP.sub(take, text)
    if not flops:
        return text, 0
    grouped = "".join(f"  always @(posedge {clk} ) begin\n" + "".join(f"    {s}\n" for s in stmts) + "  end\n"
                      for clk, stmts in flops.items())
    head, sep, tail = body.rpartition("endmodule")
    if not sep:
        raise ValueError("a module without endmodule")
    return head + grouped + sep + tail, sum(map(len, flops.values()))


def group_registers(text):
    """``text`` with each module's one-statement clocked processes merged per clock; returns
    ``(new text, number of processes merged)``."""
    parts = [_group_module(p) if p.startswith("module ") else (p, 0) for p in _MODULE.split(text)]
    return "".join(t for t, _ in parts), sum(n for _, n in parts)
