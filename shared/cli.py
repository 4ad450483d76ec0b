"""``fedrec``: the one command that fronts everything.

Errors a user can cause (bad file, bad flag, spent budget) print one line on stderr and
exit non-zero; a traceback means a bug in fedrec.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

from shared import __version__  # noqa: E402
from shared.errors import FedrecError  # noqa: E402

EXIT_USER_ERROR = 2


def build_parser() -> argparse.ArgumentParser:
    from simulations import baseline_cmd

    parser = argparse.ArgumentParser(prog="fedrec", description=__doc__.splitlines()[0])
    parser.add_argument("--version", action="version", version=f"fedrec {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    data = sub.add_parser("data", help="fetch or validate datasets")
    data_sub = data.add_subparsers(dest="data_command", required=True, metavar="ACTION")
    fetch = data_sub.add_parser("fetch", help="download a public dataset into the cache")
    fetch.add_argument("name", choices=["movielens-100k"])
    fetch.add_argument("--cache", type=Path, default=None,
                       help="cache folder (default $FEDREC_DATA or ~/.cache/fedrec)")
    validate = data_sub.add_parser("validate", help="check an events file (CSV or Parquet)")
    validate.add_argument("file", type=Path)

    baseline = sub.add_parser("baseline", help="centralized baselines on one dataset")
    baseline_cmd.add_arguments(baseline)

    from simulations import simulate_cmd

    simulate = sub.add_parser("simulate", help="a federated run in Flower's simulation engine")
    simulate_cmd.add_arguments(simulate)

    from simulations import sweep_cmd

    sweep = sub.add_parser("sweep", help="a grid of simulated runs, with plots and a report")
    sweep_cmd.add_arguments(sweep)

    certs = sub.add_parser("certs", help="development CA, SuperLink TLS certificate and "
                           "SuperNode authentication keys")
    certs.add_argument("--out", type=Path, required=True, help="folder for the credentials")
    certs.add_argument("--nodes", type=int, default=3, help="SuperNode key pairs (default 3)")
    certs.add_argument("--host", action="append", dest="hosts",
                       help="name or IP the SuperLink is reached at (repeatable; default "
                            "localhost and 127.0.0.1)")
    certs.add_argument("--days", type=int, default=365, help="certificate validity")
    certs.add_argument("--force", action="store_true", help="replace existing credentials")

    from simulations import audit_cmd

    audit = sub.add_parser("audit", help="recompute and check the ε claims of a run")
    audit_cmd.add_arguments(audit)
    return parser


def _data(args: argparse.Namespace) -> int:
    from simulations.progress import console

    if args.data_command == "fetch":
        from shared.fetch import fetch_movielens_100k

        path = fetch_movielens_100k(args.cache)
        console.print(f"movielens-100k ready in {path}")
        return 0
    from shared.io import validate_file

    summary = validate_file(args.file)
    events = ", ".join(f"{k} {v}" for k, v in summary["events"].items())
    print(f"{summary['path']}: OK, {summary['rows']} rows, {summary['users']} users, "
          f"{summary['items']} items ({events}), time {summary['time_range'][0]}.."
          f"{summary['time_range'][1]}")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    from simulations.progress import setup_logging

    setup_logging(args.verbose)
    try:
        if args.command == "data":
            return _data(args)
        if args.command == "baseline":
            from simulations import baseline_cmd

            return baseline_cmd.run(args)
        if args.command == "simulate":
            from simulations import simulate_cmd

            return simulate_cmd.run(args)
        if args.command == "certs":
            from server.certs import make_credentials

            made = make_credentials(args.out, args.nodes, args.hosts, args.days, args.force)
            print(f"{args.out}: ca.crt, server.pem, server.key, "
                  f"{len(made.node_keys)} SuperNode key pairs (node-<i>, node-<i>.pub)")
            return 0
        if args.command == "sweep":
            from simulations import sweep_cmd

            return sweep_cmd.run(args)
        if args.command == "audit":
            from simulations import audit_cmd

            return audit_cmd.run(args)
    except FedrecError as err:
        print(f"fedrec: error: {err}", file=sys.stderr)
        return EXIT_USER_ERROR
    except KeyboardInterrupt:
        print("fedrec: interrupted", file=sys.stderr)
        return 130
    parser.error(f"unknown command {args.command}")
    return EXIT_USER_ERROR


if __name__ == "__main__":
    sys.exit(main())
