"""Issue 8 item 7 ops: PReLU, LeakyReLU, Clip variants, ceil-mode / padded pooling, constant
Add/Sub/Mul/Div, standalone BatchNorm, Pad, GlobalMaxPool, Identity/Dropout, several outputs and
host ops (Softmax / LogSoftmax / Sigmoid ending an output).

Each model goes through both frontends and is checked three ways against PyTorch (float64) and
onnxruntime; then it is converted and the event model at threshold 0 must equal dense integer
inference bit for bit on every frame and every output. The integer rules of the new activations
are checked against a plain Python (big-integer) reference written from docs/semantics.md.
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
except ImportError:   # pragma: no cover
    ort = None

from torch import nn  # noqa: E402
from torch.nn import functional as F  # noqa: E402

from evhw import evnet_file  # noqa: E402
from evhw.convert import convert, fold_batchnorm, set_thresholds  # noqa: E402
from evhw.errors import UnsupportedOpError  # noqa: E402
from evhw.floatmodel import run_float  # noqa: E402
from evhw.frontends.onnx_frontend import load_onnx  # noqa: E402
from evhw.frontends.torch_frontend import load_torch  # noqa: E402
from evhw.golden import EventModel, Policy, dense_forward, host_outputs, value_pre_pool  # noqa: E402
from evhw.ir import ACTIVATIONS, GraphBuilder  # noqa: E402
from evhw.qnet import QLayer, QTensor  # noqa: E402

TOL = 1e-5


def video(shape, n=8, seed=0):
    """A small random-walk 'video' of raw pixels: most pixels keep, some change by a few levels."""
    rng = np.random.default_rng(seed)
    f = rng.integers(0, 256, shape)
    out = [f.copy()]
    for _ in range(n - 1):
        step = rng.integers(-20, 21, shape) * (rng.random(shape) < 0.3)
        f = np.clip(f + step, 0, 255)
        out.append(f.copy())
    return np.stack(out)


def torch_outputs(model, px):
    with torch.no_grad():
        y = copy.deepcopy(model).double()(torch.tensor(px / 255.0))
    return [t.numpy() for t in (y if isinstance(y, (tuple, list)) else (y,))]


def export(model, shape, path, n_out):
    names = [f"y{i}" for i in range(n_out)]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(model, (torch.rand(1, *shape),), str(path), dynamo=False, opset_version=17,
                          input_names=["x"], output_names=names)
    return path


def run_ort(path, px):
    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    outs = [sess.run(None, {"x": (f[None] / 255.0).astype(np.float32)}) for f in px]
    return [np.concatenate([o[i] for o in outs]) for i in range(len(outs[0]))]


def check_frontends(model, shape, tmp_path):
    """Both frontends reproduce every output of ``model``; returns the two graphs."""
    model.eval()
    px = video(shape, n=3, seed=1)
    ref = torch_outputs(model, px)
    gt = load_torch(model, input_shape=shape)
    assert len(gt.outputs) == len(ref)
    vt = run_float(gt, px)
    for name, r in zip(gt.outputs, ref):
        np.testing.assert_allclose(vt[name], r, rtol=0, atol=TOL)
    path = export(model, shape, tmp_path / "m.onnx", len(ref))
    go = load_onnx(path)
    assert len(go.outputs) == len(ref)
    vo = run_float(go, px)
    for name, r in zip(go.outputs, ref):
        np.testing.assert_allclose(vo[name], r, rtol=0, atol=TOL)
    if ort is not None:
        for name, r in zip(go.outputs, run_ort(path, px)):
            np.testing.assert_allclose(vo[name], r, rtol=0, atol=TOL)
    return gt, go


def check_exact(graph, shape, *, frames=10):
    """Convert; the event model at threshold 0 equals dense integer inference on every frame and output.
    Also the quantized network stays close to the float one (catches a wrong integer rule)."""
    vid = video(shape, n=frames, seed=2)
    # the graph simplification (BatchNorm / affine / pad folding) is exact in float
    simple = fold_batchnorm(graph)
    a, b = run_float(graph, vid[:3]), run_float(simple, vid[:3])
    for o, so in zip(graph.outputs, simple.outputs):
        np.testing.assert_allclose(b[so], a[o], rtol=1e-9, atol=1e-9)
    q = convert(graph, vid[:4])
    set_thresholds(q, 0.0)
    m = EventModel(q, Policy("evnet"))
    fl = run_float(graph, vid)
    events = 0
    for t, f in enumerate(vid):
        r = m.step(f)
        dense = dense_forward(q, f)
        assert len(r.outputs) == len(q.outputs) == len(graph.outputs)
        for name, got in zip(q.outputs, r.outputs):
            np.testing.assert_array_equal(got, dense[name], err_msg=f"frame {t}, output {name}")
        if t:
            events += r.events
        real = host_outputs(q, r.outputs)
        for k, name in enumerate(graph.outputs):
            ref = fl[name][t]
            err = np.linalg.norm(real[k] - ref) / max(np.linalg.norm(ref), 1e-9)
            assert err < 0.15, f"output {name}: quantized differs from float by {err:.3f} (rel-l2)"
    assert events > 0, "the test video must make events"
    # the new fields survive a .evnet round trip bit for bit
    q2, _ = evnet_file.loads(evnet_file.dumps(q, graph))
    for f in vid[:3]:
        a, b = dense_forward(q, f), dense_forward(q2, f)
        for name in q.outputs:
            np.testing.assert_array_equal(a[name], b[name])
    assert q2.outputs == q.outputs and q2.output_ops == q.output_ops
    return q


# ---------------------------------------------------------------------------------------------- models

class Affine(nn.Module):
    """Constant arithmetic, foldable (after a conv) and not (after a ReLU), scalar and per channel."""

    def __init__(self):
        super().__init__()
        self.c1 = nn.Conv2d(3, 4, 3, padding=1)
        self.c2 = nn.Conv2d(4, 4, 3, padding=1)      # padded: the affine cannot fold forward into it
        self.register_buffer("k", torch.tensor([0.5, -1.0, 2.0, 1.5]).reshape(1, 4, 1, 1))

    def forward(self, x):
        x = self.c1(x) * 0.5 - 0.25             # folds into c1
        x = F.relu(x)
        x = (x * self.k + 1.0) / 2.0            # per channel, after a ReLU: an accumulator of its own
        x = 1.0 - x
        return self.c2(x)


class AmaxHead(nn.Module):
    def __init__(self):
        super().__init__()
        self.c = nn.Conv2d(3, 6, 3)
        self.fc = nn.Linear(6, 3)

    def forward(self, x):
        return self.fc(torch.amax(F.relu(self.c(x)), dim=(2, 3)))


class ForwardAffine(nn.Module):
    """Affines that fold forward: normalization on the input before an unpadded (grouped) conv, and a
    per-feature scale before a linear."""

    def __init__(self):
        super().__init__()
        self.c = nn.Conv2d(4, 6, 3, groups=2)
        self.fc = nn.Linear(6 * 4 * 4, 3)
        self.register_buffer("m", torch.tensor([0.4, 0.5, 0.6, 0.7]).reshape(4, 1, 1))

    def forward(self, x):
        x = F.relu(self.c((x - self.m) / 0.25))
        return self.fc(x.flatten(1) * 3.0 - 1.0)


class PadNet(nn.Module):
    def __init__(self):
        super().__init__()
        self.c1 = nn.Conv2d(3, 4, 3)
        self.pad = nn.ZeroPad2d((1, 0, 2, 1))
        self.pool = nn.AvgPool2d(3, stride=2, padding=1)

    def forward(self, x):
        x = self.c1(F.pad(x, (1, 2, 0, 1)))
        return self.pool(self.pad(F.relu(x)))


class Heads(nn.Module):
    """Two outputs like a detector: class scores (softmax over channels) and box regression."""

    def __init__(self, host="softmax"):
        super().__init__()
        self.trunk = nn.Sequential(nn.Conv2d(3, 6, 3), nn.PReLU(6), nn.MaxPool2d(2, 2, ceil_mode=True))
        self.cls = nn.Conv2d(6, 2, 1)
        self.box = nn.Conv2d(6, 4, 1)
        self.host = host

    def forward(self, x):
        x = self.trunk(x)
        c = self.cls(x)
        c = {"softmax": lambda v: F.softmax(v, dim=1), "logsoftmax": lambda v: F.log_softmax(v, dim=1),
             "sigmoid": torch.sigmoid}[self.host](c)
        return c, self.box(x)


class VecHeads(nn.Module):
    """Linear heads on a flattened trunk (R-Net style), three outputs, one without a host op."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 5, 3)
        self.act = nn.PReLU(5)
        self.fc = nn.Linear(5 * 4 * 4, 16)
        self.act2 = nn.PReLU(16)
        self.drop = nn.Dropout(0.3)
        self.a, self.b, self.c = nn.Linear(16, 2), nn.Linear(16, 4), nn.Linear(16, 3)

    def forward(self, x):
        x = nn.functional.max_pool2d(self.act(self.conv(x)), 3, 2, ceil_mode=True)
        x = self.drop(self.act2(self.fc(x.flatten(1))))
        return F.softmax(self.a(x), dim=1), self.b(x), torch.sigmoid(self.c(x))


