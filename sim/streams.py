"""cocotb drivers and monitors for ``amaranth.lib.stream`` ports (valid / ready / payload [/ last]).

A transfer happens on a rising clock edge where both ``valid`` and ``ready`` are high. The
testbench writes right after ``RisingEdge`` and samples the handshake at the edge (the values read
in the ``RisingEdge`` callback), which behaves identically on Icarus and Verilator
(``reference/toolchain.md`` §2, S10). Randomness comes from a seeded ``random.Random``: ``idle``
is the probability that the source inserts an idle cycle before a beat, ``stall`` the probability
that the sink holds ``ready`` low in a cycle while ``valid`` is high (a sink with nothing offered
sleeps until ``valid`` rises).
"""
from __future__ import annotations

import random

from cocotb.triggers import RisingEdge


def _port(dut, stream, member):
    return getattr(dut, f"{stream}__{member}")


class StreamSource:
    """Drive the ``NAME__valid/ready/payload`` stream of ``dut`` with integers."""

    def __init__(self, dut, name, *, clk=None, idle=0.0, rng=None):
        self.clk = clk if clk is not None else dut.clk
        self.valid = _port(dut, name, "valid")
        self.ready = _port(dut, name, "ready")
        self.payload = _port(dut, name, "payload")
        self.idle = float(idle)
        self.rng = rng or random.Random(0)
        self.sent = 0
        self.valid.value = 0

    async def send(self, values):
        """Send every value (in order); returns when the last one was accepted."""
        for v in values:
            while self.idle and self.rng.random() < self.idle:
                self.valid.value = 0
                await RisingEdge(self.clk)
            self.payload.value = int(v)
            self.valid.value = 1
            while True:
                await RisingEdge(self.clk)
                if self.ready.value:
                    break
            self.sent += 1
        self.valid.value = 0


class StreamSink:
    """Accept beats of the ``NAME__valid/ready/payload[/last]`` stream of ``dut``."""

    def __init__(self, dut, name, *, clk=None, stall=0.0, rng=None, signed=True):
        self.clk = clk if clk is not None else dut.clk
        self.valid = _port(dut, name, "valid")
        self.ready = _port(dut, name, "ready")
        self.payload = _port(dut, name, "payload")
        self.last = getattr(dut, f"{name}__last", None)
        self.stall = float(stall)
        self.rng = rng or random.Random(1)
        self.signed = signed
        self.received = 0
        self.ready.value = 0

    def _value(self):
        v = self.payload.value
        return v.to_signed() if self.signed else v.to_unsigned()

    async def recv(self, count):
        """Receive ``count`` beats; returns ``(values, lasts)`` (``lasts``: the ``last`` bit of each beat)."""
        values, lasts = [], []
        while len(values) < count:
            self.ready.value = int(not (self.stall and self.rng.random() < self.stall))
            await RisingEdge(self.clk)
            if self.valid.value and self.ready.value:
                values.append(self._value())
                self.received += 1
                lasts.append(int(self.last.value) if self.last is not None else 0)
            elif not self.valid.value:
                # nothing offered: sleep until the DUT raises valid instead of polling every cycle
                # (the cost then follows the beats, not the cycles; ``ready`` is redrawn on waking)
                while not self.valid.value:
                    await RisingEdge(self.valid)
        self.ready.value = 0
        return values, lasts
