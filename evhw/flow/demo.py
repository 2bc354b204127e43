"""``evhw demo``: the default bundled model through the golden model's policies, then through its hardware.

The comparison runs at the model's operating point (the best threshold of ``evhw study``) over its whole
default video, and reports per-frame agreement with dense integer inference beside the task metric: the task
metric alone moves in coarse steps (one labelled object is several percent of a short clip), agreement is
measured on every frame."""
from __future__ import annotations

from .. import zoo
from ..errors import EvhwError
from ..golden import EventModel, Policy
from .evaluation import evaluate, references
from .network import DEFAULT_THRESHOLD, apply_thresholds, clip_for, convert_model


def runs(h):
    """(label, policy, threshold) of the policy comparison at threshold ``h``, in table order."""
    return (("evnet", Policy("evnet"), h), ("skipconv", Policy("skipconv"), h),
            ("skipconv-reset8", Policy("skipconv", reset_every=8), h),
            ("rrm", Policy("rrm"), h), ("dense", Policy("dense"), h), ("evnet h=0", Policy("evnet"), 0.0))


def operating_threshold(name):
    return zoo.operating_threshold(name, DEFAULT_THRESHOLD)


def demo_network(name=zoo.DEFAULT_MODEL):
    """The converted demo network: ``(q, float graph)``."""
    return convert_model(name, threshold=operating_threshold(name))


def compare_policies(name, q, g, n_frames=None, *, progress=None):
    """Evaluate every run of :func:`runs` on ``n_frames`` (None: all) of the model's default video.

    ``progress(done, total)`` is called after every frame of every run. Returns ``(source, clip, rows)`` with one
    ``(label, h, result)`` row per run (result: the dict of :func:`evhw.flow.evaluation.evaluate`)."""
    source = zoo.default_video(name)
    clip = clip_for(source, q.input.shape, n_frames)
    refs = references(q, g, clip)
    plan = runs(operating_threshold(name))
    done, total = [0], len(plan) * len(clip)

    def step():
        done[0] += 1
        if progress is not None:
            progress(done[0], total)

    rows = []
    for label, pol, h in plan:
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
    model beside it, at the model's operating point. Returns ``(simulation result, golden step results)``, one
    golden result per frame."""
    from rtl_gen.builddir import BuildDir
    from sim.session import simulate

    from .build import generate_build
    h = operating_threshold(name)
    log(f"generating the array into {build_dir} ...")
    generate_build(name, pes=pes, out_dir=build_dir, threshold=h)
    q, _ = BuildDir.open(build_dir).load_net()
    apply_thresholds(q, h)
    frames = clip.frames[:n_frames]
    log(f"compiling with Verilator and simulating {len(frames)} frames (a few minutes on 2 cores) ...")
    s = simulate(build_dir, q, frames, policy="evnet", simulator="verilator", seed=1)
    golden = EventModel(q, Policy("evnet"))
    return s, [golden.step(f) for f in frames]
