"""`evhw bench golden`: how fast the golden model runs, event path vs dense integer path."""
from __future__ import annotations

import os
import platform
import time

from .evaluate import apply_thresholds, convert_model, frames_for
from .golden import EventModel, Policy, dense_forward


def _best_of(fn, repeats=3):
    best = None
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        dt = time.perf_counter() - t0
        best = dt if best is None else min(best, dt)
    return best


def bench_golden(model, video, n_frames, threshold, repeats=3):
    q, _ = convert_model(model, threshold=threshold)
    apply_thresholds(q, threshold)
    frames = frames_for(video, q.input.shape, n_frames)
    res_holder = {}

    def dense():
        for f in frames:
            dense_forward(q, f)

    def event():
        res_holder["r"] = EventModel(q, Policy("evnet")).run(frames)

    td, te = _best_of(dense, repeats), _best_of(event, repeats)
    rs = res_holder["r"]
    dm = sum(r.dense_macs for r in rs)
    em = sum(r.event_macs for r in rs)
    n = len(frames)
    return {
        "model": model, "video": video, "frames": n, "threshold": threshold,
        "dense": {"seconds": td, "fps": n / td, "macs_per_frame": dm / n},
        "event": {"seconds": te, "fps": n / te, "macs_per_frame": em / n},
        "mac_savings": dm / em if em else float("inf"),
        "machine": f"{platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}",
    }
