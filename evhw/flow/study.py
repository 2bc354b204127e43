"""``evhw study``: the EvNet paper's accuracy/operations analyses on evhw's bundled workloads.

Writes a report folder: ``report.md`` (tables), ``results.json`` (every run), ``summary.json``
(``default``: the best evnet operating point of the default conv workload, reproducible with
``evhw eval MODEL --video SOURCE --policy evnet --threshold H --json``) and PNG plots:

* Pareto curves, metric vs MACs per frame over a threshold sweep, for evnet, skipconv, skipconv
  with a reset every 8 frames, rrm and dense (paper Fig. 6); the best operating point per policy
  (the highest threshold within ``tolerance`` of the dense integer model; paper Table 1); the
  overhead table (paper Table 2);
* long-term memory ablation: metric over time, evnet vs memory loss (paper Fig. 8);
* camera motion: savings for none / minor / major motion of a static-camera clip;
* rounding (Sigma-Delta) vs threshold policy on the temporal-digits MLP (paper Fig. 5b);
* computation per frame over time.

Every number comes from :func:`evhw.flow.evaluation.evaluate` on the golden model; nothing is estimated.
"""
from __future__ import annotations

import json
import math
import platform
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .. import zoo
from ..errors import AccumulatorOverflowError, ConfigError
from ..golden import Policy
from .evaluation import evaluate, references
from .network import DEFAULT_THRESHOLD, apply_thresholds, clip_for, load_network

THRESHOLDS = (0.005, 0.01, 0.02, 0.04, 0.08, 0.16, 0.32)
#: The MLP on held digits tolerates far larger thresholds: sweep further to see the policies differ.
ROUNDING_THRESHOLDS = (0.02, 0.08, 0.16, 0.32, 0.48, 0.64, 0.96)   # h <= 1: the input gate shares h
POLICY_RUNS = {                   # label -> Policy
    "evnet": Policy("evnet"),
    "skipconv": Policy("skipconv"),
    "skipconv-reset8": Policy("skipconv", reset_every=8),
    "rrm": Policy("rrm"),
}
COLORS = {"evnet": "C0", "skipconv": "C1", "skipconv-reset8": "C2", "rrm": "C3", "dense": "k", "sigmadelta": "C4"}
PAPER = {  # headline numbers of the EvNet paper (ECCV 2022), for the report
    "EvNet OpenPose (Table 1)": "10.4x fewer MACs",
    "EvNet YOLOv3 (Table 1)": "5.0x fewer MACs",
    "Skip-Conv": "3-4x",
    "RRM": "about 2x",
}


@dataclass
class StudyConfig:
    conv_models: tuple = ("objects-cnn", "enhance-cnn")
    mlp: str | None = "temporal-digits-mlp"
    thresholds: tuple = THRESHOLDS
    rounding_thresholds: tuple = ROUNDING_THRESHOLDS
    frames: int | None = None            # override the frame count of every source
    motion_model: str | None = None      # default: the first conv model
    tolerance: float = 0.5               # pp accuracy or dB PSNR
    videos: dict = field(default_factory=dict)   # model -> source (default: the model's default video)

    @classmethod
    def tiny(cls):
        """A few frames and thresholds: the configuration of the end-to-end test (under a minute)."""
        return cls(conv_models=("objects-cnn",), mlp="temporal-digits-mlp", thresholds=(0.02, 0.16),
                   rounding_thresholds=(0.02, 0.64), frames=6)


def with_frames(source: str, n: int | None) -> str:
    """``source`` with its ``frames=`` option set to ``n`` (unchanged when n is None)."""
    if n is None:
        return source
    base, _, query = source.partition("?")
    parts = [p for p in query.split("&") if p and not p.startswith("frames=")]
    return f"{base}?{'&'.join(parts + [f'frames={n}'])}"


def with_option(source: str, key: str, value) -> str:
    base, _, query = source.partition("?")
    parts = [p for p in query.split("&") if p and not p.startswith(f"{key}=")]
    return f"{base}?{'&'.join(parts + [f'{key}={value}'])}"


