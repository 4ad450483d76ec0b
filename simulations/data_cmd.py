"""``fedrec data fetch NAME`` / ``fedrec data validate FILE``: datasets into the cache, or
an events file checked and summarised (pandas; never TensorFlow)."""

from __future__ import annotations

import argparse


def run(args: argparse.Namespace) -> int:
    """Fetch a public dataset, or validate an events file and print one summary line."""
    if args.data_command == "fetch":
        from fedrec.shared.fetch import fetch_movielens_100k
        from fedrec.simulations.progress import console

        path = fetch_movielens_100k(args.cache)
        console.print(f"movielens-100k ready in {path}")
        return 0
    from fedrec.shared.io import validate_file

    summary = validate_file(args.file)
    events = ", ".join(f"{k} {v}" for k, v in summary["events"].items())
    print(f"{summary['path']}: OK, {summary['rows']} rows, {summary['users']} users, "
          f"{summary['items']} items ({events}), time {summary['time_range'][0]}.."
          f"{summary['time_range'][1]}")
    return 0
