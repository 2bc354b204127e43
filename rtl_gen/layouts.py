"""Stream payload layouts shared by the gateware, the testbenches and the manifest."""
from amaranth import *
from amaranth.lib import data

from .limits import MULT_WIDTH

__all__ = ["syn_event_layout", "pe_event_layout", "mem_event_layout", "touch_layout", "param_layout",
           "gate_state_layout"]


def syn_event_layout(plan):
    """A broadcast event: term id, source coordinates, delta."""
    return data.StructLayout({
        "term":  range(max(plan.n_terms, 2)),
        "c":     unsigned(plan.c_w),
        "y":     unsigned(plan.y_w),
        "x":     unsigned(plan.x_w),
        "delta": signed(plan.delta_w),
    })


def mem_event_layout(plan, mem=None):
    """An event memory word: coordinates and delta of one transmitted element (``mem``: that
    memory's own field widths, ``EventMemPlan.widths``; default: the widest)."""
    cw, yw, xw, dw = mem.widths if mem is not None else (plan.c_w, plan.y_w, plan.x_w, plan.delta_w)
    return data.StructLayout({
        "c":     unsigned(cw),
        "y":     unsigned(yw),
        "x":     unsigned(xw),
        "delta": signed(dw),
    })


def pe_event_layout(plan):
    """A PE output: coordinates (global channel) and delta (gate phase) or value (readout)."""
    return data.StructLayout({
        "c":     unsigned(plan.c_w),
        "y":     unsigned(plan.y_w),
        "x":     unsigned(plan.x_w),
        "delta": signed(plan.evt_w),
    })


def touch_layout(plan, pe):
    """A touched-list entry of PE ``pe``: local channel and gate (pooled) coordinates."""
    cw, yw, xw = plan.touch_w[pe]
    return data.StructLayout({"c": unsigned(cw), "y": unsigned(yw), "x": unsigned(xw)})


def param_layout(plan):
    return data.StructLayout({"bias": signed(plan.bias_w), "mult": unsigned(MULT_WIDTH - 1),
                              "shift": unsigned(plan.shift_w)})


def gate_state_layout(plan):
    """A PE's gate-state word: ``r``, the value the element has transmitted (gate.GateRule)."""
    return data.StructLayout({"r": signed(plan.gate_value_w)})
