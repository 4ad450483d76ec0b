"""What a sweep leaves behind: results.csv/json, plots, report.md and a self-contained
report.html. Built from the cells' run directories alone, so it can be rebuilt any time
(and is, after every finished cell: an interrupted sweep still has a report so far)."""

from __future__ import annotations

import base64
import csv
import html
import io
import json
import math
import statistics
from pathlib import Path
from typing import Any

from fedrec.server.rundir import RunDir
from fedrec.shared.runinfo import to_json, versions, write_text_atomic
from fedrec.simulations.sweep import Cell, Sweep
from fedrec.simulations.sweep_release import NEUMF

METRICS = ("hr@10", "ndcg@10", "full_hr@10", "full_ndcg@10", "mrr")


def result_row(cell: Cell) -> dict[str, Any] | None:
    """One row per finished cell and seed: every run parameter, metrics, ε per level."""
    run = RunDir(cell.config.out)
    if not run.results_path.exists():
        return None
    res = json.loads(run.results_path.read_text())
    if cell.pipeline != NEUMF:
        return release_row(cell, res, run)
    priv = res.get("privacy") or {}
    user, example = priv.get("user") or {}, priv.get("example") or {}
    history = run.read_metrics()
    row: dict[str, Any] = {"cell": cell.label, "pipeline": NEUMF, "run_dir": cell.config.out}
    row.update(cell.config.to_flower())
    row.update({k: v for k, v in cell.params.items() if k.endswith("epsilon")})
    row.update({m: res["metrics"].get(m) for m in METRICS})
    row.update({"epsilon_user": user.get("epsilon"),
                "epsilon_user_pld": (user.get("epsilon_by_accountant") or {}).get("pld"),
                "delta_user": user.get("delta"), "relation_user": user.get("relation"),
                "epsilon_example_max_client": example.get("max_client_epsilon"),
                "delta_example": example.get("delta"), "rounds_run": res["rounds"],
                "stopped": (res.get("stopped") or {}).get("reason"),
                "clients_declined_last_round": history[-1].get("clients_declined", 0)
                if history else None,
                "wall_seconds": res["wall_seconds"],
                "seconds_per_round": (res.get("resources") or {}).get("seconds_per_round"),
                "peak_memory_mb": (res.get("resources") or {}).get("peak_memory_mb")})
    return row


def release_row(cell: Cell, res: dict[str, Any], run: RunDir) -> dict[str, Any]:
    """A statistics-release cell's row: its settings, metrics, and the user-level ε its
    ``privacy.json`` claims (PLD; inf for a run without noise or with seeded noise)."""
    user = json.loads((run.path / "privacy.json").read_text())["user"]
    row: dict[str, Any] = {"cell": cell.label, "pipeline": cell.pipeline,
                           "series": series_of(cell), "run_dir": cell.config.out}
    row.update(cell.config.to_dict())
    row.update({k: v for k, v in cell.params.items() if k.endswith("epsilon")})
    row.update({m: res["metrics"].get(m) for m in METRICS})
    row.update({"epsilon_user": float(user["epsilon"]),
                "epsilon_user_pld": (user.get("epsilons") or {}).get("pld"),
                "delta_user": user.get("delta"), "relation_user": user.get("relation"),
                "epsilon_example_max_client": None, "delta_example": None,
                "rounds_run": None, "stopped": None, "clients_declined_last_round": None,
                "wall_seconds": res.get("seconds"), "seconds_per_round": None,
                "peak_memory_mb": None})
    return row


def series_of(cell: Cell) -> str:
    """A release cell's line in the trade-off plot: its pipeline and the settings it
    changes other than ε (cells that differ only in ε share a line)."""
    rest = [f"{k} {v}" for k, v in cell.params.items()
            if k not in ("pipeline", "user-epsilon", "target-epsilon")]
    return ", ".join([cell.pipeline] + rest)


def _summary(rows: list[dict], key: str) -> tuple[float, float, int] | None:
    values = [r[key] for r in rows if r.get(key) is not None and math.isfinite(r[key])]
    if not values:
        return None
    return statistics.fmean(values), statistics.stdev(values) if len(values) > 1 else 0.0, len(values)


def by_cell(rows: list[dict]) -> dict[str, list[dict]]:
    out: dict[str, list[dict]] = {}
    for r in rows:
        out.setdefault(r["cell"], []).append(r)
    return out


def epsilon_of(row: dict) -> tuple[str, float] | None:
    """The ε a trade-off plot puts on its x axis: user level if any, else example level."""
    for level, key in (("user", "epsilon_user"), ("example", "epsilon_example_max_client")):
        if row.get(key) is not None and math.isfinite(row[key]):
            return level, row[key]
    return None


