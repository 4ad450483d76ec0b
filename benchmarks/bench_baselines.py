"""Centralized baselines on a dataset over several seeds: the README's accuracy table.

    .venv/bin/python benchmarks/bench_baselines.py --dataset movielens-100k --seeds 3 \
        --out runs/bench_baselines

Runs popularity, item-kNN (neighbourhood and recency decay chosen on validation) and
NeuMF for each seed, and NeuMF with DP-SGD at each ``--dp-epsilons`` target, through the
same code path as ``fedrec baseline``; writes every result JSON, then prints a markdown
table (mean ± std over seeds) and the bars from the issue next to it.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
from pathlib import Path

BARS = {"popularity": "0.408 ± 0.02", "itemknn": "≥ 0.63", "neumf": "≥ 0.67"}


def _run(argv: list[str]) -> None:
    from fedrec.simulations.cli import main

    code = main(argv)
    if code != 0:
        sys.exit(code)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dataset", default="movielens-100k")
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--dp-epsilons", default="1,8")
    parser.add_argument("--out", type=Path, default=Path("runs/bench_baselines"))
    parser.add_argument("--extra", default="", help="extra flags for the non-DP run")
    parser.add_argument("--dp-extra", default="--batch-size 4096 --lr 0.01",
                        help="extra flags for the DP runs (DP-SGD wants large batches)")
    args = parser.parse_args()
    extra = args.extra.split()
    runs = [("plain", ["--model", "popularity,itemknn,neumf", *extra])]
    runs += [(f"dp{eps}", ["--model", "neumf-dp", "--target-epsilon", eps, *args.dp_extra.split()])
             for eps in args.dp_epsilons.split(",") if eps]
    rows: dict[str, list[dict]] = {}
    for tag, flags in runs:
        out = args.out / f"{tag}.json"
        if not out.exists():   # resumable: finished groups are kept
            _run(["baseline", "--dataset", args.dataset, "--seeds", str(args.seeds),
                  "--out", str(out), *flags])
        records = json.loads(out.read_text())
        for r in records if isinstance(records, list) else [records]:
            name = r["model"] + (f" (ε={r['privacy']['epsilon']:.0f})" if r["privacy"] else "")
            rows.setdefault(name, []).append(r)
    print(f"\n{args.dataset}, {args.seeds} seeds, leave-last-out, 99 sampled negatives\n")
    print("| model | HR@10 | NDCG@10 | full-rank HR@10 | seconds/run | bar |")
    print("|---|---|---|---|---|---|")
    for name, rs in rows.items():
        def stat(key, rs=rs):
            vals = [r["metrics"][key] for r in rs]
            sd = statistics.stdev(vals) if len(vals) > 1 else 0.0
            return f"{statistics.mean(vals):.3f} ± {sd:.3f}"
        secs = statistics.mean(r["wall_seconds"] for r in rs)
        print(f"| {name} | {stat('hr@10')} | {stat('ndcg@10')} | {stat('full_hr@10')} | "
              f"{secs:.0f} | {BARS.get(rs[0]['model'], '')} |")


if __name__ == "__main__":
    main()