class FeatureAndHead(nn.Module):
    """An output that other layers also read (a feature map returned beside the head)."""

    def __init__(self):
        super().__init__()
        self.c1, self.c2 = nn.Conv2d(3, 4, 3), nn.Conv2d(4, 2, 3)

    def forward(self, x):
        f = F.relu(self.c1(x))
        return self.c2(f), f


def _bn(c):
    m = nn.BatchNorm2d(c)
    g = torch.Generator().manual_seed(c)
    with torch.no_grad():
        m.running_mean.copy_(torch.randn(c, generator=g) * 0.2)
        m.running_var.copy_(torch.rand(c, generator=g) + 0.5)
        m.weight.copy_(torch.rand(c, generator=g) + 0.5)
        m.bias.copy_(torch.randn(c, generator=g) * 0.1)
    return m


def _slopes(m, values):
    with torch.no_grad():
        m.weight.copy_(torch.tensor(values))
    return m


MODELS = {
    "prelu_per_channel": lambda: (nn.Sequential(nn.Conv2d(3, 4, 3), _slopes(nn.PReLU(4), [0.25, -0.3, 0.0, 1.7]),
                                                nn.Conv2d(4, 3, 3)), (3, 9, 9)),
    "prelu_one_slope": lambda: (nn.Sequential(nn.Conv2d(3, 4, 3), nn.PReLU(), nn.Conv2d(4, 3, 3)), (3, 8, 8)),
    "leakyrelu": lambda: (nn.Sequential(nn.Conv2d(3, 4, 3), nn.LeakyReLU(0.2), nn.Conv2d(4, 2, 3)), (3, 8, 8)),
    "hardtanh": lambda: (nn.Sequential(nn.Conv2d(3, 4, 3), nn.Hardtanh(-0.5, 0.5), nn.Conv2d(4, 2, 3)), (3, 8, 8)),
    "relu6": lambda: (nn.Sequential(nn.Conv2d(3, 4, 3), nn.ReLU6(), nn.Conv2d(4, 2, 3)), (3, 8, 8)),
    "maxpool_ceil_pad": lambda: (nn.Sequential(nn.Conv2d(3, 4, 3), nn.ReLU(),
                                               nn.MaxPool2d(3, 2, padding=1, ceil_mode=True),
                                               nn.Conv2d(4, 2, 1)), (3, 10, 10)),
    "maxpool_ceil_odd": lambda: (nn.Sequential(nn.Conv2d(3, 4, 3), nn.PReLU(4), nn.MaxPool2d(2, 2, ceil_mode=True),
                                               nn.Conv2d(4, 2, 3)), (3, 11, 9)),
    "avgpool_pad": lambda: (nn.Sequential(nn.Conv2d(3, 4, 3), nn.ReLU(), nn.AvgPool2d(3, 2, padding=1),
                                          nn.Conv2d(4, 2, 1)), (3, 9, 9)),
    "affine": lambda: (Affine(), (3, 8, 8)),
    "affine_forward": lambda: (ForwardAffine(), (4, 6, 6)),
    "standalone_bn": lambda: (nn.Sequential(nn.Conv2d(3, 4, 3), nn.ReLU(), _bn(4), nn.Conv2d(4, 2, 3)), (3, 8, 8)),
    "pad": lambda: (PadNet(), (3, 8, 8)),
    "globalmaxpool": lambda: (nn.Sequential(nn.Conv2d(3, 6, 3), nn.ReLU(), nn.AdaptiveMaxPool2d(1), nn.Flatten(),
                                            nn.Linear(6, 3)), (3, 8, 8)),
    "globalmax_amax": lambda: (AmaxHead(), (3, 8, 8)),
    "identity_dropout": lambda: (nn.Sequential(nn.Conv2d(3, 4, 3), nn.Identity(), nn.Dropout2d(0.5), nn.ReLU(),
                                               nn.Dropout(0.2), nn.Conv2d(4, 2, 3)), (3, 8, 8)),
    "heads_softmax": lambda: (Heads("softmax"), (3, 11, 11)),
    "heads_logsoftmax": lambda: (Heads("logsoftmax"), (3, 10, 10)),
    "heads_sigmoid": lambda: (Heads("sigmoid"), (3, 10, 10)),
    "vector_heads": lambda: (VecHeads(), (3, 10, 10)),
    "output_also_read": lambda: (FeatureAndHead(), (3, 9, 9)),
}


