"""Score a run's checkpoints under other serving fits (``serve-*`` settings).

    .venv/bin/python benchmarks/serve_fit_probe.py runs/val_lr0.02 --rounds 80 90 100 \\
        --fits 1:1 3:1 2:0.9 3:0.95 3:0.9 3:0.8 4:0.9 3:0.9:4

Each fit is ``passes:decay[:average]``. For every checkpoint (the global weights of that
round) and every fit, each user's served embedding is fitted on its device data as the
run holds it (the run's ``holdout``: a ``holdout = validation`` run ranks the validation
item, so settings are chosen without the test item), then its held-out item is ranked as
in federated evaluation (passes >= 1: every fit starts from the user's initial draw; the
run's stored training embeddings are not read). Prints HR@10 per fit and round, and the
mean over the rounds.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from dataclasses import replace
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")


def parse_fit(spec: str) -> tuple[int, float, int]:
    """``passes:decay[:average]`` -> (passes, decay, average); ValueError if malformed."""
    parts = spec.split(":")
    try:
        if len(parts) not in (2, 3):
            raise ValueError
        passes, decay = int(parts[0]), float(parts[1])
        average = int(parts[2]) if len(parts) == 3 else 1
    except ValueError:
        raise ValueError(f"fit {spec!r}: expected passes:decay[:average]") from None
    if passes < 1 or average < 1:
        raise ValueError(f"fit {spec!r}: passes and average must be >= 1")
    return passes, decay, average


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run", type=Path)
    parser.add_argument("--rounds", type=int, nargs="+", required=True)
    parser.add_argument("--fits", nargs="+", required=True, help="passes:decay[:average]")
    args = parser.parse_args()

    import numpy as np

    from fedrec.client.app import held_out
    from fedrec.client.local import get_local_model
    from fedrec.server.rundir import RunDir
    from fedrec.shared.config import RunConfig
    from fedrec.shared.errors import ConfigError
    from fedrec.shared.federated_data import federation_of
    from fedrec.shared.protocol import LocalSettings

    run = RunDir(args.run)
    manifest = json.loads(run.manifest_path.read_text())
    try:
        cfg = RunConfig.from_mapping(manifest["config"], source=str(args.run))
    except ConfigError as err:
        sys.exit(str(err))
    fed = federation_of(cfg)
    model = get_local_model(cfg.model, fed.item_features)
    users = [held_out(cfg, fed.client(u)) for u in range(fed.n_clients)]
    users = [d for d in users if d.evaluable]
    try:
        fits = [parse_fit(spec) for spec in args.fits]
    except ValueError as err:
        parser.error(str(err))
    table = {fit: [] for fit in fits}
    for rnd in args.rounds:
        weights = run.load_checkpoint(rnd)[0]
        for passes, decay, average in fits:
            settings = replace(LocalSettings.from_run_config(cfg, rnd), serve_passes=passes,
                               serve_recency_decay=decay, serve_average=average)
            hits = []
            for data in users:
                model.load(weights, None, (cfg.seed, data.user))
                rng = np.random.default_rng([cfg.seed, data.user, rnd, 99])
                model.fit_for_serving(data, settings, (cfg.seed, data.user), rng)
                hits.append(model.evaluate(data)["hr@10"])
            table[(passes, decay, average)].append(float(np.mean(hits)))
            print(f"round {rnd:3d}  fit {passes}:{decay:g}:{average}  HR@10 {np.mean(hits):.4f} "
                  f"({cfg.holdout} item)", flush=True)
    for (passes, decay, average), values in table.items():
        print(f"fit {passes}:{decay:g}:{average}  mean HR@10 over rounds {args.rounds}: "
              f"{np.mean(values):.4f}")


if __name__ == "__main__":
    main()