class Workload:
    """A converted model, its clip and the policy-independent reference outputs."""

    def __init__(self, model, source):
        self.model, self.source = model, source
        self.q, self.g = load_network(model, threshold=DEFAULT_THRESHOLD)
        self.clip = clip_for(source, self.q.input.shape)
        self.refs = references(self.q, self.g, self.clip)
        self.metric = zoo.metric(model)
        self.unit = zoo.metric_unit(model)

    def run(self, policy: Policy, h: float):
        try:
            apply_thresholds(self.q, h)
            r = evaluate(self.q, self.g, self.clip, policy, metric=self.metric, refs=self.refs)
        except (AccumulatorOverflowError, ConfigError) as e:
            return {"threshold": h, "error": str(e)}
        keep = ("threshold", "frames", "dense_macs_per_frame", "event_macs_per_frame", "mac_savings", "events",
                "metric", "metric_dense", "metric_float", "overhead_arith_pct_of_saved", "overhead_mem_pct_of_saved",
                "state_memory_bits", "max_abs_diff_vs_dense_int", "metric_per_frame")
        out = {k: r[k] for k in keep}
        out["threshold"] = h
        out["macs_per_frame"] = [p["event_macs"] for p in r["per_frame"]]
        return out


def best_point(points, metric_dense, tolerance):
    """The highest-threshold run whose metric is within ``tolerance`` of the dense integer model."""
    ok = [p for p in points if "error" not in p and p["metric"] is not None and p["metric"] >= metric_dense - tolerance]
    return max(ok, key=lambda p: p["threshold"]) if ok else None


def metric_at_macs(points, macs):
    """A policy's metric at ``macs`` per frame, interpolated on its Pareto curve (log MACs); None outside it."""
    pts = sorted((p["event_macs_per_frame"], p["metric"]) for p in points if "error" not in p and p["metric"] is not None)
    if not pts or macs < pts[0][0] or macs > pts[-1][0]:
        return None
    xs = np.log([p[0] for p in pts])
    ys = [p[1] for p in pts]
    # a Pareto curve may not be monotone: take the best metric reachable at or below this cost
    best = np.maximum.accumulate(ys)
    return float(np.interp(np.log(macs), xs, best))


def _fmt(x, d=2):
    return "-" if x is None else (f"{x:,.{d}f}" if isinstance(x, float) else f"{x:,}")


