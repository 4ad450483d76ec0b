"""``fedrec audit RUN_DIR``: recompute and check every ε claim of a run.

Exit 0 when every check passes, 1 when any fails, 2 when the run directory is unusable.
Writes ``audit.json`` and ``audit.md`` into ``--out`` (default: the run directory).
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

from rich.table import Table

from shared.runinfo import to_json, write_text_atomic
from simulations.audit import audit_accounting, load_run
from simulations.progress import report


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("run_dir", type=Path, help="a fedrec run directory")
    parser.add_argument("--out", type=Path, help="where audit.json/audit.md go (default RUN_DIR)")


def _fmt(value) -> str:
    return "-" if value is None else f"{value:.4g}"


def markdown(result: dict) -> str:
    lines = [f"# Privacy audit of `{result['run']}`", "",
             f"Mode: {result['mode']}; rounds: {result['rounds']}; "
             f"verdict: **{'PASS' if result['passed'] else 'FAIL'}**", "",
             "| level | claimed ε | recomputed ε (RDP) | recomputed ε (PLD) | δ |",
             "|---|---|---|---|---|"]
    for level, v in result["levels"].items():
        lines.append(f"| {level} | {_fmt(v['claimed'])} | {_fmt(v['recomputed']['rdp'])} | "
                     f"{_fmt(v['recomputed']['pld'])} | {v['delta']:.3g} |")
    lines += [f"\nWarning: {w}" for w in result.get("warnings", [])]
    lines += ["", "| check | level | result | detail |", "|---|---|---|---|"]
    for c in result["checks"]:
        lines.append(f"| {c['name']} | {c['level']} | {'pass' if c['passed'] else '**FAIL**'} | "
                     f"{c['detail']} |")
    return "\n".join(lines) + "\n"


def run(args: argparse.Namespace) -> int:
    start = time.perf_counter()
    result = audit_accounting(load_run(args.run_dir))
    result["seconds"] = time.perf_counter() - start
    out = args.out or args.run_dir
    write_text_atomic(out / "audit.json", json.dumps(result, indent=2, default=to_json) + "\n")
    write_text_atomic(out / "audit.md", markdown(result))
    table = Table(title=f"audit of {args.run_dir}: {'PASS' if result['passed'] else 'FAIL'}")
    for col in ("check", "level", "result", "detail"):
        table.add_column(col)
    for c in result["checks"]:
        table.add_row(c["name"], c["level"], "pass" if c["passed"] else "[bold red]FAIL",
                      c["detail"][:100])
    report.print(table)
    for warning in result["warnings"]:
        report.print(f"warning: {warning}")
    for level, v in result["levels"].items():
        report.print(f"{level}-level ε: claimed {_fmt(v['claimed'])}, recomputed "
                     f"{_fmt(v['recomputed']['rdp'])} (RDP), {_fmt(v['recomputed']['pld'])} (PLD)")
    return 0 if result["passed"] else 1
