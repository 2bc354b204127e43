"""ONNX and torch.fx frontends: every supported layer type, through both frontends, against PyTorch.

Each model is run three ways on the same raw pixels: PyTorch (float64 copy of the model, fed
``pixels / 255``), :func:`evhw.floatmodel.run_float` on the graph from :func:`load_torch`, and on
the graph from :func:`load_onnx` (exported with the TorchScript exporter, opset 17). With
onnxruntime installed the ONNX file itself is run too (float32, so the looser 1e-5 matters there).
"""
from __future__ import annotations

import copy
import warnings

import numpy as np
import pytest

torch = pytest.importorskip("torch")
onnx = pytest.importorskip("onnx")
try:
    import onnxruntime as ort
except ImportError:   # pragma: no cover - optional: the ONNX graph is still checked against PyTorch
    ort = None

from onnx import TensorProto, helper, numpy_helper  # noqa: E402
from torch import nn  # noqa: E402
from torch.nn import functional as F  # noqa: E402

from evhw.errors import ModelFileError, ShapeError, UnsupportedOpError  # noqa: E402
from evhw.floatmodel import run_float  # noqa: E402
from evhw.frontends.onnx_frontend import load_onnx  # noqa: E402
from evhw.frontends.torch_frontend import load_torch  # noqa: E402

TOL = 1e-5


def pixels(shape, n=3, seed=0):
    return np.random.default_rng(seed).integers(0, 256, (n, *shape))


def export(model, shape, path, *, dynamic=False):
    """Export with the fast offline TorchScript exporter (its deprecation warning is expected)."""
    axes = {"x": {0: "N"}, "y": {0: "N"}} if dynamic else None
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(model, (torch.rand(1, *shape),), str(path), dynamo=False, opset_version=17,
                          input_names=["x"], output_names=["y"], dynamic_axes=axes)
    return path


def ops_of(graph):
    return {n.op for n in graph.nodes}


def first(graph, op):
    return next(n for n in graph.nodes if n.op == op)


def run_ort(path, px):
    """onnxruntime on each frame alone (exports have a fixed batch of 1 unless dynamic)."""
    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    name = sess.get_inputs()[0].name
    return np.concatenate([sess.run(None, {name: (f[None] / 255.0).astype(np.float32)})[0] for f in px])


def check_both(model, shape, tmp_path, *, dynamic=False, use_ort=True):
    """Both frontends' graphs reproduce ``model`` on raw pixels. Returns (torch graph, ONNX graph)."""
    model.eval()
    px = pixels(shape)
    with torch.no_grad():
        ref = copy.deepcopy(model).double()(torch.tensor(px / 255.0)).numpy()

    gt = load_torch(model, input_shape=shape)
    np.testing.assert_allclose(run_float(gt, px)[gt.output], ref, rtol=0, atol=TOL)

    path = export(model, shape, tmp_path / "m.onnx", dynamic=dynamic)
    go = load_onnx(path)
    yo = run_float(go, px)[go.output]
    np.testing.assert_allclose(yo, ref, rtol=0, atol=TOL)
    if ort is not None and use_ort:
        np.testing.assert_allclose(yo, run_ort(path, px), rtol=0, atol=TOL)
    return gt, go


class Residual(nn.Module):
    def __init__(self, c):
        super().__init__()
        self.a, self.b = nn.Conv2d(c, c, 3, padding=1), nn.Conv2d(c, c, 3, padding=1)

    def forward(self, x):
        return torch.relu(x + self.b(F.relu(self.a(x))))


class Concat(nn.Module):
    def __init__(self):
        super().__init__()
        self.a, self.b = nn.Conv2d(3, 4, 3, padding=1), nn.Conv2d(3, 2, 1)

    def forward(self, x):
        return torch.cat([self.a(x), F.relu(self.b(x))], dim=1)


class Functional(nn.Module):
    """The functional / method spellings of the supported layers."""

    def __init__(self):
        super().__init__()
        self.c = nn.Conv2d(3, 4, 3, padding=1)
        self.fc = nn.Linear(4, 3)

    def forward(self, x):
        y = F.max_pool2d(F.relu6(self.c(x)), 2, stride=2)
        y = torch.add(F.avg_pool2d(y, 3, stride=1, padding=1), F.leaky_relu(y, 0.1))
        y = F.interpolate(y, scale_factor=2, mode="nearest")
        y = torch.flatten(F.adaptive_avg_pool2d(y, 1), 1) + y.mean((2, 3))
        return self.fc(y.relu())