@pytest.mark.parametrize("key", sorted(MODELS))
def test_frontends_and_golden_exactness(key, tmp_path):
    torch.manual_seed(sum(map(ord, key)))      # a fixed seed per model (not hash(): stable across runs)
    model, shape = MODELS[key]()
    gt, go = check_frontends(model, shape, tmp_path)
    q = check_exact(gt, shape)
    check_exact(go, shape)
    if key.startswith("prelu") or key == "maxpool_ceil_odd":
        assert any(s.act == "prelu" for s in q.layers())
    if key == "hardtanh":
        assert any(s.act == "clip" and s.act_lo is not None and s.act_lo < 0 for s in q.layers())
    if key.startswith("heads") or key == "vector_heads":
        assert len(q.outputs) == (3 if key == "vector_heads" else 2) and q.output_ops[0] is not None


def test_ops_reach_the_ir():
    """The frontends emit the new IR ops (not some equivalent rewrite that would hide a gap)."""
    cases = {"prelu_per_channel": "prelu", "hardtanh": "clip", "affine": "affine", "standalone_bn": "batchnorm",
             "pad": "pad", "globalmaxpool": "globalmaxpool", "heads_softmax": "softmax",
             "heads_sigmoid": "sigmoid", "heads_logsoftmax": "logsoftmax"}
    for key, op in cases.items():
        model, shape = MODELS[key]()
        g = load_torch(model.eval(), input_shape=shape)
        assert op in {n.op for n in g.nodes}, key
    # x * k + 1, / 2, 1 - x after a ReLU: four affines in a row compose into one accumulator
    torch.manual_seed(0)
    model, shape = MODELS["affine"]()
    q = convert(load_torch(model.eval(), input_shape=shape), video(shape, n=2))
    assert sum(t.kind == "scale" for s in q.layers() for t in s.terms) == 1
    model, shape = MODELS["affine_forward"]()
    q = convert(load_torch(model.eval(), input_shape=shape), video(shape, n=2))
    assert [t.kind for s in q.layers() for t in s.terms] == ["conv", "linear"]       # both folded forward
    g = load_torch(MODELS["maxpool_ceil_odd"]()[0].eval(), input_shape=(3, 11, 9))
    assert any(n.attrs.get("ceil_mode") for n in g.nodes if n.op == "maxpool")


