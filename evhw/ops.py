"""NumPy kernels shared by the float model, the dense integer model and the event model.

All image kernels take batched ``(N, C, H, W)`` arrays. Integer callers pass int64 arrays; the
kernels then compute in float64 and round back, which is exact because the converter proves every
partial sum stays below 2**53 (``evhw.convert`` refuses wider accumulators).
"""
from __future__ import annotations

import functools

import numpy as np

from .ir import window_out


def _pad(x, pads, value):
    pt, pl, pb, pr = pads
    if not any(pads):
        return x
    n, c, h, w = x.shape
    out = np.empty((n, c, h + pt + pb, w + pl + pr), dtype=x.dtype)
    if value is None:
        out[...] = 0
    else:
        out[...] = np.asarray(value, dtype=x.dtype).reshape(1, -1, 1, 1)
    out[:, :, pt:pt + h, pl:pl + w] = x
    return out


def pad_zero(x, pads):
    """Zero padding of a batch ``(N, C, H, W)`` by (top, left, bottom, right)."""
    return _pad(x, tuple(int(p) for p in pads), None)


def _taps(kh, kw, dilation):
    dh, dw = dilation
    for ky in range(kh):
        for kx in range(kw):
            yield ky, kx, ky * dh, kx * dw


def _as_float(x):
    return x.astype(np.float64, copy=False)


def _back(y, like):
    if np.issubdtype(like.dtype, np.integer):
        return np.rint(y).astype(np.int64)
    return y


