"""``fedrec``: the one command that fronts everything.

Errors a user can cause (bad file, bad flag, spent budget) print one line on stderr and
exit non-zero; a traceback means a bug in fedrec.

The dispatcher sits on top of every layer (``shared``, ``client``, ``server``,
``simulations``), so it lives here rather than in ``shared``. It answers at once: the
parser is built from light modules only (``fedrec.simulations.cli_args``,
``fedrec.simulations.simulate_args``), and a command's own module, with TensorFlow, Flower or
dp-accounting behind it, is imported only when that command runs (``COMMANDS``).
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Callable
from dataclasses import dataclass

from fedrec.shared import __version__
from fedrec.shared.errors import FedrecError
from fedrec.simulations import cli_args, simulate_args

EXIT_USER_ERROR = 2


@dataclass(frozen=True)
class Command:
    """One sub-command.

    Attributes:
        help: the line ``fedrec --help`` shows.
        flags: adds the command's flags to its sub-parser (a light module's function).
        runner: ``"module:function"`` that runs it, ``function(args) -> exit code``;
            imported only when the command runs.
    """

    help: str
    flags: Callable[[argparse.ArgumentParser], None]
    runner: str


#: The sub-commands, in the order ``fedrec --help`` lists them.
COMMANDS: dict[str, Command] = {
    "data": Command("fetch or validate datasets", cli_args.data, "fedrec.simulations.data_cmd:run"),
    "baseline": Command("centralized baselines on one dataset", cli_args.baseline,
                        "fedrec.simulations.baseline_cmd:run"),
    "simulate": Command("a federated run in Flower's simulation engine",
                        simulate_args.add_arguments, "fedrec.simulations.simulate_cmd:run"),
    "sweep": Command("a grid of simulated runs, with plots and a report", cli_args.sweep,
                     "fedrec.simulations.sweep_cmd:run"),
    "certs": Command("development CA, SuperLink TLS certificate and SuperNode "
                     "authentication keys", cli_args.certs, "fedrec.simulations.certs_cmd:run"),
    "audit": Command("recompute and check the ε claims of a run", cli_args.audit,
                     "fedrec.simulations.audit_cmd:run"),
}


def build_parser() -> argparse.ArgumentParser:
    """The whole ``fedrec`` parser; imports no command's module."""
    parser = argparse.ArgumentParser(prog="fedrec", description=__doc__.splitlines()[0])
    parser.add_argument("--version", action="version", version=f"fedrec {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name, command in COMMANDS.items():
        command.flags(sub.add_parser(name, help=command.help))
    return parser


def runner(name: str) -> Callable[[argparse.Namespace], int]:
    """Import the module of command ``name`` (only now) and return its run function."""
    module, function = COMMANDS[name].runner.split(":")
    return getattr(importlib.import_module(module), function)


def main(argv: list[str] | None = None) -> int:
    """Run ``fedrec`` with ``argv`` (default ``sys.argv[1:]``); returns the exit code:
    0 done, 1 an audit failed, 2 an error the user can fix, 130 interrupted."""
    args = build_parser().parse_args(argv)
    from fedrec.simulations.progress import setup_logging

    setup_logging(args.verbose)
    try:
        return runner(args.command)(args)
    except FedrecError as err:
        print(f"fedrec: error: {err}", file=sys.stderr)
        return EXIT_USER_ERROR
    except KeyboardInterrupt:
        print("fedrec: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