# ---------------------------------------------------------------------------------------------- integer rules

def _layer(act, *, num=None, shift=None, lo_act=None, hi_act=None, mult=(23170, 19000), sh=(15, 14)):
    c = len(mult)
    return QLayer(name="L", terms=[], acc_shape=(c, 5), acc_bits=32, acc_bound=1 << 30, acc_scale=np.ones(c),
                  bias=np.array([3, -7]), mult=np.array(mult), shift=np.array(sh), act=act, act_hi=hi_act,
                  leaky_num=num, leaky_shift=shift, pools=[], out=QTensor("L", (c, 5), np.ones(c), -128, 127),
                  gated=True, bn_gamma=None, float_node="L", act_lo=lo_act)


def _ref_value(x, c, L):
    """The value function of docs/semantics.md in Python integers (floor = //)."""
    m, s = int(L.mult[c]), int(L.shift[c])
    v = ((x + int(L.bias[c])) * m + (1 << (s - 1))) // (1 << s)
    if L.act == "prelu" and v < 0:
        v = (v * int(L.leaky_num[c])) // (1 << L.leaky_shift)
    if L.act == "clip":
        v = max(v, L.act_lo) if L.act_lo is not None else v
        v = min(v, L.act_hi) if L.act_hi is not None else v
    return min(max(v, L.out.lo), L.out.hi)


