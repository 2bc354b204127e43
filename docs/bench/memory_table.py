"""On-chip memory of every bundled model at P PEs: the gate state as the paper's neuron needs it (b and
d per gate element and per input pixel, as hardware v1 stored them) and as the hardware stores it now
(one word r = b - d: docs/architecture.md §4), the other memories, and whether the total fits the
block RAM of the ECP5-85F and of the iCE40 UP5K (bits only: a necessary condition; how the memories
pack into block RAMs decides after place-and-route).

    python docs/bench/memory_table.py [P]        (default P = 4; prints a Markdown table)

Every number comes from ``rtl_gen.plan.HwPlan`` (depths and widths) for the model converted with
its defaults; "b + d" recomputes only the gate-state words as v1 stored them (value + delta bits),
everything else as generated now.
"""
import sys

from evhw import zoo
from evhw.flow.network import load_network
from rtl_gen.devices import DEVICES
from rtl_gen.errors import UnsupportedHardwareError
from rtl_gen.plan import HwPlan

#: block RAM bits: ECP5 DP16KD 18,432 each (1024 x 18); iCE40 UP5K 4 kbit EBR each + 4 x 256 kbit SPRAM
CAPACITY = {"ecp5-85f": DEVICES["ecp5-85f"].totals["bram"] * 18 * 1024,
            "ice40-up5k": DEVICES["ice40-up5k"].totals["bram"] * 4096 + DEVICES["ice40-up5k"].totals["spram"] * 256 * 1024}


def row(name, pes):
    q, _ = load_network(name)
    p = HwPlan.from_qnet(q, pes=pes)
    mb = p.memory_bits()
    per = {k: sum(d[k] for d in mb["pe"]) for k in mb["pe"][0]}
    gated = [l for l in p.layers if l.gated]
    v1_word = max(l.value_bits for l in gated) + max(l.delta_bits for l in gated) if gated else 0
    v1_gate = sum(p.bd_depth) * v1_word
    v1_input = p.input_size * (p.input_bits + p.input_delta_bits)
    v1_total = mb["total"] - per["gate_state"] - mb["shared"]["input_gate"] + v1_gate + v1_input
    events = sum(v for k, v in mb["shared"].items() if k.startswith("events_"))
    touched = per["touched_bits"] + per["touched_list"]
    return {"model": name, "word": f"{v1_word} → {p.gate_value_w}", "acc_w": p.acc_w, "acc": per["acc"], "gate_v1": v1_gate + v1_input,
            "gate": per["gate_state"] + mb["shared"]["input_gate"], "touched": touched, "events": events,
            "weights": per["weights"], "v1": v1_total, "total": mb["total"]}


def main():
    pes = int(sys.argv[1]) if len(sys.argv) > 1 else 4
    mbit = lambda b: f"{b / 1e6:.3f}"
    print(f"| model (P = {pes}) | bits per neuron: a; b + d → r | accumulators | gate state b + d → r | touched "
          f"| event buffers | weights | total b + d → r (Mbit) | fits ECP5-85F ({mbit(CAPACITY['ecp5-85f'])}) | fits UP5K "
          f"({mbit(CAPACITY['ice40-up5k'])}) |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for name in zoo.names():
        try:
            r = row(name, pes)
        except UnsupportedHardwareError as e:
            print(f"| {name} | not in hardware yet: {e} ||||||||| ")
            continue
        fit = lambda dev: "yes" if r["total"] <= CAPACITY[dev] else "no"
        print(f"| {name} | {r['acc_w']}; {r['word']} | {mbit(r['acc'])} | {mbit(r['gate_v1'])} → {mbit(r['gate'])} | {mbit(r['touched'])} "
              f"| {mbit(r['events'])} | {mbit(r['weights'])} | {mbit(r['v1'])} → **{mbit(r['total'])}** "
              f"| {fit('ecp5-85f')} | {fit('ice40-up5k')} |")


if __name__ == "__main__":
    main()
