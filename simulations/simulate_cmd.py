"""``fedrec simulate``: the same ServerApp/ClientApp through Flower's simulation engine.

The run is launched with Flower's own ``flower-simulation`` (Ray backend, one virtual
SuperNode per user) on this project's app; this process follows the run directory's
``metrics.jsonl`` for a progress bar, then prints the final table next to the
centralized NeuMF number for the same data.

This module is the command; each step is its own module: launching and following the
simulation (:mod:`~fedrec.simulations.simulate_launch`, shared with ``fedrec sweep``),
what a finished run adds to its directory (:mod:`~fedrec.simulations.simulate_post`), the
centralized reference (:mod:`~fedrec.simulations.simulate_reference`) and the final table
(:mod:`~fedrec.simulations.simulate_table`).
"""

from __future__ import annotations

import argparse

from fedrec.server.rundir import RunDir
from fedrec.shared.errors import ConfigError
from fedrec.simulations.progress import console, report
from fedrec.simulations.simulate_args import build_config  # the flags live there (light)

# The steps of a run, each its own module; re-exported under their earlier names here.
from fedrec.simulations.simulate_launch import (
    STARTUP_TIMEOUT,
    StartupHang,
    app_pyproject,
    backend_config,
    execute,
    follow,
    launch,
    round_status,
)
from fedrec.simulations.simulate_post import add_ledger_summary, add_resources
from fedrec.simulations.simulate_reference import reference
from fedrec.simulations.simulate_table import final_table

__all__ = ["STARTUP_TIMEOUT", "StartupHang", "add_ledger_summary", "add_resources",
           "app_pyproject", "backend_config", "execute", "final_table", "follow", "launch",
           "reference", "round_status", "run"]


def run(args: argparse.Namespace) -> int:
    from fedrec.shared.federated_data import federation_of

    if args.pipeline != "neumf":
        from fedrec.simulations import release_cmd

        return release_cmd.run(args)
    cfg = build_config(args)
    if not cfg.resume and RunDir(cfg.out).manifest_path.exists():
        raise ConfigError(f"{cfg.out} already holds a run; use --resume {cfg.out} or another --out")
    fed = federation_of(cfg)
    console.print(f"{fed.name}: {fed.n_clients} clients"
                  + (f" + {cfg.canaries} canaries" if cfg.canaries else "")
                  + f", {fed.n_items} items; {cfg.rounds} rounds of {cfg.strategy}, "
                  f"dp {cfg.dp} -> {cfg.out}")
    try:
        results = execute(cfg, args.workers, args.ray_address)
    except KeyboardInterrupt:
        console.print(f"interrupted; resume with: fedrec simulate --resume {cfg.out}")
        return 130
    if results.get("stopped"):
        console.print(f"stopped before round {results['stopped']['round']}: "
                      f"{results['stopped']['reason']}")
    ref = None if args.no_reference else reference(cfg, getattr(args, "compare", None))
    report.print(final_table(results, ref))
    return 0
