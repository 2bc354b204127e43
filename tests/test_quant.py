"""Dense integer model vs float model (documented tolerance), and clear errors for bad input."""
import numpy as np
import pytest

from evhw.convert import convert, reference_graph, requant_params, set_thresholds
from evhw.errors import (AccumulatorOverflowError, AccumulatorWidthError, ConfigError, ShapeError,
                         UnsupportedOpError)
from evhw.floatmodel import run_float
from evhw.golden import EventModel, Policy, dense_forward, requantize
from evhw.ir import Graph, GraphBuilder, Node
from netgen import random_cnn, random_mlp, random_video

# Per-layer relative RMS error of the dequantized dense integer model vs the float model.
# docs/semantics.md ("Accuracy") states these bounds; measured worst cases are about 3 % and 10 %.
TOLERANCE = {8: 0.05, 6: 0.15}


@pytest.mark.parametrize("bits", [8, 6])
@pytest.mark.parametrize("seed", list(range(8)) + ["mlp"])
def test_dense_integer_matches_float_per_layer(seed, bits):
    g = random_mlp(3) if seed == "mlp" else random_cnn(seed)
    video = random_video(3 if seed == "mlp" else seed, g.input.attrs["shape"], frames=10)
    q = convert(g, video[:5], weight_bits=bits, act_bits=bits)
    ref = run_float(reference_graph(g, q), video[5:].astype(float))
    for s in q.layers():
        bshape = (-1,) + (1,) * (len(s.out.shape) - 1)
        for i, f in enumerate(video[5:]):
            got = dense_forward(q, f)[s.name] * s.out.scale.reshape(bshape)
            want = ref[s.float_node][i]
            rel = np.sqrt(np.mean((got - want) ** 2)) / max(np.sqrt(np.mean(want ** 2)), 1e-9)
            assert rel <= TOLERANCE[bits], f"layer {s.name}: relative RMS error {rel:.3f}"


def test_requantize_rounds_half_up():
    m, s = requant_params(np.array([0.5]))
    assert m[0] / 2.0 ** s[0] == 0.5
    x = np.array([[-3], [-2], [-1], [1], [2], [3]], dtype=np.int64)
    got = requantize(x.T, m, s).ravel()
    assert got.tolist() == [-1, -1, 0, 1, 1, 2]          # x/2 rounded half towards +infinity


def test_input_normalization_is_folded_exactly():
    """--input-mean/--input-std: the float model sees (pixel/255 - mean)/std with zero padding."""
    rng = np.random.default_rng(0)
    b = GraphBuilder((3, 8, 8))
    b.conv("input", rng.normal(0, .3, (4, 3, 3, 3)), rng.normal(0, .1, 4), padding=1)
    g = b.build()
    video = random_video(1, (3, 8, 8), frames=4)
    q = convert(g, video, input_mean=(0.485, 0.456, 0.406), input_std=(0.229, 0.224, 0.225), act_bits=12,
                weight_bits=12)
    ref = reference_graph(g, q)
    want = run_float(ref, video.astype(float))[q.output]
    got = np.stack([dense_forward(q, f)[q.output] for f in video]) * q.layers()[-1].acc_scale.reshape(1, -1, 1, 1)
    # error of integer padding round(255*mean) and 12-bit weights, relative to the output range
    assert np.abs(got - want).max() < 0.01 * np.abs(want).max()


# ---------------------------------------------------------------- bad input: one test each

def test_unsupported_op_names_op_and_node():
    nodes = [Node("input", "input", attrs={"shape": (4,)}), Node("act", "tanh", ["input"])]
    with pytest.raises(UnsupportedOpError, match=r"'tanh'.*'act'"):
        Graph(nodes, "act").infer_shapes()


def test_batchnorm_without_conv_becomes_affine():
    """A standalone BatchNorm is a per-channel affine with its own accumulator (issue 8 item 7)."""
    b = GraphBuilder((2, 4, 4))
    x = b.op("relu", "input")
    b.batchnorm(x, np.array([2.0, 0.5]), np.array([0.1, -0.2]), np.zeros(2), np.ones(2), eps=0.0, name="bn")
    q = convert(b.build(), np.full((1, 2, 4, 4), 200, np.uint8))
    bn = q.layer("bn")
    assert [t.kind for t in bn.terms] == ["scale"] and bn.mult is None      # the readout
    real = dense_forward(q, np.full((2, 4, 4), 51))["bn"] * bn.acc_scale.reshape(-1, 1, 1)
    np.testing.assert_allclose(real[:, 0, 0], [2.0 * 0.2 + 0.1, 0.5 * 0.2 - 0.2], atol=1e-3)


def test_frame_shape_mismatch():
    g = random_cnn(0)
    q = convert(g, random_video(0, (1, 12, 12), frames=2))
    with pytest.raises(ShapeError, match=r"frame shape \(1, 10, 12\) does not match the model input \(1, 12, 12\)"):
        EventModel(q).step(np.zeros((1, 10, 12), np.uint8))
    with pytest.raises(ShapeError, match="0..255"):
        dense_forward(q, np.full((1, 12, 12), 300))


def test_forced_narrow_accumulator_is_refused_with_bound():
    g = random_cnn(0)
    video = random_video(0, (1, 12, 12), frames=2)
    q = convert(g, video)
    need = max(s.acc_bits for s in q.layers())
    with pytest.raises(AccumulatorWidthError, match=r"needs at least \d+ bits \(\|a\| can reach \d+\)"):
        convert(g, video, acc_bits=need - 1)
    wide = convert(g, video, acc_bits=need)
    assert all(s.acc_bits == need for s in wide.layers())


def test_threshold_above_accumulator_headroom_is_refused():
    g = random_mlp(1)
    q = convert(g, random_video(1, (16,), frames=2))
    with pytest.raises(ConfigError, match="above the largest the accumulator bound allows"):
        set_thresholds(q, 1e6)
    with pytest.raises(ConfigError, match="weight bits"):
        convert(g, random_video(1, (16,), frames=2), weight_bits=1)


def test_memory_loss_drift_is_detected_not_wrapped():
    """Skip-Conv's memory loss lets transmitted values drift without bound; evhw reports it."""
    b = GraphBuilder((4,))
    x = b.linear("input", np.ones((2, 4)) * 0.1, None)
    b.op("relu", x)
    q = convert(b.build(), np.array([[0] * 4, [255] * 4], np.uint8))
    set_thresholds(q, 0.0, input_threshold=10 / 255)
    ramp = [np.full(4, v) for _ in range(4) for v in list(range(0, 200, 4)) + [0]]   # slow rise, sudden fall
    ramp = np.array(ramp, np.uint8)
    EventModel(q, Policy("evnet")).run(ramp)                   # long-term memory: bounded
    with pytest.raises(AccumulatorOverflowError, match="drifted past its proven bound"):
        EventModel(q, Policy("skipconv")).run(ramp)


def test_flat_input_normalization_is_per_feature():
    b = GraphBuilder((4,))
    b.linear("input", np.eye(4), None)
    g = b.build()
    x = np.array([[217, 100, 30, 250], [0, 255, 128, 5]], np.uint8)
    q = convert(g, x, input_mean=(0, .25, .5, .75), input_std=1.0, act_bits=12, weight_bits=12)
    want = run_float(reference_graph(g, q), x.astype(float))[q.output]
    got = np.stack([dense_forward(q, f)[q.output] for f in x]) * q.layers()[-1].acc_scale
    np.testing.assert_allclose(got, want, atol=2e-3)
    with pytest.raises(ConfigError, match="need 1 or 4 values"):
        convert(g, x, input_mean=(0.1, 0.2))
