"""Random networks and random redundant videos for property tests (seeded, every layer type)."""
from __future__ import annotations

import functools

import numpy as np

from evhw.convert import convert
from evhw.golden import Policy
from evhw.ir import GraphBuilder


def _he(rng, shape):
    fan_in = int(np.prod(shape[1:]))
    return rng.normal(0.0, np.sqrt(2.0 / fan_in), shape)


def _bn(b, rng, x, c):
    return b.batchnorm(x, rng.uniform(0.6, 1.4, c), rng.normal(0, 0.1, c), rng.normal(0, 0.1, c), rng.uniform(0.5, 1.5, c))


def random_cnn(seed, *, size=12, channels=1):
    """A small random CNN; the seed chooses which layer types appear, and all of them appear over 8 seeds.

    It includes what the hardware does not build (dilated and grouped convs, concat, upsample, padded
    max-pools); the hardware tests and ``evhw soak`` draw from :mod:`evhw.flow.netgen` instead.
    """
    rng = np.random.default_rng(seed)
    b = GraphBuilder((channels, size, size), name=f"rand{seed}")
    c = int(rng.choice([4, 6]))
    kind = seed % 4
    # first conv: normal, strided, dilated or asymmetric kernel
    if kind == 0:
        x = b.conv("input", _he(rng, (c, channels, 3, 3)), rng.normal(0, .1, c), padding=1)
    elif kind == 1:
        x = b.conv("input", _he(rng, (c, channels, 3, 3)), rng.normal(0, .1, c), padding=1, stride=2)
    elif kind == 2:
        x = b.conv("input", _he(rng, (c, channels, 3, 3)), rng.normal(0, .1, c), padding=2, dilation=2)
    else:
        x = b.conv("input", _he(rng, (c, channels, 1, 3)), rng.normal(0, .1, c), padding=(0, 1))
    x = _bn(b, rng, x, c)
    x = b.op(["relu", "relu6", "leakyrelu", "relu"][seed % 4], x, **({"alpha": 0.1} if seed % 4 == 2 else {}))
    # depthwise or grouped conv, residual add
    groups = c if seed % 2 else 2
    y = b.conv(x, _he(rng, (c, c // groups, 3, 3)), None, padding=1, groups=groups)
    if seed % 3 == 0:
        y = b.op("leakyrelu", y, alpha=0.125)
    z = b.op("relu", b.op("add", x, y))
    # pooling: max or avg
    if seed % 2 == 0:
        z = b.op("maxpool", z, kernel=2, stride=2)
    else:
        z = b.op("avgpool", z, kernel=2, stride=2)
    # concat with an upsampled branch, or a maxpool with padding
    if seed % 3 != 2:
        u = b.conv(z, _he(rng, (c, c, 1, 1)), rng.normal(0, .1, c))
        u = b.op("relu", u)
        up = b.op("upsample", b.op("maxpool", u, kernel=2, stride=2), scale=2) if z_even(b, z) else u
        z = b.op("concat", z, up)
        cz = 2 * c
    else:
        z = b.op("maxpool", z, kernel=3, stride=1, padding=1)
        cz = c
    if seed % 2 == 0:
        g = b.op("globalavgpool", z)
        f = b.op("flatten", g)
        b.linear(f, _he(rng, (5, cz)), rng.normal(0, .1, 5))
    else:
        w = b.conv(z, _he(rng, (3, cz, 3, 3)), rng.normal(0, .1, 3), padding=1)
    return b.build()


def z_even(b, name):
    shape = b.build(name).node(name).shape          # shapes are known only once built
    return shape[1] % 2 == 0 and shape[2] % 2 == 0


def random_mlp(seed, *, features=16):
    rng = np.random.default_rng(seed)
    b = GraphBuilder((features,), name=f"mlp{seed}")
    x = b.linear("input", _he(rng, (12, features)), rng.normal(0, .1, 12))
    x = b.op("relu", x)
    x = b.linear(x, _he(rng, (8, 12)), rng.normal(0, .1, 8))
    x = _bn(b, rng, x, 8)
    x = b.op("relu", x)
    b.linear(x, _he(rng, (4, 8)), None)
    return b.build()


def random_video(seed, shape, frames=8, *, moving=0.2, step=12):
    """Temporally redundant frames: a static textured scene where a random subset of pixels changes."""
    rng = np.random.default_rng(1000 + seed)
    base = rng.integers(0, 256, size=shape).astype(np.int64)
    out = [base.copy()]
    cur = base.copy()
    for _ in range(frames - 1):
        mask = rng.random(shape) < moving
        cur = np.clip(cur + mask * rng.integers(-step, step + 1, size=shape), 0, 255)
        out.append(cur.copy())
    return np.stack(out).astype(np.uint8)


@functools.lru_cache(maxsize=None)
def small_net(seed):
    """A converted small random network and 6 frames of its video: seed 0..7 (a CNN on 10x10) or
    ``"mlp"``. Shared by the test modules: callers give the event model explicit thresholds (or set
    them just before)."""
    g = random_mlp(5) if seed == "mlp" else random_cnn(seed, size=10)
    shape = (16,) if seed == "mlp" else g.input.attrs["shape"]
    video = random_video(seed if seed != "mlp" else 3, shape, frames=6, moving=0.3, step=60)
    return convert(g, video[:3]), video


#: One policy of every kind, granularity and option the event path treats differently.
POLICY_MIX = [Policy("evnet"), Policy("evnet", granularity="pixel"), Policy("evnet", granularity="block:2"),
              Policy("evnet", init="warmup"), Policy("skipconv"), Policy("skipconv", norm_gate=True),
              Policy("skipconv", reset_every=2), Policy("rrm", rrm_bound=0.01), Policy("dense"),
              Policy("sigmadelta")]