def write_results(out: Path, rows: list[dict]) -> None:
    """``results.json`` and ``results.csv`` (the union of every row's columns)."""
    from fedrec.shared.runinfo import write_json_atomic

    write_json_atomic(out / "results.json", rows)
    columns = list(dict.fromkeys(k for r in rows for k in r))
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=columns)
    writer.writeheader()
    writer.writerows(rows)
    write_text_atomic(out / "results.csv", buf.getvalue())


def tradeoff_plot(rows: list[dict], references: dict[str, float], out: Path) -> Path | None:
    """ε (log) against HR@10 and NDCG@10: mean ± sd over seeds per DP cell; release
    cells as one line per series (``series_of``)."""
    from fedrec.simulations.plots import _save, plt

    finite = {label: rs for label, rs in by_cell(rows).items() if epsilon_of(rs[0])}
    cells = {k: rs for k, rs in finite.items() if rs[0].get("pipeline", NEUMF) == NEUMF}
    series = release_series([rs for rs in finite.values()
                             if rs[0].get("pipeline", NEUMF) != NEUMF])
    if not finite:
        return None
    fig, axes = plt.subplots(1, 2, figsize=(11, 4.2), dpi=120)
    for ax, metric in zip(axes, ("hr@10", "ndcg@10")):
        _plot_series(ax, series, metric, first_colour=len(cells))
        for i, (label, rs) in enumerate(sorted(cells.items())):
            level = epsilon_of(rs[0])[0]
            eps = [epsilon_of(r)[1] for r in rs]
            y = _summary(rs, metric)
            if y is None:
                continue
            ax.errorbar(statistics.fmean(eps), y[0], yerr=y[1], xerr=None,
                        fmt="o" if level == "user" else "s", capsize=4, color=f"C{i % 10}",
                        label=f"{label} ({level})")
        for k, level in enumerate(("user", "example")):   # the trend within each level
            pts = sorted((statistics.fmean(epsilon_of(r)[1] for r in rs), s[0])
                         for rs in cells.values() if epsilon_of(rs[0])[0] == level
                         and (s := _summary(rs, metric)) is not None)
            if len(pts) > 1:
                ax.plot(*zip(*pts), color="grey", alpha=0.5, linestyle=":" if k else "-")
        for j, (name, value) in enumerate(references.get(metric, {}).items()):
            ax.axhline(value, linestyle=("--", "-.", ":")[j % 3],
                       color=("black", "dimgrey", "darkgrey")[j % 3], alpha=0.8,
                       label=f"{name} ({value:.3f})")
        _epsilon_axis(ax, [statistics.fmean(epsilon_of(r)[1] for r in rs)
                           for rs in finite.values()])
        ax.set_xlabel("ε (log scale; user level ●, example level ■"
                      + (", statistics release ▲)" if series else ")"))
        ax.set_ylabel(metric.upper())
        ax.grid(alpha=0.3, which="both")
    axes[0].legend(fontsize=7, loc="best")
    fig.suptitle("accuracy against ε (mean ± sd over seeds)")
    return _save(fig, out / "tradeoff.png")


def _plot_series(ax, series: dict[str, list[list[dict]]], metric: str, first_colour: int) -> None:
    """One line per release series: its cells by mean ε, mean ± sd over seeds."""
    for j, (name, groups) in enumerate(sorted(series.items())):
        pts = sorted((statistics.fmean(epsilon_of(r)[1] for r in rs), s)
                     for rs in groups if (s := _summary(rs, metric)) is not None)
        if pts:
            ax.errorbar([p[0] for p in pts], [p[1][0] for p in pts],
                        yerr=[p[1][1] for p in pts], fmt="-^", capsize=4,
                        color=f"C{(first_colour + j) % 10}", label=f"{name} (release)")


def release_series(cells: list[list[dict]]) -> dict[str, list[list[dict]]]:
    """Release cells (each a list of its seeds' rows) by their plot series."""
    out: dict[str, list[list[dict]]] = {}
    for rs in cells:
        out.setdefault(rs[0]["series"], []).append(rs)
    return out


def _epsilon_axis(ax, eps: list[float]) -> None:
    """Log ε axis ticked at the ε values themselves, at least a factor 2 either side (a
    sweep at one ε would otherwise get ticks like 9.9993e-1)."""
    from matplotlib.ticker import NullFormatter

    ticks = sorted({float(f"{e:.2g}") for e in eps})
    ax.set_xscale("log")
    ax.set_xlim(min(eps) / 2, max(eps) * 2)
    ax.set_xticks(ticks, [f"{t:g}" for t in ticks])
    ax.xaxis.set_minor_formatter(NullFormatter())


