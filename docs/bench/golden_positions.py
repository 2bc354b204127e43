"""Where the change lies on rand-cnn64 (32 frames of synthetic:shapes, evnet, h = 0.05): per gate,
the share of positions the event path evaluates and the share that send a delta, against the
share of MACs. Run from a checkout: ``python docs/bench/golden_positions.py``."""
from evhw.flow.network import apply_thresholds, convert_model, frames_for
from evhw.golden import EventModel, Policy

q, _ = convert_model("rand-cnn64", threshold=0.05)
apply_thresholds(q, 0.05)
frames = frames_for("synthetic:shapes", q.input.shape, 32)
stats = {}
gate_rows = EventModel._gate_rows


def counting(self, gname, pos, v, ev, zero_th, counts):
    out = gate_rows(self, gname, pos, v, ev, zero_th, counts)
    s = stats.setdefault(gname, [0, 0, 0, 0])
    s[0] += pos.size
    s[1] += out[1].pos.size
    s[2] += self._planes[gname]
    s[3] += int(out[1].nz.sum())
    return out


EventModel._gate_rows = counting
res = EventModel(q, Policy("evnet")).run(frames)
print(f"MACs: {sum(r.event_macs for r in res[1:]) / sum(r.dense_macs for r in res[1:]):.3f} of dense (event frames)")
for g, (ev, sent, n, nz) in stats.items():
    print(f"{g:6s} positions evaluated {ev / n:.2f}, sending {sent / n:.2f}; "
          f"channels sending per sending position {nz / max(sent, 1) / q.tensors()[g].channels:.2f}")
