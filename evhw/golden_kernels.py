"""Compiled inner loops of the golden model's event path (numba).

Each kernel does what the NumPy code it stands for does, element by element, on int64 (conv products
in float32 only where :class:`ops.ConvWeights` proves every sum exact), so the results are the same
integers. The NumPy event path stays the readable reference (``EventModel(kernels="numpy")``);
tests/test_golden_fastpath.py and tests/test_golden_sparse.py run both against the literal reference
path. The hot inner loops each write one array: a loop that also wrote a second one (values and
their evaluated mask, say) ran several times slower, unvectorized.

Compiled on first use and cached by numba (in ``__pycache__`` beside this file, else numba's
per-user cache; ``NUMBA_CACHE_DIR`` moves it): about 10 s once per machine (docs/benchmarks.md).
"""
from __future__ import annotations

import numba
import numpy as np


def _jit(fn):
    return numba.njit(cache=True, nogil=True, boundscheck=False)(fn)


def _conv_scatter(acc, tmask, buf, pos, reach, ridx, wt, cg, sums, cost):
    """A conv term's accumulator change, scattered from its changed input positions.

    ``buf`` (H*W + 1, C_in) deltas, non-zero only at the rows ``pos``; ``reach[ridx[j]]``: the output
    the position ``pos[j]`` reaches per tap, or -1; ``wt`` (C_in, taps, og) the weights each input channel
    feeds (group ``g = ci // cg`` feeds outputs ``g*og .. g*og + og - 1``), float32 or int64, in which
    every sum is exact (:meth:`ops.ConvWeights.per_input_as`); ``sums`` a scratch of taps * og integers
    that hold them exactly (int32 for float32). Adds ``delta * w`` to ``acc`` (outputs, C_out) and marks
    the reached outputs of each changed group in ``tmask``. Returns the MAC count: ``cost[p]`` per
    non-zero delta at position ``p``."""
    cin, taps, og = wt.shape
    n = taps * og
    wf = wt.reshape(cin, n)
    groups = cin // cg
    row = np.empty(n, wt.dtype)
    macs = 0
    for j in range(pos.shape[0]):
        p = pos[j]
        for g in range(groups):
            row[:] = 0
            hit = False
            for ci in range(g * cg, (g + 1) * cg):      # one position's change times every tap's weights
                dv = wt.dtype.type(buf[p, ci])
                if dv == 0:
                    continue
                hit = True
                macs += cost[p]
                for k in range(n):
                    row[k] += dv * wf[ci, k]
            if not hit:
                continue
            for k in range(n):
                sums[k] = row[k]
            base = g * og
            for t in range(taps):                       # scattered to the outputs the taps reach
                o = reach[ridx[j], t]
                if o < 0:
                    continue
                a = acc[o]
                for k in range(og):
                    a[base + k] += sums[t * og + k]
                tmask[o, base:base + og] = True
    return macs


conv_scatter = _jit(_conv_scatter)


