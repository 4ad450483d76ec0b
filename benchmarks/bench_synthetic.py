"""Time the synthetic generator: ``python benchmarks/bench_synthetic.py --users 100000
--items 5000``. Prints the wall-clock generation time and the number of events."""

from __future__ import annotations

import argparse
import os
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

from fedrec.shared.synthetic import SyntheticConfig, SyntheticWorld, generate  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--users", type=int, default=100_000)
    ap.add_argument("--items", type=int, default=5_000)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--lazy-sample", type=int, default=1_000,
                    help="also time lazily generating this many single users")
    args = ap.parse_args(argv)
    cfg = SyntheticConfig(n_users=args.users, n_items=args.items, seed=args.seed)

    t0 = time.perf_counter()
    ds = generate(cfg)
    t_full = time.perf_counter() - t0
    counts = ds.events["event"].value_counts().to_dict()
    print(f"generate: {cfg.n_users} users x {cfg.n_items} items -> {ds.n_events} events "
          f"{counts} in {t_full:.2f} s")

    if args.lazy_sample > 0:
        world = SyntheticWorld(cfg)
        n = min(args.lazy_sample, cfg.n_users)
        t0 = time.perf_counter()
        for u in range(cfg.n_users - n, cfg.n_users):
            world.user_events(u)
        dt = time.perf_counter() - t0
        print(f"lazy user_events: {1e6 * dt / n:.0f} us/user over {n} users")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
