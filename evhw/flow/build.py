"""Generate a hardware build: load a network, generate its Verilog and save the network beside it.

``BUILD/`` holds the Verilog top ``evhw_top.v``, ``manifest.json`` (rtl_gen.export) and
``net.evnet``, the very network the hardware was generated for, so a simulation checks the RTL
against the identical quantized network.
"""
from __future__ import annotations

import json
from pathlib import Path

from ..errors import EvhwError
from .network import DEFAULT_THRESHOLD, apply_thresholds, load_network


def generate_build(net, *, pes, out_dir, threshold=None):
    """Load NET, generate its hardware into ``out_dir`` and save ``net.evnet`` there. Returns
    ``(q, manifest)``."""
    from ..evnet_file import save
    q, g = load_network(net, threshold=DEFAULT_THRESHOLD)
    if threshold is not None:
        apply_thresholds(q, threshold)
    try:
        from rtl_gen.export import generate as rtl_generate
    except ImportError as e:
        raise EvhwError(f"the hardware generator is not available ({e})") from None
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    manifest = rtl_generate(q, pes=pes, out_dir=out)
    save(out / "net.evnet", q, g)
    if manifest is None:
        manifest = json.loads((out / "manifest.json").read_text())
    return q, manifest
