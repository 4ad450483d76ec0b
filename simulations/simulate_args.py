"""The flags of ``fedrec simulate`` (both pipelines) and the configs they build.

Light on purpose: ``fedrec.simulations.cli`` builds every parser on each call of ``fedrec``, so
this module imports only argparse and the TensorFlow-free config modules
(``fedrec.shared.config``, ``fedrec.shared.release_config``); the command itself
(``fedrec.simulations.simulate_cmd`` / ``release_cmd``) is imported only when it runs.
"""

from __future__ import annotations

import argparse
import json
from dataclasses import Field, fields
from pathlib import Path
from typing import Any, Mapping

from fedrec.shared.config import RunConfig
from fedrec.shared.config_meta import GROUPS, base_type, describe
from fedrec.shared.errors import ConfigError
from fedrec.shared.release_config import (CONTRIBUTIONS, NOISES, PIPELINES, RAW_DEFAULTS,
                                   ReleaseConfig, with_raw_defaults)

#: Simulated clients running in parallel by default (one per core of a 2-core machine).
WORKERS = 2


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", type=Path, help="TOML file with a [run] table (flags override)")
    groups = add_run_config_arguments(parser)
    groups["model"].add_argument("--dim", type=int,
                                 help="embedding size of both branches (GMF and MLP)")
    groups["server/strategy"].add_argument("--resume", type=Path, metavar="RUN_DIR",
                                           help="continue RUN_DIR from its last complete round")
    add_runner_arguments(parser)
    add_release_arguments(parser)
    parser.add_argument("--no-reference", action="store_true",
                        help="skip the centralized NeuMF reference")


def add_run_config_arguments(parser: argparse.ArgumentParser) -> dict[str, Any]:
    """One flag per RunConfig field, generated from its metadata (``fedrec.shared.config_meta``).

    Flag ``--field-name`` plus any aliases the field lists; the type from its annotation;
    choices where the config checks a fixed set; a bool is ``store_const True``. Every
    flag defaults to None (= not set, the config file or RunConfig's default holds).
    Returns the argument groups by name (``fedrec.shared.config_meta.GROUPS``).
    """
    groups = {g: parser.add_argument_group(g) for g in GROUPS}
    for f in fields(RunConfig):
        meta = describe(f)
        if meta["cli"]:
            groups[meta["group"]].add_argument(*meta["flags"], dest=f.name,
                                               help=meta["help"].replace("%", "%%"),
                                               **_flag_kind(f, meta))
    return groups


def _flag_kind(f: Field, meta: Mapping[str, Any]) -> dict[str, Any]:
    """argparse's type/action/choices/metavar for one field."""
    base, _ = base_type(f.type)
    if base == "bool":
        return {"action": "store_const", "const": True}
    kind: dict[str, Any] = {"type": {"int": int, "float": float, "str": str}[base]}
    if meta["choices"]:
        kind["choices"] = meta["choices"]
    if meta["metavar"]:
        kind["metavar"] = meta["metavar"]
    return kind


def add_runner_arguments(parser: argparse.ArgumentParser) -> None:
    """Where a simulation's clients run (``fedrec simulate`` and ``fedrec sweep``)."""
    parser.add_argument("--workers", type=int, default=WORKERS, help="parallel simulated clients")
    parser.add_argument("--ray-address", help="run the clients on an existing Ray cluster "
                        "(ray.init address, e.g. auto or ray://head:10001)")


#: RunConfig fields ``fedrec simulate`` has a generated flag for.
_FLAGS = tuple(f.name for f in fields(RunConfig) if describe(f)["cli"])


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
                  "skellam_bits", "min_survivors", "release_dropout")
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
    group.add_argument("--min-survivors", type=float,
                       help="--noise distributed: fraction of the roster in (0, 1] that must upload "
                       "for a release; noise shares are sized for ceil(fraction * n) devices, "
                       f"a release with fewer fails ({d.min_survivors:g})")
    group.add_argument("--release-dropout", type=float,
                       help="--noise distributed, in-process: simulated fraction of devices in "
                       "[0, 1) that never upload in a release (seeded by --seed: a failure "
                       f"simulation, not privacy randomness) ({d.release_dropout:g})")
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
