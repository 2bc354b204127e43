"""Limits and choice lists of the generated hardware, cheap to import (no Amaranth): the CLI reads them."""
from __future__ import annotations

from evhw.qnet import MULT_BITS

#: Processing elements of one array.
MAX_PES = 16
#: Synaptic lanes of a PE (updates per cycle): powers of two up to this.
MAX_LANES = 8
#: Requantization multiplier register: the unsigned ``MULT_BITS`` of ``QLayer.mult`` plus a sign bit.
MULT_WIDTH = MULT_BITS + 1
#: The policies the array runs (the golden model knows more: evhw.golden.POLICIES).
HW_POLICIES = ("evnet", "skipconv", "dense")
