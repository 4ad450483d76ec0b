"""``fedrec audit RUN_DIR [--empirical]``: recompute and check every ε claim of a run.

``fedrec audit --budget DIR``: the ε spent per dataset over every run recorded in a
budget registry (``fedrec.simulations.budget_cmd``).

Exit 0 when every check passes, 1 when any fails, 2 when the run directory is unusable.
Writes ``audit.json`` and ``audit.md`` into ``--out`` (default: the run directory); with
``--empirical`` also the attacks' plots (``audit_canaries.png``, ``audit_roc.png``).
"""

from __future__ import annotations

import argparse
import json
import time
from dataclasses import asdict
from pathlib import Path

from rich.table import Table

from fedrec.shared.errors import FedrecError
from fedrec.shared.runinfo import to_json, write_text_atomic
from fedrec.simulations.audit import audit_accounting, load_run
from fedrec.simulations.progress import console, report


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
    if "empirical" in result:
        lines += empirical_markdown(result["empirical"])
    lines += [f"\nWarning: {w}" for w in result.get("warnings", [])]
    lines += ["", "| check | level | result | detail |", "|---|---|---|---|"]
    for c in result["checks"]:
        lines.append(f"| {c['name']} | {c['level']} | {'pass' if c['passed'] else '**FAIL**'} | "
                     f"{c['detail']} |")
    return "\n".join(lines) + "\n"


def empirical_markdown(emp: dict) -> list[str]:
    """Claimed, recomputed and empirical ε side by side, with the plots."""
    can, mia = emp["canary"], emp["membership"]
    lines = ["", "## Empirical audit", "",
             "| attack | against | claimed ε | empirical ε | detail |", "|---|---|---|---|---|"]
    if can["available"]:
        f = can["fit"]
        lines.append(f"| canaries (Andrew et al. 2024), estimate | user level | "
                     f"{_fmt(can['claimed'])} | {_fmt(can['epsilon'])} | {f['inserted']} inserted, "
                     f"{f['held_out']} held out; cosine {f['inserted_mean']:.2e} vs "
                     f"{f['held_out_mean']:.2e} (sd {f['held_out_std']:.2e}); two-Gaussian fit "
                     f"ε {_fmt(can['epsilon_two_gaussians'])}; δ {can['delta']:.3g} |")
    else:
        lines.append(f"| canaries | user level | {_fmt(can['claimed'])} | - | {can['reason']} |")
    lines.append(membership_row(mia))
    lines += ["", "The canary estimate is Andrew et al.'s one-shot estimate (the spread of the "
              "held-out cosines for both Gaussians; the two-Gaussian fit is shown too), not a "
              "bound. " + MEMBERSHIP_NOTE[mia["design"]]]
    for name in ("audit_canaries.png", "audit_roc.png"):
        if name in emp.get("plots", []):
            lines += ["", f"![{name}]({name})"]
    return lines


MEMBERSHIP_NOTE = {
    "one-run": "The membership bound (Steinke, Nasr & Jagielski 2023) holds at the stated "
               "confidence: each canary interaction was in or out by a coin drawn before "
               "training, and the claim it is held against is per canary (a substitution).",
    "heuristic": "The membership row is a heuristic, not a bound, and not part of the "
                 "verdict: its non-members are each user's latest (test) interaction, which "
                 "drift alone separates; train with --example-canaries M for a valid test."}


def membership_row(mia: dict) -> str:
    """The membership-inference row of the empirical table."""
    if mia["design"] == "heuristic":
        return (f"| membership inference, heuristic (not a bound) | {mia['claim']} | - | - | "
                f"{mia['devices']} devices; AUC {mia['auc']:.3f}, advantage "
                f"{mia['advantage']:.3f} |")
    return (f"| membership inference, one-run {mia['confidence']:.0%} lower bound | "
            f"{mia['claim']} | {_fmt(mia['claimed_per_coin'])} per canary | "
            f"{_fmt(mia['epsilon_lower'])} | {mia['correct']}/{mia['guesses']} guesses right, "
            f"{mia['scored']} of {mia['canaries']} canaries scored; AUC {mia['auc']:.3f}; "
            f"δ {mia['delta']:.3g} |")


def _empirical(run_record, result: dict, out: Path) -> None:
    """Run both attacks, add their checks and plots to ``result``."""
    from fedrec.simulations.audit import Check
    from fedrec.simulations.empirical_audit import audit_empirical, empirical_checks
    from fedrec.simulations.plots import plot_canary_cosines, plot_roc

    emp = audit_empirical(run_record)
    checks: list[Check] = empirical_checks(emp)
    result["checks"] += [asdict(c) for c in checks]
    result["passed"] = result["passed"] and all(c.passed for c in checks)
    plots = []
    can = emp["canary"]
    if can["available"]:
        cos = can.pop("cosines")
        plot_canary_cosines(cos["inserted"], cos["held_out"], out / "audit_canaries.png",
                            f"canary cosines: estimate ε {can['epsilon']:.3g}, "
                            f"claimed {_fmt(can['claimed'])}")
        plots.append("audit_canaries.png")
    mia = emp["membership"]
    roc = mia.pop("roc")
    plot_roc(roc["fpr"], roc["tpr"], out / "audit_roc.png",
             f"membership inference: AUC {mia['auc']:.3f}, " +
             (f"ε ≥ {mia['epsilon_lower']:.2f} (one run, {mia['confidence']:.0%})"
              if mia["design"] == "one-run" else "heuristic, not a bound"))
    plots.append("audit_roc.png")
    emp["plots"] = plots
    result["empirical"] = emp


def run(args: argparse.Namespace) -> int:
    from fedrec.simulations import audit_releases

    if args.budget is not None:
        from fedrec.simulations import budget_cmd

        return budget_cmd.run(args.budget, args.out)
    if args.run_dir is None:
        raise FedrecError("fedrec audit needs a RUN_DIR or --budget DIR")
    start = time.perf_counter()
    out = args.out or args.run_dir
    if audit_releases.is_release_run(args.run_dir):
        result = audit_releases.audit(args.run_dir)
        if args.empirical:
            result["warnings"].append("--empirical: no canary design for release runs yet")
        return _report(args, result, out, start)
    run_record = load_run(args.run_dir)
    result = audit_accounting(run_record)
    if args.empirical:
        with console.status("empirical audit: canaries and membership inference..."):
            _empirical(run_record, result, out)
    return _report(args, result, out, start)


def _report(args: argparse.Namespace, result: dict, out, start: float) -> int:
    """Write audit.json / audit.md, print the table; exit code 0 pass, 1 fail."""
    result["seconds"] = time.perf_counter() - start
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
    if "empirical" in result:
        emp = result["empirical"]
        if emp["canary"]["available"]:
            report.print(f"canary estimate: ε {_fmt(emp['canary']['epsilon'])} "
                         f"(claimed user-level {_fmt(emp['canary']['claimed'])})")
        mia = emp["membership"]
        if mia["design"] == "one-run":
            report.print(f"membership inference (one run, {mia['canaries']} example canaries): "
                         f"ε ≥ {_fmt(mia['epsilon_lower'])} at {mia['confidence']:.0%} "
                         f"(claimed {_fmt(mia['claimed_per_coin'])} per canary)")
        else:
            report.print(f"membership inference heuristic (not a bound): AUC {mia['auc']:.3f}")
    return 0 if result["passed"] else 1
