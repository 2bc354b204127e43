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


def test_bn_scale_is_recorded(mlp):
    set_thresholds(mlp, 0.001, bn_scale=True)
    assert mlp.bn_scale is True
    set_thresholds(mlp, 0.001)
    assert mlp.bn_scale is False


def test_thresholds_are_int64_and_may_reach_the_span(mlp):
    th = set_thresholds(mlp, 0.0, input_threshold=1.0)          # 1.0 = 255 pixel steps = the input's span
    assert all(v.dtype == np.int64 for v in th.values())
    assert mlp.input.span == 255 and np.all(th["input"] == 255)


def test_too_large_thresholds_name_the_gate(mlp):
    with pytest.raises(ConfigError, match=r"^the input threshold 1\.5 maps to 382 at gate 'input', above"):
        set_thresholds(mlp, 0.0, input_threshold=1.5)
    first = next(s.name for s in mlp.layers() if s.gated)
    with pytest.raises(ConfigError, match=rf"^the threshold 1000 maps to \d+ at gate '{first}', above"):
        set_thresholds(mlp, 1000.0, input_threshold=0.0)


def test_gate_threshold_refuses_bad_scales_and_thresholds():
    from evhw.convert import gate_threshold
    for bad in (np.inf, np.nan, 0.0, -1.0):
        with pytest.raises(ConfigError, match=r"^gate scales must be positive and finite"):
            gate_threshold(0.1, bad)
    with pytest.raises(ConfigError, match=r"^thresholds must be finite and >= 0"):
        gate_threshold(-0.1, 0.5)