class ViewFlatten(nn.Module):
    def __init__(self):
        super().__init__()
        self.c = nn.Conv2d(2, 3, 3, stride=2)
        self.fc = nn.Linear(3 * 3 * 3, 4)

    def forward(self, x):
        y = F.relu(self.c(x))
        return self.fc(y.view(y.size(0), -1))


def bn(c, seed):
    """BatchNorm with non-trivial running statistics and affine parameters."""
    m = nn.BatchNorm2d(c) if seed >= 0 else nn.BatchNorm1d(c)
    g = torch.Generator().manual_seed(abs(seed))
    with torch.no_grad():
        m.running_mean.copy_(torch.randn(c, generator=g) * 0.2)
        m.running_var.copy_(torch.rand(c, generator=g) + 0.5)
        m.weight.copy_(torch.rand(c, generator=g) + 0.5)
        m.bias.copy_(torch.randn(c, generator=g) * 0.1)
    return m


MODELS = {
    # name: (factory, input shape, IR ops that must appear in both graphs)
    "conv_stride_pad": (lambda: nn.Conv2d(3, 8, 3, stride=2, padding=1), (3, 9, 9), {"conv"}),
    "conv_1x3_dilation": (lambda: nn.Sequential(nn.Conv2d(3, 6, (1, 3), padding=(0, 2), dilation=(1, 2)),
                                                nn.Conv2d(6, 4, (3, 1), stride=(2, 1), bias=False)),
                          (3, 7, 8), {"conv"}),
    "conv_groups": (lambda: nn.Conv2d(4, 8, 3, padding=2, dilation=2, groups=2), (4, 6, 6), {"conv"}),
    "depthwise_separable": (lambda: nn.Sequential(nn.Conv2d(4, 4, 3, padding=1, groups=4), nn.ReLU(),
                                                  nn.Conv2d(4, 6, 1)), (4, 6, 6), {"conv", "relu"}),
    "conv_same_even": (lambda: nn.Conv2d(3, 4, (2, 4), padding="same"), (3, 6, 7), {"conv"}),
    "conv_bn_relu": (lambda: nn.Sequential(nn.Conv2d(3, 5, 3), bn(5, 1), nn.ReLU()), (3, 6, 6), {"conv", "relu"}),
    "bn_first": (lambda: nn.Sequential(bn(3, 2), nn.ReLU6()), (3, 4, 5), {"batchnorm", "relu6"}),
    "relu6_leaky": (lambda: nn.Sequential(nn.Conv2d(3, 4, 3), nn.ReLU6(), nn.Conv2d(4, 4, 1),
                                          nn.LeakyReLU(0.1)), (3, 6, 6), {"relu6", "leakyrelu"}),
    "maxpool": (lambda: nn.Sequential(nn.Conv2d(3, 4, 1), nn.MaxPool2d(3, stride=2, padding=1),
                                      nn.MaxPool2d(2, stride=1, dilation=2)), (3, 9, 9), {"maxpool"}),
    "avgpool": (lambda: nn.Sequential(nn.Conv2d(3, 4, 1), nn.AvgPool2d(3, stride=2, padding=1),
                                      nn.AdaptiveAvgPool2d(2), nn.AvgPool2d((1, 2))), (3, 8, 8), {"avgpool"}),
    "gap_linear": (lambda: nn.Sequential(nn.Conv2d(3, 6, 3), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(),
                                         nn.Dropout(0.5), nn.Linear(6, 4)), (3, 6, 6),
                   {"globalavgpool", "flatten", "linear"}),
    "mlp_image": (lambda: nn.Sequential(nn.Flatten(), nn.Linear(64, 16), nn.ReLU(), nn.Identity(), nn.Linear(16, 5)),
                  (1, 8, 8), {"flatten", "linear", "relu"}),
    "mlp_vector_bn": (lambda: nn.Sequential(nn.Linear(12, 8), bn(8, -3), nn.LeakyReLU(0.2), nn.Linear(8, 3)),
                      (12,), {"linear", "leakyrelu"}),
    "residual": (lambda: Residual(3), (3, 5, 5), {"add", "conv"}),
    "concat": (lambda: Concat(), (3, 5, 5), {"concat"}),
    "upsample": (lambda: nn.Sequential(nn.Conv2d(2, 3, 1), nn.Upsample(scale_factor=2),
                                       nn.Upsample(scale_factor=(1, 3), mode="nearest")), (2, 3, 4), {"upsample"}),
    "functional": (lambda: Functional(), (3, 6, 6),
                   {"relu6", "maxpool", "avgpool", "leakyrelu", "add", "upsample", "globalavgpool", "flatten"}),
}


