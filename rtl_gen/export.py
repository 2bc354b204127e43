"""Verilog export: ``evhw_top.v`` (one top module), memory images, ``manifest.json`` and ``net.evnet``,
written as one build folder by :class:`rtl_gen.builddir.BuildDir`."""
from __future__ import annotations

from amaranth.back import verilog
from amaranth.lib import wiring

from .builddir import BuildDir
from .gateware.top import EvhwTop
from .manifest import Port
from .plan import MULT_WIDTH, HwPlan

__all__ = ["generate", "port_list"]


def port_list(top: wiring.Component):
    """Flattened top-level ports of a component, from its signature: ``{name: Port}`` with the
    Verilog (and cocotb) names Amaranth gives them, ``clk`` and ``rst`` first."""
    ports = {"clk": Port("in", 1, False), "rst": Port("in", 1, False)}
    for path, member, value in top.signature.flatten(top):
        name = "__".join(str(x) for x in path)
        shape = value.shape() if hasattr(value, "shape") else value.as_value().shape()
        ports[name] = Port("in" if member.flow == wiring.In else "out", shape.width, shape.signed)
    return ports


def _hex(values, width):
    mask = (1 << width) - 1
    digits = max(1, -(-width // 4))
    return "".join(f"{int(v) & mask:0{digits}x}\n" for v in values)


def generate(q, *, pes, out_dir, graph=None):
    """Write the accelerator for ``q`` with ``pes`` PEs as the build folder ``out_dir`` (replacing a
    build there whole; ``graph``: the float graph saved into ``net.evnet`` beside ``q``). Returns
    the :class:`rtl_gen.manifest.Manifest`. Nothing is written when the network is refused."""
    BuildDir.check_target(out_dir)
    plan = HwPlan.from_qnet(q, pes=pes)
    top = EvhwTop(plan)
    ports = port_list(top)
    text = verilog.convert(top, name="evhw_top", emit_src=False)
    images = {}
    for pe in range(plan.pes):
        images[f"pe{pe}_weights.hex"] = _hex(plan.weights[pe], plan.weight_w)
        images[f"pe{pe}_thresholds.hex"] = _hex(plan.th_init[pe], plan.th_w)
        for key, col, width in (("bias", 0, plan.bias_w), ("mult", 1, MULT_WIDTH), ("shift", 2, plan.shift_w)):
            images[f"pe{pe}_{key}.hex"] = _hex([t[col] for t in plan.params[pe]], width)
    manifest = plan.manifest(ports, memory_images={n: t.count("\n") for n, t in images.items()})
    BuildDir.write(out_dir, verilog=text, manifest=manifest, images=images, qnet=q, graph=graph)
    return manifest
