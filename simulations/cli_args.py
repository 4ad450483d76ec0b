"""The flags of ``fedrec data``, ``baseline``, ``sweep``, ``certs`` and ``audit``.

Only flags live here, so that ``fedrec.simulations.cli`` builds its whole parser from light
modules (argparse, pathlib; ``fedrec.simulations.simulate_args`` for ``simulate``) and imports a
command's own module, with TensorFlow, Flower or dp-accounting behind it, only when that
command runs. Nothing here may import more than the standard library and light ``shared``
modules: ``tests/test_cli_startup.py`` checks that ``--help``, ``data validate``,
``audit`` and ``certs`` never import TensorFlow.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from fedrec.simulations.simulate_args import add_runner_arguments

#: ``fedrec baseline --model`` names; the same tuple as ``fedrec.simulations.baselines.MODELS``
#: (a test keeps them equal), written out here so that ``--help`` does not import the
#: baselines (TensorFlow).
BASELINE_MODELS = ("popularity", "popularity-dp", "itemknn", "neumf", "neumf-dp")


def data(parser: argparse.ArgumentParser) -> None:
    """``fedrec data fetch NAME`` / ``fedrec data validate FILE``."""
    sub = parser.add_subparsers(dest="data_command", required=True, metavar="ACTION")
    fetch = sub.add_parser("fetch", help="download a public dataset into the cache")
    fetch.add_argument("name", choices=["movielens-100k"])
    fetch.add_argument("--cache", type=Path, default=None,
                       help="cache folder (default $FEDREC_DATA or ~/.cache/fedrec)")
    validate = sub.add_parser("validate", help="check an events file (CSV or Parquet)")
    validate.add_argument("file", type=Path)


def baseline(parser: argparse.ArgumentParser) -> None:
    """``fedrec baseline``: centralized baselines (``fedrec.simulations.baseline_cmd``)."""
    parser.add_argument("--dataset", default="synthetic",
                        help="movielens-100k, synthetic, or a path (CSV/Parquet file or folder)")
    parser.add_argument("--model", default="popularity,itemknn,neumf",
                        help=f"comma-separated: {', '.join(BASELINE_MODELS)} (or 'all')")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--seeds", type=int, default=1, help="run seeds seed..seed+N-1")
    parser.add_argument("--out", type=Path, default=Path("results.json"),
                        help="results file (JSON; a list when several runs)")
    parser.add_argument("--epochs", type=int, default=20)
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--negatives", type=int, default=8, help="training negatives per positive")
    parser.add_argument("--dim", type=int, default=16, help="embedding size (MLP layers 2d-d-d/2)")
    parser.add_argument("--target-epsilon", type=float, default=None,
                        help="neumf-dp: calibrate the noise to this example-level ε (default 8)")
    parser.add_argument("--noise-multiplier", type=float, default=None,
                        help="neumf-dp: fixed noise multiplier σ instead of a target ε")
    parser.add_argument("--clip", type=float, default=1.0,
                        help="neumf-dp: per-interaction gradient L2 clipping norm")
    parser.add_argument("--delta", type=float, default=None,
                        help="neumf-dp: δ (default 1/rows^1.1)")
    parser.add_argument("--user-epsilon", type=float, default=8.0,
                        help="popularity-dp: user-level ε of the released popularity")
    parser.add_argument("--neighbours", type=int, default=None,
                        help="itemknn: neighbourhood size (default: chosen on validation "
                             "from 20, 50, 100, 200)")
    parser.add_argument("--recency-decay", type=float, default=None,
                        help="weight factor per more recent interaction of the same user, in "
                             "(0, 1]; 1 weighs all alike. itemknn: profile weights (default: "
                             "chosen on validation from 1, 0.95, 0.9, 0.8); neumf: training "
                             "weights (default 0.95); neumf-dp: must be 1")


def sweep(parser: argparse.ArgumentParser) -> None:
    """``fedrec sweep CONFIG --out DIR`` (``fedrec.simulations.sweep_cmd``)."""
    parser.add_argument("config", type=Path, help="sweep TOML ([sweep], [base], [grid], [[cells]]); a bundled one "
                        "by name, e.g. ml100k_tradeoff.toml")
    parser.add_argument("--out", type=Path, required=True, help="sweep directory")
    add_runner_arguments(parser)
    parser.add_argument("--dry-run", action="store_true", help="list the cells and stop")


def certs(parser: argparse.ArgumentParser) -> None:
    """``fedrec certs --out DIR`` (``fedrec.server.certs.make_credentials``)."""
    parser.add_argument("--out", type=Path, required=True, help="folder for the credentials")
    parser.add_argument("--nodes", type=int, default=3, help="SuperNode key pairs (default 3)")
    parser.add_argument("--host", action="append", dest="hosts",
                        help="name or IP the SuperLink is reached at (repeatable; default "
                             "localhost and 127.0.0.1)")
    parser.add_argument("--days", type=int, default=365, help="certificate validity")
    parser.add_argument("--force", action="store_true", help="replace existing credentials")


def audit(parser: argparse.ArgumentParser) -> None:
    """``fedrec audit RUN_DIR [--empirical]`` / ``--budget DIR`` (``fedrec.simulations.audit_cmd``)."""
    parser.add_argument("run_dir", type=Path, nargs="?", help="a fedrec run directory")
    parser.add_argument("--budget", type=Path, metavar="DIR",
                        help="instead of one run: the ε composed over every run recorded in "
                             "this budget registry, per dataset (default registry of a run: "
                             ".fedrec-budget next to its directory)")
    parser.add_argument("--out", type=Path, help="where audit.json/audit.md go (default RUN_DIR)")
    parser.add_argument("--empirical", action="store_true",
                        help="also attack the run: canary estimate (runs trained with "
                             "--canaries), one-run membership audit of the device models "
                             "(runs trained with --example-canaries; otherwise a heuristic)")
