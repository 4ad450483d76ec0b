"""A federated run through `fedrec simulate`, then its convergence curve and summary.

    .venv/bin/python benchmarks/bench_federated.py --out runs/fed_ml100k -- \
        --dataset movielens-100k --rounds 100 --strategy fedadam --server-lr 0.01 --eval-every 5

Everything after ``--`` goes to ``fedrec simulate``. Writes ``convergence.png`` into the run
directory and prints rounds-to-HR@10 0.60, the best and final HR@10 and the wall time.
An interrupted benchmark resumes: run the same command again.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path


def main() -> None:
    argv = sys.argv[1:]
    extra = argv[argv.index("--") + 1:] if "--" in argv else []
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--reference", type=float, default=None,
                        help="centralized NeuMF HR@10 to draw (default: the run's own reference)")
    args = parser.parse_args(argv[:argv.index("--")] if "--" in argv else argv)

    from fedrec.server.rundir import RunDir
    from fedrec.simulations.cli import main as fedrec
    from fedrec.simulations.plots import plot_convergence

    run = RunDir(args.out)
    if not run.results_path.exists():
        cmd = (["simulate", "--resume", str(args.out)] if run.manifest_path.exists()
               else ["simulate", *extra, "--out", str(args.out)])
        code = fedrec(cmd + ["--no-reference"])
        if code:
            sys.exit(code)
    rows = run.read_metrics()
    results = json.loads(run.results_path.read_text())
    refs = {"popularity (centralized)": 0.407}
    if args.reference is not None:
        refs["NeuMF (centralized)"] = args.reference
    png = plot_convergence(rows, args.out / "convergence.png",
                           f"{results['dataset']}: {results['model']}, "
                           f"{results['clients_per_round']}/{results['clients']} clients per round",
                           refs)
    evaluated = [r for r in rows if r.get("hr@10") is not None]
    best = max(evaluated, key=lambda r: r["hr@10"])
    print(f"final HR@10 {evaluated[-1]['hr@10']:.4f} (round {evaluated[-1]['round']}), "
          f"best {best['hr@10']:.4f} (round {best['round']}), "
          f"rounds to 0.60: {results['rounds_to_hr@10_0.60']}, "
          f"wall {results['wall_seconds'] / 60:.1f} min; curve: {png}")


if __name__ == "__main__":
    main()