@pytest.mark.filterwarnings("ignore:Using padding='same' with even kernel")
@pytest.mark.parametrize("key", list(MODELS))
def test_layer_matches_torch(key, tmp_path):
    factory, shape, expect = MODELS[key]
    torch.manual_seed(0)
    gt, go = check_both(factory(), shape, tmp_path)
    assert expect <= ops_of(gt), gt.summary()
    assert expect <= ops_of(go), go.summary()


def test_conv_same_dilated(tmp_path):
    """padding='same' with dilation exports as auto_pad=SAME_UPPER, which onnxruntime cannot run
    with dilation; both graphs are still checked against PyTorch."""
    torch.manual_seed(0)
    gt, go = check_both(nn.Conv2d(3, 4, (2, 3), padding="same", dilation=(3, 2)), (3, 7, 6), tmp_path,
                        use_ort=False)
    for g in (gt, go):   # PyTorch puts the odd padding pixel at the end
        assert first(g, "conv").attrs["padding"] == (1, 2, 2, 2)


def test_view_flatten_dynamic_batch(tmp_path):
    """x.view(x.size(0), -1) with a symbolic batch: ONNX gets a Shape/Gather/Concat chain to fold."""
    torch.manual_seed(1)
    gt, go = check_both(ViewFlatten(), (2, 7, 7), tmp_path, dynamic=True)
    assert "flatten" in ops_of(go) and "flatten" in ops_of(gt)
    m = onnx.load(str(tmp_path / "m.onnx"))
    assert "Shape" in {n.op_type for n in m.graph.node}   # the fold path really ran


def test_onnx_names_and_sources(tmp_path):
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(3, 4, 3), nn.ReLU())
    go = load_onnx(export(model, (3, 5, 5), tmp_path / "named.onnx"))
    conv = first(go, "conv")
    assert conv.source == "/0/Conv" and conv.name.isidentifier()
    assert go.name == "named" and go.input.shape == (3, 5, 5)


# ----------------------------------------------------------------------------------------------
# hand-built ONNX graphs: ops and spellings the PyTorch exporter does not produce

def _init(name, arr):
    return numpy_helper.from_array(np.asarray(arr, dtype=np.float32), name)


def _model(nodes, inits, in_shape, out_shape, opset=17, in_dims=None):
    io = [helper.make_tensor_value_info(n, TensorProto.FLOAT, d) for n, d in
          (("x", in_dims or ["N", *in_shape]), ("y", ["N", *out_shape]))]
    g = helper.make_graph(nodes, "hand", io[:1], io[1:], inits)
    # IR version 8: what onnxruntime releases all accept (onnx itself writes the newest).
    return helper.make_model(g, opset_imports=[helper.make_opsetid("", opset)], ir_version=8)


def _check_hand(model, shape, tmp_path):
    path = tmp_path / "hand.onnx"
    onnx.save(model, str(path))
    graph = load_onnx(path)
    px = pixels(shape)
    y = run_float(graph, px)[graph.output]
    if ort is not None:
        np.testing.assert_allclose(y, run_ort(path, px), rtol=0, atol=TOL)
    return graph, y


def test_onnx_hand_built_mlp(tmp_path):
    """MatMul + Add bias, Gemm with transB=0, Clip(0, 6) from Constant inputs, Reshape (0, -1), Dropout."""
    rng = np.random.default_rng(3)
    w1, b1 = rng.normal(size=(12, 6)), rng.normal(size=6)
    w2, b2 = rng.normal(size=(6, 4)), rng.normal(size=(1, 4))
    nodes = [
        helper.make_node("Constant", [], ["shape"], value=numpy_helper.from_array(np.array([0, -1], np.int64))),
        helper.make_node("Reshape", ["x", "shape"], ["flat"], name="flat"),
        helper.make_node("MatMul", ["flat", "w1"], ["mm"], name="mm"),
        helper.make_node("Add", ["b1", "mm"], ["h"], name="bias"),
        helper.make_node("Constant", [], ["lo"], value_float=0.0),
        helper.make_node("Constant", [], ["hi"], value_float=6.0),
        helper.make_node("Clip", ["h", "lo", "hi"], ["r"], name="clip"),
        helper.make_node("Dropout", ["r"], ["d"], name="drop"),
        helper.make_node("Gemm", ["d", "w2", "b2"], ["g"], name="gemm"),
        helper.make_node("Identity", ["g"], ["y"], name="id"),
    ]
    m = _model(nodes, [_init("w1", w1), _init("b1", b1), _init("w2", w2), _init("b2", b2)], (3, 2, 2), (4,))
    graph, y = _check_hand(m, (3, 2, 2), tmp_path)
    assert [n.op for n in graph.nodes] == ["input", "flatten", "linear", "relu6", "linear"]
    x = pixels((3, 2, 2)).reshape(3, -1) / 255.0
    x = x.astype(np.float32).astype(np.float64)
    h = np.clip(x @ w1.astype(np.float32) + b1.astype(np.float32), 0, 6)
    np.testing.assert_allclose(y, h @ w2.astype(np.float32) + b2.astype(np.float32), atol=1e-9)


