"""Bit-exact integer golden model of a converted EvNet: the specification the hardware implements.

* :func:`dense_forward` -- conventional integer inference (every value recomputed every frame).
* :class:`EventModel` -- the event-driven model: input gate, accumulators, value functions and gates
  with the frame barrier, under the ``evnet`` / ``skipconv`` / ``rrm`` / ``dense`` policies, at
  neuron or chunk granularity, with EvNet-paper op counters.

NumPy, vectorized over tensors, int64 throughout (the converter proves the accumulator bound, and
the event model checks it every frame; float products only where a bound proves them exact). The
event frame's inner loops also exist compiled (:mod:`golden_kernels`, numba): same integers, faster.
Semantics: docs/semantics.md.
"""
from __future__ import annotations

import functools
import importlib
import importlib.util
import os
from dataclasses import dataclass, field

import numpy as np

from . import ops
from .errors import AccumulatorOverflowError, ConfigError, ShapeError
from .floatmodel import host_op
from .qnet import QLayer, QNet, QTensor, QView, Term

POLICIES = ("evnet", "skipconv", "rrm", "dense", "sigmadelta")

#: Event-path inner loops: ``numpy`` (the reference), ``numba`` (compiled, :mod:`golden_kernels`),
#: ``auto`` (numba when installed). The default comes from ``EVHW_GOLDEN_KERNELS`` (else ``auto``).
KERNELS = ("auto", "numpy", "numba")


def default_kernels():
    return os.environ.get("EVHW_GOLDEN_KERNELS", "auto")


#: Whether numba is installed (checked without importing it: numba loads only with a compiled model).
NUMBA = importlib.util.find_spec("numba") is not None


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


def _pm(x):
    """A copy of ``x`` held position-major: for a (C, H, W) tensor, a (C, H, W) view of (H*W, C) storage
    (all channels of a position in one contiguous row, which the event path gathers); 1-D: a copy."""
    if x.ndim != 3:
        return x.copy()
    c, h, w = x.shape
    st = np.empty((h * w, c), dtype=x.dtype)
    st[...] = x.reshape(c, h * w).T
    return st.reshape(h, w, c).transpose(2, 0, 1)


_NO_ROWS = np.zeros(0, np.int64)
_NO_TABLE = np.zeros((1, 1), np.int64)        # an unused table argument of a compiled kernel


def _pm_zeros(x):
    """:func:`_pm` of ``np.zeros_like(x)``, without the copy."""
    if x.ndim != 3:
        return np.zeros_like(x)
    c, h, w = x.shape
    return np.zeros((h, w, c), x.dtype).transpose(2, 0, 1)


def _add_rows(st, rows, y):
    """``st[rows] += y`` for distinct ``rows`` (a gather, an add, a scatter)."""
    x = st.take(rows, axis=0)
    x += y
    st[rows] = x


def _rows(x):
    """The (H*W, C) storage of a position-major (C, H, W) view, or None if ``x`` is not held that way."""
    st = x.transpose(1, 2, 0)
    return st.reshape(-1, x.shape[0]) if st.flags.c_contiguous else None


class _Delta:
    """A spatial tensor's transmitted deltas on the event path: ``buf`` (H*W + 1, C), position-major,
    zero except the rows ``pos`` (sorted positions with a non-zero channel); ``nz`` = ``buf[pos] != 0``;
    the last row stays zero (padded taps gather it); ``dmax`` = max |delta|."""

    __slots__ = ("buf", "pos", "nz", "_dmax")

    def __init__(self, buf, pos, nz, dmax=None):
        self.buf, self.pos, self.nz, self._dmax = buf, pos, nz, dmax

    @property
    def dmax(self):
        if self._dmax is None:
            r = self.buf[self.pos]
            self._dmax = max(int(r.max()), -int(r.min())) if r.size else 0
        return self._dmax

    @staticmethod
    def of(d):
        """From a dense (C, H, W) delta tensor."""
        c = d.shape[0]
        buf = np.zeros((d[0].size + 1, c), np.int64)
        buf[:-1] = d.reshape(c, -1).T
        nz = buf[:-1] != 0
        pos = np.flatnonzero(nz.any(axis=1))
        return _Delta(buf, pos, nz[pos])

    def dense(self, shape):
        c, h, w = shape
        return self.buf[:-1].reshape(h, w, c).transpose(2, 0, 1)


def _geometry(in_hw, out_hw, kernel, stride, pads, dilation):
    """A :class:`_Geometry`, shared by every model that has the same window op (its tables are read-only)."""
    return _shared_geometry(in_hw, out_hw, kernel, stride, pads, dilation, _Geometry.TABLE_LIMIT)


@functools.lru_cache(maxsize=256)
def _shared_geometry(in_hw, out_hw, kernel, stride, pads, dilation, table_limit):
    return _Geometry(in_hw, out_hw, kernel, stride, pads, dilation)


