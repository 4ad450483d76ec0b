"""The flags of ``fedrec simulate`` (both pipelines) and the configs they build.

Light on purpose: ``fedrec.simulations.cli`` builds every parser on each call of ``fedrec``, so
this module imports only argparse and the TensorFlow-free config modules
(``fedrec.shared.config``, ``fedrec.shared.release_config``); the command itself
(``fedrec.simulations.simulate_cmd`` / ``release_cmd``) is imported only when it runs.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from fedrec.shared.config import (DP_CLIPPING, DP_MODES, HOLDOUTS, LOCAL_OPTIMIZERS, STRATEGIES,
                           RunConfig)
from fedrec.shared.errors import ConfigError
from fedrec.shared.release_config import (CONTRIBUTIONS, NOISES, PIPELINES, RAW_DEFAULTS,
                                   ReleaseConfig, with_raw_defaults)

#: Simulated clients running in parallel by default (one per core of a 2-core machine).
WORKERS = 2


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", type=Path, help="TOML file with a [run] table (flags override)")
    parser.add_argument("--dataset", help="synthetic, movielens-100k or a path")
    parser.add_argument("--rounds", type=int)
    parser.add_argument("--clients-per-round", type=int, help="0 = all clients")
    parser.add_argument("--eval-clients", type=int, help="clients evaluated per round (0 = all)")
    parser.add_argument("--eval-every", type=int)
    parser.add_argument("--local-epochs", type=int)
    parser.add_argument("--batch-size", type=int)
    parser.add_argument("--lr", dest="learning_rate", type=float, help="local learning rate")
    parser.add_argument("--lr-decay", type=float,
                        help="local learning rate of round r: lr * lr-decay^(r-1)")
    parser.add_argument("--local-optimizer", choices=LOCAL_OPTIMIZERS)
    parser.add_argument("--local-adam-eps", type=float,
                        help="local Adam's stability constant (not a privacy epsilon)")
    parser.add_argument("--recency-decay", type=float,
                        help="weight recency-decay^r on a client's r-th most recent positive")
    parser.add_argument("--reconstruction-steps", type=int)
    parser.add_argument("--serve-passes", type=int,
                        help="fit the served (evaluated) user embedding afresh in this many "
                             "reconstructions (0: refresh the training embedding)")
    parser.add_argument("--serve-recency-decay", type=float,
                        help="weight serve-recency-decay^r on the r-th most recent positive "
                             "in that fit")
    parser.add_argument("--serve-average", type=int,
                        help="serve the mean embedding of this many such fits")
    parser.add_argument("--negatives", type=int)
    parser.add_argument("--holdout", choices=HOLDOUTS,
                        help="evaluate on the test item, or on the validation item (for "
                             "choosing settings)")
    parser.add_argument("--strategy", choices=STRATEGIES)
    parser.add_argument("--server-lr", dest="server_learning_rate", type=float)
    parser.add_argument("--server-momentum", type=float,
                        help="fedavgm's momentum (with --dp server: applied after the noise)")
    parser.add_argument("--dim", type=int, help="embedding size of both branches (GMF and MLP)")
    parser.add_argument("--gmf-dim", type=int, help="GMF embedding size (overrides --dim)")
    parser.add_argument("--mlp-dim", type=int, help="MLP embedding size (overrides --dim)")
    parser.add_argument("--synthetic-users", type=int)
    parser.add_argument("--synthetic-items", type=int)
    parser.add_argument("--seed", type=int)
    parser.add_argument("--out", type=Path, help="run directory")
    dp = parser.add_argument_group("differential privacy")
    dp.add_argument("--dp", choices=DP_MODES, help="none, client (example-level DP-SGD), "
                    "server (user-level DP-FedAvg) or both")
    dp.add_argument("--dp-clipping", choices=DP_CLIPPING, help="user-level clipping")
    dp.add_argument("--noise-multiplier", type=float, help="user-level z (std / clip, per average)")
    dp.add_argument("--clip", type=float, help="user-level L2 bound on a client update")
    dp.add_argument("--target-epsilon", type=float, help="user-level budget: stop before exceeding")
    dp.add_argument("--delta", type=float, help="user-level delta (default 1/N^1.1)")
    dp.add_argument("--clip-quantile", type=float, help="adaptive clipping target quantile")
    dp.add_argument("--clip-lr", type=float, help="adaptive clipping step")
    dp.add_argument("--clipped-count-stddev", type=float, help="adaptive: count noise std")
    dp.add_argument("--clip-adapt-range", type=float,
                    help="adaptive: the clip stays in [clip / r, clip * r] (default 100)")
    dp.add_argument("--client-noise-multiplier", type=float, help="local DP-SGD noise / clip")
    dp.add_argument("--client-clip", type=float, help="local DP-SGD per-example L2 bound")
    dp.add_argument("--client-target-epsilon", type=float,
                    help="example-level budget: clients decline rounds past it")
    dp.add_argument("--client-delta", type=float, help="example-level delta")
    dp.add_argument("--noise-seed", type=int, help="seeds the DP noise only")
    dp.add_argument("--canaries", type=int, help="audit runs: k canary clients for "
                    "`fedrec audit --empirical` (0: none)")
    dp.add_argument("--example-canaries", type=int, metavar="M",
                    help="audit runs: M users each train on one canary interaction chosen by "
                    "a coin, for the example-level one-run audit of `fedrec audit "
                    "--empirical` (0: none)")
    dp.add_argument("--secagg", action="store_const", const=True,
                    help="secure aggregation (Flower SecAgg+): the server only sees the sum; "
                    "needs --dp server --dp-clipping client-fixed")
    dp.add_argument("--secagg-shares", type=int, help="SecAgg+ shares per secret (0: all)")
    dp.add_argument("--secagg-threshold", type=float,
                    help="SecAgg+ fraction of shares that reconstructs a dropped mask")
    sc = parser.add_argument_group("scenarios")
    sc.add_argument("--dropout", type=float, help="probability a sampled client fails mid-round")
    sc.add_argument("--straggler-fraction", type=float, help="fraction of slow clients")
    sc.add_argument("--straggler-delay", type=float, help="seconds a slow client answers late")
    sc.add_argument("--round-timeout", type=float, help="seconds the server waits for replies")
    sc.add_argument("--participation-window", type=int,
                    help="a device takes part at most once per this many rounds")
    sc.add_argument("--late-users", type=float,
                    help="cold start: fraction of users that join only in --join-round")
    sc.add_argument("--join-round", type=int, help="cold start: the round late users join")
    sc.add_argument("--new-items", type=float,
                    help="new items: fraction of the catalogue released only in --items-round")
    sc.add_argument("--items-round", type=int, help="new items: the round they are released")
    sc.add_argument("--heterogeneity", dest="synthetic_heterogeneity", type=float,
                    help="synthetic data: non-IID knob in [0, 1]")
    sc.add_argument("--activity-skew", dest="synthetic_activity_skew", type=float,
                    help="synthetic data: sigma of the log-normal activity skew")
    sc.add_argument("--lazy", dest="lazy_clients", action="store_const", const=True,
                    help="synthetic data: generate each client when it is called (scale runs: "
                    "memory bounded by the clients of a round)")
    parser.add_argument("--budget-dir", type=Path,
                        help="dataset-level budget registry this run records its releases in "
                        "(default: .fedrec-budget next to --out; see fedrec audit --budget)")
    parser.add_argument("--resume", type=Path, metavar="RUN_DIR",
                        help="continue RUN_DIR from its last complete round")
    add_runner_arguments(parser)
    add_release_arguments(parser)
    parser.add_argument("--no-reference", action="store_true",
                        help="skip the centralized NeuMF reference")


def add_runner_arguments(parser: argparse.ArgumentParser) -> None:
    """Where a simulation's clients run (``fedrec simulate`` and ``fedrec sweep``)."""
    parser.add_argument("--workers", type=int, default=WORKERS, help="parallel simulated clients")
    parser.add_argument("--ray-address", help="run the clients on an existing Ray cluster "
                        "(ray.init address, e.g. auto or ray://head:10001)")


