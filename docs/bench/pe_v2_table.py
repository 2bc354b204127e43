"""The (P, L) table of docs/benchmarks.md from the `evhw bench hw` results of objects-cnn:

    for cfg in "4 1" "4 4" "16 1" "16 4"; do set -- $cfg
      evhw bench hw --model objects-cnn --frames 3 --pes $1 --lanes $2 --dense-pes 1 -o build/bench-v2 --json \\
        > docs/bench/hw-v2-objects-cnn-p$1_l$2.json; done
    python docs/bench/pe_v2_table.py FMAX_MHZ

Effective GOp/s = 2 x the network's dense MACs per frame x frames per second at FMAX_MHZ (event
frames only; frame 0 is a flush).
"""
import json
import sys
from pathlib import Path

from evhw.flow.network import load_network
from evhw.golden import EventModel

fmax = float(sys.argv[1])
q, _ = load_network("objects-cnn")
m = EventModel(q)
dense = sum(v for (layer, i), v in m.dense_costs.items() if q.layer(layer).terms[i].is_mac)
print(f"dense MACs per frame: {dense:,}")
print("| P | L | cycles per event frame | predicted | ideal | measured / ideal | effective GOp/s at "
      f"{fmax:g} MHz |")
print("|---:|---:|---|---|---|---|---:|")
for p, lanes in ((4, 1), (4, 4), (16, 1), (16, 4)):
    r = json.loads(Path(f"docs/bench/hw-v2-objects-cnn-p{p}_l{lanes}.json").read_text())["runs"][0]
    assert r["bit_exact"] and (r["pes"], r["lanes"]) == (p, lanes)
    ev = slice(1, None)
    cyc, pred, ideal = r["cycles_per_frame"][ev], r["predicted_cycles_per_frame"][ev], r["ideal_cycles_per_frame"][ev]
    mean = sum(cyc) / len(cyc)
    gops = 2 * dense * fmax * 1e6 / mean / 1e9
    print(f"| {p} | {lanes} | {' / '.join(f'{c:,}' for c in cyc)} | {' / '.join(f'{c:,}' for c in pred)} "
          f"| {' / '.join(f'{c:,.0f}' for c in ideal)} | {' / '.join(f'{c / i:.2f}×' for c, i in zip(cyc, ideal))} "
          f"| {gops:.1f} |")