class _Geometry:
    """Tap index maps of a window op (conv, sum- or max-pool) from an (H, W) input to an (oh, ow)
    output, on flat positions; taps row by row (the order of :func:`ops._taps`). Tabulated once when
    the tables are small (:data:`TABLE_LIMIT` entries), computed per call otherwise (large global pools)."""

    #: Largest tap table kept (entries; int64): bounds the memory of a global pool over a large map.
    TABLE_LIMIT = 1 << 21

    def __init__(self, in_hw, out_hw, kernel, stride, pads, dilation=(1, 1)):
        (self.h, self.w), (self.oh, self.ow) = in_hw, out_hw
        ky, kx = np.divmod(np.arange(kernel[0] * kernel[1]), kernel[1])
        self.ty, self.tx = ky * dilation[0], kx * dilation[1]
        (self.sh, self.sw), self.pt, self.pl = stride, pads[0], pads[1]
        self.n_in, self.n_out = self.h * self.w, self.oh * self.ow
        small = max(self.n_in, self.n_out) * self.ty.size <= self.TABLE_LIMIT
        self._reach = self._reach_of(np.arange(self.n_in)) if small else None
        self._gather = self._gather_of(np.arange(self.n_out)) if small else None
        for table in (self._reach, self._gather):
            if table is not None:
                table.flags.writeable = False

    def _reach_of(self, pos):
        """Per input position and tap: the output it reaches, or -1 (padding, stride gap, outside)."""
        iy, ix = np.divmod(pos, self.w)
        oy, ry = np.divmod(iy[:, None] + self.pt - self.ty, self.sh)
        ox, rx = np.divmod(ix[:, None] + self.pl - self.tx, self.sw)
        ok = (ry == 0) & (rx == 0) & (oy >= 0) & (ox >= 0) & (oy < self.oh) & (ox < self.ow)
        return np.where(ok, oy * self.ow + ox, -1)

    def _gather_of(self, out):
        """Per output position and tap: the input position read, or H*W for a padded tap."""
        oy, ox = np.divmod(out, self.ow)
        iy, ix = oy[:, None] * self.sh - self.pt + self.ty, ox[:, None] * self.sw - self.pl + self.tx
        ok = (iy >= 0) & (ix >= 0) & (iy < self.h) & (ix < self.w)
        return np.where(ok, iy * self.w + ix, self.n_in)

    def reach(self, pos):
        return self._reach.take(pos, axis=0) if self._reach is not None else self._reach_of(pos)

    def gather(self, out):
        return self._gather.take(out, axis=0) if self._gather is not None else self._gather_of(out)

    def reached(self, pos):
        """The sorted outputs that read at least one of the input positions ``pos``."""
        hit = np.zeros(self.n_out, bool)
        t = self.reach(pos)
        hit[t[t >= 0]] = True
        return np.flatnonzero(hit)

    def reached_by(self, pos, gm):
        """Per output and group, whether it reads a position of ``pos`` whose group changed: ``gm``
        (positions, groups) bool -> (outputs, groups) bool."""
        g = gm.shape[1]
        if self.n_out == 1:                          # a global window
            return gm[(self.reach(pos) >= 0).any(axis=1)].any(axis=0)[None]
        si, gi = np.nonzero(gm)
        t = self.reach(pos[si])
        ok = t >= 0
        flat = (t * g + gi[:, None])[ok]
        return np.bincount(flat, minlength=self.n_out * g).reshape(self.n_out, g) > 0