def _gate_rows(b, d, pos, v, ev, h, sigmadelta, buf, nz):
    """A spatial gate at the positions ``pos`` (long-term memory: ``evnet`` or ``sigmadelta``).

    ``b``, ``d`` (H*W, C) gate state; ``v``, ``ev`` (len(pos), C) the new values and the evaluated
    elements; ``h`` (C,) thresholds. Per evaluated element: ``d += v - b``, ``b = v``, then the sent
    change (``d`` past its threshold, or Sigma-Delta's rounded multiple of H) leaves ``d`` and goes to
    ``buf`` (zero on entry). ``nz`` (len(pos), C) gets the sending elements. Returns the evaluated count,
    the sent count, the largest sent magnitude and the number of sending positions, which are moved to
    the front of ``pos`` and ``nz`` (in order). (Each step is its own loop over a row, so it vectorizes.)"""
    c = b.shape[1]
    n_ev = 0
    n_sent = 0
    kept = 0
    big = 0
    dw = np.empty(c, np.int64)
    sent = np.empty(c, np.int64)
    q = np.maximum(h, 1)
    for j in range(pos.shape[0]):
        p = pos[j]
        bp, dp, vj, ej = b[p], d[p], v[j], ev[j]
        for k in range(c):
            dw[k] = dp[k] + vj[k] - bp[k]
        for k in range(c):
            bp[k] = vj[k]
        if sigmadelta:
            for k in range(c):
                n = (abs(dw[k]) + q[k] // 2) // q[k]
                s = n * q[k]
                sent[k] = (s if dw[k] > 0 else -s) if ej[k] else 0
        else:
            for k in range(c):
                sent[k] = dw[k] if ej[k] and abs(dw[k]) > h[k] else 0
        for k in range(c):
            dp[k] = dw[k] - sent[k]
        here = 0
        for k in range(c):
            n_ev += ej[k]
            here += sent[k] != 0
        if here:
            n_sent += here
            bj = buf[p]
            nzj = nz[kept]
            for k in range(c):
                bj[k] = sent[k]
                nzj[k] = sent[k] != 0
                big = max(big, abs(sent[k]))
            pos[kept] = p
            kept += 1
    return n_ev, n_sent, big, kept


gate_rows = _jit(_gate_rows)


def _touched_rows(tmask):
    """The positions (rows but the last of ``tmask``) with a touched element, and the touched count."""
    n = tmask.shape[0] - 1
    rows = np.empty(n, np.int64)
    m = 0
    count = 0
    for p in range(n):
        here = 0
        for k in range(tmask.shape[1]):
            if tmask[p, k]:
                here += 1
        if here:
            rows[m] = p
            m += 1
            count += here
    return rows[:m], count


touched_rows = _jit(_touched_rows)


def _values_at(acc, tmask, rows, bias, mult, half, shift, requant, a_lo, a_hi, leaky, num, lshift, o_lo, o_hi):
    """The value function at the positions ``rows`` of ``acc`` (H*W, C), element by element as
    :func:`golden.value_pre_pool`, and those rows of ``tmask`` (the evaluated elements): two
    (len(rows), C) arrays. The value: ``x = a + bias``; with ``requant``, ``(x * M + half) >> S``, then
    the activation (``leaky``: a negative ``v`` becomes ``(v * num) >> lshift``; otherwise a clamp to
    ``a_lo .. a_hi``), then the clamp to ``o_lo .. o_hi``."""
    c = acc.shape[1]
    n = rows.shape[0]
    v = np.empty((n, c), np.int64)
    ev = np.empty((n, c), np.bool_)
    for j in range(n):
        ap, vj = acc[rows[j]], v[j]
        if not requant:
            for k in range(c):
                vj[k] = ap[k] + bias[k]
        elif leaky:
            for k in range(c):
                x = (ap[k] + bias[k]) * mult[k] + half[k] >> shift[k]
                x = x if x >= 0 else (x * num[k]) >> lshift
                vj[k] = min(max(x, o_lo), o_hi)
        else:
            for k in range(c):
                x = (ap[k] + bias[k]) * mult[k] + half[k] >> shift[k]
                vj[k] = min(max(min(max(x, a_lo), a_hi), o_lo), o_hi)
    for j in range(n):
        ev[j] = tmask[rows[j]]
    return v, ev

values_at = _jit(_values_at)


def _max_pool_rows(pre, tmask, rows, v, reach, gather):
    """A max-pooled layer after its value function ran at ``rows``: stores ``v`` into the pre-pool values
    ``pre`` (H*W + 1, C; last row the smallest int64), then for every pooled output a changed position
    reaches returns its max over the window and whether the window holds a touched element:
    ``(outputs, values, evaluated)``. ``reach``/``gather``: the pool's tap tables (:class:`golden._Geometry`)."""
    c = pre.shape[1]
    n_out = gather.shape[0]
    for j in range(rows.shape[0]):
        pre[rows[j]] = v[j]
    hit = np.zeros(n_out, np.bool_)
    for j in range(rows.shape[0]):
        for t in range(reach.shape[1]):
            o = reach[rows[j], t]
            if o >= 0:
                hit[o] = True
    outs = np.flatnonzero(hit).astype(np.int64)
    pv = np.empty((outs.shape[0], c), np.int64)
    pe = np.zeros((outs.shape[0], c), np.bool_)
    for j in range(outs.shape[0]):
        o = outs[j]
        pj, ej = pv[j], pe[j]
        pj[:] = pre[gather[o, 0]]
        for t in range(gather.shape[1]):
            src = pre[gather[o, t]]
            for k in range(c):
                pj[k] = max(pj[k], src[k])
        for t in range(gather.shape[1]):
            src = tmask[gather[o, t]]
            for k in range(c):
                ej[k] |= src[k]
    return outs, pv, pe

max_pool_rows = _jit(_max_pool_rows)


def _scale_rows(acc, tmask, buf, pos, w, cost):
    """A scale term (a residual input times a per-channel weight) at its changed positions ``pos``:
    ``acc[p] += buf[p] * w``; marks the non-zero deltas in ``tmask``. Returns the operation count,
    ``cost[k]`` per non-zero delta of channel ``k``."""
    c = acc.shape[1]
    ops = 0
    for j in range(pos.shape[0]):
        p = pos[j]
        for k in range(c):
            acc[p, k] += buf[p, k] * w[k]
        for k in range(c):
            if buf[p, k] != 0:
                tmask[p, k] = True
                ops += cost[k]
    return ops


scale_rows = _jit(_scale_rows)


def _finish_layer(acc, tmask, bias, mult, half, shift, requant, a_lo, a_hi, leaky, num, lshift, o_lo, o_hi,
                  pooled, pre, pool_reach, pool_gather, b, d, h, sigmadelta, send, sent_before):
    """A gated layer after its terms reached ``acc`` and marked ``tmask``: the steps of :func:`touched_rows`,
    :func:`values_at`, :func:`max_pool_rows` (if ``pooled``) and :func:`gate_rows` in one call. ``send``
    is the gate's buffer of sent deltas; its rows ``sent_before`` (last frame's) are cleared first. Returns
    ``(touched elements, evaluated, sent, largest |sent|, sending positions, their sending elements)``."""
    rows, acc_u = touched_rows(tmask)
    v, ev = values_at(acc, tmask, rows, bias, mult, half, shift, requant, a_lo, a_hi, leaky, num, lshift,
                      o_lo, o_hi)
    if pooled:
        rows, v, ev = max_pool_rows(pre, tmask, rows, v, pool_reach, pool_gather)
    for j in range(sent_before.shape[0]):
        send[sent_before[j]] = 0
    kept = rows.copy()
    nz = np.empty(v.shape, np.bool_)
    n_ev, n_sent, big, n = gate_rows(b, d, kept, v, ev, h, sigmadelta, send, nz)
    return acc_u, n_ev, n_sent, big, kept[:n], nz[:n]


finish_layer = _jit(_finish_layer)
