"""Write tests/data/behaviour_golden.json: one seeded synthetic federation's numbers.

Runs the federation of ``tests/test_behaviour.py`` (CONFIG below, in-process engine, user-
and example-level DP with a seeded noise stream) with whichever fedrec the interpreter
imports: the layout before issue #20's restructuring (bare ``shared``/``simulations``
packages, e.g. ``git worktree add /tmp/old 62ccd7c`` and ``PYTHONPATH=/tmp/old``) or
today's ``fedrec.*``. The golden file was written from commit 62ccd7c, the last commit
before the restructuring; today's tree gave bit-identical checkpoints on the same machine.

    PYTHONPATH=/tmp/old python benchmarks/behaviour_golden.py OUT_DIR > tests/data/behaviour_golden.json
"""

from __future__ import annotations

import json
import sys

import numpy as np

#: The federation: 12 synthetic users, 5 a round, 2 rounds, DP at both levels, seeded noise.
CONFIG = dict(dataset="synthetic", synthetic_users=12, synthetic_items=60, gmf_dim=8,
              mlp_dim=8, content_dim=8, clients_per_round=5, eval_clients=6, rounds=2,
              eval_every=1, seed=5, dp="both", noise_multiplier=1.0, clip=0.5,
              client_noise_multiplier=1.0, noise_seed=11)


def run(out: str) -> None:
    try:
        from fedrec.shared.config import RunConfig
        from fedrec.simulations.inprocess import run_inprocess
    except ImportError:                     # the layout before issue #20
        from shared.config import RunConfig
        from simulations.inprocess import run_inprocess
    run_inprocess(RunConfig(out=out, **CONFIG))


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
    run(sys.argv[1])
    print(json.dumps({"config": CONFIG, "source": "commit 62ccd7c (before issue #20)",
                      **numbers(sys.argv[1])}, indent=1, sort_keys=True))
