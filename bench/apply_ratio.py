"""Head office's grouped apply of two source trees, alternated in fresh processes.

    python bench/apply_ratio.py OLD_TREE NEW_TREE [--runs 3] [--events 50000]

Each run loads ``bench/sync.py``'s ``grouped_apply`` from the tree it measures (with that
tree's ``staypoint`` first on the path), so a worktree of an older commit is measured with
its own code and settings. Prints JSON: each tree's rates and the ratio of the medians.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys

_ONE = """
import importlib.util, pathlib, sys, tempfile
tree, events = sys.argv[1], int(sys.argv[2])
sys.path.insert(0, tree)
sys.argv = ["sync.py"]
spec = importlib.util.spec_from_file_location("benchsync", f"{tree}/bench/sync.py")
module = importlib.util.module_from_spec(spec)
spec.loader.exec_module(module)
with tempfile.TemporaryDirectory() as tmp:
    print(module.grouped_apply(pathlib.Path(tmp), events))
"""


def one(tree: str, events: int) -> int:
    out = subprocess.run([sys.executable, "-c", _ONE, tree, str(events)], capture_output=True, text=True)
    if out.returncode:
        raise SystemExit(f"apply_ratio: {tree}: {out.stderr.strip().splitlines()[-1:]}")
    return int(out.stdout.split()[-1])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("old")
    ap.add_argument("new")
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--events", type=int, default=50_000)
    args = ap.parse_args()
    rates: dict[str, list[int]] = {args.old: [], args.new: []}
    for _ in range(args.runs):
        for tree in (args.old, args.new):
            rates[tree].append(one(tree, args.events))
    old, new = (statistics.median(rates[t]) for t in (args.old, args.new))
    print(json.dumps({"events": args.events, "rates": rates, "new_vs_old": round(new / old, 3)}, indent=2))


if __name__ == "__main__":
    main()
