"""Error messages read well: no NumPy reprs, no impossible wording."""
import numpy as np
import pytest

from evhw.convert import convert
from evhw.errors import ConfigError
from evhw.ir import GraphBuilder


def _one_channel():
    b = GraphBuilder((1, 4, 4))
    b.conv("input", np.ones((1, 1, 1, 1)), None)
    return b.build()


@pytest.mark.parametrize("kw, words", [
    (dict(input_mean=(0.1, 0.2)), ["need 1 value,", "0.1,0.2"]),
    (dict(input_std=(0.0,)), ["positive", "0"]),
    (dict(input_std=np.float64(0.0)), ["positive"]),
    (dict(input_mean=np.array([np.nan])), ["finite", "nan"]),
])
def test_normalization_messages(kw, words):
    with pytest.raises(ConfigError) as e:
        convert(_one_channel(), np.zeros((2, 1, 4, 4), np.uint8), **kw)
    msg = str(e.value)
    assert "np." not in msg and "1 or 1" not in msg and "array(" not in msg, msg
    for w in words:
        assert w in msg, msg


@pytest.mark.parametrize("steps", [0, -1])
def test_training_with_no_steps_is_refused_before_writing(tmp_path, steps):
    """`zoo train NAME --steps -1` used to train nothing and write untrained weights (by default over
    the package's own), then crash printing the loss."""
    from evhw.errors import EvhwError
    from evhw.train import train
    out = tmp_path / "w.npz"
    with pytest.raises(EvhwError, match="--steps"):
        train("temporal-digits-mlp", steps=steps, out=out)
    assert not out.exists()
