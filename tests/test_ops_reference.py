"""The NumPy kernels of evhw.ops against the explicit loops of tests/intref.py, with anisotropic
strides, pads, dilations and kernels (every axis different, so a swapped index shows)."""
import numpy as np
import pytest

from evhw import golden, ops
import intref

# (kernel, stride, pads t/l/b/r, dilation, groups)
GEOMS = [((3, 3), (1, 1), (1, 1, 1, 1), (1, 1), 1),
         ((3, 2), (2, 1), (2, 0, 1, 1), (1, 2), 1),
         ((2, 3), (1, 3), (0, 2, 2, 0), (2, 1), 2),
         ((1, 3), (2, 2), (0, 1, 0, 1), (1, 1), 4),
         ((3, 1), (1, 2), (1, 0, 0, 2), (2, 3), 1),
         ((2, 2), (3, 1), (1, 1, 0, 0), (1, 1), 2)]


def _attrs(stride, pads, dilation, groups):
    return dict(stride=stride, pads=pads, dilation=dilation, groups=groups)


@pytest.mark.parametrize("geom", GEOMS)
def test_conv_dense_and_sparse(geom):
    kernel, stride, pads, dilation, groups = geom
    rng = np.random.default_rng(sum(kernel) * 7 + groups)
    c, o = 4, 4
    w = rng.integers(-127, 128, (o, c // groups, *kernel))
    x = rng.integers(-300, 300, (c, 7, 9))
    want = intref.conv(x, w, _attrs(stride, pads, dilation, groups)).astype(np.int64)
    got = ops.conv2d(x[None], w, stride=stride, pads=pads, dilation=dilation, groups=groups)[0]
    np.testing.assert_array_equal(got, want)
    assert got.dtype == np.int64
    fgot = ops.conv2d(x[None].astype(float), w.astype(float), stride=stride, pads=pads, dilation=dilation,
                      groups=groups)[0]
    np.testing.assert_array_equal(fgot, want.astype(float))           # the float model's path
    # a sparse delta (a few columns) through the scatter kernel
    d = np.zeros_like(x)
    for y, xx in [(0, 0), (6, 8), (3, 4), (0, 8)]:
        d[:, y, xx] = rng.integers(-50, 51, c)
    d[1, 5, 1] = 9
    want = intref.conv(d, w, _attrs(stride, pads, dilation, groups)).astype(np.int64)
    got = ops.conv2d_sparse(d, w, stride=stride, pads=pads, dilation=dilation, groups=groups)
    np.testing.assert_array_equal(got, want)
    empty = ops.conv2d_sparse(np.zeros_like(d), w, stride=stride, pads=pads, dilation=dilation, groups=groups)
    assert empty.shape == want.shape and not empty.any()


def test_conv_pad_value():
    rng = np.random.default_rng(1)
    w = rng.integers(-5, 6, (2, 2, 3, 3))
    x = rng.integers(0, 256, (2, 4, 5))
    a = dict(stride=(1, 1), pads=(1, 2, 0, 1), dilation=(1, 1), groups=1, pad_value=np.array([17, 200]))
    want = intref.conv(x, w, a).astype(np.int64)
    got = ops.conv2d(x[None], w, stride=a["stride"], pads=a["pads"], pad_value=a["pad_value"])[0]
    np.testing.assert_array_equal(got, want)


def _reach_ref(active, kernel, stride, pads, dilation):
    h, w = active.shape[-2:]
    outs = list(intref._window(h, w, kernel, stride, pads, dilation))
    oh, ow = outs[0][2], outs[0][3]
    r = np.zeros(active.shape[:-2] + (oh, ow), bool)
    cnt = np.zeros((h, w), np.int64)
    for oy, ox, _, _, taps in outs:
        for t in taps:
            if t is not None:
                r[..., oy, ox] |= active[..., t[0], t[1]]
                cnt[t] += 1
    return r, cnt


@pytest.mark.parametrize("geom", GEOMS)
def test_reach_and_reach_count(geom):
    kernel, stride, pads, dilation, _ = geom
    rng = np.random.default_rng(3)
    active = rng.random((3, 7, 9)) < 0.15
    want, cnt = _reach_ref(active, kernel, stride, pads, dilation)
    np.testing.assert_array_equal(ops.reach(active, kernel=kernel, stride=stride, pads=pads, dilation=dilation), want)
    np.testing.assert_array_equal(ops.reach_count((7, 9), kernel=kernel, stride=stride, pads=pads, dilation=dilation),
                                  cnt)


@pytest.mark.parametrize("geom", GEOMS)
def test_pools(geom):
    kernel, stride, pads, dilation, _ = geom
    kh, kw = kernel                  # pads of at most half the kernel (no window wholly in the padding)
    pads = (min(pads[0], kh // 2), min(pads[1], kw // 2), min(pads[2], kh // 2), min(pads[3], kw // 2))
    rng = np.random.default_rng(4)
    x = rng.integers(-1000, 1000, (3, 7, 9))
    p = dict(kernel=kernel, stride=stride, pads=pads, dilation=dilation)
    for mode in ("max", "sum"):
        want = intref.pool(x, p, mode).astype(np.int64)
        got = ops.pool2d(x[None], kernel=kernel, stride=stride, pads=pads, dilation=dilation, mode=mode)[0]
        np.testing.assert_array_equal(got, want, err_msg=mode)
        fgot = ops.pool2d(x[None].astype(float), kernel=kernel, stride=stride, pads=pads, dilation=dilation,
                          mode=mode)[0]
        np.testing.assert_array_equal(fgot, want.astype(float), err_msg=mode)


def test_max_pool_pads_with_the_smallest_value():
    x = np.full((1, 1, 2, 2), -(2 ** 40), np.int64)
    out = ops.pool2d(x, kernel=(3, 3), stride=(1, 1), pads=(1, 1, 1, 1), mode="max")
    assert (out == -(2 ** 40)).all()
    out = ops.pool2d(x.astype(float) - 1e300, kernel=(3, 3), stride=(1, 1), pads=(1, 1, 1, 1), mode="max")
    assert (out < -1e299).all()


def test_upsample_nearest_anisotropic():
    x = np.arange(6).reshape(1, 2, 3)
    got = ops.upsample_nearest(x, (2, 3))
    assert got.shape == (1, 4, 9)
    assert got[0, 3].tolist() == [3, 3, 3, 4, 4, 4, 5, 5, 5] and got[0, 1, 4] == 1


def test_pool_reach_follows_every_pool_geometry():
    class L:     # the two fields pool_reach reads
        pools = [dict(kernel=(2, 3), stride=(1, 2), pads=(1, 0, 0, 1), dilation=(2, 1)),
                 dict(kernel=(2, 2), stride=(2, 1), pads=(0, 0, 0, 0), dilation=(1, 1))]
    active = np.random.default_rng(5).random((2, 9, 8)) < 0.1
    want = active
    for p in L.pools:
        want, _ = _reach_ref(want, p["kernel"], p["stride"], p["pads"], p["dilation"])
    np.testing.assert_array_equal(golden.pool_reach(L, active), want)


def test_apply_pools_uses_every_pool_geometry():
    class L:
        pools = [dict(kernel=(2, 3), stride=(1, 2), pads=(1, 0, 0, 1), dilation=(2, 1))]
    v = np.random.default_rng(6).integers(-50, 50, (2, 9, 8))
    np.testing.assert_array_equal(golden.apply_pools(L, v), intref.pool(v, L.pools[0], "max").astype(np.int64))