_FLAGS = ("dataset", "rounds", "clients_per_round", "eval_clients", "eval_every", "local_epochs",
          "batch_size", "learning_rate", "lr_decay", "local_optimizer", "local_adam_eps",
          "recency_decay", "reconstruction_steps", "serve_passes", "serve_recency_decay",
          "serve_average", "negatives", "holdout", "strategy", "server_learning_rate",
          "server_momentum", "synthetic_users", "synthetic_items", "seed", "gmf_dim", "mlp_dim",
          "dp", "dp_clipping",
          "noise_multiplier", "clip", "target_epsilon", "delta", "clip_quantile", "clip_lr",
          "clipped_count_stddev", "clip_adapt_range", "client_noise_multiplier", "client_clip",
          "client_target_epsilon", "client_delta", "noise_seed", "canaries", "example_canaries",
          "dropout",
          "straggler_fraction", "straggler_delay", "round_timeout", "participation_window",
          "synthetic_heterogeneity", "synthetic_activity_skew", "lazy_clients", "late_users",
          "join_round", "new_items", "items_round", "secagg", "secagg_shares",
          "secagg_threshold")


def build_config(args: argparse.Namespace) -> RunConfig:
    """Config file, then flags; ``--resume`` reuses the run's own manifest config."""
    if args.resume is not None:
        manifest = args.resume / "manifest.json"
        if not manifest.exists():
            raise ConfigError(f"{args.resume}: not a run directory (no manifest.json)")
        cfg = RunConfig.from_mapping(json.loads(manifest.read_text())["config"], str(manifest))
        return absolute_paths(cfg.replace(resume=True, out=str(args.resume),
                                          rounds=args.rounds or cfg.rounds))
    cfg = RunConfig.from_toml(args.config) if args.config else RunConfig()
    dims = {} if args.dim is None else {"gmf_dim": args.dim, "mlp_dim": args.dim}
    changes = {**dims, **{k: getattr(args, k) for k in _FLAGS if getattr(args, k) is not None}}
    if args.out is not None:
        changes["out"] = str(args.out)
    if getattr(args, "budget_dir", None) is not None:
        changes["budget_dir"] = str(args.budget_dir)
    try:
        return absolute_paths(cfg.replace(**changes))
    except (TypeError, ValueError) as err:
        raise ConfigError(str(err)) from None


