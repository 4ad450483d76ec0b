"""``fedrec audit --budget DIR``: the privacy spent on each dataset across all its runs.

Reads the dataset-level budget registry (``fedrec.shared.budget``; every federated run records
its releases there, default ``.fedrec-budget`` next to its run directory) and prints, per
data fingerprint, the user-level ε of every run's releases composed, and the worst
device's example-level ε composed over every run. A run on that data without a level's
mechanism makes that level's figure infinite, and the report names it. Writes
``budget.json`` into ``--out`` when given. Exit 0, or 2 when DIR is not a registry.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

from rich.table import Table

from fedrec.shared.budget import BudgetRegistry, compose
from fedrec.shared.errors import FedrecError
from fedrec.shared.runinfo import to_json, write_text_atomic
from fedrec.simulations.progress import report


class UnusableBudget(FedrecError):
    """The folder is not a budget registry."""


def fmt(level: dict[str, Any]) -> str:
    eps = level.get("epsilon")
    if eps is None:
        return "-"
    if math.isinf(eps):
        return "inf"
    return f"{eps:.4g} (δ {level['delta']:.3g}, {level.get('relation', '?')})"


def summarise(root: str | Path, runs: set[str] | None = None) -> dict[str, dict[str, Any]]:
    """Composed ε per fingerprint; only the runs whose directories are in ``runs`` when
    given (a sweep's own cells)."""
    try:
        by_fp = BudgetRegistry(root).entries()
    except ValueError as err:
        raise UnusableBudget(str(err)) from None
    out = {}
    for fp, entries in sorted(by_fp.items()):
        if runs is not None:
            entries = [e for e in entries if e["run"] in runs]
        if entries:
            out[fp] = compose(entries)
    return out


def table(summary: dict[str, dict[str, Any]], title: str) -> Table:
    out = Table(title=title)
    for col in ("data (fingerprint)", "runs", "releases", "user-level ε",
                "example-level ε (worst device)"):
        out.add_column(col)
    for fp, s in summary.items():
        out.add_row(f"{s['dataset']} ({fp[:12]})", str(s["runs"]), str(s["releases"]),
                    fmt(s["user"]), fmt(s["example"]))
    return out


def notes(summary: dict[str, dict[str, Any]]) -> list[str]:
    """Why a figure is infinite, and which runs were seeded (one line each)."""
    lines = []
    for fp, s in summary.items():
        for level in ("user", "example"):
            if s[level].get("reason"):
                lines.append(f"{s['dataset']} ({fp[:12]}), {level} level: {s[level]['reason']}")
        if s["seeded_runs"]:
            lines.append(f"{s['dataset']} ({fp[:12]}): {len(s['seeded_runs'])} run(s) used seeded "
                         "noise: their share holds only against parties without the seeds")
    return lines


def spent_by(configs: list) -> list[tuple[str, Table, list[str]]]:
    """What the runs of ``configs`` (RunConfigs, e.g. a sweep's cells) spent together,
    and what every run on the same data in the same registry spent: per registry,
    (title, table, notes) of each (a registry no run has written to yet is skipped)."""
    from fedrec.shared.budget import budget_dir

    roots: dict[Path, set[str]] = {}
    for cfg in configs:
        roots.setdefault(budget_dir(cfg.budget_dir, cfg.out), set()).add(
            str(Path(cfg.out).resolve()))
    out = []
    for root, runs in roots.items():
        if not root.is_dir():
            continue
        own, every = summarise(root, runs), summarise(root)
        every = {fp: s for fp, s in every.items() if fp in own}
        for title, summary in ((f"privacy these {len(runs)} runs spent together", own),
                               (f"every run on the same data in {root}", every)):
            out.append((title, table(summary, title), notes(summary)))
    return out


def run(root: Path, out: Path | None = None) -> int:
    summary = summarise(root)
    report.print(table(summary, f"privacy budget spent, per dataset, in {root}"))
    for line in notes(summary):
        report.print(line, markup=False)
    if out is not None:
        write_text_atomic(Path(out) / "budget.json",
                          json.dumps(summary, indent=2, default=to_json) + "\n")
    return 0
