"""Quantizer details the mutation campaign found unpinned: message numbers, the refusal wording of
thresholds and requantization ratios, and set_thresholds' default (no BatchNorm scaling)."""
import numpy as np
import pytest

from evhw.convert import _numbers, requant_params, set_thresholds
from evhw.errors import ConfigError, QuantizationError
from tests.netgen import random_mlp, random_video
from evhw.convert import convert


def test_numbers_are_plain():
    assert _numbers(None) == "none"
    assert _numbers(np.float64(0.5)) == "0.5"
    assert _numbers(np.array([0.1, 0.25])) == "0.1,0.25"
    assert _numbers([[1, 2], [3, 4]]) == "1,2,3,4"
    assert _numbers("abc") == "abc"


@pytest.mark.parametrize("ratio, shown", [(-2.0, "-2"), (0.0, "0"), (np.inf, "inf")])
def test_requant_refusal_names_the_ratio(ratio, shown):
    with pytest.raises(QuantizationError, match=rf"ratio must be positive and finite, not {shown}$"):
        requant_params(np.array([ratio]))


@pytest.fixture(scope="module")
def mlp():
    g = random_mlp(1)
    return convert(g, random_video(1, g.input.attrs["shape"], 3), threshold=0.0)


@pytest.mark.parametrize("kw, what", [({"h": -0.1}, "the threshold"), ({"h": 0.1, "input_threshold": np.nan},
                                                                      "the input threshold")])
def test_threshold_refusal_names_which(mlp, kw, what):
    with pytest.raises(ConfigError, match=rf"^{what} must be finite and >= 0"):
        set_thresholds(mlp, **kw)


def test_default_does_not_scale_by_batchnorm(mlp):
    layer = next(s for s in mlp.layers() if s.gated)
    saved = layer.bn_gamma
    try:
        layer.bn_gamma = np.full(layer.out.channels, 4.0)      # |gamma| = 4 would quadruple every threshold
        plain = set_thresholds(mlp, 0.005)[layer.name].copy()
        scaled = set_thresholds(mlp, 0.005, bn_scale=True)[layer.name]
        assert np.all(scaled >= plain) and np.any(scaled > plain)
        assert np.array_equal(set_thresholds(mlp, 0.005, bn_scale=False)[layer.name], plain)
    finally:
        layer.bn_gamma = saved
