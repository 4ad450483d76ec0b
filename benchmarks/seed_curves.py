"""HR@10 per round of several runs (seeds) of one setting: a table, their mean, a PNG.

    .venv/bin/python benchmarks/seed_curves.py runs/fed_ml100k_g64 runs/fed_ml100k_g64_seed1 \\
        runs/fed_ml100k_g64_seed2 --bar 0.66 --png docs/fed_ml100k_g64_seeds.png

Prints a markdown table: one row per run (labelled by its seed), the mean over the runs
at every round they all evaluated (the table's columns), and each row's best and first
round reaching ``--bar`` over all of its evaluated rounds.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path


def first_round_at(points: dict[int, float], bar: float) -> int | None:
    """The first evaluated round with a value >= ``bar`` (None: never)."""
    return next((rnd for rnd, value in sorted(points.items()) if value >= bar), None)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("runs", type=Path, nargs="+")
    parser.add_argument("--bar", type=float, default=0.66)
    parser.add_argument("--png", type=Path)
    parser.add_argument("--reference", type=float, help="centralized NeuMF HR@10 to draw")
    args = parser.parse_args()

    from fedrec.server.rundir import RunDir
    from fedrec.simulations.plots import curve, mean_curve, plot_convergence

    rows = {}
    for path in args.runs:
        run = RunDir(path)
        if not run.manifest_path.exists():
            sys.exit(f"{path}: not a run directory (no manifest.json)")
        label = f"seed {json.loads(run.manifest_path.read_text())['seed']}"
        rows[label if label not in rows else f"{label} ({path.name})"] = run.read_metrics()
    curves = {label: curve(r) for label, r in rows.items()}
    mean = curves[f"mean of {len(rows)}"] = mean_curve(list(curves.values()))
    rounds = sorted(mean)
    print("| run | " + " | ".join(str(r) for r in rounds)
          + f" | best | first round ≥ {args.bar} |")
    print("|---" * (len(rounds) + 3) + "|")
    for label, points in curves.items():
        best = max(points.values()) if points else float("nan")
        print(f"| {label} | " + " | ".join(f"{points[r]:.3f}" for r in rounds)
              + f" | {best:.3f} | {first_round_at(points, args.bar) or 'never'} |")
    if args.png:
        refs = {"bar": args.bar, **({"NeuMF (centralized)": args.reference}
                                    if args.reference else {})}
        print(plot_convergence(rows, args.png, f"HR@10 per round, {len(rows)} seeds", refs))


if __name__ == "__main__":
    main()