@pytest.mark.parametrize("layer", [
    _layer("prelu", num=np.array([256, -307]), shift=10),
    _layer("prelu", num=np.array([1741, 0]), shift=10),
    _layer("clip", lo_act=-40, hi_act=90),
    _layer("clip", lo_act=None, hi_act=5),
    _layer("clip", lo_act=-3, hi_act=None),
])
def test_activation_integer_rule_against_python_reference(layer):
    rng = np.random.default_rng(7)
    acc = rng.integers(-40000, 40000, (2, 5))
    acc[0, :3] = [-1, -2, -3]
    got = value_pre_pool(layer, acc)
    ref = np.array([[_ref_value(int(acc[c, i]), c, layer) for i in range(5)] for c in range(2)])
    np.testing.assert_array_equal(got, ref)


def test_prelu_rounds_down_by_hand():
    """v = -3 with slope 0.5 (num 512 / 2**10): -1.5 rounds down to -2; slope -0.3 (num -307): 0.899 -> 0."""
    L = _layer("prelu", num=np.array([512, -307]), shift=10, mult=(1 << 14, 1 << 14), sh=(14, 14))
    L.bias = np.array([0, 0])
    got = value_pre_pool(L, np.array([[-3, 3, -1, 0, -200], [-3, 3, -1, 0, -200]]))
    np.testing.assert_array_equal(got, [[-2, 3, -1, 0, -100], [0, 3, 0, 0, 59]])


def test_activation_names_have_one_owner():
    assert set(ACTIVATIONS) == {"none", "relu", "relu6", "leaky", "prelu", "clip"}


# ---------------------------------------------------------------------------------------------- refusals

def test_host_op_must_end_an_output():
    class M(nn.Module):
        def __init__(self):
            super().__init__()
            self.c = nn.Conv2d(3, 2, 1)

        def forward(self, x):
            return self.c(torch.softmax(x, dim=1))

    with pytest.raises(UnsupportedOpError, match="softmax.*last op of a network output"):
        load_torch(M(), input_shape=(3, 4, 4))


def test_softmax_over_space_refused():
    class M(nn.Module):
        def forward(self, x):
            return torch.softmax(x, dim=3)

    with pytest.raises(UnsupportedOpError, match=r"dim=3 \(only the channel"):
        load_torch(M(), input_shape=(3, 4, 4))


def test_negative_slope_before_pool_refused():
    b = GraphBuilder((2, 4, 4))
    x = b.op("maxpool", "input", kernel=2)
    x = b.prelu(x, [0.5, -0.5])
    g = b.build()
    with pytest.raises(UnsupportedOpError, match="negative slope"):
        convert(g, video((2, 4, 4), n=2))


def test_hardware_plan_refuses_new_ops_and_outputs():
    from rtl_gen.errors import UnsupportedHardwareError
    from rtl_gen.plan import HwPlan

    torch.manual_seed(0)
    model, shape = MODELS["heads_softmax"]()
    q = convert(load_torch(model.eval(), input_shape=shape), video(shape, n=2))
    with pytest.raises(UnsupportedHardwareError, match="2 network outputs"):
        HwPlan.from_qnet(q, pes=1)
    model, shape = MODELS["prelu_per_channel"]()
    q = convert(load_torch(model.eval(), input_shape=shape), video(shape, n=2))
    with pytest.raises(UnsupportedHardwareError, match="activation 'prelu'"):
        HwPlan.from_qnet(q, pes=1)


# ---------------------------------------------------------------------------------------------- .evnet versions

