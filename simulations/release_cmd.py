"""``fedrec simulate --pipeline popularity|knn``: one-shot DP statistics releases.

The flags shared with the DP-FedAvg pipeline (dataset, seed, holdout, target ε, δ,
noise seed, out) keep their meaning; the release settings have their own group. The
default pipeline (``neumf``) is ``simulations.simulate_cmd``'s federated training.
"""

from __future__ import annotations

import argparse
import json
import math
from pathlib import Path

from rich.table import Table

from shared.errors import ConfigError
from shared.release_config import CONTRIBUTIONS, PIPELINES, RAW_DEFAULTS, ReleaseConfig
from simulations.progress import console, report

PIPELINE_CHOICES = ("neumf",) + PIPELINES
#: flag dest -> ReleaseConfig field, for the release-only flags.
_RELEASE_FLAGS = ("popularity_share", "popularity_decay", "popularity_cap", "head", "cap",
                  "knn_rank", "knn_alpha", "knn_decay", "knn_weight", "knn_top", "ease_lambda",
                  "ease_weight", "contributions")
#: flags ``fedrec simulate`` shares with the DP-FedAvg pipeline.
_SHARED_FLAGS = ("dataset", "synthetic_users", "synthetic_items", "seed", "holdout",
                 "target_epsilon", "delta", "noise_seed")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The ``--pipeline`` switch and the release settings (defaults: ``ReleaseConfig``)."""
    parser.add_argument("--pipeline", choices=PIPELINE_CHOICES, default="neumf",
                        help="neumf: federated training (DP-FedAvg under --dp server); "
                        "popularity / knn: one-shot DP statistics releases, recommended on "
                        "the device (--target-epsilon is their total budget, inf: no noise)")
    group = parser.add_argument_group("statistics releases (--pipeline popularity|knn)")
    d = ReleaseConfig()
    group.add_argument("--popularity-share", type=float,
                       help=f"share of the budget for popularity (default {d.popularity_share})")
    group.add_argument("--popularity-decay", type=float,
                       help=f"recency weight of a device's popularity vector ({d.popularity_decay})")
    group.add_argument("--popularity-cap", type=int,
                       help=f"newest items in it, 0: all ({d.popularity_cap})")
    group.add_argument("--head", type=int,
                       help=f"items in the co-occurrence release, 0: all ({d.head})")
    group.add_argument("--cap", type=int, help=f"a device's newest head items used, 0: all ({d.cap})")
    group.add_argument("--knn-rank", type=int, help=f"low-rank denoising, 0: none ({d.knn_rank})")
    group.add_argument("--knn-alpha", type=float, help=f"popularity normalisation ({d.knn_alpha})")
    group.add_argument("--knn-decay", type=float, help=f"recency weight in scoring ({d.knn_decay})")
    group.add_argument("--knn-weight", type=float,
                       help=f"weight of kNN next to popularity on the device, -1: each "
                       f"device picks it ({d.knn_weight})")
    group.add_argument("--knn-top", type=int,
                       help=f"a candidate's most similar items kept, 0: all ({d.knn_top})")
    group.add_argument("--ease-lambda", type=float,
                       help=f"also release EASE weights with this ridge penalty, 0: no ({d.ease_lambda})")
    group.add_argument("--ease-weight", type=float,
                       help=f"weight of EASE next to popularity on the device ({d.ease_weight})")
    group.add_argument("--contributions", choices=CONTRIBUTIONS,
                       help="bounded: norm-1 contributions (DP); raw: counts, the federated "
                       "statistics equal the centralized ones, no DP (implies --target-epsilon "
                       "inf; unset settings take the no-DP defaults: "
                       + ", ".join(f"{k.replace('_', '-')} {v:g}" for k, v in RAW_DEFAULTS.items()
                                   if k != "target_epsilon") + ")")
    group.add_argument("--engine", choices=("inprocess", "flower"), default="inprocess",
                       help="inprocess: the devices' and server's code in one loop (seconds); "
                       "flower: Flower's simulation engine, one SuperNode per user, the "
                       "contributions and the release as Flower messages")
    group.add_argument("--compare", type=Path, metavar="BASELINES_JSON",
                       help="print these `fedrec baseline` results (same data) beside the run")


def build_config(args: argparse.Namespace) -> ReleaseConfig:
    values = {k: getattr(args, k) for k in _SHARED_FLAGS + _RELEASE_FLAGS
              if getattr(args, k, None) is not None}
    if values.get("target_epsilon") == 0:
        raise ConfigError("--target-epsilon must be > 0 for a release pipeline (inf: no noise)")
    if values.get("contributions") == "raw":
        values = {**RAW_DEFAULTS, **values}
    if args.out is not None:
        values["out"] = str(args.out)
    return ReleaseConfig(pipeline=args.pipeline, **values)


def run(args: argparse.Namespace) -> int:
    from server.rundir import RunDir
    from simulations import release_sim

    cfg = build_config(args)
    if RunDir(cfg.out).manifest_path.exists():
        raise ConfigError(f"{cfg.out} already holds a run; choose another --out")
    console.print(f"{cfg.pipeline} release pipeline on {cfg.dataset}, user-level ε "
                  f"{cfg.target_epsilon:g} -> {cfg.out}")
    with console.status(f"{args.engine}: calibrating the noise, collecting contributions, "
                        "releasing, evaluating on the devices..."):
        results = (release_sim.run_flower(cfg, args.workers) if args.engine == "flower"
                   else release_sim.run(cfg))
    report.print(table(results, _baselines(args.compare)))
    return 0


def _baselines(path: Path | None) -> list[dict]:
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
