"""The reference a federated run is compared with: centralized NeuMF on the same data
and seed, trained once (or taken from a ``fedrec baseline`` results file) and cached in
the run directory."""

from __future__ import annotations

import json
from pathlib import Path

from fedrec.shared.config import RunConfig
from fedrec.simulations.progress import console


def reference(cfg: RunConfig, baselines: Path | None = None) -> dict | None:
    """Centralized NeuMF on the same data and seed (cached in the run directory); None
    for a lazy synthetic federation, whose whole dataset is never held in one place.

    ``baselines`` (``--compare``, a ``fedrec baseline`` results file): its ``neumf``
    record for the same data fingerprint and seed is the reference, so it is not trained
    twice (``make run``)."""
    if cfg.lazy_clients:
        console.print("no centralized NeuMF reference: lazy-clients never materialises "
                      "the whole dataset")
        return None
    path = Path(cfg.out) / "reference_neumf.json"
    if path.exists():
        return json.loads(path.read_text())
    from fedrec.shared.federated_data import federation_of
    from fedrec.shared.interactions import evaluation_negatives
    from fedrec.simulations.baselines import NeuMFConfig, run_baseline

    fed = federation_of(cfg)
    known = _baseline_neumf(baselines, fed.fingerprint, cfg.seed)
    if known is not None:
        console.print(f"reference: centralized NeuMF from {baselines} (same data and seed)")
        path.write_text(json.dumps(known))
        return known
    val = evaluation_negatives(fed.split, 99, cfg.seed, "val")
    test = evaluation_negatives(fed.split, 99, cfg.seed, "test")
    result = run_baseline("neumf", fed.inter, fed.split, val, test, cfg.seed,
                          neumf=NeuMFConfig(model=cfg.model))
    path.write_text(json.dumps({"metrics": result["metrics"], "wall_seconds": result["wall_seconds"]}))
    return result


def _baseline_neumf(path: Path | None, fingerprint: str, seed: int) -> dict | None:
    """The ``neumf`` record of a baselines file for this data and seed, if there is one."""
    from fedrec.simulations.release_cmd import read_baselines

    for record in read_baselines(path):
        if (record.get("model") == "neumf" and record.get("seed") == seed
                and record.get("data_fingerprint") == fingerprint):
            return {"metrics": record["metrics"],
                    "wall_seconds": record.get("wall_seconds", float("nan"))}
    return None