def _strip_v2_fields(obj):
    """Remove the fields format version 2 added, as a version-1 writer would have left them out."""
    if isinstance(obj, dict):
        if obj.get("$type") in ("QNet", "Graph", "QLayer"):
            for k in ("extra_outputs", "output_ops", "act_lo"):
                obj["fields"].pop(k, None)
        for v in obj.values():
            _strip_v2_fields(v)
    elif isinstance(obj, list):
        for v in obj:
            _strip_v2_fields(v)
    return obj


def _rewrite(data, version, edit):
    import hashlib
    import io
    import json
    import struct
    import zipfile

    src = zipfile.ZipFile(io.BytesIO(data[evnet_file.HEADER_SIZE:]))
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        for name in src.namelist():
            body = src.read(name)
            if name == "header.json":
                h = edit(json.loads(body))
                h["version"] = version
                body = json.dumps(h).encode()
            z.writestr(name, body)
    p = buf.getvalue()
    return struct.pack("<8sIQ32s", evnet_file.MAGIC, version, len(p), hashlib.sha256(p).digest()) + p


def test_version1_file_still_loads():
    torch.manual_seed(3)
    model, shape = MODELS["leakyrelu"]()
    g = load_torch(model.eval(), input_shape=shape)
    q = convert(g, video(shape, n=3))
    data = evnet_file.dumps(q, g)
    q1, g1 = evnet_file.loads(_rewrite(data, 1, _strip_v2_fields))
    assert q1.extra_outputs == [] and q1.output_ops == [] and g1.extra_outputs == []
    assert all(s.act_lo is None for s in q1.layers())
    for f in video(shape, n=3):
        np.testing.assert_array_equal(dense_forward(q1, f)[q1.output], dense_forward(q, f)[q.output])
    # a version-2 file must carry every field
    with pytest.raises(evnet_file.ModelFileError, match="lacks field"):
        evnet_file.loads(_rewrite(data, 2, _strip_v2_fields))


# ---------------------------------------------------------------------------------------------- counters

def test_counters_with_prelu_ceil_pool_and_affine():
    """Hand-derived counts: conv 2x2 (1->2) on 5x5, PReLU, max-pool 3/2 ceil (4x4 -> 2x2), affine, linear."""
    rng = np.random.default_rng(5)
    b = GraphBuilder((1, 5, 5))
    x = b.conv("input", rng.normal(size=(2, 1, 2, 2)), rng.normal(size=2), name="conv")
    x = b.prelu(x, [0.25, 0.5], name="act")
    x = b.op("maxpool", x, kernel=3, stride=2, ceil_mode=True, name="pool")
    x = b.affine(x, [2.0, -1.0], [0.5, 0.0], name="aff")
    x = b.op("flatten", x, name="flat")
    b.linear(x, rng.normal(size=(3, 8)), name="fc")
    g = b.build()
    assert g.node("pool").shape == (2, 2, 2)        # floor mode would give 1x1
    f0 = np.full((1, 5, 5), 100)
    q = convert(g, np.stack([f0, f0 + 50]))
    set_thresholds(q, 0.0)
    m = EventModel(q, Policy("evnet"))
    r0 = m.step(f0)
    assert r0.layers["conv"].dense_macs == 2 * 4 * 4 * 4 and r0.layers["fc"].dense_macs == 3 * 8
    assert r0.layers["aff"].dense_acc_ops == 8          # the affine multiplies each element once (overhead)
    f1 = f0.copy()
    f1[0, 4, 4] = 250                                   # read by conv output (3, 3) only
    r1 = m.step(f1)
    c = r1.layers["conv"]
    assert c.event_macs == 2 and c.acc_u == 2
    # pool windows (rows/cols 0-2, 2-4 with the ceil-mode end padding): (3, 3) lies in window (1, 1) only
    assert c.gate_u == 2
    assert r1.layers["input"].gate_t == 1


def _onnx_model(nodes, inits, in_shape, out_shape):
    from onnx import TensorProto, helper
    io = [helper.make_tensor_value_info(n, TensorProto.FLOAT, d) for n, d in
          (("x", ["N", *in_shape]), ("y", ["N", *out_shape]))]
    g = helper.make_graph(nodes, "hand", io[:1], io[1:], inits)
    return helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)], ir_version=8)


