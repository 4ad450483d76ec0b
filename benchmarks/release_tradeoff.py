"""HR@10 / NDCG@10 against user-level ε for the statistics-release pipelines.

Runs ``fedrec simulate --pipeline P --target-epsilon E --seed S`` in process for every
cell (the same ``fedrec.simulations.release_sim.run``), keeps each run directory, audits it,
and prints a markdown table per seed and the mean, plus a PNG.

    python benchmarks/release_tradeoff.py --dataset movielens-100k --out runs/tradeoff \\
        --pipelines popularity,knn --epsilons 0.5,1,2,4,8,inf --seeds 0,1,2 [--holdout validation]
"""

from __future__ import annotations

import argparse
import json
import math
from pathlib import Path

import numpy as np

from fedrec.shared.release_config import ReleaseConfig
from fedrec.simulations import audit_releases, release_sim


def cell(args, pipeline: str, eps: float, seed: int, extra: dict) -> dict:
    out = Path(args.out) / f"{pipeline}-eps{eps:g}-seed{seed}"
    if (out / "results.json").exists():
        results = release_sim.read_results(out)
    else:
        cfg = ReleaseConfig(pipeline=pipeline, dataset=args.dataset, seed=seed,
                            holdout=args.holdout, target_epsilon=eps, out=str(out), **extra)
        results = release_sim.run(cfg)
    audit = audit_releases.audit(out)
    return {"pipeline": pipeline, "epsilon": eps, "seed": seed, "audit": audit["passed"],
            "claimed": results["privacy"]["epsilon"], **results["metrics"]}


def table(rows: list[dict], seeds: list[int]) -> str:
    lines = ["| pipeline | ε (target) | " + " | ".join(f"HR@10 seed {s}" for s in seeds)
             + " | HR@10 mean | NDCG@10 mean | audit |", "|---" * (len(seeds) + 5) + "|"]
    keys = sorted({(r["pipeline"], r["epsilon"]) for r in rows}, key=lambda k: (k[0], k[1]))
    for pipeline, eps in keys:
        cells = [r for r in rows if r["pipeline"] == pipeline and r["epsilon"] == eps]
        by_seed = {r["seed"]: r for r in cells}
        lines.append(f"| {pipeline} | {eps:g} | "
                     + " | ".join(f"{by_seed[s]['hr@10']:.4f}" for s in seeds)
                     + f" | **{np.mean([r['hr@10'] for r in cells]):.4f}** | "
                     f"{np.mean([r['ndcg@10'] for r in cells]):.4f} | "
                     f"{'pass' if all(r['audit'] for r in cells) else 'FAIL'} |")
    return "\n".join(lines)


def parse_reference(spec: str | None) -> tuple[str, dict[float, float]] | None:
    """``"LABEL:8=0.41,4=0.38"`` -> (LABEL, {8.0: 0.41, 4.0: 0.38})."""
    if not spec:
        return None
    label, _, points = spec.rpartition(":")
    return label, {float(e): float(h) for e, h in (p.split("=") for p in points.split(","))}


def plot(rows: list[dict], path: Path, reference=None) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4))
    for pipeline in sorted({r["pipeline"] for r in rows}):
        eps = sorted({r["epsilon"] for r in rows if r["pipeline"] == pipeline})
        finite = [e for e in eps if math.isfinite(e)]
        mean = [np.mean([r["hr@10"] for r in rows if r["pipeline"] == pipeline
                         and r["epsilon"] == e]) for e in finite]
        line, = ax.plot(finite, mean, marker="o", label=f"DP {pipeline}")
        if math.inf in eps:
            ax.axhline(np.mean([r["hr@10"] for r in rows if r["pipeline"] == pipeline
                                and math.isinf(r["epsilon"])]), ls=":", color=line.get_color(),
                       label=f"{pipeline}, no noise")
    if reference:
        label, points = reference
        ax.plot(sorted(points), [points[e] for e in sorted(points)], marker="s", color="grey",
                ls="--", label=label)
    ax.set_xscale("log")
    ticks = sorted({r["epsilon"] for r in rows if math.isfinite(r["epsilon"])})
    ax.set_xticks(ticks, [f"{t:g}" for t in ticks])
    ax.minorticks_off()
    ax.set_xlabel("user-level ε (replace one user, δ = 1/N^1.1)")
    ax.set_ylabel("HR@10 (mean over seeds)")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dataset", default="movielens-100k")
    parser.add_argument("--out", default="runs/tradeoff")
    parser.add_argument("--pipelines", default="popularity,knn")
    parser.add_argument("--epsilons", default="0.5,1,2,4,8,inf")
    parser.add_argument("--seeds", default="0,1,2")
    parser.add_argument("--holdout", default="test", choices=("test", "validation"))
    parser.add_argument("--set", default="{}", help="JSON of other ReleaseConfig settings")
    parser.add_argument("--png", type=Path)
    parser.add_argument("--reference", help="another method's points for the plot, "
                        "'LABEL:EPS=HR,EPS=HR'")
    args = parser.parse_args()
    seeds = [int(s) for s in args.seeds.split(",")]
    rows = [cell(args, p, float(e), s, json.loads(args.set))
            for p in args.pipelines.split(",") for e in args.epsilons.split(",") for s in seeds]
    print(table(rows, seeds))
    if args.png:
        plot(rows, args.png, parse_reference(args.reference))


if __name__ == "__main__":
    main()
