"""Load networks by name or file, convert them, re-map their thresholds, and read frame clips."""
from __future__ import annotations

from pathlib import Path

from .. import zoo
from ..convert import convert, set_thresholds
from ..errors import EvhwError, ModelFileError
from ..qnet import QNet

#: The default gate threshold h (float activation units) of convert, eval, generate and study.
DEFAULT_THRESHOLD = 0.05
CALIB_FRAMES = 16


def load_graph(spec, *, input_shape=None):
    """A float graph from an .onnx file, a PyTorch file, a bundled model name or ``facenet:pnet|rnet|onet``
    (the MTCNN networks with the weights of the installed facenet-pytorch package)."""
    p = Path(spec)
    if p.suffix == ".onnx":
        from ..frontends.onnx_frontend import load_onnx
        return load_onnx(p)
    if p.suffix in (".pt", ".pth"):
        from ..frontends.torch_frontend import load_torch
        if input_shape is None:
            if not p.is_file():
                what = "is a directory, not a PyTorch file" if p.is_dir() else "no such file"
                raise ModelFileError(f"{spec}: {what}")
            raise EvhwError(f"{spec}: a PyTorch file does not record its input shape; convert it with "
                            f"`evhw convert {spec} --input-shape C,H,W -o NET.evnet`")
        return load_torch(p, input_shape=input_shape)
    if spec in zoo.MODELS:
        return zoo.build(spec)
    from ..frontends import mtcnn
    if mtcnn.is_name(spec):
        return mtcnn.load_graph(spec, size=input_shape[-2:] if input_shape is not None else None)
    if p.suffix or p.exists():
        raise EvhwError(f"cannot read model {spec!r}: expected an .onnx, .pt/.pth or .evnet file "
                        f"or a bundled model ({', '.join(zoo.names())})")
    raise EvhwError(f"unknown model {spec!r}; bundled models: {', '.join(zoo.names())}")


def frames_for(source, input_shape, frames=None):
    """Frames (uint8 array) from a FRAMES file or source name."""
    return clip_for(source, input_shape, frames).frames


def clip_for(source, input_shape, frames=None):
    """A :class:`evhw.data.Clip`: frames plus the labels/targets a named source carries."""
    from ..data import load_clip
    return load_clip(source, input_shape=tuple(input_shape), frames=frames)


def convert_model(spec, *, calib=None, calib_frames=CALIB_FRAMES, input_shape=None, threshold=DEFAULT_THRESHOLD,
                  **kw):
    """Float graph + calibration frames -> (QNet, float graph); thresholds from ``threshold`` (default h)."""
    g = load_graph(spec, input_shape=input_shape)
    source = calib or zoo.calib_video(spec)
    calib_data = frames_for(source, g.input.attrs["shape"], calib_frames)
    q = convert(g, calib_data, threshold=threshold, **kw)
    q.meta.update(model=str(spec), calib=str(source))
    return q, g


def load_network(spec, **kw):
    """A .evnet file (QNet and its float graph, thresholds as stored) or a model converted with defaults
    (thresholds from :data:`DEFAULT_THRESHOLD` unless ``threshold=`` is given)."""
    if str(spec).endswith(".evnet"):
        from ..evnet_file import load
        return load(spec)
    return convert_model(spec, **kw)


def apply_thresholds(q: QNet, threshold=None, input_threshold=None, bn_scale=None):
    """Re-map thresholds when the user overrides them (keeps the network's stored ones otherwise)."""
    if threshold is None and input_threshold is None and bn_scale is None:
        return q.thresholds
    return set_thresholds(q, q.default_threshold if threshold is None else threshold,
                          input_threshold=input_threshold if input_threshold is not None else
                          (None if threshold is not None else q.default_input_threshold),
                          bn_scale=q.bn_scale if bn_scale is None else bn_scale)


def convert_to_file(spec, output, **kw):
    """Convert ``spec`` (see :func:`convert_model`) and save it as the .evnet file ``output``. Returns the QNet."""
    from ..evnet_file import check_output, save
    inputs = (spec, kw.get("calib"))
    check_output(output, inputs)          # before the work: never overwrite the model or its frames
    q, g = convert_model(spec, **kw)
    save(output, q, g, inputs=inputs)
    return q
