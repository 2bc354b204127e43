"""Verilog export: ``evhw_top.v`` (the top module and its memory modules), the memory images it
loads (``mem/*.hex``), ``manifest.json`` and ``net.evnet``, written as one build folder by
:class:`rtl_gen.builddir.BuildDir`."""
from __future__ import annotations

import dataclasses
import json

import numpy as np

from amaranth.back import verilog
from amaranth.lib import wiring

from .builddir import BuildDir
from .gateware import mem
from .gateware.top import EvhwTop
from .manifest import MANIFEST_VERSION, Manifest, Port
from .plan import STAT_LATENCY, STAT_WIDTH, HwPlan

__all__ = ["generate", "port_list", "plan_manifest"]


def port_list(top: wiring.Component):
    """Flattened top-level ports of a component, from its signature: ``{name: Port}`` with the
    Verilog (and cocotb) names Amaranth gives them, ``clk`` and ``rst`` first."""
    ports = {"clk": Port("in", 1, False), "rst": Port("in", 1, False)}
    for path, member, value in top.signature.flatten(top):
        name = "__".join(str(x) for x in path)
        shape = value.shape() if hasattr(value, "shape") else value.as_value().shape()
        ports[name] = Port("in" if member.flow == wiring.In else "out", shape.width, shape.signed)
    return ports


def generate(q, *, pes, out_dir, graph=None, lanes=1):
    """Write the accelerator for ``q`` with ``pes`` PEs of ``lanes`` lanes as the build folder ``out_dir`` (replacing a
    build there whole; ``graph``: the float graph saved into ``net.evnet`` beside ``q``). Returns
    the :class:`rtl_gen.manifest.Manifest`. Nothing is written when the network is refused."""
    BuildDir.check_target(out_dir)
    plan = HwPlan.from_qnet(q, pes=pes, lanes=lanes)
    top = EvhwTop(plan, readmem=True)
    ports = port_list(top)
    text = verilog.convert(top, name="evhw_top", emit_src=False) + mem.VERILOG
    images = {name: mem.image_text(d) for name, d in sorted(top.images.items())}
    manifest = plan_manifest(plan, ports, memory_images={n: t.count("\n") for n, t in images.items()})
    BuildDir.write(out_dir, verilog=text, manifest=manifest, images=images, qnet=q, graph=graph)
    return manifest


def plan_manifest(plan, ports, memory_images):
    """The typed :class:`rtl_gen.manifest.Manifest` of ``plan`` (``ports``: ``{name: Port}``
    from the component signature; ``memory_images``: ``{name: words}``)."""
    P = plan.pes
    d = {
        "version": MANIFEST_VERSION,
        "top": "evhw_top",
        "network": plan.name,
        "pes": P,
        "lanes": plan.lanes,
        "ports": {n: dataclasses.asdict(p) for n, p in ports.items()},
        "input": {"shape": list(plan.input_shape), "value_bits": plan.input_bits, "signed": False,
                  "pixels": plan.input_size},
        "output": {"layer": plan.output.name, "shape": list(plan.output_shape), "value_bits": plan.out_w,
                   "signed": True, "count": int(np.prod(plan.output_shape))},
        "widths": {"acc": plan.acc_w, "weight": plan.weight_w, "delta": plan.delta_w, "value": plan.value_w,
                   "threshold": plan.th_w, "stat": STAT_WIDTH},
        "gates": plan.cfg_gates,
        "cfg_words": len(plan.cfg_map),
        "stat_latency": STAT_LATENCY,
        "stats": plan.stats,
        "layers": [{"name": l.name, "terms": [plan.terms[t].kind for t in l.terms], "acc_shape": list(l.acc_shape),
                    "gate_shape": list(l.gate_shape), "pool": list(l.pool), "gated": l.gated,
                    "readout": l.readout, "acc_bits": l.acc_bits} for l in plan.layers],
        "mapping": {"rule": "channel c -> PE c % P, local channel k = c // P, lane k % L, group k // L",
                    "layers": {l.name: {"channels_per_pe": list(l.own), "acc_base": list(l.abase),
                                        "gate_base": list(l.gbase) if l.gated else None}
                               for l in plan.layers}},
        "memory_bits": plan.memory_bits(),
        "memory_images": dict(memory_images),
    }
    return Manifest.from_dict(json.loads(json.dumps(d, default=int)), source=f"the manifest of {plan.name}")
