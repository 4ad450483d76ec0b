"""One markdown line per audited run: claimed, recomputed and empirical ε side by side.

    .venv/bin/python benchmarks/audit_table.py runs/dp_tradeoff/* runs/dp_audit/*

Reads each run's ``audit.json`` (written by ``fedrec audit RUN_DIR --empirical``); a run
without one is audited first.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path


def _f(value, digits: str = ".3g") -> str:
    return "-" if value is None else format(value, digits)


def line(run: Path) -> str:
    audit = json.loads((run / "audit.json").read_text())
    levels = audit["levels"]
    claimed = " / ".join(f"{k} {_f(v['claimed'])}" for k, v in levels.items()) or "none"
    recomputed = " / ".join(f"{k} {_f(v['recomputed']['rdp'])} (PLD {_f(v['recomputed']['pld'])})"
                            for k, v in levels.items()) or "-"
    emp = audit.get("empirical") or {}
    can, mia = emp.get("canary") or {}, emp.get("membership") or {}
    canary = (f"{_f(can['epsilon'])} (fit {_f(can['epsilon_two_gaussians'])})"
              if can.get("available") else "no canaries")
    if not mia:
        member = "-"
    elif mia.get("design") == "heuristic":
        member = f"heuristic, AUC {mia['auc']:.3f}"
    else:
        member = f"≥ {_f(mia['epsilon_lower'])} (AUC {mia['auc']:.3f})"
    verdict = "pass" if audit["passed"] else "**FAIL**"
    return (f"| {run} | {claimed} | {recomputed} | {canary} | {member} | "
            f"{verdict} | {audit['seconds']:.0f} |")


def main(paths: list[str]) -> None:
    from fedrec.simulations.cli import main as fedrec

    print("| run | claimed ε | recomputed ε (RDP) | canary estimate, user level | "
          "membership inference, device model (one-run 95 % bound or heuristic) | audit | "
          "seconds |")
    print("|---|---|---|---|---|---|---|")
    for p in map(Path, paths):
        if not (p / "manifest.json").exists():
            continue
        if not (p / "audit.json").exists() or "empirical" not in json.loads(
                (p / "audit.json").read_text()):
            fedrec(["audit", str(p), "--empirical"])
        print(line(p))


if __name__ == "__main__":
    main(sys.argv[1:])
