"""Generate a hardware build: load a network and write its build folder (rtl_gen.builddir.BuildDir).

``BUILD/`` holds the Verilog top ``evhw_top.v``, ``manifest.json``, the memory images,
``net.evnet`` (the very network the hardware was generated for, so a simulation checks the RTL
against the identical quantized network) and ``evhw_build.json`` (their hashes). A regenerate
replaces the folder whole; a refused generate writes nothing.
"""
from __future__ import annotations

from ..errors import EvhwError
from .network import DEFAULT_THRESHOLD, apply_thresholds, load_network


def generate_build(net, *, pes, out_dir, threshold=None, lanes=1):
    """Load NET and write its hardware as the build folder ``out_dir``. Returns ``(q, manifest)``
    (``manifest``: :class:`rtl_gen.manifest.Manifest`)."""
    try:
        from rtl_gen.builddir import BuildDir
        from rtl_gen.export import generate as rtl_generate
    except ImportError as e:
        raise EvhwError(f"the hardware generator is not available ({e})") from None
    BuildDir.check_target(out_dir)                 # before the (slow) load: -o is a file, under a file, ...
    q, g = load_network(net, threshold=DEFAULT_THRESHOLD)
    if threshold is not None:
        apply_thresholds(q, threshold)
    return q, rtl_generate(q, pes=pes, lanes=lanes, out_dir=out_dir, graph=g)
