"""A slow, independent integer reference of dense inference, written from docs/semantics.md alone.

Nothing here calls evhw.ops or evhw.golden: convolutions and pools are explicit loops over output
positions and taps on Python ints, requantization is ``(x*M + 2**(S-1)) >> S`` on Python ints
(floor shift), and every value op follows the table in docs/semantics.md §2. Tests compare the
golden model against it where the golden model would otherwise be compared with itself.
"""
from __future__ import annotations

import numpy as np

from evhw.qnet import QLayer, QNet, QView


def requant(x: int, m: int, s: int) -> int:
    """Round half towards +infinity: Python's >> is an arithmetic (floor) shift on big integers."""
    return (x * m + ((1 << (s - 1)) if s > 0 else 0)) >> s


def _window(h, w, kernel, stride, pads, dilation):
    """Yield (oy, ox, [(iy, ix) or None for a padded tap, in tap order]) for a 2-D window op."""
    kh, kw = kernel
    sh, sw = stride
    pt, pl, pb, pr = pads
    dh, dw = dilation
    oh = (h + pt + pb - dh * (kh - 1) - 1) // sh + 1
    ow = (w + pl + pr - dw * (kw - 1) - 1) // sw + 1
    for oy in range(oh):
        for ox in range(ow):
            taps = []
            for ky in range(kh):
                for kx in range(kw):
                    iy, ix = oy * sh - pt + ky * dh, ox * sw - pl + kx * dw
                    taps.append((iy, ix) if 0 <= iy < h and 0 <= ix < w else None)
            yield oy, ox, oh, ow, taps


def conv(x, w, attrs):
    """Grouped, strided, dilated cross-correlation; padded taps read ``pad_value`` (default 0)."""
    c, h, wd = x.shape
    o, cg, kh, kw = w.shape
    g = attrs.get("groups", 1)
    pv = attrs.get("pad_value")
    out = None
    for oy, ox, oh, ow, taps in _window(h, wd, (kh, kw), attrs["stride"], attrs["pads"], attrs.get("dilation", (1, 1))):
        if out is None:
            out = np.zeros((o, oh, ow), dtype=object)
        for oc in range(o):
            grp = oc // (o // g)
            acc = 0
            for ci in range(cg):
                cin = grp * cg + ci
                for k, tap in enumerate(taps):
                    px = int(x[cin, tap[0], tap[1]]) if tap is not None else (0 if pv is None else int(pv[cin]))
                    acc += int(w[oc, ci, k // kw, k % kw]) * px
            out[oc, oy, ox] = acc
    return out


def pool(x, p, mode):
    """Max pool (padded taps ignored) or window sum (padded taps are zeros), per channel."""
    c, h, wd = x.shape
    out = None
    for oy, ox, oh, ow, taps in _window(h, wd, p["kernel"], p["stride"], p["pads"], p.get("dilation", (1, 1))):
        if out is None:
            out = np.zeros((c, oh, ow), dtype=object)
        for ch in range(c):
            vals = [int(x[ch, t[0], t[1]]) for t in taps if t is not None]
            out[ch, oy, ox] = max(vals) if mode == "max" else sum(vals)
    return out


def layer_acc(s: QLayer, vals):
    acc = 0
    for t in s.terms:
        x = vals[t.src]
        if t.kind == "conv":
            acc = acc + conv(x, t.weight, t.attrs)
        elif t.kind == "linear":
            acc = acc + np.array([sum(int(w) * int(v) for w, v in zip(row, x)) for row in t.weight], dtype=object)
        elif t.kind == "sumpool":
            acc = acc + pool(x, t.attrs, "sum")
        elif t.kind == "scale":
            acc = acc + np.array([int(t.weight[c]) * x[c] for c in range(x.shape[0])], dtype=object)
        else:
            raise AssertionError(t.kind)
    return acc


def layer_value(s: QLayer, acc):
    """clamp(act(requant(a + bias))) per element, then the max-pools; ``a + bias`` for a readout."""
    flat = acc.reshape(acc.shape[0], -1)
    out = np.zeros(flat.shape, dtype=object)
    for c in range(flat.shape[0]):
        for i in range(flat.shape[1]):
            x = int(flat[c, i]) + int(s.bias[c])
            if s.mult is None:
                out[c, i] = x
                continue
            v = requant(x, int(s.mult[c]), int(s.shift[c]))
            if s.act == "relu":
                v = max(v, 0)
            elif s.act == "relu6":
                v = min(max(v, 0), s.act_hi)
            elif s.act == "leaky" and v < 0:
                v = (v * s.leaky_num) >> s.leaky_shift
            out[c, i] = min(max(v, s.out.lo), s.out.hi)
    v = out.reshape(acc.shape)
    for p in s.pools:
        v = pool(v, p, "max")
    return v


def dense(q: QNet, frame):
    """``{tensor name: int64 array}`` of one frame, like ``golden.dense_forward`` but independent."""
    vals = {"input": np.asarray(frame, dtype=np.int64).reshape(q.input.shape).astype(object)}
    for s in q.steps:
        if isinstance(s, QView):
            xs = [vals[n] for n in s.srcs]
            if s.kind == "concat":
                vals[s.name] = np.concatenate(xs, axis=0)
            elif s.kind == "upsample":
                fy, fx = s.attrs["scale"]
                x = xs[0]
                vals[s.name] = np.array([[[x[c, y // fy, xx // fx] for xx in range(x.shape[2] * fx)]
                                          for y in range(x.shape[1] * fy)] for c in range(x.shape[0])], dtype=object)
            else:
                vals[s.name] = xs[0].reshape(-1)
            continue
        vals[s.name] = layer_value(s, layer_acc(s, vals))
    return {k: v.astype(np.int64) for k, v in vals.items()}
