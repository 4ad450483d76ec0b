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
from fedrec.shared.release_config import (
    AUTO,
    AUTO_KNN_FROM,
    PIPELINES,
    ReleaseConfig,
    auto_pipeline,
    with_raw_defaults,
)

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


PIPELINE_CHOICES = ("neumf",) + PIPELINES + (AUTO,)
#: ReleaseConfig fields whose flag is RunConfig's (same name: ``--dataset``, ``--seed``,
#: ``--target-epsilon``, ``--out``, ...): defined once, by the RunConfig groups; a release
#: run takes ReleaseConfig's default where the flag is unset.
_SHARED_FLAGS = tuple(f.name for f in fields(ReleaseConfig) if f.name in _FLAGS)
#: ReleaseConfig fields with a release flag generated from their metadata.
_RELEASE_FLAGS = tuple(f.name for f in fields(ReleaseConfig)
                       if describe(f)["cli"] and f.name not in _SHARED_FLAGS)
RELEASE_GROUP = "statistics releases (--pipeline popularity|knn|als)"


def add_release_arguments(parser: argparse.ArgumentParser) -> None:
    """The ``--pipeline`` switch and the release settings (defaults: ``ReleaseConfig``).

    One flag per release-only ReleaseConfig field (:data:`_RELEASE_FLAGS`), generated from
    its metadata as the RunConfig flags are, its help ending in ReleaseConfig's default;
    the fields shared with RunConfig use the RunConfig flags. ``--pipeline``, ``--engine``
    and ``--compare`` are no config fields of this form and are written here.
    """
    parser.add_argument("--pipeline", choices=PIPELINE_CHOICES, default="neumf",
                        help="neumf: federated training (DP-FedAvg under --dp server); "
                        "popularity / knn / als: one-shot DP statistics releases, recommended "
                        "on the device (--target-epsilon is their total budget, inf: no "
                        "noise); auto: knn when users x ε >= "
                        f"{AUTO_KNN_FROM:g}, else popularity")
    group = parser.add_argument_group(RELEASE_GROUP)
    release_fields = {f.name: f for f in fields(ReleaseConfig)}
    for name in _RELEASE_FLAGS:
        f, meta = release_fields[name], describe(release_fields[name])
        help_text = f"{meta['help']} (default {_shown(f.default)})"
        group.add_argument(*meta["flags"], dest=name, help=help_text.replace("%", "%%"),
                           **_flag_kind(f, meta))
    group.add_argument("--engine", choices=("inprocess", "flower"), default="inprocess",
                       help="inprocess: the devices' and server's code in one loop (seconds); "
                       "flower: Flower's simulation engine, one SuperNode per user, the "
                       "contributions and the release as Flower messages")
    group.add_argument("--compare", type=Path, metavar="BASELINES_JSON",
                       help="print these `fedrec baseline` results (same data) beside the run; "
                       "with --pipeline neumf, their neumf record for the same data and seed "
                       "is the centralized reference (not trained again)")


def _shown(value: Any) -> str:
    """A default as ``--help`` shows it (floats without a trailing ``.0``)."""
    return f"{value:g}" if isinstance(value, float) else str(value)


def build_release_config(args: argparse.Namespace) -> ReleaseConfig:
    """The release run's config from the flags (``--pipeline popularity|knn|als``)."""
    values = {k: getattr(args, k) for k in _SHARED_FLAGS + _RELEASE_FLAGS
              if getattr(args, k, None) is not None}
    if values.get("target_epsilon") == 0:
        raise ConfigError("--target-epsilon must be > 0 for a release pipeline (inf: no noise)")
    values = with_raw_defaults(values)
    if getattr(args, "budget_dir", None) is not None:
        values["budget_dir"] = str(Path(args.budget_dir).resolve())
    if args.pipeline != AUTO:
        return ReleaseConfig(pipeline=args.pipeline, **values)
    cfg = ReleaseConfig(**values)
    return cfg.replace(pipeline=auto_pipeline(roster_size(cfg), cfg.target_epsilon))


def roster_size(cfg: ReleaseConfig) -> int:
    """Users of the release run's data (loaded once per process: the run reuses it)."""
    from fedrec.shared.federated_data import load_federation

    return load_federation(cfg.dataset, cfg.seed, cfg.synthetic_users,
                           cfg.synthetic_items).n_clients
