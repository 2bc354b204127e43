"""Choices and limits of the simulation, cheap to import (no cocotb): the CLI reads them."""

#: Simulators the cocotb runner drives.
SIMULATORS = ("verilator", "icarus")
#: Largest pixel-idle / output-stall probability (a run must still finish).
MAX_STALL = 0.95
#: Most threads of a Verilator model (``--threads``; ``EVHW_VERILATOR_THREADS``).
MAX_THREADS = 64
