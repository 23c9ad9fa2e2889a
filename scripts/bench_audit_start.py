"""Peak memory of a start (``open_audit`` + the head for the birth) with a large audit log.

Writes a chained log of ``--entries`` entries (a ``start`` every 1000, anomalies between: what a
busy device writes over years), then starts on a copy of it in a fresh process per tree and
prints the peak RSS side by side. ``--before DIR`` names another checkout of the appliance (e.g.
``git archive <commit> appliance | tar -x -C DIR``) to compare with this one::

    python scripts/bench_audit_start.py --entries 300000 --before /tmp/audit-before
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent.parent

CHILD = r"""
import json, resource, sys
from appliance.app import open_audit
from appliance.config import load_config
cfg = load_config(overrides={"transparency": {"audit_log_path": sys.argv[1]}, "audit": {"max_bytes": None}}
                  if "--new" in sys.argv else {"transparency": {"audit_log_path": sys.argv[1]}})
base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
audit = open_audit(cfg, required=True)
head = audit.published_head() if hasattr(audit, "published_head") else audit.head()
peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
print(json.dumps({"peak_rss_mb": round(peak / 1024, 1), "start_delta_mb": round((peak - base) / 1024, 1)}))
"""


def write_log(path: Path, entries: int) -> None:
    sys.path.insert(0, str(HERE))
    from appliance.audit import Started
    from appliance.audit.chain import GENESIS, canonical, entry_hash
    from appliance.config import config_hash, load_config

    cfg = load_config()
    config = cfg.model_dump(mode="json")
    start = Started(software_version="0", config_hash=config_hash(cfg), board="x86-generic", models=[], config=config)
    start_data = start.model_dump(mode="json")
    prev = GENESIS
    with open(path, "wb") as f:
        for seq in range(1, entries + 1):
            if seq % 1000 == 1:
                kind, data = "start", start_data
            else:
                state = "raised" if seq % 2 else "cleared"
                kind = "anomaly"
                data = {"type": "overcrowding", "state": state, "zone": "walkway", "value": 13.0, "threshold": 12.0}
            at = f"2026-{1 + seq % 12:02d}-01T00:00:00.000Z"
            digest = entry_hash(seq, at, kind, data, prev)
            f.write(canonical({"seq": seq, "at": at, "kind": kind, "data": data, "prev": prev, "hash": digest}) + b"\n")
            prev = digest


def measure(tree: Path, log: Path, work: Path, new: bool) -> dict:
    copy = work / "audit.jsonl"
    for p in work.glob("*audit.jsonl*"):
        p.unlink()
    shutil.copyfile(log, copy)
    env = {**os.environ, "PYTHONPATH": str(tree)}
    args = [sys.executable, "-c", CHILD, str(copy)] + (["--new"] if new else [])
    out = subprocess.run(args, env=env, capture_output=True, text=True, check=True, cwd=str(tree))
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--entries", type=int, default=300_000)
    ap.add_argument("--before", type=Path, help="another checkout to compare with")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        log = work / "source.jsonl"
        write_log(log, args.entries)
        size_mb = log.stat().st_size / 1e6
        run = work / "run"
        run.mkdir()
        after = measure(HERE, log, run, new=True)
        print(f"log: {args.entries} entries, {size_mb:.1f} MB")
        print(f"this tree : peak RSS {after['peak_rss_mb']} MB (start added {after['start_delta_mb']} MB)")
        if args.before:
            before = measure(args.before, log, run, new=False)
            print(f"before    : peak RSS {before['peak_rss_mb']} MB (start added {before['start_delta_mb']} MB)")
            print(f"ratio before/after peak RSS: {before['peak_rss_mb'] / after['peak_rss_mb']:.1f}x")


if __name__ == "__main__":
    main()
