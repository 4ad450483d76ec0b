"""Write tests/data/behaviour_golden.json: one seeded synthetic federation's numbers.

Runs the federation of ``tests/test_behaviour.py`` (CONFIG below, in-process engine,
user-level DP with a seeded noise stream) with whichever fedrec the interpreter
imports: today's ``fedrec.*``, or with ``--old`` the layout before issue #20's
restructuring (bare ``shared``/``simulations`` packages: ``git worktree add /tmp/old
62ccd7c``, then run from ``/tmp/old`` with ``PYTHONPATH=/tmp/old``). The golden file was written from commit 62ccd7c, the last commit
before the restructuring; today's tree gave bit-identical checkpoints on the same machine.

    cd /tmp/old && PYTHONPATH=/tmp/old python /path/to/fedrec/benchmarks/behaviour_golden.py \
        OUT_DIR --old > /path/to/fedrec/tests/data/behaviour_golden.json
"""

from __future__ import annotations

import json
import sys

import numpy as np

#: The federation: 12 synthetic users, 5 a round, 2 rounds, user-level DP-FedAvg with a
#: seeded noise stream. Example-level DP is left out on purpose: its training negatives
#: changed on purpose after 62ccd7c (ee9c723, issue #19: a row's negatives avoid only its
#: own positive), so that tree is not its reference.
CONFIG = dict(dataset="synthetic", synthetic_users=12, synthetic_items=60, gmf_dim=8,
              mlp_dim=8, content_dim=8, clients_per_round=5, eval_clients=6, rounds=2,
              eval_every=1, seed=5, dp="server", noise_multiplier=1.0, clip=0.5,
              noise_seed=11)


def run(out: str, old_layout: bool = False) -> None:
    """The federation into ``out``, with today's ``fedrec.*`` or (``old_layout``) the bare
    packages of the tree before issue #20 (imported by name: the layer test forbids bare
    imports in this tree)."""
    import importlib

    prefix = "" if old_layout else "fedrec."
    config = importlib.import_module(prefix + "shared.config")
    inprocess = importlib.import_module(prefix + "simulations.inprocess")
    if old_layout and "fedrec" in config.__file__:
        raise SystemExit(f"--old imported {config.__file__}: put the old tree first on PYTHONPATH")
    inprocess.run_inprocess(config.RunConfig(out=out, **CONFIG))


def numbers(out: str) -> dict:
    """What the behaviour test compares: results.json's metrics and ε, each round's train
    loss, and the final checkpoint's per-array L2 norms."""
    from pathlib import Path

    path = Path(out)
    results = json.loads((path / "results.json").read_text())
    rows = [json.loads(line) for line in (path / "metrics.jsonl").read_text().splitlines()]
    last = sorted(path.glob("checkpoints/round-*.npz"))[-1]
    with np.load(last) as ckpt:
        norms = {k: float(np.linalg.norm(ckpt[k])) for k in sorted(ckpt.files)
                 if ckpt[k].dtype.kind == "f"}
    return {"metrics": results["metrics"], "epsilon": results["privacy"]["epsilon"],
            "train_loss": [r["train_loss"] for r in rows], "final_norms": norms}


if __name__ == "__main__":
    old = "--old" in sys.argv[2:]
    run(sys.argv[1], old)
    print(json.dumps({"config": CONFIG, "source": ("commit 62ccd7c (before issue #20)" if old
                                                   else "this tree"),
                      **numbers(sys.argv[1])}, indent=1, sort_keys=True))
