"""Simulate a build (from :func:`evhw.flow.build.generate_build`) on frames and check it against the golden model.

Ideal cycles of a frame = max(its input pixels, its synaptic updates / (P * L)): per layer, event frames count the golden
model's event MACs + non-MAC accumulations; flush frames count the (non-zero input value,
reached accumulator) pairs of the dense values (the hardware sends only non-zero values).
"""
from __future__ import annotations

from contextlib import nullcontext
from pathlib import Path

from .. import zoo
from ..errors import ConfigError, EvhwError
from ..golden import Policy
from .network import apply_thresholds, clip_for


def simulate_build(build, *, video=None, n_frames=4, simulator="verilator", policy="evnet", threshold=None,
                   reset_every=None, seed=0, stall=0.0, waves=False, status=None, threads=None) -> dict:
    """Run ``n_frames`` of ``video`` (default: the model's default video) through BUILD/ in cocotb and
    compare every frame with the golden model. ``status(message)`` may return a context manager that is
    held while the simulator runs. Returns the dict behind ``evhw sim --json``."""
    try:
        from rtl_gen.builddir import BuildDir
        from sim.runner import SimError
        from sim.session import simulate
    except ImportError as e:
        raise EvhwError(f"cocotb is not installed ({e}): pip install -e '.[sim]'") from None
    bdir = Path(build)
    if n_frames < 1:
        raise ConfigError(f"--frames must be >= 1, not {n_frames}")
    if reset_every is not None and (reset_every < 1 or policy != "skipconv"):
        raise ConfigError(f"--reset-every needs --policy skipconv and a period >= 1, not {reset_every} "
                          f"with {policy}")
    Policy(policy, reset_every=reset_every)
    q, _ = BuildDir.open(bdir).load_net()          # verified: hashes, typed manifest
    th = apply_thresholds(q, threshold)
    source = video or zoo.default_video(q.meta.get("model"))
    clip = clip_for(source, q.input.shape, n_frames)
    with (status or (lambda msg: nullcontext()))(f"simulating {len(clip)} frames on {simulator}"):
        try:
            res = simulate(bdir, q, clip.frames, policy=policy, thresholds=th, reset_every=reset_every,
                           simulator=simulator, seed=seed, stall=stall, waves=waves, threads=threads)
        except SimError as e:
            raise EvhwError(str(e)) from None
    res["threshold"] = q.default_threshold
    res["video"] = str(source)
    return res
