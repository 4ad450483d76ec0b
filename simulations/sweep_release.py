"""Sweep cells that run a statistics-release pipeline (``pipeline = "popularity"|"knn"``).

Such a cell's settings are ``fedrec.shared.release_config.ReleaseConfig`` keys, hyphenated as
``fedrec simulate --pipeline`` names them (``popularity-share``, ``head``, ``knn-top``,
``target-epsilon``, ``contributions``...). ``user-epsilon = E`` means
``target-epsilon = E``: a release calibrates its own noise to its target (the PLD ε of
every release together, user level, REPLACE_ONE), so no sweep-side calibration is needed.
``contributions = "raw"`` takes the same no-DP defaults as the flag. The sweep sets
``seed`` and ``out``.

A cell runs in this process (``fedrec.simulations.release_sim.run``, seconds on MovieLens-100k)
into its run directory. A release cannot resume: a directory holding a manifest but no
results is an interrupted release, whose ledger may already be in the budget registry; it
is moved aside (``<cell>.interrupted-<n>``, its registry entry kept under its own run id)
and the cell runs afresh.
"""

from __future__ import annotations

import math
from dataclasses import fields
from pathlib import Path
from typing import Any

from rich.progress import Progress

from fedrec.shared.config import RunConfig
from fedrec.shared.errors import ConfigError, FedrecError
from fedrec.shared.release_config import PIPELINES, ReleaseConfig, with_raw_defaults

NEUMF = "neumf"
#: What a sweep's ``pipeline`` setting may name (``neumf``: DP-FedAvg, the default).
PIPELINE_CHOICES = (NEUMF,) + PIPELINES
#: Settings the sweep itself sets on every cell.
SET_BY_SWEEP = ("out", "seed", "resume")


def pipeline_of(settings: dict[str, Any], where: str) -> str:
    """The pipeline a cell's merged settings name (default ``neumf``)."""
    value = settings.get("pipeline", NEUMF)
    if value not in PIPELINE_CHOICES:
        raise ConfigError(f"{where}: pipeline must be one of {', '.join(PIPELINE_CHOICES)}, "
                          f"got {value!r}")
    return value


def release_keys() -> set[str]:
    """The settings a release cell may name: ReleaseConfig's fields and ``user-epsilon``."""
    return {f.name.replace("_", "-") for f in fields(ReleaseConfig)} | {"user-epsilon"}


def check_release_keys(settings: dict[str, Any], pipeline: str, where: str) -> None:
    """One line for the first setting the ``pipeline`` release does not have."""
    known = release_keys()
    for key in settings:
        name = key.replace("_", "-")
        if name == "pipeline":
            continue
        if name in SET_BY_SWEEP:
            raise ConfigError(f"{where}: {key!r} is set by the sweep (use sweep.seeds and --out)")
        if name == "example-epsilon":
            raise ConfigError(f"{where}: example-epsilon: the {pipeline} pipeline has no "
                              "example-level mechanism (its ε is user level: user-epsilon)")
        if name not in known:
            raise ConfigError(f"{where}: {key!r} is not a setting of the {pipeline} pipeline "
                              "(release cells take fedrec simulate --pipeline settings)")


def release_config(settings: dict[str, Any], seed: int, out: Path, where: str) -> ReleaseConfig:
    """The cell's ReleaseConfig: ``settings`` (base, cell and grid merged, hyphenated or
    underscored keys) with ``user-epsilon`` as ``target-epsilon``, the seed and ``out``."""
    values = {k.replace("_", "-"): v for k, v in settings.items()}
    if "user-epsilon" in values:
        eps = values.pop("user-epsilon")
        if "target-epsilon" in values and _number(values["target-epsilon"]) != _number(eps):
            raise ConfigError(f"{where}: user-epsilon {eps} and target-epsilon "
                              f"{values['target-epsilon']} disagree (on a release cell they "
                              "are one setting: set one)")
        values["target-epsilon"] = eps
    values = with_raw_defaults(values)
    try:
        cfg = ReleaseConfig.from_mapping({**values, "seed": seed, "out": str(out)})
    except ConfigError as err:
        raise ConfigError(f"{where}: {err}") from None
    return absolute_paths(cfg)


def _number(value: Any) -> float | None:
    try:
        return float(value)
    except (TypeError, ValueError):
        return None


def absolute_paths(cfg: ReleaseConfig) -> ReleaseConfig:
    """Run directory, registry and a dataset file as absolute paths."""
    changes = {"out": str(Path(cfg.out).resolve())}
    if cfg.budget_dir:
        changes["budget_dir"] = str(Path(cfg.budget_dir).resolve())
    if Path(cfg.dataset).exists():
        changes["dataset"] = str(Path(cfg.dataset).resolve())
    return cfg.replace(**changes)


def reference_config(cfg: ReleaseConfig, out: Path) -> RunConfig:
    """Centralized NeuMF's config on a release cell's data (``reference = true`` in a
    sweep without DP-FedAvg cells): same dataset, synthetic size, seed and holdout."""
    return RunConfig(dataset=cfg.dataset, synthetic_users=cfg.synthetic_users,
                     synthetic_items=cfg.synthetic_items, seed=cfg.seed,
                     holdout=cfg.holdout, out=str(out))


def set_aside(run_dir: Path) -> Path:
    """Rename an interrupted release's directory to the first free
    ``<name>.interrupted-<n>``; returns the new path."""
    n = 1
    while (target := run_dir.with_name(f"{run_dir.name}.interrupted-{n}")).exists():
        n += 1
    run_dir.rename(target)
    return target


def run_cell(cfg: ReleaseConfig, label: str, bar: Progress) -> dict[str, Any]:
    """Run one release cell, a task on the sweep's ``bar`` stepping through its releases
    and the devices' evaluation; returns results.json's content.

    Raises:
        FedrecError: the release could not run (e.g. its noise cannot be calibrated).
    """
    from fedrec.simulations import release_sim

    steps = list(cfg.releases) + ["evaluate"]
    eps = "inf (no noise)" if math.isinf(cfg.target_epsilon) else f"{cfg.target_epsilon:g}"
    task = bar.add_task(label, total=len(steps), status=f"{cfg.pipeline}, ε {eps}: calibrating")

    def step(name: str) -> None:
        bar.update(task, completed=steps.index(name), status=f"{cfg.pipeline}, ε {eps}: {name}")

    try:
        results = release_sim.run(cfg, step=step)
    except (ValueError, RuntimeError) as err:
        raise FedrecError(f"{label}: {err}") from None
    finally:
        bar.remove_task(task)
    return results