def conv2d(x, w, *, stride=(1, 1), pads=(0, 0, 0, 0), dilation=(1, 1), groups=1, pad_value=None):
    """Grouped, strided, dilated 2-D convolution (cross-correlation) without bias.

    ``pad_value`` (per input channel) replaces zero padding; used when an input normalization is
    folded into the first layer.
    """
    n, c, h, wd = x.shape
    o, cg, kh, kw = w.shape
    sh, sw = stride
    oh = window_out(h, kh, sh, pads[0], pads[2], dilation[0])
    ow = window_out(wd, kw, sw, pads[1], pads[3], dilation[1])
    xp = _as_float(_pad(x, pads, pad_value))
    wf = _as_float(w).reshape(groups, o // groups, cg, kh, kw)
    out = np.zeros((n, groups, o // groups, oh * ow))
    for ky, kx, oy, ox in _taps(kh, kw, dilation):
        sl = xp[:, :, oy:oy + sh * (oh - 1) + 1:sh, ox:ox + sw * (ow - 1) + 1:sw]
        out += np.matmul(wf[None, :, :, :, ky, kx], sl.reshape(n, groups, cg, oh * ow))
    return _back(out.reshape(n, o, oh, ow), x)


def conv2d_sparse(delta, w, *, stride=(1, 1), pads=(0, 0, 0, 0), dilation=(1, 1), groups=1, out=None):
    """Same result as :func:`conv2d` (zero padding) for one sparse integer frame ``delta`` (C, H, W).

    Scatters only the pixel columns that hold a non-zero delta: cost follows the amount of change.
    One matrix product gives every column's contribution to every tap; each tap then adds its
    contributions to distinct output positions. With ``out`` (int64, the output's shape) the
    result is added into ``out`` in place.
    """
    c, h, wd = delta.shape
    o, cg, kh, kw = w.shape
    og = o // groups
    sh, sw = stride
    pt, pl = pads[0], pads[1]
    oh = window_out(h, kh, sh, pads[0], pads[2], dilation[0])
    ow = window_out(wd, kw, sw, pads[1], pads[3], dilation[1])
    if out is None:
        out = np.zeros((o, oh, ow), dtype=np.int64)
    ys, xs = np.nonzero(np.any(delta != 0, axis=0))
    if ys.size == 0:
        return out
    m = ys.size
    cols = np.ascontiguousarray(_as_float(delta[:, ys, xs]).reshape(groups, cg, m).transpose(0, 2, 1))  # (G, m, cg)
    wm = _as_float(w).reshape(groups, og, cg, kh * kw).transpose(0, 2, 3, 1)          # (G, cg, taps, og)
    contrib = np.matmul(cols, wm.reshape(groups, cg, kh * kw * og)).reshape(groups, m, kh * kw, og)
    contrib = contrib[0] if groups == 1 else contrib.transpose(1, 2, 0, 3).reshape(m, kh * kw, o)
    contrib = _back(contrib, delta)                   # exact integers (see the module docstring)
    for tap, (ky, kx, dy, dx) in enumerate(_taps(kh, kw, dilation)):
        ny, nx = ys + pt - dy, xs + pl - dx           # = output position * stride
        ok = (ny >= 0) & (nx >= 0) & (ny % sh == 0) & (nx % sw == 0)
        oy, ox = ny // sh, nx // sw
        ok &= (oy < oh) & (ox < ow)
        if not ok.any():
            continue
        out[:, oy[ok], ox[ok]] += contrib[ok, tap].T     # distinct targets within one tap
    return out


def reach(active, *, kernel, stride=(1, 1), pads=(0, 0, 0, 0), dilation=(1, 1)):
    """Which outputs of a window op read at least one active input: (..., H, W) bool -> (..., oh, ow)."""
    kh, kw = kernel
    sh, sw = stride
    *lead, h, wd = active.shape
    oh = window_out(h, kh, sh, pads[0], pads[2], dilation[0])
    ow = window_out(wd, kw, sw, pads[1], pads[3], dilation[1])
    a = _pad(active.reshape(1, -1, h, wd), pads, None)
    out = np.zeros((a.shape[1], oh, ow), dtype=bool)
    for ky, kx, oy, ox in _taps(kh, kw, dilation):
        out |= a[0, :, oy:oy + sh * (oh - 1) + 1:sh, ox:ox + sw * (ow - 1) + 1:sw]
    return out.reshape(*lead, oh, ow)


def reach_count(shape_hw, *, kernel, stride=(1, 1), pads=(0, 0, 0, 0), dilation=(1, 1)):
    """For every input position, how many in-bounds outputs of a window op read it (padded taps excluded).
    Read-only: one table per window op, shared by its callers."""
    return _reach_count(tuple(shape_hw), tuple(kernel), tuple(stride), tuple(pads), tuple(dilation))


@functools.lru_cache(maxsize=256)
def _reach_count(shape_hw, kernel, stride, pads, dilation):
    h, wd = shape_hw
    kh, kw = kernel
    sh, sw = stride
    oh = window_out(h, kh, sh, pads[0], pads[2], dilation[0])
    ow = window_out(wd, kw, sw, pads[1], pads[3], dilation[1])
    count = np.zeros((h + pads[0] + pads[2], wd + pads[1] + pads[3]), dtype=np.int64)
    for ky, kx, oy, ox in _taps(kh, kw, dilation):
        count[oy:oy + sh * (oh - 1) + 1:sh, ox:ox + sw * (ow - 1) + 1:sw] += 1
    count = count[pads[0]:pads[0] + h, pads[1]:pads[1] + wd].copy()
    count.flags.writeable = False
    return count


def pool2d(x, *, kernel, stride, pads=(0, 0, 0, 0), dilation=(1, 1), mode="max", pad_value=None):
    """Max or sum pooling per channel. Max pads with ``pad_value`` (default: the dtype's minimum)."""
    n, c, h, wd = x.shape
    kh, kw = kernel
    sh, sw = stride
    oh = window_out(h, kh, sh, pads[0], pads[2], dilation[0])
    ow = window_out(wd, kw, sw, pads[1], pads[3], dilation[1])
    if mode == "max":
        if pad_value is None:
            pad_value = np.iinfo(x.dtype).min if np.issubdtype(x.dtype, np.integer) else -np.inf
        xp = _pad(x, pads, np.full(c, pad_value))
        out = None
        for ky, kx, oy, ox in _taps(kh, kw, dilation):
            sl = xp[:, :, oy:oy + sh * (oh - 1) + 1:sh, ox:ox + sw * (ow - 1) + 1:sw]
            out = sl.copy() if out is None else np.maximum(out, sl)
        return out
    xp = _pad(x, pads, None)
    out = np.zeros((n, c, oh, ow), dtype=x.dtype)
    for ky, kx, oy, ox in _taps(kh, kw, dilation):
        out += xp[:, :, oy:oy + sh * (oh - 1) + 1:sh, ox:ox + sw * (ow - 1) + 1:sw]
    return out


def upsample_nearest(x, factor):
    fh, fw = factor
    return np.repeat(np.repeat(x, fh, axis=-2), fw, axis=-1)


# ----------------------------------------------------------------------------------------------
# exact products of gathered taps (the event path computes a conv only where its input changed)

#: Exactness limits of float products: every integer of magnitude below these is exact in float32 / float64.
EXACT_F32, EXACT_F64 = 2 ** 24, 2 ** 53


class ConvWeights:
    """A conv's integer weights prepared once for :meth:`rows`: exact products of gathered input taps.

    ``rows`` computes in float32 or float64 when the bound ``max_o sum |w_o| * max |x|`` proves every
    partial sum is an exactly representable integer (any summation order, FMA included), and in int64
    otherwise. Same integers either way.
    """

    def __init__(self, w, *, groups=1):
        self.w = np.asarray(w, dtype=np.int64)
        o, cg, kh, kw = self.w.shape
        self.shape, self.groups = (o, cg, kh, kw), groups
        self.l1 = int(np.abs(self.w).reshape(o, -1).sum(axis=1).max()) if o else 0
        og, taps = o // groups, kh * kw
        m = np.zeros((taps, cg * groups, o), dtype=np.int64)      # block-diagonal over the groups
        for g in range(groups):
            m[:, g * cg:(g + 1) * cg, g * og:(g + 1) * og] = \
                self.w[g * og:(g + 1) * og].transpose(2, 3, 1, 0).reshape(taps, cg, og)
        self.mat = m.reshape(taps * cg * groups, o)
        #: (C_in, taps, O // groups): the weights each input channel feeds, for scattering its deltas
        self.per_input = np.ascontiguousarray(
            self.w.reshape(groups, og, cg, taps).transpose(0, 2, 3, 1).reshape(groups * cg, taps, og))
        self._cache = {np.int64: self.mat}

    def dtype_for(self, xmax):
        bound = self.l1 * int(xmax)
        return np.float32 if bound < EXACT_F32 else np.float64 if bound < EXACT_F64 else np.int64

    def per_input_as(self, xmax):
        """:attr:`per_input` for inputs up to ``xmax``: float32 when :meth:`dtype_for` proves float32 sums
        exact, else int64; and the integer type that holds those sums (int32 / int64)."""
        dt = np.float32 if self.dtype_for(xmax) is np.float32 else np.int64
        m = self._cache.get(("per_input", dt))
        if m is None:
            m = self._cache[("per_input", dt)] = self.per_input.astype(dt)
        return m, (np.int32 if dt is np.float32 else np.int64)

    def rows(self, taps, xmax):
        """``taps`` (N, kh*kw, C_in) int64 input taps of N outputs (taps row by row), all of magnitude
        at most ``xmax`` -> (N, O) int64 conv outputs, exact."""
        dt = self.dtype_for(xmax)
        m = self._cache.get(dt)
        if m is None:
            m = self._cache[dt] = self.mat.astype(dt)
        y = taps.reshape(taps.shape[0], -1).astype(dt, copy=False) @ m
        return y.astype(np.int64, copy=False)