def _init(name, arr, dtype=np.float32):
    from onnx import numpy_helper
    return numpy_helper.from_array(np.asarray(arr, dtype=dtype), name)


@pytest.mark.parametrize("nodes, inits, match", [
    ([("PRelu", ["x", "x"], {})], [], r"'PRelu' at node 'op'.*slope 'x' is not a constant"),
    ([("Pad", ["x", "p"], {"mode": "reflect"})], [("p", [0, 0, 1, 1, 0, 0, 1, 1], np.int64)],
     r"'Pad' at node 'op': mode='reflect'"),
    ([("Pad", ["x", "p", "v"], {})], [("p", [0, 0, 1, 1, 0, 0, 1, 1], np.int64), ("v", 1.0, np.float32)],
     r"'Pad' at node 'op': constant value 1.0"),
    ([("Pad", ["x", "p"], {})], [("p", [0, 1, 0, 0, 0, 0, 0, 0], np.int64)], r"only padding H and W"),
    ([("Clip", ["x", "lo", "hi"], {})], [("lo", 2.0, np.float32), ("hi", 1.0, np.float32)], r"needs min < max"),
    ([("Div", ["x", "z"], {})], [("z", [0.0], np.float32)], r"division by zero"),
    ([("Mul", ["x", "k"], {})], [("k", np.ones((1, 1, 4, 4)), np.float32)], r"not a scalar or per-channel constant"),
    ([("Softmax", ["x"], {"axis": 3})], [], r"axis=3 \(only the channel axis 1\)"),
])
def test_onnx_new_ops_refusals_name_op_and_node(nodes, inits, match):
    from onnx import helper
    ns = [helper.make_node(op, ins, ["y"], name="op", **attrs) for op, ins, attrs in nodes]
    m = _onnx_model(ns, [_init(n, a, d) for n, a, d in inits], (2, 4, 4), (2, 4, 4))
    with pytest.raises(UnsupportedOpError, match=match):
        load_onnx(m)


def test_pad_must_feed_a_conv_or_avgpool():
    b = GraphBuilder((2, 4, 4))
    x = b.op("pad", "input", pads=(1, 1, 1, 1), name="padme")
    b.op("maxpool", x, kernel=2)
    with pytest.raises(UnsupportedOpError, match="zero padding at node 'padme' must feed exactly one conv"):
        convert(b.build(), video((2, 4, 4), n=2))


def test_facenet_names_without_the_package(monkeypatch, capsys):
    """Without facenet-pytorch, facenet:* fails with one line that says what to install."""
    import importlib.util

    from cliutil import run
    from evhw.frontends import mtcnn

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda n, *a: None if n == "facenet_pytorch" else real(n, *a))
    assert not mtcnn.available()
    code, out, err = run(capsys, "convert", "facenet:rnet", "-o", "unused.evnet")
    assert code == 2 and "pip install --no-deps facenet-pytorch==2.6.0" in err
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err
    code, out, err = run(capsys, "info", "facenet:qnet")
    assert code == 2 and "unknown MTCNN network 'facenet:qnet'" in err


def test_evnet_rejects_unknown_host_op():
    torch.manual_seed(1)
    model, shape = MODELS["heads_sigmoid"]()
    q = convert(load_torch(model.eval(), input_shape=shape), video(shape, n=2))

    def edit(h):
        h["qnet"]["fields"]["output_ops"] = ["gelu", None]
        return h
    with pytest.raises(evnet_file.ModelFileError, match="output_ops.*gelu.*softmax"):
        evnet_file.loads(_rewrite(evnet_file.dumps(q), evnet_file.VERSION, edit))


def test_torch_arithmetic_options_refused():
    class M(nn.Module):
        def __init__(self, fn):
            super().__init__()
            self.fn = fn

        def forward(self, x):
            return self.fn(x)

    for fn, match in ((lambda x: torch.div(x, 2.0, rounding_mode="floor"), "rounding_mode='floor'"),
                      (lambda x: torch.sub(x, 1.0, alpha=2), "alpha=2"),
                      (lambda x: x * x, "mul of two computed tensors")):
        with pytest.raises(UnsupportedOpError, match=match):
            load_torch(M(fn), input_shape=(2, 4, 4))
