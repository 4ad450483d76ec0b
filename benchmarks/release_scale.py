"""The statistics releases at scale: synthetic users, DP against the same pipeline without.

Generates the synthetic federation once, then runs the kNN release pipeline (defaults of
``ReleaseConfig``, chosen on MovieLens-100k's validation item) at each ε and without
noise (ε = inf, the same bounded contributions), on the test item. Prints HR@10,
NDCG@10, the relative HR@10 lost to DP, and per release run its wall-clock seconds and
peak traced memory (``tracemalloc``: numpy's buffers included; contributions stream
into the sum, so it does not grow with the number of users).

    python benchmarks/release_scale.py --users 100000 --items 2000 --epsilons 1
"""

from __future__ import annotations

import argparse
import json
import math
import tempfile
import time
import tracemalloc
from pathlib import Path

from fedrec.shared.release_config import ReleaseConfig
from fedrec.simulations import release_sim


def measure(cfg: ReleaseConfig, roster) -> dict:
    tracemalloc.start()
    start = time.perf_counter()
    results = release_sim.run(cfg, roster)
    seconds = time.perf_counter() - start
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    return {"epsilon": cfg.target_epsilon, "hr@10": results["metrics"]["hr@10"],
            "ndcg@10": results["metrics"]["ndcg@10"], "seconds": round(seconds, 1),
            "peak_mb": round(peak / 2 ** 20, 1), "evaluated": results["evaluated_users"],
            "claimed_epsilon": results["privacy"]["epsilon"]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--users", type=int, default=100_000)
    parser.add_argument("--items", type=int, default=2000)
    parser.add_argument("--epsilons", default="1")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", type=Path, help="also write the rows here")
    parser.add_argument("--set", default="{}", help="JSON of other ReleaseConfig settings "
                        "(e.g. '{\"pipeline\": \"popularity\"}')")
    args = parser.parse_args()
    base = ReleaseConfig(dataset="synthetic", synthetic_users=args.users,
                         synthetic_items=args.items, seed=args.seed, **json.loads(args.set))
    start = time.perf_counter()
    roster = release_sim.devices(base)
    print(f"{args.users} users x {args.items} items generated in "
          f"{time.perf_counter() - start:.0f} s", flush=True)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for eps in [math.inf] + [float(e) for e in args.epsilons.split(",")]:
            cfg = base.replace(target_epsilon=eps, out=str(Path(tmp) / f"eps{eps}"))
            rows.append(measure(cfg, roster))
            print(json.dumps(rows[-1]), flush=True)
    exact = rows[0]["hr@10"]
    print("| user ε | HR@10 | NDCG@10 | HR@10 lost to DP | seconds | peak MB |")
    print("|---|---|---|---|---|---|")
    for r in rows:
        lost = "-" if math.isinf(r["epsilon"]) else f"{100 * (1 - r['hr@10'] / exact):.1f} %"
        print(f"| {r['epsilon']:g} | {r['hr@10']:.4f} | {r['ndcg@10']:.4f} | {lost} | "
              f"{r['seconds']} | {r['peak_mb']} |")
    if args.json:
        args.json.write_text(json.dumps(rows, indent=1))


if __name__ == "__main__":
    main()
