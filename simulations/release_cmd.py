"""``fedrec simulate --pipeline popularity|knn|als``: one-shot DP statistics releases.

The flags shared with the DP-FedAvg pipeline (dataset, seed, holdout, target ε, δ,
noise seed, out) keep their meaning; the release settings have their own group
(``fedrec.simulations.simulate_args.add_release_arguments``). The default pipeline (``neumf``)
is ``fedrec.simulations.simulate_cmd``'s federated training.
"""

from __future__ import annotations

import argparse
import json
import math
from pathlib import Path

from rich.table import Table

from fedrec.shared.errors import ConfigError
from fedrec.simulations.progress import console, report
from fedrec.simulations.simulate_args import build_release_config as build_config


def run(args: argparse.Namespace) -> int:
    from fedrec.server.rundir import RunDir
    from fedrec.simulations import release_sim

    cfg = build_config(args)
    if RunDir(cfg.out).manifest_path.exists():
        raise ConfigError(f"{cfg.out} already holds a run; choose another --out")
    chosen = " (--pipeline auto)" if args.pipeline == "auto" else ""
    console.print(f"{cfg.pipeline} release pipeline{chosen} on {cfg.dataset}, user-level ε "
                  f"{cfg.target_epsilon:g} -> {cfg.out}")
    with console.status(f"{args.engine}: calibrating the noise, collecting contributions, "
                        "releasing, evaluating on the devices..."):
        results = (release_sim.run_flower(cfg, args.workers) if args.engine == "flower"
                   else release_sim.run(cfg))
    report.print(table(results, read_baselines(args.compare)))
    return 0


def read_baselines(path: Path | None) -> list[dict]:
    """The records of a ``fedrec baseline`` results file (``--compare``); [] for None."""
    if path is None:
        return []
    try:
        records = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as err:
        raise ConfigError(f"--compare {path}: not a readable baselines file ({err})") from None
    return records if isinstance(records, list) else [records]


def table(results: dict, baselines: list[dict] = ()) -> Table:
    privacy = results["privacy"]
    eps = privacy["epsilon"]
    out = Table(title=f"{results['dataset']}, seed {results['seed']}, {results['holdout']} "
                      "item (leave-last-out, 99 sampled negatives)")
    for col in ("model", "HR@10", "NDCG@10", "ε", "upload / device"):
        out.add_column(col)
    upload = sum(results["upload_bytes"].values())
    out.add_row(f"federated DP {results['pipeline']} (releases)",
                f"{results['metrics']['hr@10']:.4f}", f"{results['metrics']['ndcg@10']:.4f}",
                "inf (not private)" if math.isinf(eps)
                else f"{eps:.2f} (user, {privacy['relation']}, δ {privacy['delta']:.1g})",
                f"{upload / 1e6:.2f} MB")
    for r in baselines:
        p = r.get("privacy")
        out.add_row(f"centralized {r['model']}", f"{r['metrics']['hr@10']:.4f}",
                    f"{r['metrics']['ndcg@10']:.4f}",
                    "inf (no DP)" if p is None else f"{p['epsilon']:.2f} ({p['level']})", "-")
    return out
