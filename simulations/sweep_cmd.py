"""``fedrec sweep CONFIG.toml --out DIR``: every cell of a sweep, then its report.

Cells run one after another, each a ``fedrec simulate`` run in ``DIR/runs/<cell>-seed<k>``
(its clients in parallel on ``--workers`` cores, or on a Ray cluster with
``--ray-address``). Re-running the same command skips finished cells and resumes an
interrupted one from its last complete round, so a crash or Ctrl-C loses at most the
round in flight. Statistics-release cells (``pipeline = "popularity"|"knn"``) run in this
process; an interrupted one cannot resume and runs afresh (``fedrec.simulations.sweep_release``).
The report (``fedrec.simulations.sweep_report``) is rewritten after every cell.
"""

from __future__ import annotations

import argparse
import json
import shlex
from pathlib import Path

from rich.progress import Progress

from fedrec.server.rundir import RunDir
from fedrec.shared.errors import FedrecError
from fedrec.simulations.progress import console, report, run_progress
from fedrec.simulations.simulate_args import WORKERS
from fedrec.simulations.sweep import Cell, Sweep, load_sweep
from fedrec.simulations.sweep_release import NEUMF


def _neumf(sweep: Sweep) -> dict | None:
    """Centralized NeuMF on the first DP-FedAvg cell's data and first seed (a sweep of
    release cells only: the first cell's data), cached in DIR."""
    if not sweep.reference or not sweep.cells:
        return None
    from fedrec.simulations.simulate_reference import reference
    from fedrec.simulations.sweep_release import reference_config

    first = next((c for c in sweep.cells if c.pipeline == NEUMF), sweep.cells[0])
    out = Path(first.config.out).parent.parent / "reference"
    out.mkdir(parents=True, exist_ok=True)
    cfg = (first.config.replace(out=str(out)) if first.pipeline == NEUMF
           else reference_config(first.config, out))
    ref = reference(cfg)
    return None if ref is None else ref["metrics"]


def _status(cell: Cell) -> str:
    run = RunDir(cell.config.out)
    if run.results_path.exists():
        return "done"
    if not run.manifest_path.exists():
        return "new"
    return "resume" if cell.pipeline == NEUMF else "rerun"    # a release cannot resume


def run_cell(cell: Cell, args: argparse.Namespace, bar: Progress) -> None:
    label = f"{cell.label}, seed {cell.seed}"
    if cell.pipeline != NEUMF:
        from fedrec.simulations import sweep_release

        if _status(cell) == "rerun":
            moved = sweep_release.set_aside(Path(cell.config.out))
            console.print(f"{cell.key}: an interrupted release, moved to {moved.name} (what it "
                          "spent stays in the budget registry); running it afresh")
        sweep_release.run_cell(cell.config, label, bar)
        return
    from fedrec.simulations.simulate_launch import execute

    cfg = cell.config.replace(resume=_status(cell) == "resume")
    execute(cfg, args.workers, args.ray_address, bar=bar, label=label)


def command_line(args: argparse.Namespace) -> str:
    """The command that made this sweep and resumes it, for the report and messages."""
    words = ["fedrec", "sweep", str(args.config), "--out", str(args.out)]
    if args.workers != WORKERS:
        words += ["--workers", str(args.workers)]
    if args.ray_address:
        words += ["--ray-address", args.ray_address]
    return shlex.join(words)


def print_spent(sweep: Sweep) -> None:
    """The ε the sweep's runs spent together on their data, and the registry's total
    (``fedrec audit --budget``): each cell's stand-alone ε understates both."""
    from fedrec.simulations.budget_cmd import spent_by

    for _title, table, notes in spent_by([c.config for c in sweep.cells]):
        report.print(table)
        for line in notes:
            report.print(line, markup=False)


def run(args: argparse.Namespace) -> int:
    from fedrec.simulations.sweep_report import write_report

    sweep = load_sweep(args.config, args.out)
    command = command_line(args)
    todo = [c for c in sweep.cells if _status(c) != "done"]
    console.print(f"{sweep.name}: {len(sweep.cells)} runs ({len(todo)} to do) -> {args.out}")
    if args.dry_run:
        for c in sweep.cells:
            report.print(f"{_status(c):7} {c.key}: {json.dumps(c.params, ensure_ascii=False)}")
        return 0
    neumf = _neumf(sweep)
    with run_progress() as bar:
        total = bar.add_task("cells", total=len(sweep.cells),
                             completed=len(sweep.cells) - len(todo), status="")
        failed = []
        for cell in todo:
            bar.update(total, status=cell.label)
            try:
                run_cell(cell, args, bar)
            except KeyboardInterrupt:
                write_report(sweep, args.out, neumf, command)
                console.print(f"interrupted; the same command resumes: {command}")
                return 130
            except FedrecError as err:   # one broken cell does not cost the others
                console.print(f"[red]{cell.key} failed[/red]: {err}")
                failed.append(cell.key)
            bar.advance(total)
            write_report(sweep, args.out, neumf, command)
    rows = write_report(sweep, args.out, neumf, command)
    report.print((args.out / "report.md").read_text().split("\n## Every run")[0], markup=False)
    print_spent(sweep)
    console.print(f"{len(rows)} runs; report: {args.out / 'report.md'} and report.html")
    if failed:
        raise FedrecError(f"{len(failed)} cell(s) failed ({', '.join(failed)}); "
                          f"the same command retries them: {command}")
    return 0