class StateInvariantError(AssertionError):
    """The event model's state broke an invariant the hardware relies on (:meth:`EventModel.verify_state`):
    a bug in evhw, never a user's input."""


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

    Each event frame works where the frame changed (:meth:`_event_sparse`): terms update the
    accumulators only at the outputs the changed positions reach, value functions and gates run on
    the touched positions only; spatial state (``a``, ``b``, ``d``) is held position-major behind
    (C, H, W) views. ``reference=True`` applies every term to whole delta tensors and evaluates every
    element instead, the literal reading of docs/semantics.md; both give the same values, state and
    counters (an unevaluated element has ``v = b`` and its gate does not change):
    tests/test_golden_fastpath.py and tests/test_golden_sparse.py check it.

    ``kernels`` picks the event frame's inner loops: ``numpy`` (vectorized NumPy, the readable
    reference) or ``numba`` (the same steps compiled, :mod:`golden_kernels`, several times faster);
    ``auto`` (default) takes numba when it is installed. Same integers, state and counters either way:
    the tests above run on both.
    """

    def __init__(self, q: QNet, policy: Policy | None = None, thresholds: dict | None = None, *,
                 reference: bool = False, kernels: str | None = None, check_state: bool = False):
        where = "" if kernels else " (from EVHW_GOLDEN_KERNELS)"
        kernels = kernels or default_kernels()
        if kernels not in KERNELS:
            raise ConfigError(f"golden-model kernels must be one of {', '.join(KERNELS)}, not {kernels!r}{where}")
        if kernels == "numba" and not NUMBA:
            raise ConfigError("golden-model kernels 'numba' need the numba package (pip install numba)")
        self.q = q
        self.reference = reference
        #: check the state invariants the hardware's memories rely on after every frame (:meth:`verify_state`)
        self.check_state = check_state
        self.compiled = kernels != "numpy" and NUMBA
        #: the compiled kernels (module :mod:`golden_kernels`), or None
        self.kernels = importlib.import_module(".golden_kernels", __package__) if self.compiled else None
        self.policy = policy or Policy()
        self.tensors = q.tensors()
        self.costs = mac_reach(q)
        self.dense_costs = {k: int((np.broadcast_to(v, self.tensors[self._term(k).src].shape)).sum())
                            for k, v in self.costs.items()}
        self.chunk_ids = {g: _chunks(self.tensors[g].shape, self.policy.granularity,
                                     self.policy.norm_gate) for g in q.gates()}
        self.chunk_members = {g: _members(ids) for g, ids in self.chunk_ids.items() if ids is not None}
        self.chunk_flat = {g: ids.reshape(-1) for g, ids in self.chunk_ids.items() if ids is not None}
        self._convw, self._geo, self._pool_geo = {}, {}, {}    # per term / layer, prepared on first use
        self._prep = {}                                           # tables prepared on first use (_once)
        self._send_bufs, self._sent_rows = {}, {}                 # per gate: see _send_buffer
        self._planes = {g: int(np.prod(self.tensors[g].shape)) // self.tensors[g].channels for g in q.gates()}
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
        self._h_tiles = {}
        # the largest threshold in force since the sequence started, per gate and channel (verify_state)
        hmax = getattr(self, "_hmax", None)
        self._hmax = {g: np.maximum(hmax[g], h) if hmax else h.copy() for g, h in th.items()}

    def reset(self):
        """Start a new sequence: the next frame is exact (flush, or warm-up from the null state)."""
        self.t = 0
        self._hmax = {g: h.copy() for g, h in self.thresholds.items()}
        self.a, self.b, self.d = {}, {}, {}
        self.pre = {}     # max-pooled layers: pre-pool values (the hardware's max-pool value buffer)
        self.trunc = 0.0
        self.refresh = False
        if self.policy.init == "warmup":
            self._load_dense(np.zeros(self.q.input.shape, dtype=np.int64))

    # -- helpers
    def _load_dense(self, frame):
        vals, accs = dense_forward(self.q, frame, with_acc=True)
        self.a = {k: _pm(v) for k, v in accs.items()}
        self.pre = {}     # rebuilt from the accumulators when next needed
        for gname in self.q.gates():
            self.b[gname] = _pm(vals[gname])
            self.d[gname] = _pm_zeros(vals[gname])
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
        plane = int(np.prod(t.shape)) // t.channels                      # elements per channel
        if len(t.shape) == 3:       # position-major state: channel-major flat index -> storage index
            b, d = _rows(self._held(self.b, gname)).reshape(-1), _rows(self._held(self.d, gname)).reshape(-1)

            def at(i):
                return (i % plane) * t.channels + i // plane
        else:
            b, d = self.b[gname].reshape(-1), self.d[gname].reshape(-1)  # views of the gate state

            def at(i):
                return i
        pi = at(idx)
        dv = d[pi] + (vi - b[pi])
        d[pi] = dv
        b[pi] = vi
        h = np.zeros(t.channels, np.int64) if zero_th else self.thresholds[gname]
        sent = np.zeros(t.shape, np.int64)
        sf = sent.reshape(-1)
        counts.gate_u += int(idx.size)
        if pol.kind == "sigmadelta":                  # neuron granularity only (Policy checks)
            q = np.maximum(h[idx // plane], 1)
            n = np.sign(dv) * ((np.abs(dv) + q // 2) // q)
            sf[idx] = n * q
            d[pi] = dv - n * q
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
            dm, hm = np.abs(d[at(mem)]), h[mem // plane]
            if pol.norm_gate:
                over = np.where(ok, dm - hm, 0).sum(axis=1) > 0
            else:
                over = (ok & (dm > hm)).any(axis=1)
            counts.chunks_fired += int(over.sum())
            fired_idx = mem[over][ok[over]]                               # a fired chunk sends every member
            fire = over[np.searchsorted(cand, cid)]
        sf[fired_idx] = d[at(fired_idx)]
        counts.gate_t += int(np.count_nonzero(sf[fired_idx]))
        if pol.memory_loss:
            lost = np.zeros(t.shape, np.int64)
            keep = idx[~fire]
            lost.reshape(-1)[keep] = np.abs(d[at(keep)])
            self.trunc += float((lost * t.scale.reshape(self._bshape(t))).sum())
            d[pi] = 0
        d[at(fired_idx)] = 0
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
            acc, touched = self._accumulate_literal(s, deltas, c)
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

    def _held(self, store, name):
        """``store[name]``, held position-major if it is spatial (re-stored if someone replaced it)."""
        x = store[name]
        if x.ndim == 3 and _rows(x) is None:
            x = store[name] = _pm(x)
        return x

    def _event_sparse(self, x, zero_th, counts):
        """One event frame, same results and counters as :meth:`_event_reference`, with the work following
        the change. Spatial state is held position-major (:func:`_pm`); a spatial tensor's deltas travel
        as a :class:`_Delta` (the positions with a non-zero channel). A conv or sum-pool term computes its
        accumulator change only at the outputs those positions reach (one gather of their input taps and
        one exact product, :class:`ops.ConvWeights`); value functions, max-pool windows and gates run on
        the touched positions only. Elsewhere nothing changes: an unevaluated element has ``v = b`` and its
        gate does not change (docs/semantics.md, "Which elements are evaluated")."""
        ci = counts["input"] = LayerCount()
        deltas, dl = {}, {}
        if x.ndim == 3:
            c = x.shape[0]
            rows = np.ascontiguousarray(x.reshape(c, -1).T)
            deltas["input"], dl["input"] = self._gate_rows("input", np.arange(rows.shape[0]), rows,
                                                           np.ones(rows.shape, bool), zero_th, ci)
        else:
            deltas["input"] = self._gate_at("input", np.arange(x.size), x.reshape(-1), zero_th, ci)
        values = {}
        for s in self.q.steps:
            if isinstance(s, QView):
                deltas[s.name] = view_apply(s, [deltas[n] for n in s.srcs])
                continue
            c = counts[s.name] = LayerCount()
            if len(s.acc_shape) == 1:
                self._layer_flat(s, deltas, zero_th, c, values)
                continue
            if self.compiled and self._fusable(s):
                deltas[s.name], dl[s.name] = self._layer_compiled(s, deltas, dl, zero_th, c)
                values[s.name] = self.b[s.name]
                continue
            acc, tmask = self._accumulate(s, deltas, dl, c)
            if self.compiled:
                touched, acc_u = self.kernels.touched_rows(tmask)
            else:
                touched, acc_u = np.flatnonzero(tmask[:-1].any(axis=1)), int(np.count_nonzero(tmask))
            self._after_accumulate(s, self.a[s.name], c, acc_u)
            if not s.gated:
                values[s.name] = apply_pools(s, value_pre_pool(s, self.a[s.name]))    # a readout: every element
                continue
            r, v, ev = self._values_rows(s, acc, tmask, touched)
            deltas[s.name], dl[s.name] = self._gate_rows(s.name, r, v, ev, zero_th, c)
            values[s.name] = self.b[s.name]                                   # = the layer's values
        return values

    def _accumulate_literal(self, s: QLayer, deltas, c):
        """Apply every term's delta to ``s``'s whole accumulator and count it; returns the
        accumulator and the mask of accumulator elements a non-zero delta reached."""
        acc = self.a[s.name]
        touched = np.zeros(s.acc_shape, bool)
        for i, term in enumerate(s.terms):
            dlt = deltas[term.src]
            active = dlt != 0
            if not active.any():
                continue
            acc += term_delta(term, dlt)
            touched |= term_touched(term, active)
            self._count_term(s, i, c, int(self._full_costs((s.name, i))[active.reshape(-1)].sum()))
        return acc, touched

    def _layer_flat(self, s: QLayer, deltas, zero_th, c, values):
        """A 1-D layer on the event path: whole (small) tensors, gate on the touched elements."""
        acc, touched = self._accumulate_literal(s, deltas, c)
        self._after_accumulate(s, acc, c, int(np.count_nonzero(touched)))
        v = apply_pools(s, value_pre_pool(s, acc))
        if s.gated:
            idx = np.flatnonzero(touched)
            deltas[s.name] = self._gate_at(s.name, idx, v[idx], zero_th, c)
            v = self.b[s.name]
        values[s.name] = v

    def _accumulate(self, s: QLayer, deltas, dl, c):
        """Apply a spatial layer's terms at the outputs their changed positions reach. Returns the
        accumulator storage (H*W, C) and the touched elements (H*W + 1, C) (last row: False)."""
        co, oh, ow = s.acc_shape
        acc = _rows(self._held(self.a, s.name))
        tmask = np.zeros((oh * ow + 1, co), bool)
        for i, term in enumerate(s.terms):
            src = dl.get(term.src)
            if src is None:                                  # routed through a view: from the dense tensor
                src = dl[term.src] = _Delta.of(deltas[term.src])
            if src.pos.size == 0:
                continue
            if self.compiled and term.kind == "conv":      # the same sums, scattered from the changed inputs
                self._count_term(s, i, c, self._conv_compiled(s, i, src, acc, tmask))
                continue
            self._count_term(s, i, c, self._cost((s.name, i), src))
            if term.kind == "scale":
                _add_rows(acc, src.pos, src.buf.take(src.pos, axis=0) * term.weight)
                tmask[src.pos] |= src.nz
                continue
            geo = self._geometry(s.name, i)
            g = term.attrs["groups"] if term.kind == "conv" else co        # a sum-pool: every channel alone
            if g == 1:
                out = geo.reached(src.pos)
                tmask[out] = True
            else:
                tg = geo.reached_by(src.pos, src.nz.reshape(src.pos.size, g, -1).any(axis=2))
                out = np.flatnonzero(tg.any(axis=1))
                tmask[:-1] |= np.repeat(tg, co // g, axis=1) if co != g else tg
            if out.size == 0:
                continue
            taps = src.buf.take(geo.gather(out), axis=0)     # (outputs, taps, C_in)
            if term.kind == "conv":
                _add_rows(acc, out, self._conv_weights(s.name, i).rows(taps, src.dmax))
            else:
                _add_rows(acc, out, taps.sum(axis=1))
        return acc, tmask

    def _cost(self, key, src: _Delta):
        """Sum of the per-element MAC (or accumulation) costs over the non-zero deltas of ``src``."""
        cw = self.costs[key]
        if cw.shape[1:] == (1, 1):                           # one cost per channel (or one for all)
            n = src.nz.shape[1]
            return int(np.count_nonzero(src.nz, axis=0) @ np.broadcast_to(cw, (n, 1, 1)).reshape(-1))
        return int((cw[0].reshape(-1)[src.pos] @ src.nz).sum())     # one cost plane for every channel

    def _once(self, key, make):
        """``make()``, computed on the first call for ``key`` and kept: this model's prepared tables."""
        got = self._prep.get(key)
        if got is None:
            got = self._prep[key] = make()
        return got

    def _full_costs(self, key):
        """A term's MAC (or accumulation) cost of every input element, flat (the literal path's counter)."""
        shape = self.tensors[self._term(key).src].shape
        return self._once(("full",) + key, lambda: np.ascontiguousarray(np.broadcast_to(self.costs[key], shape)).reshape(-1))

    def _cost_plane(self, key):
        """A conv term's MAC cost per input position (the same for every channel), flat."""
        return self._once(("plane",) + key, lambda: np.ascontiguousarray(self.costs[key][0].reshape(-1), np.int64))

    def _cost_channel(self, key):
        """A scale term's operation cost per channel (one per channel, or one for all), as (C,) int64."""
        cw, c = self.costs[key], self.tensors[self._term(key).src].channels
        assert cw.shape[1:] == (1, 1), cw.shape
        return self._once(("channel",) + key, lambda: np.ascontiguousarray(np.broadcast_to(cw.reshape(-1), (c,)), np.int64))

    def _geometry(self, layer, i):
        key = (layer, i)
        geo = self._geo.get(key)
        if geo is None:
            t = self.q.layer(layer).terms[i]
            a = t.attrs
            kernel = t.weight.shape[2:] if t.kind == "conv" else a["kernel"]
            geo = self._geo[key] = _geometry(tuple(self.tensors[t.src].shape[1:]), tuple(self.q.layer(layer).acc_shape[1:]),
                                             tuple(kernel), tuple(a["stride"]), tuple(a["pads"]),
                                             tuple(a.get("dilation", (1, 1))))
        return geo

    def _conv_weights(self, layer, i):
        w = self._convw.get((layer, i))
        if w is None:
            t = self.q.layer(layer).terms[i]
            w = self._convw[(layer, i)] = ops.ConvWeights(t.weight, groups=t.attrs["groups"])
        return w

    def _fusable(self, s: QLayer):
        """Whether layer ``s`` runs on compiled kernels only (:meth:`_layer_compiled`): a gated layer whose
        terms are convs (tabulated windows) and scales, with at most one max-pool (tabulated), a per-neuron
        gate and a policy without memory loss."""
        # the policy is read on every call: a caller may change ``policy`` between frames
        return not self.policy.memory_loss and self._once(("fusable", s.name), lambda: bool(
            s.gated and len(s.pools) <= 1 and self.chunk_ids[s.name] is None
            and all(t.kind == "scale" or (t.kind == "conv" and self._geometry(s.name, i)._reach is not None)
                    for i, t in enumerate(s.terms))
            and (not s.pools or self._pool_geometry(s)._reach is not None)))

    def _layer_compiled(self, s: QLayer, deltas, dl, zero_th, c: LayerCount):
        """Layer ``s`` on the event path in compiled kernels (:meth:`_fusable`): one per term, then one for
        the value function, max-pool and gate; the same state, deltas and counters as :meth:`_accumulate`,
        :meth:`_values_rows` and :meth:`_gate_rows` in turn."""
        k = self.kernels
        co, oh, ow = s.acc_shape
        acc = _rows(self._held(self.a, s.name))
        tmask = np.zeros((oh * ow + 1, co), bool)
        for i, term in enumerate(s.terms):
            src = dl.get(term.src)
            if src is None:                                  # routed through a view: from the dense tensor
                src = dl[term.src] = _Delta.of(deltas[term.src])
            if term.kind == "scale":
                ops = int(k.scale_rows(acc, tmask, src.buf, src.pos, self._scale_weight(s, i),
                                       self._cost_channel((s.name, i))))
            else:
                ops = self._conv_compiled(s, i, src, acc, tmask)
            self._count_term(s, i, c, ops)
        if s.pools:
            pre, pgeo = self._pre_pool(s), self._pool_geometry(s)
            preach, pgather = pgeo._reach, pgeo._gather
        else:
            pre = preach = pgather = _NO_TABLE
        gname, t = s.name, self.tensors[s.name]
        send = self._send_buffer(gname, clear=False)
        h = np.zeros(t.channels, np.int64) if zero_th else self.thresholds[gname]
        acc_u, n_ev, n_sent, big, kept, nz = k.finish_layer(
            acc, tmask, *self._value_params(s), bool(s.pools), pre, preach, pgather,
            _rows(self._held(self.b, gname)), _rows(self._held(self.d, gname)), h,
            self.policy.kind == "sigmadelta", send, self._sent_rows.pop(gname, _NO_ROWS))
        self._after_accumulate(s, acc, c, int(acc_u))
        c.gate_u += int(n_ev)
        c.gate_t += int(n_sent)
        dlt = _Delta(send, kept, nz, int(big))
        self._sent_rows[gname] = kept
        return dlt.dense(t.shape), dlt

    def _conv_compiled(self, s: QLayer, i, src: _Delta, acc, tmask):
        """Conv term ``i`` of ``s`` applied to the deltas ``src`` by :func:`golden_kernels.conv_scatter`
        (into ``acc``, marking ``tmask``); returns its MAC count."""
        cw, geo = self._conv_weights(s.name, i), self._geometry(s.name, i)
        wt, sums = cw.per_input_as(src.dmax)
        reach, ridx = (geo._reach, src.pos) if geo._reach is not None else (geo.reach(src.pos), np.arange(src.pos.size))
        return int(self.kernels.conv_scatter(acc, tmask, src.buf, src.pos, reach, ridx, wt, cw.shape[1],
                                             np.empty(wt.shape[1] * wt.shape[2], sums), self._cost_plane((s.name, i))))

    def _scale_weight(self, s: QLayer, i):
        """A scale term's per-channel weight as (C,) int64."""
        return self._once(("scale", s.name, i), lambda: np.ascontiguousarray(
            np.broadcast_to(np.asarray(s.terms[i].weight, np.int64).reshape(-1), (s.acc_shape[0],))))

    def _pool_geometry(self, s: QLayer):
        geo = self._pool_geo.get(s.name)
        if geo is None:
            p = s.pools[0]
            geo = self._pool_geo[s.name] = _geometry(tuple(s.acc_shape[1:]), tuple(s.out.shape[1:]), tuple(p["kernel"]),
                                                     tuple(p["stride"]), tuple(p["pads"]), tuple(p["dilation"]))
        return geo

    def _pre_pool(self, s: QLayer):
        """A max-pooled layer's pre-pool values, position-major with a last row of int64 min (padded taps);
        rebuilt from the accumulators after a flush."""
        pre = self.pre.get(s.name)
        if pre is None:
            co = s.acc_shape[0]
            pre = self.pre[s.name] = np.empty((int(np.prod(s.acc_shape[1:])) + 1, co), np.int64)
            pre[:-1] = _rows(_pm(value_pre_pool(s, self.a[s.name])))
            pre[-1] = np.iinfo(np.int64).min
        return pre

    def _values_rows(self, s: QLayer, acc, tmask, touched):
        """A gated spatial layer's values at the positions with an evaluated element: ``(positions, v,
        evaluated)``, rows of (positions, C). A max-pooled layer keeps its pre-pool values (position-major,
        with a last row of int64 min for padded taps)."""
        if touched.size == 0:
            return touched, None, None
        if self.compiled:
            v, ev = self.kernels.values_at(acc, tmask, touched, *self._value_params(s))
            if not s.pools:
                return touched, v, ev
        else:
            v = value_pre_pool(s, acc.take(touched, axis=0).T).T    # the value function, per channel (axis 0)
        if not s.pools:
            return touched, v, tmask.take(touched, axis=0)
        co = s.acc_shape[0]
        fresh = s.name not in self.pre
        pre = self._pre_pool(s)
        if not fresh:
            pre[touched] = v                 # untouched elements hold what they would recompute to
        if len(s.pools) == 1:
            geo = self._pool_geometry(s)
            if self.compiled and geo._reach is not None:
                return self.kernels.max_pool_rows(pre, tmask, touched, v, geo._reach, geo._gather)
            out = geo.reached(touched)
            idx = geo.gather(out)
            return out, pre.take(idx, axis=0).max(axis=1), tmask.take(idx, axis=0).any(axis=1)
        h, w = s.acc_shape[1:]                                    # several pools: the whole tensor
        vfull = apply_pools(s, pre[:-1].reshape(h, w, co).transpose(2, 0, 1))
        evfull = pool_reach(s, tmask[:-1].reshape(h, w, co).transpose(2, 0, 1))
        return np.arange(vfull[0].size), vfull.reshape(co, -1).T, evfull.reshape(co, -1).T

    def _value_params(self, s: QLayer):
        """:func:`value_pre_pool`'s parameters as :func:`golden_kernels.values_at` takes them."""
        return self._once(("value", s.name), lambda: self._make_value_params(s))

    @staticmethod
    def _make_value_params(s: QLayer):
        c = s.acc_shape[0]

        def per(p, default=0):
            return np.ascontiguousarray(np.broadcast_to(np.asarray(default if p is None else p, np.int64), (c,)))
        big = np.iinfo(np.int64)
        requant = s.mult is not None
        shift = per(s.shift)
        half = np.where(shift > 0, np.left_shift(np.int64(1), np.maximum(shift - 1, 0)), 0)
        lo, hi = big.min, big.max                            # "none": no clamp before the output's
        if s.act == "relu":
            lo = 0
        elif s.act == "relu6":
            lo, hi = 0, s.act_hi
        elif s.act == "clip":
            lo = s.act_lo if s.act_lo is not None else s.out.lo
            hi = s.act_hi if s.act_hi is not None else s.out.hi
        elif s.act not in ("none", "leaky", "prelu"):
            raise ConfigError(f"layer {s.name!r}: unknown activation {s.act!r}")
        leaky = s.act in ("leaky", "prelu")
        num, lshift = (per(s.leaky_num), int(s.leaky_shift)) if leaky else (per(0), 0)   # read only if used
        return (per(s.bias), per(s.mult), half, shift, requant, int(lo), int(hi), leaky,
                num, lshift, int(s.out.lo), int(s.out.hi))

    def _gate_rows(self, gname, pos, v, ev, zero_th, counts: LayerCount):
        """:meth:`_gate` at the positions ``pos`` of a spatial gate: new values ``v`` and the evaluated
        mask ``ev``, rows of (positions, C) (``v is None``: nothing evaluated). Returns the transmitted
        deltas, dense (a (C, H, W) view) and as a :class:`_Delta`."""
        t, pol = self.tensors[gname], self.policy
        c = t.channels
        plane = self._planes[gname]
        if v is not None and self.chunk_ids[gname] is not None:
            # chunked gates: a fired chunk sends members that were not evaluated; the gathered form
            ri, ci = np.nonzero(ev)
            idx = ci * plane + pos[ri]
            o = np.argsort(idx, kind="stable")
            sent = self._gate_at(gname, idx[o], v[ri, ci][o], zero_th, counts)
            dl = _Delta.of(sent)
            return dl.dense(t.shape), dl
        buf = self._send_buffer(gname) if self.compiled else np.zeros((plane + 1, c), np.int64)
        if v is None:
            dl = _Delta(buf, pos[:0], np.zeros((0, c), bool), 0)
            return dl.dense(t.shape), dl
        b, d = _rows(self._held(self.b, gname)), _rows(self._held(self.d, gname))
        h = np.zeros(c, np.int64) if zero_th else self.thresholds[gname]
        if self.compiled and not pol.memory_loss:
            kept = np.array(pos, np.int64)           # the kernel moves the sending positions to the front
            nz = np.empty(v.shape, bool)
            n_ev, n_sent, big, n = self.kernels.gate_rows(b, d, kept, v, ev, h, pol.kind == "sigmadelta", buf, nz)
            counts.gate_u += n_ev
            counts.gate_t += n_sent
            dl = _Delta(buf, kept[:n], nz[:n], int(big))
            self._sent_rows[gname] = dl.pos
            return dl.dense(t.shape), dl
        dw = d.take(pos, axis=0)
        dw += v
        dw -= b.take(pos, axis=0)                                 # d += v - b
        b[pos] = v
        counts.gate_u += int(np.count_nonzero(ev))
        n_pos = pos.size
        if pol.kind == "sigmadelta":
            q = np.maximum(h, 1)
            n = np.sign(dw) * ((np.abs(dw) + q // 2) // q)
            n[~ev] = 0
            sent = n * q
            dw -= sent
            nz = n != 0
        else:
            fire = np.abs(dw) > self._h_rows(gname, zero_th)[:n_pos]   # thresholds tiled per position
            fire &= ev
            sent = dw * fire
            if pol.memory_loss:
                lost = np.zeros(t.shape, np.int64)
                lost.reshape(c, -1)[:, pos] = np.where(ev & ~fire, np.abs(dw), 0).T
                self.trunc += float((lost * t.scale.reshape(self._bshape(t))).sum())
                dw *= ~ev
            else:
                dw -= sent
            nz = fire                                             # a fired element has |d| > h >= 0
        d[pos] = dw
        counts.gate_t += int(np.count_nonzero(nz))
        keep = nz.any(axis=1)
        sent = sent[keep]
        buf[pos[keep]] = sent
        dl = _Delta(buf, pos[keep], nz[keep])
        if self.compiled:
            self._sent_rows[gname] = dl.pos                        # cleared when the buffer is next used
        return dl.dense(t.shape), dl

    def _send_buffer(self, gname, clear=True):
        """A gate's (H*W + 1, C) buffer of sent deltas, kept from frame to frame and zero on return (the rows
        the last frame sent are cleared): a frame's deltas live only until the frame ends."""
        buf = self._send_bufs.get(gname)
        if buf is None:
            t = self.tensors[gname]
            buf = self._send_bufs[gname] = np.zeros((self._planes[gname] + 1, t.channels), np.int64)
        if clear:
            buf[self._sent_rows.pop(gname, _NO_ROWS)] = 0
        return buf

    def _h_rows(self, gname, zero_th):
        """A gate's thresholds tiled over its positions, (H*W, C): comparisons without short inner loops."""
        t = self.tensors[gname]
        th = np.zeros(t.channels, np.int64) if zero_th else np.asarray(self.thresholds[gname])
        got = self._h_tiles.get(gname)
        if got is None or not np.array_equal(got[0], th):         # thresholds may be replaced any time
            got = self._h_tiles[gname] = (th.copy(), np.tile(th, (self._planes[gname], 1)))
        return got[1]

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
                values = self._event_sparse(x, zero_th, counts)
            outs = [self._readout(values, o) for o in self.q.outputs]
            if pol.kind == "rrm":
                n = sum(int(np.prod(self.tensors[gn].shape)) for gn in self.q.gates())
                if self.trunc / n > pol.rrm_bound:
                    self.refresh = True
        if self.check_state:
            self.verify_state(x)
        self.t += 1
        return FrameResult(t, kind, outs[0], counts, outs)

    def d_bound(self, gname):
        """The largest ``|d|`` gate ``gname`` can hold at a frame boundary, per channel: 0 under memory loss
        (evaluated elements clear ``d``, the others never had one); ``floor(max(H, 1) / 2)`` under
        sigmadelta (the rounding remainder); else ``H``: an element that did not fire has ``|d| <= H``, a
        fired one (or a fired chunk's member) 0. ``H`` is the largest threshold in force since the
        sequence started, because an element keeps its ``d`` until its input changes."""
        h = self._hmax[gname]
        if self.policy.memory_loss:
            return np.zeros_like(h)
        if self.policy.kind == "sigmadelta":
            return np.maximum(h, 1) // 2
        return h.copy()

    def verify_state(self, frame=None):
        """Check, at a frame boundary, the invariants that let the hardware keep less state than the
        paper's neuron (docs/semantics.md, "State invariants"); raise :class:`StateInvariantError`:

        * ``b = f(a)`` for every gated element (``f``: the value function, then the max-pool): every
          element whose accumulator changed was evaluated this frame, so ``b`` is recomputable from
          ``a``; the input gate's ``b`` is the last frame (``frame``, if given);
        * ``|d| <= d_bound(gate)`` (:meth:`d_bound`): ``d`` needs the bits of the threshold, not of
          the value;
        * a max-pooled layer's pre-pool value buffer holds ``value(a)``;
        * ``r = b - d``, the value the gate has transmitted so far (the sum of its sent changes), lies
          in the gate tensor's value range ``lo..hi`` (every policy but sigmadelta: ``r`` changes only
          when the element fires, to the value it had then), so one value-wide word ``r`` replaces
          both ``b`` and ``d``: the gate sends ``v - r`` when ``|v - r| > H``.
        """
        def fail(what, gname, bad):
            idx = np.argwhere(bad)
            raise StateInvariantError(f"frame {self.t}: gate {gname!r}: {what} at {len(idx)} element(s), "
                                      f"first at {tuple(int(i) for i in idx[0])}")
        for gname in self.q.gates():
            b, d = self.b[gname], self.d[gname]
            if gname == "input":
                want = None if frame is None else np.asarray(frame, np.int64)
            else:
                s = self.q.layer(gname)
                want = apply_pools(s, value_pre_pool(s, self.a[gname]))
            if want is not None and not np.array_equal(b, want):
                fail("b != f(a)", gname, b != want)
            bound = self.d_bound(gname).reshape(self._bshape(self.tensors[gname]))
            if np.any(np.abs(d) > bound):
                fail("|d| above its bound", gname, np.abs(d) > bound)
            if self.policy.kind != "sigmadelta":
                t, r = self.tensors[gname], b - d
                if np.any((r < t.lo) | (r > t.hi)):
                    fail(f"b - d outside the value range {t.lo}..{t.hi}", gname, (r < t.lo) | (r > t.hi))
        for name, pre in self.pre.items():
            s = self.q.layer(name)
            want = _rows(_pm(value_pre_pool(s, self.a[name])))
            if not np.array_equal(pre[:-1], want):
                fail("max-pool value buffer != value(a)", name, pre[:-1] != want)

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