def test_onnx_hand_built_cnn(tmp_path):
    """Conv SAME_LOWER from a Constant weight, conv bias as a separate Add, Resize by sizes, Concat,
    AveragePool without padding (count_include_pad=0 is fine), Flatten."""
    rng = np.random.default_rng(4)
    w = rng.normal(size=(4, 2, 2, 3))
    cb = rng.normal(size=(1, 4, 1, 1))
    nodes = [
        helper.make_node("Constant", [], ["w"], value=numpy_helper.from_array(w.astype(np.float32))),
        helper.make_node("Conv", ["x", "w"], ["c"], name="conv", auto_pad="SAME_LOWER"),
        helper.make_node("Add", ["c", "cb"], ["cbias"], name="conv_bias"),
        helper.make_node("LeakyRelu", ["cbias"], ["l"], name="leaky", alpha=0.1),
        helper.make_node("Resize", ["l", "", "", "sizes"], ["up"], name="resize", mode="nearest",
                         coordinate_transformation_mode="half_pixel", nearest_mode="round_prefer_ceil"),
        helper.make_node("MaxPool", ["up"], ["mp"], name="mp", kernel_shape=[2, 2], strides=[2, 2]),
        helper.make_node("Concat", ["mp", "l"], ["cat"], name="cat", axis=-3),
        helper.make_node("AveragePool", ["cat"], ["ap"], name="ap", kernel_shape=[2, 2], strides=[1, 1]),
        helper.make_node("Flatten", ["ap"], ["y"], name="flat", axis=1),
    ]
    sizes = numpy_helper.from_array(np.array([1, 4, 10, 12], np.int64), "sizes")
    m = _model(nodes, [_init("cb", cb), sizes], (2, 5, 6), (8 * 4 * 5,))
    graph, _ = _check_hand(m, (2, 5, 6), tmp_path)
    conv = graph.node("conv")
    assert conv.attrs["padding"] == (1, 1, 0, 1) and conv.params["bias"].shape == (4,)
    assert graph.node("resize").attrs["scale"] == (2, 2)


def test_onnx_upsample_opset9(tmp_path):
    nodes = [helper.make_node("Upsample", ["x", "s"], ["y"], name="up", mode="nearest")]
    m = _model(nodes, [_init("s", [1, 1, 2, 3])], (2, 3, 3), (2, 6, 9), opset=9)
    graph, _ = _check_hand(m, (2, 3, 3), tmp_path)
    assert graph.node("up").shape == (2, 6, 9)


# ----------------------------------------------------------------------------------------------
# errors

