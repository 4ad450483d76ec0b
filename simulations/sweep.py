"""A sweep: one base run, cells and a grid over any run parameter, and seeds.

The TOML file (``fedrec sweep CONFIG.toml``)::

    [sweep]
    name = "MovieLens-100k: accuracy against ε"
    seeds = [0, 1]               # every cell runs once per seed
    reference = true             # centralized NeuMF on the same data, as a reference line

    [base]                       # any run parameter (``fedrec simulate`` / RunConfig keys)
    dataset = "movielens-100k"
    rounds = 20

    [grid]                       # optional: the cartesian product of these lists
    local-epochs = [1, 2]

    [[cells]]                    # optional: named cells, each crossed with the grid
    name = "user ε = 8"
    dp = "server"
    user-epsilon = 8             # calibrate the noise multiplier for ε = 8 at the last round

Besides run parameters a cell or grid may set ``user-epsilon`` (user-level target:
the noise multiplier is calibrated with dp-accounting and ``target-epsilon`` set just
above it) and ``example-epsilon`` (the same for client DP-SGD, calibrated for the
median client). Everything is validated when the file is read: one line per mistake.

A cell (or ``[base]``, or a ``[grid]`` axis) may set ``pipeline = "popularity"`` or
``"knn"``: a one-shot statistics release (``fedrec simulate --pipeline``) instead of
DP-FedAvg (``"neumf"``, the default). Its settings are then ``ReleaseConfig`` keys
(``popularity-share``, ``head``, ``knn-top``, ``target-epsilon`` = ``user-epsilon``...;
``fedrec.simulations.sweep_release``)::

    [[cells]]
    name = "knn"
    pipeline = "knn"
    user-epsilon = 2             # the release calibrates its own noise to ε = 2
"""

from __future__ import annotations

import itertools
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from fedrec.shared.config import RunConfig, read_toml
from fedrec.shared.errors import ConfigError
from fedrec.shared.release_config import ReleaseConfig
from fedrec.simulations.sweep_release import NEUMF, check_release_keys, pipeline_of, release_config

#: Cell keys that are not run parameters: targets the noise is calibrated for.
TARGETS = ("user-epsilon", "example-epsilon")
#: ``target-epsilon`` is set this much above a calibrated target (accountant numerics).
TARGET_SLACK = 1.001


@dataclass(frozen=True)
class Cell:
    """One run of the sweep: a cell's settings under one seed."""

    label: str
    params: dict[str, Any]          # what this cell changes (hyphenated keys), targets included
    seed: int
    config: RunConfig | ReleaseConfig   # the full run config (noise calibrated, out set)

    @property
    def key(self) -> str:
        """Directory name: the label's safe form plus the seed."""
        return Path(self.config.out).name

    @property
    def pipeline(self) -> str:
        """``neumf`` (DP-FedAvg, a RunConfig) or a release pipeline (a ReleaseConfig)."""
        return self.config.pipeline if isinstance(self.config, ReleaseConfig) else NEUMF


@dataclass
class Sweep:
    name: str
    seeds: list[int]
    reference: bool
    base: dict[str, Any]
    cells: list[Cell] = field(default_factory=list)
    source: str = ""


def slug(text: str) -> str:
    """A file-system-safe name: ε spelled out, runs of other characters become one '-'."""
    text = text.replace("ε", "eps").replace("=", "")
    return re.sub(r"[^A-Za-z0-9.]+", "-", text).strip("-").lower() or "cell"


def _table(data: dict, key: str, source: str) -> dict:
    value = data.get(key, {})
    if not isinstance(value, dict):
        raise ConfigError(f"{source}: [{key}] must be a table")
    return value


#: The sweeps that ship with fedrec (package data: in the wheel too).
BUNDLED = Path(__file__).resolve().parent / "configs"


def resolve_config(path: str | Path) -> Path:
    """``path`` when it exists; else the bundled sweep of that file name, so that
    ``fedrec sweep simulations/configs/ml100k_tradeoff.toml`` (or just
    ``ml100k_tradeoff.toml``) works from any folder and from an installed wheel."""
    path = Path(path)
    bundled = BUNDLED / path.name
    return bundled if not path.exists() and bundled.is_file() else path


