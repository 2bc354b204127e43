"""Bundled networks, addressable by name on the command line.

The networks here have **seeded random (untrained) weights**: they exercise every part of the
pipeline (conversion, golden model, counters, benchmarks) with realistic shapes, but their outputs
carry no task meaning, so they report no task metric. Trained reference models come with the model
zoo of the "Real workloads" issue.
"""
from __future__ import annotations

import numpy as np

from .errors import EvhwError
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


#: name -> (builder, default video source, one-line description)
MODELS = {
    "rand-cnn64": (rand_cnn64, "synthetic:shapes", "64x64 CNN, 5 conv + residual + pools, random weights"),
    "rand-mlp": (rand_mlp, "synthetic:shapes", "784-200-200-10 MLP, random weights"),
}
DEFAULT_MODEL = "rand-cnn64"


def names():
    return sorted(MODELS)


def build(name) -> Graph:
    if name not in MODELS:
        raise EvhwError(f"unknown bundled model {name!r}; bundled models: {', '.join(names())}")
    return MODELS[name][0]()


def default_video(name) -> str:
    return MODELS[name][1] if name in MODELS else "synthetic:shapes"


def metric(name):
    """Task metric function ``f(outputs, frames) -> float`` of a bundled model, or None."""
    return None
