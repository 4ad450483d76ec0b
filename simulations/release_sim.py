"""Simulate a statistics-release federation in process: every user is one device.

Each device computes its contribution with ``client.releases`` on its own data, the
server runs ``server.releases.run_releases`` (bound, account write-ahead, noise, release),
and each device then ranks its held-out item with the on-device scorer. No model is
trained and nothing iterates, so the whole federation is a few seconds of numpy; the
computation is exactly the devices' and the server's (the same functions), only the
transport is a loop instead of Flower messages.

Run directory (``out``): ``manifest.json`` (config, data, declared mechanism, the ledger
under ``accounting``), ``ledger.json`` (the server's ledger, written before each
release's noise is drawn), ``release.npz`` (what devices receive: the SDK's
``Recommender(release=...)`` serves it), ``privacy.json`` and ``results.json``. No file records who
took part: every user contributes exactly once, so participation is the public roster.
"""

from __future__ import annotations

import json
import math
import time
from pathlib import Path
from typing import Any

import numpy as np

from client import releases as device
from server import releases
from server.rundir import RunDir
from shared import knn, stats
from shared.federated_data import load_federation
from shared.ledger import Ledger
from shared.release_config import ReleaseConfig
from shared.runinfo import versions, write_text_atomic

KIND = "statistics-release"
#: Who the user-level ε holds against (privacy.json, README threat model).
ADVERSARY = ("anyone who sees the released statistics or what devices compute from them; "
             "the server sees each contribution in the clear (central DP: trusted curator)")


def settings_for(cfg: ReleaseConfig, noise_multiplier: float) -> releases.ReleaseSettings:
    return releases.ReleaseSettings(
        releases=cfg.releases, popularity_decay=cfg.popularity_decay,
        popularity_cap=cfg.popularity_cap, noise_multiplier=noise_multiplier,
        popularity_share=cfg.popularity_share, head=cfg.head, cap=cfg.cap, knn=cfg.knn,
        noise_seed=None if cfg.noise_seed < 0 else cfg.noise_seed)


def noise_for(cfg: ReleaseConfig, n_users: int) -> float:
    """The composed noise multiplier that meets the run's target ε (0 for ε = inf)."""
    shares = tuple(sorted(settings_for(cfg, 1.0).budget().shares.items()))
    return releases.calibrate_total(cfg.target_epsilon, cfg.user_delta(n_users), shares)


def declared(cfg: ReleaseConfig, n_users: int, z: float) -> dict[str, Any]:
    """The mechanism as declared in the manifest: what an auditor recomputes from."""
    budget = settings_for(cfg, z).budget()
    return {"level": "user", "relation": stats.RELATION, "sensitivity": stats.SENSITIVITY,
            "delta": cfg.user_delta(n_users), "users": n_users, "claim_accountant": "pld",
            "noise_multiplier": z, "secret_randomness": cfg.private,
            "releases": {name: {"noise_multiplier": budget.multiplier(name),
                                "noise_std": stats.SENSITIVITY * budget.multiplier(name),
                                "share": budget.shares[name]} for name in cfg.releases}}


def run(cfg: ReleaseConfig) -> dict[str, Any]:
    """Run the pipeline, write the run directory, return ``results.json``'s content."""
    start = time.perf_counter()
    fed = load_federation(cfg.dataset, cfg.seed, cfg.synthetic_users, cfg.synthetic_items)
    clients = [fed.client(u) for u in range(fed.n_clients)]
    if cfg.holdout == "validation":
        clients = [c.for_validation() for c in clients]
    n = fed.n_clients
    z = noise_for(cfg, n)
    run_dir = RunDir(cfg.out)
    run_dir.create({"kind": KIND, "config": cfg.to_dict(), "versions": versions(),
                    "seed": cfg.seed, "privacy": declared(cfg, n, z),
                    "data": {"name": fed.name, "fingerprint": fed.fingerprint, "users": n,
                             "items": fed.n_items}}, resume=False)
    ledger = Ledger(stats.RELATION, cfg.user_delta(n))

    def save(led: Ledger) -> None:
        write_text_atomic(run_dir.path / "ledger.json", led.dumps() + "\n")
        run_dir.record_accounting({"user": led.to_dict()})

    def collect(statistic: str, request: dict) -> list[np.ndarray]:
        return [device.contribution(statistic, request, c) for c in clients]

    released = releases.run_releases(collect, fed.n_items, settings_for(cfg, z), ledger, save)
    knn.save_released(run_dir.path / "release.npz", released, cfg.knn)
    evaluable = [c for c in clients if c.evaluable]
    per_user = [device.evaluate(c, released, cfg.knn) for c in evaluable]
    metrics = {k: float(np.mean([m[k] for m in per_user])) for k in per_user[0]}
    privacy = privacy_record(cfg, ledger)
    run_dir.write_privacy(privacy)
    results = {"kind": KIND, "pipeline": cfg.pipeline, "dataset": fed.name, "seed": cfg.seed,
               "holdout": cfg.holdout, "metrics": metrics, "evaluated_users": len(evaluable),
               "privacy": privacy["user"], "head": int(len(released.head)),
               "upload_bytes": upload_bytes(cfg, fed.n_items, len(released.head)),
               "seconds": time.perf_counter() - start}
    run_dir.write_results(results)
    return results


def privacy_record(cfg: ReleaseConfig, ledger: Ledger) -> dict[str, Any]:
    """``privacy.json``: the user-level ε (PLD, the claim; RDP beside it) of the ledger."""
    eps = ledger.epsilons()
    claim = eps["pld"] if cfg.private else math.inf
    return {"user": {"epsilon": claim, "epsilons": eps, "accountant": "pld",
                     "delta": ledger.delta, "relation": stats.RELATION,
                     "neighbours": "replace one user's entire history (the roster is public)",
                     "adversary": ADVERSARY, "private": cfg.private,
                     "releases": len(ledger.history)}}


def upload_bytes(cfg: ReleaseConfig, n_items: int, head: int) -> dict[str, int]:
    """Bytes one device uploads per release: dense float32 (what SecAgg+ would carry)."""
    out = {"popularity": 4 * n_items}
    if "cooccurrence" in cfg.releases:
        out["cooccurrence"] = stats.upload_bytes(head)
    return out


def read_results(path: str | Path) -> dict[str, Any]:
    return json.loads((Path(path) / "results.json").read_text())