def load_sweep(path: str | Path, out: str | Path) -> Sweep:
    """Read and validate a sweep file (:func:`resolve_config`); every cell's run directory
    goes under ``out/runs``."""
    path = resolve_config(path)
    data = read_toml(path)
    source = str(path)
    unknown = sorted(set(data) - {"sweep", "base", "grid", "cells"})
    if unknown:
        raise ConfigError(f"{source}: unknown section(s) {', '.join(unknown)} "
                          "(expected sweep, base, grid, cells)")
    meta, base, grid = (_table(data, k, source) for k in ("sweep", "base", "grid"))
    seeds = meta.get("seeds", [base.get("seed", 0)])
    if not (isinstance(seeds, list) and seeds and all(isinstance(s, int) and s >= 0 for s in seeds)):
        raise ConfigError(f"{source}: sweep.seeds must be a non-empty list of integers >= 0")
    for key, values in grid.items():
        if not (isinstance(values, list) and values):
            raise ConfigError(f"{source}: grid.{key} must be a non-empty list")
    cells = data.get("cells", [{}])
    if not (isinstance(cells, list) and all(isinstance(c, dict) for c in cells)):
        raise ConfigError(f"{source}: [[cells]] must be tables")
    sweep = Sweep(str(meta.get("name", path.stem)), seeds, bool(meta.get("reference", True)),
                  base, source=source)
    for i, cell in enumerate(cells):
        settings = {k: v for k, v in cell.items() if k != "name"}
        for combo in itertools.product(*grid.values()):
            point = dict(zip(grid, combo))
            params = {**settings, **point}
            label = _label(cell.get("name"), point, settings)
            pipeline = pipeline_of({**base, **params}, f"{source}: cells[{i}] ({label})")
            for where, part in (("base", base), (f"cells[{i}]", settings), ("grid", point)):
                _check_keys(part, pipeline, source, where)
            for seed in seeds:
                sweep.cells.append(_cell(base, params, label, seed, Path(out), source, pipeline))
    labels = [c.key for c in sweep.cells]
    if len(set(labels)) != len(labels):
        raise ConfigError(f"{source}: two cells share a name; give each [[cells]] a distinct name")
    return sweep


def _check_keys(settings: dict, pipeline: str, source: str, where: str) -> None:
    """One line for the first setting ``pipeline``'s cells do not have."""
    if pipeline != NEUMF:
        check_release_keys(settings, pipeline, f"{source}: {where} (pipeline {pipeline})")
        return
    known = set(RunConfig().to_flower()) | set(TARGETS) | {"pipeline"}
    for key in settings:
        if key.replace("_", "-") not in known:
            raise ConfigError(f"{source}: {where}: unknown setting {key!r}")
        if key in ("out", "resume", "seed"):
            raise ConfigError(f"{source}: {where}: {key!r} is set by the sweep "
                              "(use sweep.seeds and --out)")


def _label(name: str | None, grid: dict, settings: dict) -> str:
    shown = grid if name else {**settings, **grid}
    parts = [f"{k} {v}" for k, v in shown.items()]
    return ", ".join(([name] if name else []) + parts) or "base"


def _cell(base: dict, params: dict, label: str, seed: int, out: Path, source: str,
          pipeline: str = NEUMF) -> Cell:
    run_dir = out / "runs" / f"{slug(label)}-seed{seed}"
    if pipeline != NEUMF:
        settings = {k: v for k, v in {**base, **params}.items() if k != "pipeline"}
        return Cell(label, params, seed, release_config(
            {**settings, "pipeline": pipeline}, seed, run_dir, f"{source} ({label})"))
    settings = {k: v for k, v in {**base, **params}.items()
                if k not in TARGETS and k != "pipeline"}
    from fedrec.simulations.simulate_args import absolute_paths

    cfg = RunConfig.from_mapping({**settings, "seed": seed}, source=f"{source} ({label})")
    cfg = calibrated(cfg, {**base, **params}, f"{source} ({label})")
    return Cell(label, params, seed, absolute_paths(cfg.replace(out=str(run_dir))))


def calibrated(cfg: RunConfig, settings: dict, source: str) -> RunConfig:
    """``cfg`` with noise multipliers calibrated for the cell's ε targets, if any."""
    if not any(t in settings for t in TARGETS):
        return cfg
    from fedrec.shared.federated_data import federation_of
    from fedrec.simulations.calibrate import example_noise_multiplier, user_noise_multiplier

    fed = federation_of(cfg)
    changes: dict[str, Any] = {}
    try:
        if "user-epsilon" in settings:
            if not cfg.server_dp:
                raise ConfigError(f"{source}: user-epsilon needs dp = server or both")
            eps = float(settings["user-epsilon"])
            changes["noise_multiplier"] = user_noise_multiplier(cfg, fed.n_clients + cfg.canaries, eps)
            changes["target_epsilon"] = eps * TARGET_SLACK
        if "example-epsilon" in settings:
            if not cfg.client_dp:
                raise ConfigError(f"{source}: example-epsilon needs dp = client or both")
            import numpy as np

            eps = float(settings["example-epsilon"])
            median = int(np.median(fed.train_sizes()))
            changes["client_noise_multiplier"] = example_noise_multiplier(cfg, median, eps)
            changes["client_target_epsilon"] = eps
    except (ValueError, RuntimeError) as err:
        raise ConfigError(f"{source}: cannot calibrate noise: {err}") from None
    return cfg.replace(**changes)