def run_study(cfg: StudyConfig, out_dir, *, progress=None, log=print) -> dict:
    """Run every analysis, write the report folder and return ``results.json``'s content."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    t0 = time.time()
    res = {"config": {k: (list(v) if isinstance(v, tuple) else v) for k, v in cfg.__dict__.items()},
           "machine": f"{platform.machine()} {platform.python_implementation()} {platform.python_version()}",
           "pareto": {}, "best": {}, "memory": {}, "motion": {}, "rounding": None, "over_time": {}}
    tick = progress or (lambda *a, **k: None)
    work = {}
    for m in cfg.conv_models:
        src = with_frames(cfg.videos.get(m, zoo.default_video(m)), cfg.frames)
        log(f"{m}: converting and computing references on {src}")
        w = work[m] = Workload(m, src)
        dense = w.run(Policy("dense"), DEFAULT_THRESHOLD)
        curves = {"dense": [dense]}
        for label, pol in POLICY_RUNS.items():
            curves[label] = []
            for h in cfg.thresholds:
                curves[label].append(w.run(pol, h))
                tick(f"{m} {label} h={h:g}")
        md = dense["metric_dense"]
        best = {label: best_point(pts, md, cfg.tolerance) for label, pts in curves.items() if label != "dense"}
        ev = best["evnet"]
        cmp = {}
        if ev is not None:
            for label in ("skipconv", "skipconv-reset8", "rrm"):
                cmp[label] = metric_at_macs(curves[label], ev["event_macs_per_frame"])
        res["pareto"][m] = {"video": src, "unit": w.unit, "metric_dense": md, "metric_float": dense["metric_float"],
                            "curves": curves}
        res["best"][m] = {"points": best, "at_evnet_macs": cmp}
        # computation per frame over time, at evnet's best threshold (or the default threshold)
        h_best = ev["threshold"] if ev else DEFAULT_THRESHOLD
        res["over_time"][m] = {"threshold": h_best, "dense": dense["macs_per_frame"], **{
            label: next((p["macs_per_frame"] for p in curves[label] if p["threshold"] == h_best and "error" not in p),
                        None) for label in POLICY_RUNS}}
        # long-term memory ablation at the same threshold
        res["memory"][m] = {"threshold": h_best, "evnet": _per_frame(curves["evnet"], h_best),
                            "memory loss (skipconv)": _per_frame(curves["skipconv"], h_best),
                            "dense": dense["metric_per_frame"]}
    # camera motion
    mm = cfg.motion_model or (cfg.conv_models[0] if cfg.conv_models else None)
    if mm:
        h = (res["best"][mm]["points"]["evnet"] or {}).get("threshold", DEFAULT_THRESHOLD)
        for motion in ("none", "minor", "major"):
            src = with_option(work[mm].source, "motion", motion)
            w = work[mm] if motion == "none" else Workload(mm, src)
            r = w.run(Policy("evnet"), h)
            d = w.run(Policy("dense"), h)
            res["motion"][motion] = {"video": src, "threshold": h, "mac_savings": r.get("mac_savings"),
                                     "metric": r.get("metric"), "metric_dense": d.get("metric_dense"),
                                     "event_macs_per_frame": r.get("event_macs_per_frame")}
            tick(f"motion {motion}")
        res["motion_model"] = mm
    # rounding (Sigma-Delta) vs threshold on the MLP
    if cfg.mlp:
        src = with_frames(cfg.videos.get(cfg.mlp, zoo.default_video(cfg.mlp)), cfg.frames)
        w = Workload(cfg.mlp, src)
        dense = w.run(Policy("dense"), DEFAULT_THRESHOLD)
        rr = {"video": src, "metric_dense": dense["metric_dense"], "dense_macs_per_frame": dense["dense_macs_per_frame"],
              "evnet": [], "sigmadelta": []}
        for h in cfg.rounding_thresholds:
            for label in ("evnet", "sigmadelta"):
                rr[label].append(w.run(Policy(label), h))
                tick(f"{cfg.mlp} {label} h={h:g}")
        rr["best"] = {label: best_point(rr[label], rr["metric_dense"], cfg.tolerance) for label in ("evnet", "sigmadelta")}
        res["rounding"] = rr
        res["mlp"] = cfg.mlp
    # summary: the default conv workload
    dm = zoo.DEFAULT_MODEL if zoo.DEFAULT_MODEL in res["best"] else (cfg.conv_models[0] if cfg.conv_models else None)
    summary = {}
    if dm:
        ev = res["best"][dm]["points"]["evnet"]
        if ev:
            summary["default"] = {"model": dm, "video": res["pareto"][dm]["video"], "threshold": ev["threshold"],
                                  "mac_savings": ev["mac_savings"], "metric": ev["metric"],
                                  "metric_dense": ev["metric_dense"], "unit": res["pareto"][dm]["unit"],
                                  "tolerance": cfg.tolerance}
        else:
            summary["default"] = {"model": dm, "video": res["pareto"][dm]["video"], "threshold": None,
                                  "note": f"no evnet threshold stays within {cfg.tolerance} of the dense integer model"}
        for m in res["best"]:
            ev = res["best"][m]["points"]["evnet"]
            if ev:
                summary[m] = {"video": res["pareto"][m]["video"], "threshold": ev["threshold"],
                              "mac_savings": ev["mac_savings"], "metric": ev["metric"], "metric_dense": ev["metric_dense"]}
    res["seconds"] = round(time.time() - t0, 1)
    (out_dir / "results.json").write_text(json.dumps(res, indent=1, default=_json))
    (out_dir / "summary.json").write_text(json.dumps(summary, indent=1, default=_json) + "\n")
    plots = make_plots(res, out_dir)
    (out_dir / "report.md").write_text(report_md(res, summary, plots))
    return res


def read_summary(out_dir) -> dict:
    """``summary.json`` of a report folder written by :func:`run_study`."""
    return json.loads((Path(out_dir) / "summary.json").read_text())


def _per_frame(points, h):
    return next((p["metric_per_frame"] for p in points if p["threshold"] == h and "error" not in p), None)


def _json(x):
    if isinstance(x, (np.integer,)):
        return int(x)
    if isinstance(x, (np.floating,)):
        return float(x)
    if isinstance(x, float) and math.isinf(x):
        return None
    raise TypeError(type(x))


def count_runs(cfg: StudyConfig) -> int:
    n = len(cfg.conv_models) * len(POLICY_RUNS) * len(cfg.thresholds)
    n += 3 if cfg.conv_models else 0
    n += 2 * len(cfg.rounding_thresholds) if cfg.mlp else 0
    return n


# ------------------------------------------------------------------------------------------------
# plots

def _plt():
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    return plt


def _running_mean(x, k):
    x = np.asarray(x, float)
    if len(x) < k:
        return x
    c = np.cumsum(np.insert(x, 0, 0.0))
    head = c[1:k] / np.arange(1, k)
    return np.concatenate([head, (c[k:] - c[:-k]) / k])


def make_plots(res, out_dir) -> dict:
    plt = _plt()
    files = {}
    for m, pr in res["pareto"].items():
        fig, ax = plt.subplots(figsize=(6, 4))
        for label, pts in pr["curves"].items():
            pts = [p for p in pts if "error" not in p and p["metric"] is not None]
            if not pts:
                continue
            xs = [p["event_macs_per_frame"] for p in pts]
            ys = [p["metric"] for p in pts]
            ax.plot(xs, ys, "o-" if label != "dense" else "s", color=COLORS[label], label=label, ms=4)
        ax.axhline(pr["metric_dense"] - res["config"]["tolerance"], color="grey", ls=":", lw=1,
                   label=f"dense - {res['config']['tolerance']}")
        ax.set_xscale("log")
        ax.set_xlabel("MACs per frame")
        ax.set_ylabel(f"metric ({pr['unit']})")
        ax.set_title(f"{m}: metric vs computation")
        ax.legend(fontsize=8)
        fig.tight_layout()
        files[f"pareto_{m}"] = f"pareto_{m}.png"
        fig.savefig(out_dir / files[f"pareto_{m}"], dpi=110)
        plt.close(fig)
    for m, mem in res["memory"].items():
        if mem["evnet"] is None:
            continue
        fig, ax = plt.subplots(figsize=(6, 3.5))
        k = 8 if res["pareto"][m]["unit"] == "%" else 1
        for label, c in (("evnet", "C0"), ("memory loss (skipconv)", "C1"), ("dense", "k")):
            if mem.get(label) is not None:
                ax.plot(_running_mean(mem[label], k), color=c, label=label)
        ax.set_xlabel("frame")
        ax.set_ylabel(res["pareto"][m]["unit"] + (f" (running mean of {k})" if k > 1 else ""))
        ax.set_title(f"{m}: long-term memory ablation, h={mem['threshold']:g}")
        ax.legend(fontsize=8)
        fig.tight_layout()
        files[f"memory_{m}"] = f"memory_{m}.png"
        fig.savefig(out_dir / files[f"memory_{m}"], dpi=110)
        plt.close(fig)
    for m, ot in res["over_time"].items():
        fig, ax = plt.subplots(figsize=(6, 3.5))
        for label in ("dense", *POLICY_RUNS):
            if ot.get(label) is not None:
                ax.plot(ot[label], color=COLORS[label], label=label)
        ax.set_yscale("log")
        ax.set_xlabel("frame")
        ax.set_ylabel("MACs")
        ax.set_title(f"{m}: computation per frame, h={ot['threshold']:g}")
        ax.legend(fontsize=8)
        fig.tight_layout()
        files[f"over_time_{m}"] = f"over_time_{m}.png"
        fig.savefig(out_dir / files[f"over_time_{m}"], dpi=110)
        plt.close(fig)
    if res["motion"]:
        fig, ax = plt.subplots(figsize=(4.5, 3.5))
        ms = list(res["motion"])
        ax.bar(ms, [res["motion"][k]["mac_savings"] or 0 for k in ms], color="C0")
        ax.set_ylabel("MAC savings vs dense (x)")
        ax.set_title(f"{res['motion_model']}: camera motion")
        fig.tight_layout()
        files["motion"] = "motion.png"
        fig.savefig(out_dir / "motion.png", dpi=110)
        plt.close(fig)
    rr = res["rounding"]
    if rr:
        fig, ax = plt.subplots(figsize=(6, 4))
        for label in ("evnet", "sigmadelta"):
            pts = [p for p in rr[label] if "error" not in p and p["metric"] is not None]
            ax.plot([p["event_macs_per_frame"] for p in pts], [p["metric"] for p in pts], "o-", color=COLORS[label],
                    label="threshold (evnet)" if label == "evnet" else "rounding (Sigma-Delta)", ms=4)
        ax.plot([rr["dense_macs_per_frame"]], [rr["metric_dense"]], "ks", label="dense")
        ax.set_xscale("log")
        ax.set_xlabel("MACs per frame")
        ax.set_ylabel("accuracy (%)")
        ax.set_title(f"{res['mlp']}: rounding vs threshold policy")
        ax.legend(fontsize=8)
        fig.tight_layout()
        files["rounding"] = "rounding.png"
        fig.savefig(out_dir / "rounding.png", dpi=110)
        plt.close(fig)
    return files


# ------------------------------------------------------------------------------------------------
# report

def report_md(res, summary, plots) -> str:
    tol = res["config"]["tolerance"]
    L = ["# evhw study", "",
         f"Generated by `evhw study` in {res['seconds']} s ({res['machine']}). Every figure is a golden-model run; "
         f"thresholds h are in float activation units (pixel/255 at the input gate). Best point: the highest h "
         f"whose metric stays within {tol} (pp or dB) of the dense integer model.", ""]
    for m, pr in res["pareto"].items():
        u = pr["unit"]
        L += [f"## {m} on `{pr['video']}`", "",
              f"Dense integer model: {_fmt(pr['metric_dense'])} {u} (float model {_fmt(pr['metric_float'])} {u}), "
              f"{_fmt(pr['curves']['dense'][0]['dense_macs_per_frame'], 0)} MACs per frame.", ""]
        if f"pareto_{m}" in plots:
            L += [f"![Pareto {m}]({plots[f'pareto_{m}']})", ""]
        L += ["### Sweep", "", "| policy | h | MACs/frame | savings | metric | overflow |", "|---|---|---|---|---|---|"]
        for label, pts in pr["curves"].items():
            if label == "dense":
                continue
            for p in pts:
                if "error" in p:
                    L.append(f"| {label} | {p['threshold']:g} | - | - | - | accumulator drift (memory loss) |")
                else:
                    L.append(f"| {label} | {p['threshold']:g} | {_fmt(p['event_macs_per_frame'], 0)} | "
                             f"{_fmt(p['mac_savings'])}x | {_fmt(p['metric'])} | |")
        L += ["", "### Best operating point per policy (like Table 1)", "",
              f"| policy | h | MACs/frame | savings | metric ({u}) | dense int. | evnet's metric at equal MACs vs this policy |",
              "|---|---|---|---|---|---|---|"]
        best = res["best"][m]
        ev = best["points"]["evnet"]
        for label, p in best["points"].items():
            eq = ""
            if label != "evnet" and ev is not None:
                at = best["at_evnet_macs"].get(label)
                eq = (f"{_fmt(ev['metric'])} vs {_fmt(at)}" if at is not None
                      else "outside this policy's measured range")
            if p is None:
                L.append(f"| {label} | none within {tol} | | | | | {eq} |")
            else:
                L.append(f"| {label} | {p['threshold']:g} | {_fmt(p['event_macs_per_frame'], 0)} | "
                         f"{_fmt(p['mac_savings'])}x | {_fmt(p['metric'])} | {_fmt(p['metric_dense'])} | {eq} |")
        if ev is not None:
            L += ["", "### Overheads at evnet's best point (like Table 2)", "",
                  "| arithmetic ops, % of saved MACs | loads/stores, % of saved MACs | state memory |", "|---|---|---|",
                  f"| {_fmt(ev['overhead_arith_pct_of_saved'])} | {_fmt(ev['overhead_mem_pct_of_saved'])} | "
                  f"{ev['state_memory_bits'] / 8 / 1024:,.1f} KiB |"]
        if f"memory_{m}" in plots:
            L += ["", "### Long-term memory ablation (like Fig. 8)", "", f"![memory {m}]({plots[f'memory_{m}']})"]
            mem = res["memory"][m]
            if mem["evnet"] and mem["memory loss (skipconv)"]:
                e, s = np.mean(mem["evnet"]), np.mean(mem["memory loss (skipconv)"])
                half = len(mem["evnet"]) // 2
                L += ["", f"Mean metric at h={mem['threshold']:g}: evnet {e:.2f}, memory loss {s:.2f} {u}; second half "
                          f"of the sequence: evnet {np.mean(mem['evnet'][half:]):.2f}, memory loss "
                          f"{np.mean(mem['memory loss (skipconv)'][half:]):.2f} {u}."]
        if f"over_time_{m}" in plots:
            L += ["", "### Computation per frame", "", f"![over time {m}]({plots[f'over_time_{m}']})"]
        L.append("")
    if res["motion"]:
        L += ["## Camera motion", "", f"{res['motion_model']}, evnet at its best h, on a static-camera clip with synthesized "
              "motion (minor: hand-held shake; major: pan and zoom).", "",
              "| motion | video | MACs/frame | savings | metric | dense int. |", "|---|---|---|---|---|---|"]
        for k, v in res["motion"].items():
            L.append(f"| {k} | `{v['video']}` | {_fmt(v['event_macs_per_frame'], 0)} | {_fmt(v['mac_savings'])}x | "
                     f"{_fmt(v['metric'])} | {_fmt(v['metric_dense'])} |")
        if "motion" in plots:
            L += ["", f"![motion]({plots['motion']})"]
        L.append("")
    rr = res["rounding"]
    if rr:
        L += [f"## Rounding vs threshold policy ({res['mlp']}, like Fig. 5b)", "",
              f"On `{rr['video']}`; dense integer accuracy {_fmt(rr['metric_dense'])} %, "
              f"{_fmt(rr['dense_macs_per_frame'], 0)} MACs per frame.", "",
              "| h | threshold: MACs/frame | accuracy | rounding: MACs/frame | accuracy |", "|---|---|---|---|---|"]
        for a, b in zip(rr["evnet"], rr["sigmadelta"]):
            L.append(f"| {a['threshold']:g} | {_fmt(a.get('event_macs_per_frame'), 0)} | {_fmt(a.get('metric'))} | "
                     f"{_fmt(b.get('event_macs_per_frame'), 0)} | {_fmt(b.get('metric'))} |")
        if "rounding" in plots:
            L += ["", f"![rounding]({plots['rounding']})"]
        L.append("")
    L += ["## Summary (`summary.json`)", "", "```json", json.dumps(summary, indent=1, default=_json), "```", ""]
    return "\n".join(L)
