"""Accuracy against ε on MovieLens-100k: no DP, user-level DP, client example-level DP.

    .venv/bin/python benchmarks/bench_dp_tradeoff.py --out runs/dp_tradeoff

Every cell is a ``fedrec simulate`` run in its own directory under ``--out`` (all 943 users
as clients, every user in every round, FedAvg, 20 rounds, 10 for example-level ε = 1; DP
noise seeded with ``--noise-seed 0`` so that the table is reproducible); a finished cell is skipped, an
interrupted one resumed, so re-running the command continues where it stopped. Noise
multipliers are calibrated here with dp-accounting for the target ε after the cell's rounds:
user level for the replace-one event of full participation (δ = 1/N^1.1), example level
for a client with the median number of examples (δ = 1e-5; smaller clients sample at a
higher rate, spend faster and decline once they reach the same target).
Prints a markdown table with the command of every cell.

With ``--canaries K`` the same cells (plus a no-DP cell, without the example-level
ones) are trained with K canary clients for ``fedrec audit --empirical`` (noise then
calibrated for N + K clients), and each cell is audited, empirically, after it runs:

    .venv/bin/python benchmarks/bench_dp_tradeoff.py --out runs/dp_audit --canaries 100
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

ROUNDS = 20
#: example level at ε = 1 runs 10 rounds (each costs about 95 s on 2 cores)
EXAMPLE_EPS1_ROUNDS = 10
BASE = ["--dataset", "movielens-100k", "--clients-per-round", "0", "--local-epochs", "2",
        "--lr", "0.05", "--strategy", "fedavg", "--eval-every", "5", "--seed", "0",
        "--noise-seed", "0", "--no-reference"]


def user_noise(target: float, n_clients: int, rounds: int = ROUNDS) -> float:
    """z reaching ``target`` after ``rounds`` rounds with every client in every round."""
    from shared.config import RunConfig
    from simulations.calibrate import user_noise_multiplier

    cfg = RunConfig(dp="server", rounds=rounds, clients_per_round=0, clip=1.0)
    return user_noise_multiplier(cfg, n_clients, target)


def client_noise(target: float, examples: int, rounds: int = ROUNDS) -> float:
    """σ reaching ``target`` for a client with ``examples`` examples after ``rounds``."""
    from shared.config import RunConfig
    from simulations.calibrate import example_noise_multiplier

    return example_noise_multiplier(RunConfig(dp="client", local_epochs=2, rounds=rounds),
                                    examples, target)


def cells(canaries: int = 0) -> list[tuple[str, str, list[str]]]:
    """(name, run directory name, flags) of every cell."""
    import numpy as np

    from shared.federated_data import load_federation
    fed = load_federation("movielens-100k", 0, 20, 200)
    median = int(np.median([len(fed.client(i).train_items) for i in range(fed.n_clients)]))
    extra = ["--canaries", str(canaries)] if canaries else []
    out = [("no DP", "no_dp", ["--rounds", str(ROUNDS), "--clip", "2.0", *extra])] if canaries else []
    for eps in (8.0, 4.0, 1.0):
        z = user_noise(eps, fed.n_clients + canaries)
        out.append((f"user ε={eps:g}", f"user_eps{eps:g}",
                    ["--rounds", str(ROUNDS), "--dp", "server", "--clip", "2.0",
                     "--noise-multiplier", f"{z:.4f}", "--target-epsilon", f"{eps * 1.001:g}",
                     *extra]))
    if canaries:
        return out
    for eps, rounds, slug in ((8.0, ROUNDS, "example_eps8"),
                              (1.0, EXAMPLE_EPS1_ROUNDS, "example_eps1_10rounds")):
        z = client_noise(eps, median, rounds)
        out.append((f"example ε={eps:g}", slug,
                    ["--rounds", str(rounds), "--dp", "client", "--client-clip", "1.0",
                     "--client-noise-multiplier", f"{z:.4f}", "--client-target-epsilon", f"{eps:g}"]))
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--only", help="run only cells whose name contains this")
    parser.add_argument("--canaries", type=int, default=0,
                        help="train with K canary clients and audit each cell empirically")
    parser.add_argument("--no-dp-run", type=Path, help="a run of the same federation without DP "
                        "(e.g. benchmarks/bench_federated.py's, any number of rounds >= 20): "
                        "its round-20 line is the no-DP row")
    args = parser.parse_args()

    from server.rundir import RunDir
    from shared.cli import main as fedrec

    rows = []
    for name, slug, flags in cells(args.canaries):
        if args.only and args.only not in name:
            continue
        out = args.out / slug
        run = RunDir(out)
        cmd = BASE + flags + ["--out", str(out)]
        if not run.results_path.exists():
            resume = ["--resume", str(out), "--no-reference"]
            code = fedrec(["simulate", *(resume if run.manifest_path.exists() else cmd)])
            if code:
                sys.exit(code)
        if args.canaries and not (out / "audit.json").exists():
            fedrec(["audit", str(out), "--empirical"])
        rows.append((name, cmd, json.loads(run.results_path.read_text()), run.read_metrics()))
    if args.no_dp_run:
        history = [r for r in RunDir(args.no_dp_run).read_metrics() if r["round"] <= ROUNDS]
        manifest = RunDir(args.no_dp_run).manifest()["config"]
        cmd = ["--rounds", str(manifest["rounds"]), "--out", str(args.no_dp_run),
               f"(its round-{ROUNDS} line)"]
        res = {"metrics": history[-1], "privacy": None, "rounds": history[-1]["round"],
               "wall_seconds": sum(r["wall_seconds"] for r in history)}
        at = BASE.index("--noise-seed")
        rows.insert(0, ("no DP", BASE[:at] + BASE[at + 2:] + cmd, res, history))
    print("| setting | HR@10 | NDCG@10 | ε user (RDP) | ε example, max client | rounds | "
          "clients declining (last round) | wall min |")
    print("|---|---|---|---|---|---|---|---|")
    for name, _, res, history in rows:
        p = res.get("privacy") or {}
        user = (p.get("user") or {}).get("epsilon")
        example = (p.get("example") or {}).get("max_client_epsilon")
        print(f"| {name} | {res['metrics'].get('hr@10', float('nan')):.4f} | "
              f"{res['metrics'].get('ndcg@10', float('nan')):.4f} | "
              f"{'-' if user is None else f'{user:.2f}'} | "
              f"{'-' if example is None else f'{example:.2f}'} | {res['rounds']} | "
              f"{history[-1].get('clients_declined', 0)} | {res['wall_seconds'] / 60:.1f} |")
    print()
    for name, cmd, _, _ in rows:
        print(f"- {name}: `fedrec simulate {' '.join(cmd)}`")


if __name__ == "__main__":
    main()
