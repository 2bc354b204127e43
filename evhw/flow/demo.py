"""``evhw demo``: the default bundled model through the golden model's policies, then through its hardware."""
from __future__ import annotations

from .. import zoo
from ..errors import EvhwError
from ..golden import EventModel, Policy
from .evaluation import evaluate, references
from .network import DEFAULT_THRESHOLD, apply_thresholds, clip_for, convert_model

#: (label, policy, threshold h) of the policy comparison, in table order.
RUNS = (("evnet", Policy("evnet"), DEFAULT_THRESHOLD), ("skipconv", Policy("skipconv"), DEFAULT_THRESHOLD),
        ("skipconv-reset8", Policy("skipconv", reset_every=8), DEFAULT_THRESHOLD),
        ("rrm", Policy("rrm"), DEFAULT_THRESHOLD), ("dense", Policy("dense"), DEFAULT_THRESHOLD),
        ("evnet h=0", Policy("evnet"), 0.0))


def demo_network(name=zoo.DEFAULT_MODEL):
    """The converted demo network: ``(q, float graph)``."""
    return convert_model(name, threshold=DEFAULT_THRESHOLD)


def compare_policies(name, q, g, n_frames, *, progress=None):
    """Evaluate every run of :data:`RUNS` on ``n_frames`` of the model's default video.

    ``progress(done, total)`` is called after every frame of every run. Returns ``(source, clip, rows)`` with one
    ``(label, h, result)`` row per run (result: the dict of :func:`evhw.flow.evaluation.evaluate`)."""
    source = zoo.default_video(name)
    clip = clip_for(source, q.input.shape, n_frames)
    refs = references(q, g, clip)
    rows, done, total = [], [0], len(RUNS) * len(clip)

    def step():
        done[0] += 1
        if progress is not None:
            progress(done[0], total)

    for label, pol, h in RUNS:
        apply_thresholds(q, h)
        rows.append((label, h, evaluate(q, g, clip, pol, progress=step, metric=zoo.metric(name), refs=refs)))
    return source, clip, rows


def require_hardware():
    """Refuse with a clear error when the simulation stack (cocotb, Verilator) is missing."""
    try:
        from sim.runner import require
        require("verilator")
    except (ImportError, Exception) as e:   # noqa: BLE001 - any missing piece of the simulation stack
        raise EvhwError(f"the hardware part of the demo needs the sim extra: pip install 'evhw[sim]' ({e})") from None


def demo_hardware(name, clip, pes, n_frames, build_dir, *, log=print):
    """Generate the array for ``name``, simulate ``n_frames`` of ``clip`` on Verilator and step the golden
    model beside it. Returns ``(simulation result, golden step results)``, one golden result per frame."""
    from rtl_gen.builddir import BuildDir
    from sim.session import simulate

    from .build import generate_build
    log(f"generating the array into {build_dir} ...")
    generate_build(name, pes=pes, out_dir=build_dir, threshold=DEFAULT_THRESHOLD)
    q, _ = BuildDir.open(build_dir).load_net()
    apply_thresholds(q, DEFAULT_THRESHOLD)
    frames = clip.frames[:n_frames]
    log(f"compiling with Verilator and simulating {len(frames)} frames (a few minutes on 2 cores) ...")
    s = simulate(build_dir, q, frames, policy="evnet", simulator="verilator", seed=1)
    golden = EventModel(q, Policy("evnet"))
    return s, [golden.step(f) for f in frames]
