"""Bit-exact integer golden model of a converted EvNet: the specification the hardware implements.

* :func:`dense_forward` -- conventional integer inference (every value recomputed every frame).
* :class:`EventModel` -- the event-driven model: input gate, accumulators, value functions and gates
  with the frame barrier, under the ``evnet`` / ``skipconv`` / ``rrm`` / ``dense`` policies, at
  neuron or chunk granularity, with EvNet-paper op counters.

NumPy only, vectorized over tensors, int64 throughout (the converter proves the accumulator bound,
and the event model checks it every frame). Semantics: docs/semantics.md.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from . import ops
from .errors import AccumulatorOverflowError, ConfigError, ShapeError
from .floatmodel import host_op
from .ir import window_out
from .qnet import QLayer, QNet, QTensor, QView, Term

POLICIES = ("evnet", "skipconv", "rrm", "dense", "sigmadelta")


# ----------------------------------------------------------------------------------------------
# value function and linear terms

def requantize(x, mult, shift, out=None):
    """``(x * M + 2**(S-1)) >> S``: round half towards +infinity, arithmetic shift (floor).

    ``mult`` and ``shift`` are per channel (axis 0 of ``x``), or per element for a 1-D ``x``.
    ``out=x`` computes in place."""
    mult = mult.reshape((-1,) + (1,) * (x.ndim - 1))
    shift = shift.reshape((-1,) + (1,) * (x.ndim - 1))
    half = np.where(shift > 0, np.left_shift(np.int64(1), np.maximum(shift - 1, 0)), 0)
    y = np.multiply(x, mult, out=out)
    np.add(y, half, out=y)
    return np.right_shift(y, shift, out=y)


def value_pre_pool(layer: QLayer, acc, chan=None):
    """Value before max-pooling: clamp(act(requant(a + bias))), or a + bias for a readout layer.

    Element-wise. ``acc`` is a whole accumulator tensor, or, with ``chan`` (each element's channel), a
    1-D gather of some of its elements: the event path evaluates only the touched elements this way
    (docs/semantics.md, "Which elements are evaluated").
    """
    if chan is None:
        def per(p):   # per-channel parameter, broadcast over the tensor's positions
            return np.asarray(p, dtype=np.int64).reshape((-1,) + (1,) * (acc.ndim - 1))
    else:
        def per(p):   # per-channel parameter, picked per gathered element
            p = np.asarray(p, dtype=np.int64).reshape(-1)
            return p[chan] if p.size > 1 else p
    x = acc + per(layer.bias)
    if layer.mult is None:
        return x
    v = requantize(x, per(layer.mult).reshape(-1), per(layer.shift).reshape(-1), out=x)   # in place
    if layer.act == "relu":
        np.maximum(v, 0, out=v)
    elif layer.act == "relu6":
        np.clip(v, 0, layer.act_hi, out=v)
    elif layer.act in ("leaky", "prelu"):
        # negative values times the (per-channel) slope num / 2**shift, rounded down (arithmetic shift)
        v = np.where(v >= 0, v, np.right_shift(v * per(layer.leaky_num), layer.leaky_shift))
    elif layer.act == "clip":
        np.clip(v, layer.act_lo if layer.act_lo is not None else layer.out.lo,
                layer.act_hi if layer.act_hi is not None else layer.out.hi, out=v)
    elif layer.act != "none":
        raise ConfigError(f"layer {layer.name!r}: unknown activation {layer.act!r}")
    return np.clip(v, layer.out.lo, layer.out.hi, out=v)


def apply_pools(layer: QLayer, v):
    for p in layer.pools:
        v = ops.pool2d(v[None], kernel=p["kernel"], stride=p["stride"], pads=p["pads"],
                       dilation=p["dilation"], mode="max")[0]
    return v


def pool_reach(layer: QLayer, touched):
    for p in layer.pools:
        touched = ops.reach(touched, kernel=p["kernel"], stride=p["stride"], pads=p["pads"], dilation=p["dilation"])
    return touched


def term_dense(t: Term, x):
    """A term applied to dense values (dense model, flush)."""
    if t.kind == "conv":
        a = t.attrs
        return ops.conv2d(x[None], t.weight, stride=a["stride"], pads=a["pads"], dilation=a["dilation"],
                          groups=a["groups"], pad_value=a.get("pad_value"))[0]
    return term_delta(t, x)


def term_delta(t: Term, d):
    """A term applied to a delta tensor (zero padding: padded taps never change). The reference
    definition; the event path's window-local kernels (:meth:`EventModel._accumulate`) equal it."""
    a = t.attrs
    if t.kind == "conv":
        return ops.conv2d(d[None], t.weight, stride=a["stride"], pads=a["pads"], dilation=a["dilation"],
                          groups=a["groups"])[0]
    if t.kind == "linear":
        nz = np.flatnonzero(d)
        return t.weight[:, nz] @ d[nz]
    if t.kind == "sumpool":
        return ops.pool2d(d[None], kernel=a["kernel"], stride=a["stride"], pads=a["pads"], mode="sum")[0]
    if t.kind == "scale":
        return d * t.weight.reshape((-1,) + (1,) * (d.ndim - 1))
    raise AssertionError(t.kind)


def term_touched(t: Term, active):
    """Which accumulator elements a term's non-zero deltas reach (structurally: weights are not looked at)."""
    a = t.attrs
    if t.kind == "conv":
        g = a["groups"]
        o = t.weight.shape[0]
        per_group = active.reshape(g, -1, *active.shape[1:]).any(axis=1)
        r = ops.reach(per_group, kernel=t.weight.shape[2:], stride=a["stride"], pads=a["pads"], dilation=a["dilation"])
        return np.repeat(r, o // g, axis=0)
    if t.kind == "linear":
        return np.full(t.weight.shape[0], bool(active.any()))
    if t.kind == "sumpool":
        return ops.reach(active, kernel=a["kernel"], stride=a["stride"], pads=a["pads"])
    return active.copy()


def view_apply(v: QView, xs):
    if v.kind == "concat":
        return np.concatenate(xs, axis=0)
    if v.kind == "upsample":
        return ops.upsample_nearest(xs[0], v.attrs["scale"])
    return xs[0].reshape(-1)


def check_frame(q: QNet, frame):
    f = np.asarray(frame)
    shape = q.input.shape
    if f.shape != shape:
        if len(shape) == 3 and shape[0] == 1 and f.shape == shape[1:]:
            f = f[None]
        elif len(shape) == 1 and f.size == shape[0] and f.ndim in (2, 3):
            f = f.reshape(-1)
        else:
            raise ShapeError(f"frame shape {f.shape} does not match the model input {shape}")
    if not np.issubdtype(f.dtype, np.integer):
        if np.any(f != np.rint(f)):
            raise ShapeError(f"frames must hold integer pixels 0..255, got dtype {f.dtype}")
    if f.size and (f.min() < 0 or f.max() > 255):
        raise ShapeError(f"pixel values must lie in 0..255, got {f.min()}..{f.max()}")
    return f.astype(np.int64)


def dense_forward(q: QNet, frame, *, with_acc=False):
    """Conventional integer inference of one frame. Returns ``{tensor name: int64 values}``
    (and ``{layer: accumulator}`` with ``with_acc``)."""
    vals = {"input": check_frame(q, frame)}
    accs = {}
    for s in q.steps:
        if isinstance(s, QView):
            vals[s.name] = view_apply(s, [vals[x] for x in s.srcs])
            continue
        acc = sum(term_dense(t, vals[t.src]) for t in s.terms)
        accs[s.name] = acc
        vals[s.name] = apply_pools(s, value_pre_pool(s, acc))
    return (vals, accs) if with_acc else vals


def host_outputs(q: QNet, outs):
    """Every output as real numbers: readout ``q * scale``, then its host op (softmax...) if any.

    ``outs`` are the integer readouts in ``QNet.outputs`` order. The host ops are float and not part
    of the bit-exact specification; the integer readouts are.
    """
    tens = q.tensors()
    res = []
    for i, (name, o) in enumerate(zip(q.outputs, outs)):
        t = tens[name]
        real = np.asarray(o, dtype=np.float64) * t.scale.reshape((-1,) + (1,) * (len(t.shape) - 1))
        op = q.output_op(i)
        res.append(host_op(op, real) if op else real)
    return res


def full_window(shape):
    """The window of a whole tensor: (0, H, 0, W) for a spatial one, () for a 1-D one."""
    return (0, shape[1], 0, shape[2]) if len(shape) == 3 else ()


def _window_slice(win, ndim):
    if ndim != 3:
        return (slice(None),)
    y0, y1, x0, x1 = win
    return (slice(None), slice(y0, y1), slice(x0, x1))


def _tight(win, nz):
    """The bounding window of the True elements of ``nz`` (a mask on window ``win``) and ``nz`` cut to it;
    ``(None, None)`` when there are none."""
    box = ops.bbox(nz.any(axis=0))
    if box is None:
        return None, None
    y0, y1, x0, x1 = box
    return (win[0] + y0, win[0] + y1, win[2] + x0, win[2] + x1), nz[:, y0:y1, x0:x1]


def _hull(a, b):
    """The bounding window of two windows (None = empty)."""
    if a is None:
        return b
    return (min(a[0], b[0]), max(a[1], b[1]), min(a[2], b[2]), max(a[3], b[3]))


class _CostPlane:
    """A (H, W) per-position cost plane that is constant (``interior``) except in a border frame of
    width ``band`` (a window op's padded edges): the cost of a mask is ``interior * count`` plus the
    border's differences. ``interior`` is None when the plane has no such form (e.g. strides)."""

    def __init__(self, cw):
        self.interior = None
        if cw is None or min(cw.shape) == 0:
            return
        h, w = cw.shape
        c = cw[h // 2, w // 2]
        diff = cw != c
        band = 0                  # the narrowest border frame outside which the plane is constant
        while 2 * band < min(h, w) and diff[band:h - band, band:w - band].any():
            band += 1
        if 2 * band >= min(h, w):
            return
        self.interior, self.band, self.diff, self.shape = int(c), band, (cw - c), (h, w)

    def cost(self, nz, win):
        y0, y1, x0, x1 = win
        h, w = self.shape
        b = self.band
        total = self.interior * int(np.count_nonzero(nz))
        # border strips, disjoint: top rows, bottom rows, then left / right columns of the middle rows
        for r0, r1, c0, c1 in ((0, b, 0, w), (h - b, h, 0, w), (b, h - b, 0, b), (b, h - b, w - b, w)):
            a0, a1, b0, b1 = max(r0, y0), min(r1, y1), max(c0, x0), min(c1, x1)
            if a0 < a1 and b0 < b1 and b:
                n = nz[:, a0 - y0:a1 - y0, b0 - x0:b1 - x0].sum(axis=0)
                total += int((n * self.diff[a0:a1, b0:b1]).sum())
        return total


def _view_window(v: QView, wins, out: QTensor):
    """The window of a view's deltas, from its sources' windows."""
    if len(out.shape) != 3:
        return None
    if v.kind == "concat":
        hull = None
        for w in wins:
            if w is not None:
                hull = _hull(hull, w)
        return hull
    if v.kind == "upsample" and wins[0] is not None:
        fh, fw = v.attrs["scale"]
        y0, y1, x0, x1 = wins[0]
        return y0 * fh, y1 * fh, x0 * fw, x1 * fw
    return None if wins[0] is None else full_window(out.shape)


# ----------------------------------------------------------------------------------------------
# policies and counters

#: Default rrm refresh bound: mean accumulated truncation per gate element (float units).
RRM_BOUND = 0.05


@dataclass(frozen=True)
class Policy:
    """How gates decide to transmit.

    kind: ``evnet`` (long-term memory d), ``skipconv`` (memory loss: d cleared each evaluation),
    ``rrm`` (memory loss + exact refresh when accumulated truncation passes ``rrm_bound``),
    ``dense`` (every frame recomputed), ``sigmadelta`` (the Sigma-Delta rounding policy: an evaluated
    element sends its change rounded to a multiple of its threshold H, ``n·H`` with
    ``n = sign(d)·floor((|d| + floor(H/2)) / H)``, and keeps the remainder in d; H = 0 acts as H = 1).
    granularity: ``neuron``; ``pixel`` (all channels of a position fire together); ``block:K``
    (K x K positions of one channel fire together). A chunk fires iff any member exceeds its threshold.
    reset_every: skipconv periodic reset: thresholds are 0 on frames t > 0 with t % N == 0.
    norm_gate: skipconv's per-pixel input-norm gate: a pixel fires iff sum_c |d_c| > sum_c H_c.
    rrm_bound: mean accumulated truncated magnitude per gate element (float units) that triggers an
    exact (flush) frame.
    init: ``flush`` (frame 0 dense) or ``warmup`` (null state + all gates firing on frame 0).
    """

    kind: str = "evnet"
    granularity: str = "neuron"
    reset_every: int | None = None
    norm_gate: bool = False
    rrm_bound: float = RRM_BOUND
    init: str = "flush"

    def __post_init__(self):
        if self.kind not in POLICIES:
            raise ConfigError(f"policy must be one of {', '.join(POLICIES)}, not {self.kind!r}")
        g = self.granularity
        if not (g in ("neuron", "pixel") or (g.startswith("block:") and g[6:].isdigit() and int(g[6:]) >= 1)):
            raise ConfigError(f"granularity must be neuron, pixel or block:K, not {g!r}")
        if self.reset_every is not None and (self.kind != "skipconv" or int(self.reset_every) < 1):
            raise ConfigError(f"reset_every needs the skipconv policy and a period >= 1, not {self.reset_every!r}")
        if self.norm_gate and self.kind != "skipconv":
            raise ConfigError("the input-norm gate belongs to the skipconv policy")
        if self.kind == "sigmadelta" and (self.granularity != "neuron" or self.norm_gate):
            raise ConfigError("the sigmadelta policy quantizes each neuron's change: granularity must be neuron")
        if self.init not in ("flush", "warmup"):
            raise ConfigError(f"init must be flush or warmup, not {self.init!r}")
        if not self.rrm_bound > 0:
            raise ConfigError(f"rrm_bound must be > 0, not {self.rrm_bound!r}")

    @property
    def memory_loss(self):
        return self.kind in ("skipconv", "rrm")


def _chunks(shape, granularity, norm_gate):
    """Chunk ids per element (or None for per-neuron gating)."""
    if len(shape) != 3 or (granularity == "neuron" and not norm_gate):
        return None
    c, h, w = shape
    if granularity == "pixel" or norm_gate:
        ids = np.arange(h * w).reshape(1, h, w)
        return np.broadcast_to(ids, shape)
    k = int(granularity[6:])
    by, bx = np.arange(h)[:, None] // k, np.arange(w)[None, :] // k
    nbx = -(-w // k)
    nb = (-(-h // k)) * nbx
    return np.arange(c)[:, None, None] * nb + (by * nbx + bx)[None]


def _members(ids):
    """Chunk id -> the flat indices of its members, one row per chunk, padded with -1."""
    flat = ids.reshape(-1)
    order = np.argsort(flat, kind="stable")
    sizes = np.bincount(flat)
    start = np.concatenate(([0], np.cumsum(sizes)[:-1]))
    rank = np.arange(flat.size) - np.repeat(start, sizes)
    m = np.full((sizes.size, int(sizes.max())), -1, np.int64)
    m[flat[order], rank] = order
    return m


@dataclass
class LayerCount:
    dense_macs: int = 0
    event_macs: int = 0
    acc_ops: int = 0          # non-MAC accumulations (pooling, add): counted as overhead
    dense_acc_ops: int = 0
    gate_u: int = 0           # gate elements evaluated
    gate_t: int = 0           # events transmitted
    chunks_fired: int = 0
    acc_u: int = 0            # accumulator elements updated
    buffer_reads: int = 0
    buffer_writes: int = 0

    def overhead(self, chunked):
        arith = self.acc_ops + self.acc_u
        mem = 2 * self.acc_u + self.buffer_reads + self.buffer_writes
        if self.gate_u or self.gate_t:
            arith += 2 * self.gate_u + self.gate_t + (2 * self.gate_u if chunked else self.gate_u)
            mem += (2 * self.gate_u + self.gate_t) * 2
            if chunked:
                mem += 2 * self.gate_u + self.chunks_fired
        return arith, mem


@dataclass
class FrameResult:
    frame: int
    kind: str                     # flush | event
    output: np.ndarray            # int64 readout of the (first) output tensor
    layers: dict = field(default_factory=dict)   # name -> LayerCount
    outputs: list = field(default_factory=list)  # int64 readouts of every output (QNet.outputs order)

    @property
    def dense_macs(self):
        return sum(c.dense_macs for c in self.layers.values())

    @property
    def event_macs(self):
        return sum(c.event_macs for c in self.layers.values())

    @property
    def events(self):
        return sum(c.gate_t for c in self.layers.values())

    def summary(self, chunked=False):
        ar = me = 0
        for c in self.layers.values():
            a, m = c.overhead(chunked)
            ar, me = ar + a, me + m
        return {"frame": self.frame, "kind": self.kind, "dense_macs": self.dense_macs, "event_macs": self.event_macs,
                "events": self.events, "overhead_arith": ar, "overhead_mem": me}


def mac_reach(q: QNet):
    """Per MAC term: the MAC cost of one transmitted input element (padded taps never counted)."""
    costs = {}
    tensors = q.tensors()
    for s in q.layers():
        for i, t in enumerate(s.terms):
            src = tensors[t.src]
            if t.kind == "conv":
                a = t.attrs
                r = ops.reach_count(src.shape[1:], kernel=t.weight.shape[2:], stride=a["stride"], pads=a["pads"],
                                    dilation=a["dilation"])
                costs[(s.name, i)] = r[None] * (t.weight.shape[0] // a["groups"])
            elif t.kind == "linear":
                costs[(s.name, i)] = np.full(src.shape, t.weight.shape[0], dtype=np.int64)
            elif t.kind == "sumpool":
                a = t.attrs
                costs[(s.name, i)] = ops.reach_count(src.shape[1:], kernel=a["kernel"], stride=a["stride"],
                                                     pads=a["pads"])[None]
            else:
                costs[(s.name, i)] = np.ones(src.shape[:1] + (1,) * (len(src.shape) - 1), dtype=np.int64)
    return costs


def state_memory_bits(q: QNet):
    """State memory in bits: accumulators, gate b and d, max-pool value buffers, input gate."""
    per = {"input": int(np.prod(q.input.shape)) * (q.input.bits + q.input.delta_bits)}
    for s in q.layers():
        bits = int(np.prod(s.acc_shape)) * s.acc_bits
        if s.gated:
            bits += int(np.prod(s.out.shape)) * (s.out.bits + s.out.delta_bits)
        if s.pools:
            bits += int(np.prod(s.acc_shape)) * s.out.bits
        per[s.name] = bits
    return per


# ----------------------------------------------------------------------------------------------
# the event model

class EventModel:
    """Event-driven integer execution of a QNet, one frame at a time.

    >>> m = EventModel(qnet, Policy("evnet"))
    >>> out = m.step(frame).output

    Each event frame evaluates value functions and gates only on the touched elements (gathered,
    computed, scattered back). ``reference=True`` evaluates them on every element instead, the
    literal reading of docs/semantics.md; both give the same values, state and counters (an
    unevaluated element has ``v = b`` and its gate does not change), tests/test_golden_fastpath.py
    checks it.
    """

    def __init__(self, q: QNet, policy: Policy | None = None, thresholds: dict | None = None, *,
                 reference: bool = False):
        self.q = q
        self.reference = reference
        self.policy = policy or Policy()
        self.tensors = q.tensors()
        self.costs = mac_reach(q)
        self.dense_costs = {k: int((np.broadcast_to(v, self.tensors[self._term(k).src].shape)).sum())
                            for k, v in self.costs.items()}
        self.chunk_ids = {g: _chunks(self.tensors[g].shape, self.policy.granularity,
                                     self.policy.norm_gate) for g in q.gates()}
        self.chunk_members = {g: _members(ids) for g, ids in self.chunk_ids.items() if ids is not None}
        self.chunk_flat = {g: ids.reshape(-1) for g, ids in self.chunk_ids.items() if ids is not None}
        self.full_costs = {k: np.ascontiguousarray(np.broadcast_to(v, self.tensors[self._term(k).src].shape)).reshape(-1)
                           for k, v in self.costs.items()}
        self._convw = {}      # (layer, term) -> ops.ConvWeights, prepared on first use
        self._cost_planes = {}
        self.set_thresholds(thresholds if thresholds is not None else q.thresholds)
        self.reset()

    def _term(self, key):
        return self.q.layer(key[0]).terms[key[1]]

    def set_thresholds(self, thresholds: dict):
        """Integer per-channel thresholds ``{gate: array}``; may change between frames."""
        th = {}
        for gname in self.q.gates():
            if gname not in thresholds:
                raise ConfigError(f"no threshold for gate {gname!r}")
            t = self.tensors[gname]
            h = np.broadcast_to(np.asarray(thresholds[gname], dtype=np.int64), (t.channels,)).copy()
            if np.any(h < 0) or np.any(h > t.span):
                raise ConfigError(f"thresholds of gate {gname!r} must lie in 0..{t.span}")
            th[gname] = h
        self.thresholds = th

    def reset(self):
        """Start a new sequence: the next frame is exact (flush, or warm-up from the null state)."""
        self.t = 0
        self.a, self.b, self.d = {}, {}, {}
        self.pre = {}     # max-pooled layers: pre-pool values (the hardware's max-pool value buffer)
        self.trunc = 0.0
        self.refresh = False
        if self.policy.init == "warmup":
            self._load_dense(np.zeros(self.q.input.shape, dtype=np.int64))

    # -- helpers
    def _load_dense(self, frame):
        vals, accs = dense_forward(self.q, frame, with_acc=True)
        self.a = {k: v.copy() for k, v in accs.items()}
        self.pre = {}     # rebuilt from the accumulators when next needed
        for gname in self.q.gates():
            self.b[gname] = vals[gname].copy()
            self.d[gname] = np.zeros_like(vals[gname])
        return vals

    def _bshape(self, t: QTensor):
        return (-1,) + (1,) * (len(t.shape) - 1)

    def _gate(self, gname, v, evaluated, force_all, zero_th, counts: LayerCount):
        """Gate one tensor. Returns the transmitted delta tensor."""
        t = self.tensors[gname]
        b, d = self.b[gname], self.d[gname]
        d += v - b
        b[...] = v
        h = np.zeros(t.channels, np.int64) if zero_th else self.thresholds[gname]
        h = h.reshape(self._bshape(t))
        ids = self.chunk_ids[gname]
        if force_all:
            fire = np.ones(t.shape, bool)
        elif ids is None:
            fire = evaluated & (np.abs(d) > h)
        else:
            if self.policy.norm_gate:
                over = np.bincount(ids.ravel(), weights=(np.abs(d) - h).ravel()) > 0
            else:
                over = np.zeros(int(ids.max()) + 1, bool)
                np.logical_or.at(over, ids.ravel(), (np.abs(d) > h).ravel())
            ev = np.zeros_like(over)
            np.logical_or.at(ev, ids.ravel(), evaluated.ravel())
            fired = over & ev
            counts.chunks_fired += int(fired.sum())
            fire = fired[ids]   # a fired chunk sends every member's change
        if self.policy.kind == "sigmadelta" and not force_all:
            q = np.maximum(h, 1)
            n = np.sign(d) * ((np.abs(d) + q // 2) // q)
            sent = np.where(evaluated, n * q, 0)
        else:
            sent = np.where(fire, d, 0)
        if self.policy.memory_loss:
            lost = np.where(evaluated & ~fire, np.abs(d), 0)
            self.trunc += float((lost * t.scale.reshape(self._bshape(t))).sum())
            d[evaluated | fire] = 0
        else:
            d -= sent
        counts.gate_u += int(evaluated.sum())
        counts.gate_t += int(np.count_nonzero(sent))
        return sent

    def _gate_at(self, gname, idx, vi, zero_th, counts: LayerCount):
        """:meth:`_gate` computed on the evaluated elements only: flat indices ``idx``, new values ``vi``.

        Same rule, same result: elsewhere ``v = b``, so ``d`` does not change and, per neuron, nothing
        fires; a chunk can fire only if one of its members is evaluated (docs/semantics.md,
        "Which elements are evaluated", "Granularity")."""
        t, pol = self.tensors[gname], self.policy
        b, d = self.b[gname].reshape(-1), self.d[gname].reshape(-1)      # views of the gate state
        dv = d[idx] + (vi - b[idx])
        d[idx] = dv
        b[idx] = vi
        h = np.zeros(t.channels, np.int64) if zero_th else self.thresholds[gname]
        plane = d.size // t.channels                                      # elements per channel
        sent = np.zeros(t.shape, np.int64)
        sf = sent.reshape(-1)
        counts.gate_u += int(idx.size)
        if pol.kind == "sigmadelta":                  # neuron granularity only (Policy checks)
            q = np.maximum(h[idx // plane], 1)
            n = np.sign(dv) * ((np.abs(dv) + q // 2) // q)
            sf[idx] = n * q
            d[idx] = dv - n * q
            counts.gate_t += int(np.count_nonzero(n))
            return sent
        ids = self.chunk_ids[gname]
        if ids is None:
            fire = np.abs(dv) > h[idx // plane]
            fired_idx = idx[fire]
        else:
            cid = self.chunk_flat[gname][idx]                            # chunk of each evaluated element
            cand = np.unique(cid)                                         # chunks with an evaluated member
            mem = self.chunk_members[gname][cand]
            ok = mem >= 0
            mem = np.where(ok, mem, 0)
            dm, hm = np.abs(d[mem]), h[mem // plane]
            if pol.norm_gate:
                over = np.where(ok, dm - hm, 0).sum(axis=1) > 0
            else:
                over = (ok & (dm > hm)).any(axis=1)
            counts.chunks_fired += int(over.sum())
            fired_idx = mem[over][ok[over]]                               # a fired chunk sends every member
            fire = over[np.searchsorted(cand, cid)]
        sf[fired_idx] = d[fired_idx]
        counts.gate_t += int(np.count_nonzero(sf[fired_idx]))
        if pol.memory_loss:
            lost = np.zeros(t.shape, np.int64)
            keep = idx[~fire]
            lost.reshape(-1)[keep] = np.abs(d[keep])
            self.trunc += float((lost * t.scale.reshape(self._bshape(t))).sum())
            d[idx] = 0
        d[fired_idx] = 0
        return sent

    # -- event frames
    def _event_reference(self, x, warm, zero_th, counts):
        """One event frame as docs/semantics.md reads: every term applied to whole delta tensors, every
        value function and gate evaluated on every element (``reference=True``, and warm-up frames)."""
        ev_all = np.ones(x.shape, bool)
        deltas = {"input": self._gate("input", x, ev_all, warm, zero_th, counts.setdefault("input", LayerCount()))}
        values = {}
        for s in self.q.steps:
            if isinstance(s, QView):
                deltas[s.name] = view_apply(s, [deltas[n] for n in s.srcs])
                continue
            c = counts[s.name] = LayerCount()
            acc = self.a[s.name]
            touched = np.zeros(s.acc_shape, bool)
            for i, term in enumerate(s.terms):
                dlt = deltas[term.src]
                active = dlt != 0
                if not active.any():
                    continue
                acc += term_delta(term, dlt)
                touched |= term_touched(term, active)
                self._count_term(s, i, c, int(self.full_costs[(s.name, i)][active.reshape(-1)].sum()))
            self._after_accumulate(s, acc, c, int(touched.sum()))
            v = apply_pools(s, value_pre_pool(s, acc))
            if s.gated:
                evaluated = pool_reach(s, touched) if s.pools else touched
                deltas[s.name] = self._gate(s.name, v, evaluated, warm, zero_th, c)
            values[s.name] = v
        self.pre = {}     # max-pool value buffers: rebuilt from the accumulators when next needed
        return values

    def _count_term(self, s, i, c, cost):
        if s.terms[i].is_mac:
            c.event_macs += cost
        else:
            c.acc_ops += cost

    def _after_accumulate(self, s, acc, c, acc_u):
        """Dense counts, the memory-loss drift check and the accumulator/buffer counters of one layer."""
        self._count_dense(s, c, event=True)
        if self.policy.memory_loss and np.abs(acc).max(initial=0) > s.acc_bound:
            raise AccumulatorOverflowError(
                f"frame {self.t}: accumulator of layer {s.name!r} drifted past its proven bound {s.acc_bound} "
                f"under the memory-loss policy {self.policy.kind!r}; use periodic resets or the rrm policy")
        c.acc_u = acc_u
        if s.pools:
            c.buffer_reads = int(np.prod(s.acc_shape))
            c.buffer_writes = acc_u

    def _event_windowed(self, x, zero_th, counts):
        """One event frame, same results and counters as :meth:`_event_reference`, with the work following
        the change: each spatial tensor's deltas carry a window (bounding box of the non-zero columns,
        or None); terms update the accumulator only on the window their changes reach (exact window-local
        products, :class:`ops.ConvWeights`), and value functions and gates run on the window of touched
        elements only. Outside it nothing changes: an unevaluated element has ``v = b`` and its gate does
        not change (docs/semantics.md, "Which elements are evaluated")."""
        ci = counts["input"] = LayerCount()
        deltas, wins, nzs = {}, {}, {}     # nzs: a tensor's (delta != 0) on its window, when the gate knows it
        full = (0, x.shape[1], 0, x.shape[2]) if x.ndim == 3 else None
        deltas["input"], wins["input"], nzs["input"] = self._gate_window("input", full, x, np.ones(x.shape, bool),
                                                                         zero_th, ci)
        values = {}
        for s in self.q.steps:
            if isinstance(s, QView):
                deltas[s.name] = view_apply(s, [deltas[n] for n in s.srcs])
                wins[s.name] = _view_window(s, [wins.get(n) for n in s.srcs], self.tensors[s.name])
                continue
            c = counts[s.name] = LayerCount()
            acc = self.a[s.name]
            if len(s.acc_shape) == 3:
                touched, hull = self._accumulate(s, deltas, wins, nzs, acc, c)
            else:
                touched = np.zeros(s.acc_shape, bool)
                for i, term in enumerate(s.terms):
                    dlt = deltas[term.src]
                    active = dlt != 0
                    if not active.any():
                        continue
                    acc += term_delta(term, dlt)
                    touched |= term_touched(term, active)
                    self._count_term(s, i, c, int(self.full_costs[(s.name, i)][active.reshape(-1)].sum()))
                hull = full_window(acc.shape) if touched.any() else None
            self._after_accumulate(s, acc, c, int(np.count_nonzero(touched)))
            if not s.gated:
                values[s.name] = apply_pools(s, value_pre_pool(s, acc))      # a readout: every element
                continue
            v, ev, win = self._values_window(s, acc, touched, hull)
            deltas[s.name], wins[s.name], nzs[s.name] = self._gate_window(s.name, win, v, ev, zero_th, c)
            values[s.name] = self.b[s.name]                                   # = the layer's values
        return values

    def _accumulate(self, s: QLayer, deltas, wins, nzs, acc, c):
        """Apply a spatial layer's terms on the windows their changes reach. Returns the touched mask and
        the hull of the updated windows (or None)."""
        touched = np.zeros(s.acc_shape, bool)
        hull = None
        oh, ow = s.acc_shape[1:]
        for i, term in enumerate(s.terms):
            win = wins[term.src]
            if win is None:
                continue
            dlt = deltas[term.src]
            wy0, wy1, wx0, wx1 = win
            nz = nzs.get(term.src)                  # known, and the window tight, from the gate
            g = term.attrs["groups"] if term.kind == "conv" else 1
            cols_g = None
            if term.kind == "conv":
                cols_g = (nz if nz is not None else dlt[:, wy0:wy1, wx0:wx1] != 0)
                cols_g = cols_g.reshape(g, -1, *cols_g.shape[1:]).any(axis=1)
            if nz is not None:
                box = (0, wy1 - wy0, 0, wx1 - wx0)
            else:
                nz = dlt[:, wy0:wy1, wx0:wx1] != 0
                box = ops.bbox(cols_g.any(axis=0) if cols_g is not None else nz.any(axis=0))
                if box is None:
                    continue
            self._count_term(s, i, c, self._cost((s.name, i), nz, win))
            y0, y1, x0, x1 = box[0] + wy0, box[1] + wy0, box[2] + wx0, box[3] + wx0      # tight window
            if term.kind == "scale":
                sl = (slice(None), slice(y0, y1), slice(x0, x1))
                d = dlt[sl]
                acc[sl] += d * term.weight.reshape(-1, 1, 1)
                touched[sl] |= d != 0
                hull = _hull(hull, (y0, y1, x0, x1))
                continue
            a = term.attrs
            kernel = term.weight.shape[2:] if term.kind == "conv" else a["kernel"]
            dil = a.get("dilation", (1, 1)) if term.kind == "conv" else (1, 1)
            stride, pads = a["stride"], a["pads"]
            oy = ops.out_span(y0, y1, oh, kernel[0], stride[0], pads[0], dil[0])
            ox = ops.out_span(x0, x1, ow, kernel[1], stride[1], pads[1], dil[1])
            if oy[0] == oy[1] or ox[0] == ox[1]:
                continue                                    # the changes reach no output
            rows = ops.in_span(*oy, kernel[0], stride[0], pads[0], dil[0])
            cols = ops.in_span(*ox, kernel[1], stride[1], pads[1], dil[1])
            local = ops.frame_of(dlt, rows, cols)
            sl = (slice(None), slice(*oy), slice(*ox))
            if term.kind == "conv":
                acc[sl] += self._conv_weights(s.name, i).valid(local)
                act = ops.frame_of(cols_g, rows, cols, False, origin=(wy0, wx0))
                r = ops.valid_reduce(act, kernel, stride, dil, np.logical_or)
                touched[sl] |= np.repeat(r, term.weight.shape[0] // g, axis=0) if g > 1 else r
            else:       # sumpool
                acc[sl] += ops.valid_reduce(local, kernel, stride)
                touched[sl] |= ops.valid_reduce(local != 0, kernel, stride, op=np.logical_or)
            hull = _hull(hull, (oy[0], oy[1], ox[0], ox[1]))
        return touched, hull

    def _cost(self, key, nz, win):
        """Sum of the per-element MAC (or accumulation) costs over the non-zero deltas ``nz`` of window ``win``."""
        cw = self.costs[key]
        y0, y1, x0, x1 = win
        if cw.shape[1:] == (1, 1):                  # one cost per channel
            if np.all(cw == 1):
                return int(np.count_nonzero(nz))
            return int(np.count_nonzero(nz, axis=(1, 2)) @ np.broadcast_to(cw, (nz.shape[0], 1, 1)).reshape(-1))
        plane = self._cost_planes.get(key)
        if plane is None:
            plane = self._cost_planes[key] = _CostPlane(cw[0] if cw.shape[0] == 1 else None)
        if plane.interior is None:                  # no constant interior: weigh every element
            if cw.shape[0] == 1:
                n = nz.view(np.uint8).sum(axis=0, dtype=np.int64 if nz.shape[0] > 255 else np.uint8)
                return int(np.vdot(n, cw[0, y0:y1, x0:x1]))
            return int((nz * cw[:, y0:y1, x0:x1]).sum())
        return plane.cost(nz, win)

    def _conv_weights(self, layer, i):
        w = self._convw.get((layer, i))
        if w is None:
            t = self.q.layer(layer).terms[i]
            a = t.attrs
            w = self._convw[(layer, i)] = ops.ConvWeights(t.weight, stride=a["stride"], dilation=a["dilation"],
                                                          groups=a["groups"])
        return w

    def _values_window(self, s: QLayer, acc, touched, hull):
        """A gated layer's values on the window of its evaluated elements: ``(v, evaluated, window)``, or
        ``(None, None, None)`` when nothing was touched. A max-pooled layer keeps its pre-pool values."""
        if hull is None:
            return None, None, None
        if len(s.acc_shape) == 1:
            return value_pre_pool(s, acc), touched, hull
        y0, y1, x0, x1 = hull
        sl = (slice(None), slice(y0, y1), slice(x0, x1))
        if not s.pools:
            return value_pre_pool(s, acc[sl]), touched[sl], hull
        pre = self.pre.get(s.name)
        if pre is None:
            pre = self.pre[s.name] = value_pre_pool(s, acc)
        else:
            pre[sl] = value_pre_pool(s, acc[sl])      # untouched elements recompute to what they hold
        if len(s.pools) > 1:
            win = full_window(s.out.shape)
            return apply_pools(s, pre), pool_reach(s, touched), win
        p = s.pools[0]
        (kh, kw), (sh, sw), (dh, dw), pads = p["kernel"], p["stride"], p["dilation"], p["pads"]
        py = ops.out_span(y0, y1, s.out.shape[1], kh, sh, pads[0], dh)
        px = ops.out_span(x0, x1, s.out.shape[2], kw, sw, pads[1], dw)
        if py[0] == py[1] or px[0] == px[1]:
            return None, None, None
        rows, cols = ops.in_span(*py, kh, sh, pads[0], dh), ops.in_span(*px, kw, sw, pads[1], dw)
        v = ops.valid_reduce(ops.frame_of(pre, rows, cols, np.iinfo(np.int64).min), (kh, kw), (sh, sw), (dh, dw),
                             np.maximum)
        ev = ops.valid_reduce(ops.frame_of(touched, rows, cols, False), (kh, kw), (sh, sw), (dh, dw), np.logical_or)
        return v, ev, (py[0], py[1], px[0], px[1])

    def _gate_window(self, gname, win, v, ev, zero_th, counts: LayerCount):
        """:meth:`_gate` on a window ``win`` of a spatial tensor (the whole of a 1-D one): new values ``v``
        and the evaluated mask ``ev`` there (``v is None``: nothing evaluated). Returns the transmitted
        deltas and their window (None: all zero)."""
        t, pol = self.tensors[gname], self.policy
        if v is None:
            return np.zeros(t.shape, np.int64), None, None
        if self.chunk_ids[gname] is not None or len(t.shape) != 3:
            # chunked gates (a fired chunk sends members outside the window), 1-D tensors: gathered form
            evm = np.zeros(t.shape, bool)
            sl = _window_slice(win, len(t.shape))
            evm[sl] = ev
            sent = self._gate_at(gname, np.flatnonzero(evm), v[ev], zero_th, counts)
            return sent, (ops.bbox(np.any(sent != 0, axis=0)) if len(t.shape) == 3 else None), None
        sl = _window_slice(win, 3)
        b, d = self.b[gname][sl], self.d[gname][sl]        # views of the gate state
        d += v                                               # d += v - b; elsewhere in the window v == b
        d -= b
        b[...] = v
        h = (np.zeros(t.channels, np.int64) if zero_th else self.thresholds[gname]).reshape(-1, 1, 1)
        sent = np.zeros(t.shape, np.int64)
        sw = sent[sl]
        counts.gate_u += int(np.count_nonzero(ev))
        if pol.kind == "sigmadelta":
            q = np.maximum(h, 1)
            n = np.sign(d) * ((np.abs(d) + q // 2) // q)
            n[~ev] = 0
            np.multiply(n, q, out=sw)
            d -= sw
            counts.gate_t += int(np.count_nonzero(n))
            return (sent,) + _tight(win, n != 0)
        fire = d > h
        fire |= d < -h
        fire &= ev
        np.copyto(sw, d, where=fire)
        counts.gate_t += int(np.count_nonzero(fire))          # a fired element has |d| > h >= 0
        if pol.memory_loss:
            lost = np.zeros(t.shape, np.int64)
            lost[sl] = np.where(ev & ~fire, np.abs(d), 0)
            self.trunc += float((lost * t.scale.reshape(self._bshape(t))).sum())
            np.copyto(d, 0, where=ev)
        else:
            np.copyto(d, 0, where=fire)
        return (sent,) + _tight(win, fire)          # a fired element has d != 0: fire = (sent != 0)

    def step(self, frame) -> FrameResult:
        """Process one frame; returns its output and counters."""
        x = check_frame(self.q, frame)
        pol, t = self.policy, self.t
        counts = {}
        flush = pol.kind == "dense" or self.refresh or (t == 0 and pol.init == "flush")
        warm = t == 0 and pol.init == "warmup" and not flush
        if flush:
            vals = self._load_dense(x)
            kind = "flush"
            self.refresh = False
            self.trunc = 0.0
            for s in self.q.layers():
                c = counts[s.name] = LayerCount()
                self._count_dense(s, c)
            counts["input"] = LayerCount(gate_u=x.size, gate_t=x.size)
            outs = [vals[o].copy() for o in self.q.outputs]
        else:
            kind = "event"
            zero_th = pol.reset_every is not None and t > 0 and t % pol.reset_every == 0
            if self.reference or warm:
                values = self._event_reference(x, warm, zero_th, counts)
            else:
                values = self._event_windowed(x, zero_th, counts)
            outs = [self._readout(values, o) for o in self.q.outputs]
            if pol.kind == "rrm":
                n = sum(int(np.prod(self.tensors[gn].shape)) for gn in self.q.gates())
                if self.trunc / n > pol.rrm_bound:
                    self.refresh = True
        self.t += 1
        return FrameResult(t, kind, outs[0], counts, outs)

    def _readout(self, values, name):
        """An output tensor, computed densely from the current accumulators (views of layer values)."""
        if name in values:
            return values[name].copy()
        # output is a view: rebuild it from the layer values it routes
        vals = dict(values)
        for s in self.q.steps:
            if isinstance(s, QView):
                vals[s.name] = view_apply(s, [vals.get(n, self.b.get(n)) for n in s.srcs])
        return vals[name].copy()

    def _count_dense(self, s: QLayer, c: LayerCount, event=False):
        for i, term in enumerate(s.terms):
            dc = self.dense_costs[(s.name, i)]
            if term.is_mac:
                c.dense_macs += dc
                if not event:
                    c.event_macs += dc
            else:
                c.dense_acc_ops += dc
                if not event:
                    c.acc_ops += dc
        if not event:
            n = int(np.prod(s.acc_shape))
            c.acc_u = n
            if s.gated:
                c.gate_u = c.gate_t = int(np.prod(s.out.shape))
            if s.pools:
                c.buffer_reads = c.buffer_writes = n

    def run(self, frames, progress=None):
        """Process a sequence (after a reset). Returns the list of FrameResults."""
        self.reset()
        res = []
        for f in frames:
            res.append(self.step(f))
            if progress is not None:
                progress()
        return res

