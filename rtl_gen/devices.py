"""The FPGA targets of ``evhw report``, cheap to import (the CLI reads the names for its choices)."""
from __future__ import annotations

from dataclasses import dataclass, field

#: How the design's ports reach the package (see rtl_gen.reports).
IO_MODES = ("auto", "pins", "shell", "ooc")


@dataclass(frozen=True)
class Device:
    """A target: nextpnr arguments, bonded pins and resource totals (``lut``, ``ff``, ``bram``, ``dsp``, ...)."""
    name: str
    family: str                  # "ecp5" or "ice40": picks synth_<family> and nextpnr-<family>
    part: str
    package: str
    board: str
    nextpnr_args: tuple
    pins: int                    # bonded user I/O of the package
    totals: dict = field(default_factory=dict)
    default_freq_mhz: float = 50.0


DEVICES = {
    # LFE5U-85F-6BG381C as on the ULX3S-85F. 205 bonded user I/O in caBGA381 (ECP5 data sheet,
    # FPGA-DS-02012, family table); nextpnr does not check this (see the module docstring).
    "ecp5-85f": Device("ecp5-85f", "ecp5", "LFE5U-85F", "CABGA381", "ULX3S-85F",
                       ("--85k", "--package", "CABGA381", "--speed", "6"), pins=205,
                       totals={"lut": 83640, "ff": 83640, "bram": 208, "dsp": 156},
                       default_freq_mhz=100.0),
    # iCE40UP5K-SG48 as on the iCEBreaker; nextpnr's SB_IO count for sg48 is 39.
    "ice40-up5k": Device("ice40-up5k", "ice40", "iCE40UP5K", "sg48", "iCEBreaker",
                         ("--up5k", "--package", "sg48"), pins=39,
                         totals={"lut": 5280, "ff": 5280, "bram": 30, "dsp": 8, "spram": 4},
                         default_freq_mhz=50.0),
}