class WithSigmoid(nn.Module):
    """Tanh is not supported (Sigmoid is, as the last op of an output)."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 3, 1)
        self.gate = nn.Tanh()

    def forward(self, x):
        return self.gate(self.conv(x))


def test_torch_unsupported_module_names_op_and_node():
    with pytest.raises(UnsupportedOpError, match=r"'Tanh'.*'gate'"):
        load_torch(WithSigmoid(), input_shape=(3, 4, 4))


def test_torch_unsupported_function_names_op_and_node():
    class M(nn.Module):
        def forward(self, x):
            return torch.tanh(x)

    with pytest.raises(UnsupportedOpError, match=r"'tanh' at fx node 'tanh'"):
        load_torch(M(), input_shape=(3, 4, 4))


def test_torch_unsupported_settings():
    with pytest.raises(UnsupportedOpError, match="ceil_mode"):
        load_torch(nn.AvgPool2d(2, ceil_mode=True), input_shape=(1, 5, 5))
    with pytest.raises(UnsupportedOpError, match="count_include_pad"):
        load_torch(nn.AvgPool2d(3, padding=1, count_include_pad=False), input_shape=(1, 5, 5))
    with pytest.raises(UnsupportedOpError, match="bilinear"):
        load_torch(nn.Upsample(scale_factor=2, mode="bilinear"), input_shape=(1, 5, 5))
    with pytest.raises(UnsupportedOpError, match="padding_mode"):
        load_torch(nn.Conv2d(1, 1, 3, padding=1, padding_mode="reflect"), input_shape=(1, 5, 5))


def test_onnx_unsupported_op_names_op_and_node(tmp_path):
    nodes = [helper.make_node("Relu", ["x"], ["r"], name="relu1"),
             helper.make_node("Tanh", ["r"], ["y"], name="sig1")]
    path = tmp_path / "sig.onnx"
    onnx.save(_model(nodes, [], (4,), (4,)), str(path))
    with pytest.raises(UnsupportedOpError, match=r"unsupported ONNX op 'Tanh' at node 'sig1'"):
        load_onnx(path)


def test_onnx_unsupported_exported_sigmoid(tmp_path):
    path = export(WithSigmoid().eval(), (3, 4, 4), tmp_path / "sig.onnx")
    with pytest.raises(UnsupportedOpError, match=r"'Tanh' at node '/gate/Tanh'"):
        load_onnx(path)


def test_onnx_unsupported_clip(tmp_path):
    nodes = [helper.make_node("ReduceMax", ["x"], ["hi"], name="max", keepdims=0),
             helper.make_node("Clip", ["x", "lo", "hi"], ["y"], name="clip01")]
    m = _model(nodes, [_init("lo", 0.0)], (4,), (4,))
    with pytest.raises(UnsupportedOpError, match=r"'ReduceMax' at node 'max'"):
        load_onnx(m)


def test_onnx_truncated_file(tmp_path):
    torch.manual_seed(0)
    path = export(nn.Sequential(nn.Conv2d(3, 8, 3), nn.ReLU(), nn.Conv2d(8, 8, 3)), (3, 8, 8), tmp_path / "t.onnx")
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(ModelFileError, match="t.onnx"):
        load_onnx(path)


def test_onnx_missing_and_garbage(tmp_path):
    with pytest.raises(ModelFileError, match="nope.onnx"):
        load_onnx(tmp_path / "nope.onnx")
    bad = tmp_path / "bad.onnx"
    bad.write_bytes(np.random.default_rng(0).bytes(500))
    with pytest.raises(ModelFileError, match="bad.onnx"):
        load_onnx(bad)


def test_onnx_symbolic_spatial_dim_rejected(tmp_path):
    nodes = [helper.make_node("Relu", ["x"], ["y"], name="r")]
    with pytest.raises(ShapeError, match="not fixed"):
        load_onnx(_model(nodes, [], None, (3, 4, 4), in_dims=["N", 3, "H", 4]))


def test_torch_random_bytes_file(tmp_path):
    path = tmp_path / "junk.pt"
    path.write_bytes(np.random.default_rng(1).bytes(1000))
    with pytest.raises(ModelFileError, match="junk.pt"):
        load_torch(path, input_shape=(3, 4, 4))


def test_torch_file_roundtrip_and_state_dict(tmp_path):
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(1, 2, 3), nn.ReLU())
    whole = tmp_path / "whole.pt"
    torch.save(model, whole)
    graph = load_torch(whole, input_shape=(1, 5, 5))
    assert graph.name == "whole" and ops_of(graph) == {"input", "conv", "relu"}
    sd = tmp_path / "sd.pth"
    torch.save(model.state_dict(), sd)
    with pytest.raises(ModelFileError, match="state_dict"):
        load_torch(sd, input_shape=(1, 5, 5))


def test_torch_needs_input_shape():
    with pytest.raises(ShapeError, match="input_shape"):
        load_torch(nn.ReLU())


# ----------------------------------------------------------------------------------------------
# end to end: a frontend graph through the converter and the golden models

def test_convert_onnx_graph_smoke(tmp_path):
    from evhw.convert import convert
    from evhw.golden import EventModel, Policy, dense_forward

    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), bn(8, 5), nn.ReLU(), nn.MaxPool2d(2),
                          nn.Conv2d(8, 8, 3, padding=1), nn.ReLU6(), nn.AdaptiveAvgPool2d(1), nn.Flatten(),
                          nn.Linear(8, 4))
    graph = load_onnx(export(model.eval(), (3, 8, 8), tmp_path / "e2e.onnx"))
    calib = pixels((3, 8, 8), n=16, seed=1)
    q = convert(graph, calib)
    frames = pixels((3, 8, 8), n=3, seed=2)
    fout = run_float(graph, frames)[graph.output]
    scale = q.tensors()[q.output].scale
    em = EventModel(q, Policy("evnet"))
    for k, frame in enumerate(frames):
        out = dense_forward(q, frame)[q.output]
        deq = out * scale
        assert np.max(np.abs(deq - fout[k])) <= 0.1 * np.max(np.abs(fout[k])), (deq, fout[k])
        # zero thresholds: the event model is exact, so it must agree with dense inference
        np.testing.assert_array_equal(em.step(frame).output, out)
