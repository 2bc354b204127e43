"""Per-category counts of an `evhw soak` database: ``python docs/bench/soak_summary.py DB``."""
import collections
import json
import sqlite3
import sys

db = sqlite3.connect(sys.argv[1])
rows = db.execute("select status, seconds, params, finished from runs").fetchall()
print(f"runs {len(rows)}:", dict(collections.Counter(r[0] for r in rows)))
print("first finished", min(r[3] for r in rows), "last finished", max(r[3] for r in rows))
params = [json.loads(r[2]) for r in rows]
for key in ("simulator", "pes", "policy", "net", "frames"):
    print(key, dict(sorted(collections.Counter(p[key] for p in params).items())))
print("video", dict(collections.Counter(p["video"].split("?")[0] for p in params)))
print("stalled runs", sum(p["stall"] > 0 for p in params), "idle-input runs", sum(p["idle"] > 0 for p in params))
secs = sorted(r[1] for r in rows)
print(f"seconds per run: median {secs[len(secs) // 2]:.1f}, max {secs[-1]:.1f}")
for cmd, started in db.execute("select command, started from campaigns"):
    print("campaign", started, cmd)
