"""Requantization against Python big-integer arithmetic (docs/semantics.md §2, "requant").

``v = (x*M + 2**(S-1)) >> S`` with ``M in [2**14, 2**15)``: Python ints never overflow and ``>>``
is a floor shift, so the reference is the formula itself. The domain is the one the converter
allows: ``|x| < 2**47`` (accumulators of at most 48 bits), shifts 0..62.
"""
from fractions import Fraction
import math

import numpy as np
import pytest

from evhw.convert import requant_params
from evhw.errors import QuantizationError
from evhw.golden import requantize


def ref(x, m, s):
    return (int(x) * int(m) + ((1 << (s - 1)) if s else 0)) >> s


def _check(x, m, s):
    """x: (C, N) int64; m, s: (C,)."""
    got = requantize(np.asarray(x, np.int64), np.asarray(m, np.int64), np.asarray(s, np.int64))
    want = [[ref(v, m[c], s[c]) for v in row] for c, row in enumerate(x)]
    assert got.tolist() == want


EXTREMES = [0, 1, -1, 2, -2, 3, -3, (1 << 47) - 1, -(1 << 47) + 1, -(1 << 47), (1 << 46), -(1 << 46) - 1,
            12345678901, -12345678901]


@pytest.mark.parametrize("s", [0, 1, 2, 14, 15, 31, 47, 61, 62])
def test_extreme_values_and_shifts(s):
    ms = [1 << 14, (1 << 14) + 1, (1 << 15) - 1, 23170]
    _check([EXTREMES] * len(ms), ms, [s] * len(ms))


def test_random_values_per_channel():
    rng = np.random.default_rng(20261201)
    for _ in range(50):
        c = int(rng.integers(1, 6))
        bits = int(rng.integers(1, 48))
        x = rng.integers(-(1 << (bits - 1)), 1 << (bits - 1), size=(c, 40), dtype=np.int64)
        m = rng.integers(1 << 14, 1 << 15, size=c)
        s = rng.integers(0, 63, size=c)
        _check(x.tolist(), m.tolist(), s.tolist())


def test_exact_halves_round_towards_plus_infinity():
    # M = 2**14, S = 15: v = x / 2 with halves rounded up, negative ones too (-2.5 -> -2, 2.5 -> 3)
    x = [[-5, -3, -1, 1, 3, 5]]
    got = requantize(np.array(x, np.int64), np.array([1 << 14]), np.array([15]))
    assert got.tolist() == [[-2, -1, 0, 1, 2, 3]]


def test_requantize_keeps_the_tensor_shape_per_channel():
    x = np.arange(-12, 12, dtype=np.int64).reshape(2, 3, 4)
    m, s = np.array([1 << 14, 3 << 13]), np.array([14, 16])
    got = requantize(x, m, s)
    assert got.shape == x.shape
    assert got.tolist() == [[[ref(v, m[c], s[c]) for v in row] for row in x[c]] for c in range(2)]


# ---------------------------------------------------------------------------------------- (M, S)

def ref_params(ratio):
    """M = round(ratio * 2**S), S = 14 - floor(log2 ratio), exactly; M = 2**15 becomes (2**14, S - 1)."""
    r = Fraction(ratio)
    e = math.frexp(ratio)[1] - 1                 # ratio = f * 2**(e), f in [1, 2): floor(log2) exactly
    s = 14 - e
    m = round(r * Fraction(2) ** s)              # round half to even, like np.rint (ties are exact here)
    if m == 1 << 15:
        m, s = 1 << 14, s - 1
    return m, s


def test_params_against_exact_reference():
    rng = np.random.default_rng(7)
    ratios = np.concatenate([np.exp2(rng.uniform(-47, 14, 400)), [1.0, 0.5, 2.0 ** -47, 2.0 ** 14, 0.1, 1 / 3]])
    m, s = requant_params(ratios)
    for r, mi, si in zip(ratios, m, s):
        assert (int(mi), int(si)) == ref_params(float(r)), r
        assert 1 << 14 <= mi < 1 << 15 and 0 <= si <= 62
        assert abs(Fraction(int(mi), 1 << int(si)) - Fraction(float(r))) <= Fraction(1, 1 << (int(si) + 1))


@pytest.mark.parametrize("ratio, want", [
    (1 - 2.0 ** -20, (1 << 14, 14)),             # rint(ratio * 2**15) = 2**15: the multiplier overflows
    (0.75 - 2.0 ** -20, (3 << 13, 15)),          # no overflow: 24576 - 2**-5 rounds to 24576
    (2.0 ** -30 * (1 - 2.0 ** -18), (1 << 14, 44)),
])
def test_params_multiplier_overflow_branch(ratio, want):
    m, s = requant_params(np.array([ratio]))
    assert (int(m[0]), int(s[0])) == want
    assert want == ref_params(ratio)


@pytest.mark.parametrize("ratio, msg", [(0.0, "positive and finite"), (-1.0, "positive and finite"),
                                        (np.inf, "positive and finite"), (np.nan, "positive and finite"),
                                        (2.0 ** 15, "out of range"), (2.0 ** 15 - 2.0 ** -20, "out of range"),
                                        (2.0 ** -49, "out of range")])
def test_params_out_of_range_are_refused(ratio, msg):
    with pytest.raises(QuantizationError, match=msg):
        requant_params(np.array([ratio]))


def test_params_range_limits_are_accepted():
    m, s = requant_params(np.array([2.0 ** 14, 2.0 ** -48]))
    assert m.tolist() == [1 << 14, 1 << 14] and s.tolist() == [0, 62]