def absolute_paths(cfg: RunConfig) -> RunConfig:
    """Paths as absolute: the simulation runs with the app folder as working directory."""
    changes = {"out": str(Path(cfg.out).resolve())}
    if cfg.client_state_dir:
        changes["client_state_dir"] = str(Path(cfg.client_state_dir).resolve())
    if cfg.budget_dir:
        changes["budget_dir"] = str(Path(cfg.budget_dir).resolve())
    if Path(cfg.dataset).exists():
        changes["dataset"] = str(Path(cfg.dataset).resolve())
    return cfg.replace(**changes)


PIPELINE_CHOICES = ("neumf",) + PIPELINES
#: flag dest -> ReleaseConfig field, for the release-only flags.
_RELEASE_FLAGS = ("popularity_share", "popularity_decay", "popularity_cap", "head", "cap",
                  "knn_rank", "knn_alpha", "knn_decay", "knn_weight", "knn_top", "ease_lambda",
                  "ease_weight", "pair_beta", "genre_weight", "year_weight", "year_window",
                  "year_bandwidth", "als_rank", "als_passes", "als_weight", "als_negative",
                  "als_lambda", "als_item_lambda", "als_min_support", "contributions", "noise", "skellam_scale",
                  "skellam_bits")
#: flags ``fedrec simulate`` shares with the DP-FedAvg pipeline.
_SHARED_FLAGS = ("dataset", "synthetic_users", "synthetic_items", "seed", "holdout",
                 "target_epsilon", "delta", "noise_seed")


