"""Quick federated probes in one process: the real ServerApp loop and ClientApp, no Ray.

    .venv/bin/python benchmarks/tune_federated.py --out runs/probe_neg8 \\
        dataset=movielens-100k rounds=30 local-epochs=2 learning-rate=0.05 negatives=8 \\
        eval-every=5

Settings are run-config keys (as in ``[tool.flwr.app.config]``). The run directory is a
normal one (manifest, metrics.jsonl, checkpoints; ``resume=true`` continues it). One core,
no simulation engine polling hundreds of nodes: the way to compare settings on the
2-core machine before a real ``fedrec simulate`` run, whose numbers are the ones to quote.
Prints HR@10 of every evaluated round.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")


def probe_arguments(description: str) -> argparse.ArgumentParser:
    """``--out RUN_DIR`` and ``key=value`` run-config settings (shared with other probes)."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("settings", nargs="*", help="key=value run-config settings")
    return parser


def probe_config(args: argparse.Namespace):
    """The run config of ``args`` (one line and exit on a bad setting)."""
    from fedrec.shared.config import RunConfig
    from fedrec.shared.errors import ConfigError

    try:
        settings = dict(item.split("=", 1) for item in args.settings)
    except ValueError:
        sys.exit(f"settings must be key=value, got {args.settings}")
    try:
        return RunConfig.from_mapping({**settings, "out": str(args.out)}, source="settings")
    except ConfigError as err:
        sys.exit(str(err))


def print_evaluations(out: Path) -> None:
    """HR@10 and NDCG@10 of every evaluated round of the run in ``out``."""
    rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    for row in rows:
        if row.get("hr@10") is not None:
            print(f"round {row['round']:3d}  HR@10 {row['hr@10']:.4f}  "
                  f"NDCG@10 {row['ndcg@10']:.4f}")


def main() -> None:
    args = probe_arguments(__doc__.splitlines()[0]).parse_args()
    cfg = probe_config(args)

    from fedrec.simulations.inprocess import run_inprocess

    logging.getLogger("flwr").setLevel(logging.WARNING)
    started = time.perf_counter()
    run_inprocess(cfg)
    print_evaluations(args.out)
    print(f"{(time.perf_counter() - started) / 60:.1f} min")


if __name__ == "__main__":
    main()