def convergence_plot(cells: list[Cell], out: Path) -> Path | None:
    """HR@10 per evaluated round, one line per cell (mean over its seeds)."""
    from fedrec.simulations.plots import _save, plt

    curves: dict[str, dict[int, list[float]]] = {}
    for cell in cells:
        for r in RunDir(cell.config.out).read_metrics():
            if r.get("hr@10") is not None:
                curves.setdefault(cell.label, {}).setdefault(r["round"], []).append(r["hr@10"])
    if not curves:
        return None
    fig, ax = plt.subplots(figsize=(8, 4.5), dpi=120)
    for label, points in curves.items():
        xs = sorted(points)
        ax.plot(xs, [statistics.fmean(points[x]) for x in xs], marker="o", markersize=3,
                label=label)
    ax.set_xlabel("round")
    ax.set_ylabel("HR@10")
    ax.set_title("convergence per cell (mean over seeds)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
    return _save(fig, out / "convergence.png")


def _fmt(s: tuple[float, float, int] | None, digits: int = 4) -> str:
    if s is None:
        return "-"
    return f"{s[0]:.{digits}f}" + (f" ± {s[1]:.{digits}f}" if s[2] > 1 else "")


def table(rows: list[dict]) -> list[list[str]]:
    """Header and one row per cell: mean ± sd over seeds. A ``pipeline`` column when
    the sweep has statistics-release cells."""
    mixed = any(r.get("pipeline", NEUMF) != NEUMF for r in rows)
    out = [["cell", "seeds", "HR@10", "NDCG@10", "full HR@10", "ε user", "ε example (max client)",
            "rounds", "minutes per run", "s/round", "peak memory (GiB)"]]
    for label, rs in by_cell(rows).items():
        rounds = sorted({r["rounds_run"] for r in rs if r["rounds_run"] is not None})
        out.append([label, str(len(rs)), _fmt(_summary(rs, "hr@10")),
                    _fmt(_summary(rs, "ndcg@10")), _fmt(_summary(rs, "full_hr@10")),
                    _fmt_eps(rs, "epsilon_user"), _fmt_eps(rs, "epsilon_example_max_client"),
                    "/".join(map(str, rounds)) or "-",
                    f"{statistics.fmean(r['wall_seconds'] for r in rs) / 60:.1f}",
                    _fmt(_summary(rs, "seconds_per_round"), 1),
                    _fmt(_gib(_summary(rs, "peak_memory_mb")), 2)])
    if mixed:
        pipelines = [rs[0].get("pipeline", NEUMF) for rs in by_cell(rows).values()]
        out = [r[:1] + [p] + r[1:] for r, p in zip(out, ["pipeline"] + pipelines)]
    return out


def _fmt_eps(rows: list[dict], key: str) -> str:
    """Mean ± sd of a finite ε; ``inf`` when every run claims none (not private)."""
    values = [r[key] for r in rows if r.get(key) is not None]
    if values and all(math.isinf(v) for v in values):
        return "inf"
    return _fmt(_summary(rows, key), 2)


def relations(rows: list[dict]) -> str:
    """Which neighbouring relation each pipeline's user-level ε is for (one line)."""
    by: dict[str, set[str]] = {}
    for r in rows:
        if r.get("relation_user"):
            by.setdefault(r.get("pipeline", NEUMF), set()).add(r["relation_user"])
    if not by:
        return ""
    return ("ε user: user level, as each run's privacy.json claims it (inf: not private); "
            "neighbouring relation: "
            + "; ".join(f"{p} cells {', '.join(sorted(v))}" for p, v in sorted(by.items())) + ".")


def _gib(s: tuple[float, float, int] | None) -> tuple[float, float, int] | None:
    return None if s is None else (s[0] / 1024, s[1] / 1024, s[2])


def references(rows: list[dict], neumf: dict[str, float] | None) -> dict[str, dict[str, float]]:
    """Reference lines per metric: the no-DP federated cells and centralized NeuMF."""
    refs: dict[str, dict[str, float]] = {}
    plain = by_cell([r for r in rows if r.get("dp") == "none"])
    for metric in ("hr@10", "ndcg@10"):
        for label, rs in plain.items():   # one line per no-DP cell (e.g. per data size)
            if (s := _summary(rs, metric)) is not None:
                name = "federated, no DP" if len(plain) == 1 else f"{label} (federated)"
                refs.setdefault(metric, {})[name] = s[0]
        for label, rs in release_series([rs for rs in by_cell(rows).values()
                                         if rs[0].get("pipeline", NEUMF) != NEUMF
                                         and _fmt_eps(rs, "epsilon_user") == "inf"]).items():
            if (s := _summary([r for group in rs for r in group], metric)) is not None:
                refs.setdefault(metric, {})[f"{label}, ε = inf (not private)"] = s[0]
        if neumf and neumf.get(metric) is not None:
            refs.setdefault(metric, {})["centralized NeuMF"] = neumf[metric]
    return refs


def markdown(sweep: Sweep, rows: list[dict], command: str, plots: list[str],
             neumf: dict | None, pending: int) -> str:
    t = table(rows)
    lines = [f"# {sweep.name}", "",
             f"{len(rows)} runs finished" + (f", {pending} still to run" if pending else "")
             + f"; seeds {sweep.seeds}. Made by:", "", f"    {command}", ""]
    lines += ["| " + " | ".join(t[0]) + " |", "|" + "---|" * len(t[0])]
    lines += ["| " + " | ".join(r) + " |" for r in t[1:]]
    if relations(rows):
        lines += ["", relations(rows)]
    if neumf:
        lines += ["", f"Centralized NeuMF on the same data (seed {sweep.seeds[0]}): "
                      f"HR@10 {neumf['hr@10']:.4f}, NDCG@10 {neumf['ndcg@10']:.4f}."]
    lines += [""] + [f"![{p}]({p})\n" for p in plots]
    lines += ["## Every run", "", "Each is a `fedrec simulate` run directory (manifest, "
              "metrics.jsonl, privacy.json, TensorBoard events; a statistics release: "
              "manifest, ledger.json, release.npz, privacy.json); `fedrec audit` checks it.", ""]
    lines += [f"- {r['cell']}, seed {r['seed']}: `{r['run_dir']}`" for r in rows]
    lines += ["", "## Versions", ""]
    lines += [f"- {k} {v}" for k, v in versions().items()]
    return "\n".join(lines) + "\n"


def to_html(sweep: Sweep, rows: list[dict], command: str, plots: list[Path], md_notes: str) -> str:
    """A self-contained page: the table, the plots inlined as base64 PNG, the versions."""
    t = table(rows)
    head = "".join(f"<th>{html.escape(c)}</th>" for c in t[0])
    body = "".join("<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in r) + "</tr>"
                   for r in t[1:])
    images = "".join(
        f'<p><img alt="{p.name}" style="max-width:100%" src="data:image/png;base64,'
        f'{base64.b64encode(p.read_bytes()).decode()}"></p>' for p in plots)
    vers = ", ".join(f"{html.escape(k)} {html.escape(v)}" for k, v in versions().items())
    return (f"<!doctype html><html><head><meta charset='utf-8'><title>{html.escape(sweep.name)}"
            "</title><style>body{font-family:sans-serif;max-width:1100px;margin:2em auto}"
            "table{border-collapse:collapse}td,th{border:1px solid #ccc;padding:4px 8px}"
            "</style></head><body>"
            f"<h1>{html.escape(sweep.name)}</h1><p>Made by: <code>{html.escape(command)}</code></p>"
            f"<table><tr>{head}</tr>{body}</table>{images}"
            f"<pre>{html.escape(md_notes)}</pre><p>Versions: {vers}</p></body></html>\n")


def write_report(sweep: Sweep, out: Path, neumf: dict | None, command: str) -> list[dict]:
    """Everything from the cells' run directories; returns the rows.

    Args:
        command: the exact command that made (or resumes) the sweep, for the report.
    """
    rows = [r for r in (result_row(c) for c in sweep.cells) if r is not None]
    out.mkdir(parents=True, exist_ok=True)
    write_results(out, rows)
    plots = [p for p in (tradeoff_plot(rows, references(rows, neumf), out),
                         convergence_plot(sweep.cells, out)) if p is not None]
    pending = len(sweep.cells) - len(rows)
    md = markdown(sweep, rows, command, [p.name for p in plots], neumf, pending)
    write_text_atomic(out / "report.md", md)
    notes = md.split("## Every run", 1)[1] if "## Every run" in md else ""
    write_text_atomic(out / "report.html", to_html(sweep, rows, command, plots, notes))
    write_text_atomic(out / "sweep.json", json.dumps(
        {"name": sweep.name, "source": sweep.source, "seeds": sweep.seeds, "command": command,
         "cells": [{"label": c.label, "seed": c.seed, "params": c.params,
                    "run_dir": c.config.out} for c in sweep.cells]},
        indent=2, default=to_json) + "\n")
    return rows