def add_release_arguments(parser: argparse.ArgumentParser) -> None:
    """The ``--pipeline`` switch and the release settings (defaults: ``ReleaseConfig``)."""
    parser.add_argument("--pipeline", choices=PIPELINE_CHOICES, default="neumf",
                        help="neumf: federated training (DP-FedAvg under --dp server); "
                        "popularity / knn: one-shot DP statistics releases, recommended on "
                        "the device (--target-epsilon is their total budget, inf: no noise)")
    group = parser.add_argument_group("statistics releases (--pipeline popularity|knn|als)")
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
    group.add_argument("--pair-beta", type=float,
                       help=f"a device's pair (i, j) weighs (d_i d_j)^-beta within its unit "
                       f"norm, d the released popularity ({d.pair_beta})")
    group.add_argument("--als-rank", type=int, help=f"--pipeline als: rank of the factors ({d.als_rank})")
    group.add_argument("--als-passes", type=int,
                       help=f"--pipeline als: ALS passes, one DP release each ({d.als_passes})")
    group.add_argument("--als-weight", type=float,
                       help=f"weight of the device's ALS scores next to popularity ({d.als_weight:g})")
    group.add_argument("--als-negative", type=float,
                       help=f"implicit-negative weight of the ALS solves ({d.als_negative:g})")
    group.add_argument("--als-lambda", type=float,
                       help=f"ridge penalty of the device's own factor ({d.als_lambda:g})")
    group.add_argument("--als-item-lambda", type=float,
                       help=f"ridge penalty of the server's item factors ({d.als_item_lambda:g})")
    group.add_argument("--als-min-support", type=float,
                       help="an item keeps a factor only if its noisy support exceeds this "
                       f"many noise stds ({d.als_min_support:g})")
    group.add_argument("--genre-weight", type=float,
                       help="weight of each device's genre-profile scores (its own history "
                       f"on the public catalogue; no privacy cost), 0: off ({d.genre_weight})")
    group.add_argument("--year-weight", type=float,
                       help="weight of each device's release-year scores (closeness to the "
                       f"median year of its newest items), 0: off ({d.year_weight})")
    group.add_argument("--year-window", type=int,
                       help=f"newest items whose median release year is the centre ({d.year_window})")
    group.add_argument("--year-bandwidth", type=float,
                       help=f"width of the release-year closeness, in years ({d.year_bandwidth:g})")
    group.add_argument("--contributions", choices=CONTRIBUTIONS,
                       help="bounded: norm-1 contributions (DP); raw: counts, the federated "
                       "statistics equal the centralized ones, no DP (implies --target-epsilon "
                       "inf; unset settings take the no-DP defaults: "
                       + ", ".join(f"{k.replace('_', '-')} {v:g}" for k, v in RAW_DEFAULTS.items()
                                   if k != "target_epsilon") + ")")
    group.add_argument("--noise", choices=NOISES,
                       help="central: the server adds one Gaussian per release; distributed: "
                       "each device adds its share of Skellam integer noise to its quantized "
                       "contribution, the server sums integers mod 2^bits (in-process engine "
                       f"only; docs/distributed-dp.md) ({d.noise})")
    group.add_argument("--skellam-scale", type=float,
                       help=f"--noise distributed: integer units per unit of contribution ({d.skellam_scale:g})")
    group.add_argument("--skellam-bits", type=int,
                       help=f"--noise distributed: most bits per coordinate a device uploads ({d.skellam_bits})")
    group.add_argument("--engine", choices=("inprocess", "flower"), default="inprocess",
                       help="inprocess: the devices' and server's code in one loop (seconds); "
                       "flower: Flower's simulation engine, one SuperNode per user, the "
                       "contributions and the release as Flower messages")
    group.add_argument("--compare", type=Path, metavar="BASELINES_JSON",
                       help="print these `fedrec baseline` results (same data) beside the run; "
                       "with --pipeline neumf, their neumf record for the same data and seed "
                       "is the centralized reference (not trained again)")


def build_release_config(args: argparse.Namespace) -> ReleaseConfig:
    """The release run's config from the flags (``--pipeline popularity|knn|als``)."""
    values = {k: getattr(args, k) for k in _SHARED_FLAGS + _RELEASE_FLAGS
              if getattr(args, k, None) is not None}
    if values.get("target_epsilon") == 0:
        raise ConfigError("--target-epsilon must be > 0 for a release pipeline (inf: no noise)")
    values = with_raw_defaults(values)
    if args.out is not None:
        values["out"] = str(args.out)
    if getattr(args, "budget_dir", None) is not None:
        values["budget_dir"] = str(Path(args.budget_dir).resolve())
    return ReleaseConfig(pipeline=args.pipeline, **values)
