"""Verilog export: ``evhw_top.v`` (one top module), memory images and ``manifest.json``."""
from __future__ import annotations

import json
from pathlib import Path

from amaranth.back import verilog
from amaranth.lib import wiring

from .gateware.top import EvhwTop
from .plan import HwPlan

__all__ = ["generate", "port_list"]


def port_list(top: EvhwTop):
    """Flattened top-level ports: {name: {"dir": in|out, "width": n, "signed": bool}} (cocotb names)."""
    ports = {"clk": {"dir": "in", "width": 1, "signed": False}, "rst": {"dir": "in", "width": 1, "signed": False}}
    for path, member, value in top.signature.flatten(top):
        name = "__".join(str(x) for x in path)
        shape = value.shape() if hasattr(value, "shape") else value.as_value().shape()
        ports[name] = {"dir": "in" if member.flow == wiring.In else "out", "width": shape.width,
                       "signed": shape.signed}
    return ports


def _hex(values, width):
    mask = (1 << width) - 1
    digits = max(1, -(-width // 4))
    return "".join(f"{int(v) & mask:0{digits}x}\n" for v in values)


def generate(q, *, pes, out_dir):
    """Write the accelerator for ``q`` with ``pes`` PEs into ``out_dir``; returns the manifest."""
    plan = HwPlan.from_qnet(q, pes=pes)
    top = EvhwTop(plan)
    out = Path(out_dir)
    (out / "mem").mkdir(parents=True, exist_ok=True)
    ports = port_list(top)
    text = verilog.convert(top, name="evhw_top", emit_src=False)
    (out / "evhw_top.v").write_text(text)
    images = {}
    for pe in range(plan.pes):
        name = f"pe{pe}_weights.hex"
        (out / "mem" / name).write_text(_hex(plan.weights[pe], plan.weight_w))
        images[name] = len(plan.weights[pe])
        name = f"pe{pe}_thresholds.hex"
        (out / "mem" / name).write_text(_hex(plan.th_init[pe], plan.th_w))
        images[name] = len(plan.th_init[pe])
        for key, col, width in (("bias", 0, plan.bias_w), ("mult", 1, 16), ("shift", 2, plan.shift_w)):
            name = f"pe{pe}_{key}.hex"
            (out / "mem" / name).write_text(_hex([t[col] for t in plan.params[pe]], width))
            images[name] = len(plan.params[pe])
    manifest = plan.manifest(ports)
    manifest["memory_images"] = images
    (out / "manifest.json").write_text(json.dumps(manifest, indent=1))
    return manifest
