"""Simulate a statistics-release federation: every user is one device.

Two engines run the same devices and the same server (``fedrec.server.release_run``):

* ``inprocess`` (default): a loop calls each device's functions (``fedrec.client.releases``)
  directly. No model is trained and nothing iterates, so a MovieLens-100k run is seconds.
* ``flower``: Flower's simulation engine (``flower-simulation``, one virtual SuperNode per
  user) runs ``fedrec.server.release_app`` and ``fedrec.client.release_app``; contributions, the release
  and the metrics travel as Flower messages. Flower needs an app directory with a
  ``pyproject.toml``: fedrec writes a minimal one into the run directory.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np

from fedrec.client import releases as device
from fedrec.server.release_run import DataInfo, run_release
from fedrec.shared import knn
from fedrec.shared.content import ItemContent
from fedrec.shared.federated_data import ClientData, load_federation
from fedrec.shared.release_config import ReleaseConfig

ENGINES = ("inprocess", "flower")


def devices(cfg: ReleaseConfig) -> tuple[DataInfo, list[ClientData]]:
    """The roster and every device's data (its validation view under holdout validation)."""
    fed = load_federation(cfg.dataset, cfg.seed, cfg.synthetic_users, cfg.synthetic_items)
    clients = [fed.client(u) for u in range(fed.n_clients)]
    if cfg.holdout == "validation":
        clients = [c.for_validation() for c in clients]
    return DataInfo(fed.name, fed.fingerprint, fed.n_clients, fed.n_items), clients


def item_content(cfg: ReleaseConfig) -> ItemContent:
    """The catalogue's public metadata every device holds (genres, release years)."""
    fed = load_federation(cfg.dataset, cfg.seed, cfg.synthetic_users, cfg.synthetic_items)
    return ItemContent.of(fed.inter)


def mean_metrics(per_device: list[dict[str, float]]) -> tuple[dict[str, float], int]:
    if not per_device:
        return {}, 0
    return {k: float(np.mean([m[k] for m in per_device])) for k in per_device[0]}, len(per_device)


def run(cfg: ReleaseConfig, roster: tuple[DataInfo, list[ClientData]] | None = None,
        step: Callable[[str], None] | None = None) -> dict[str, Any]:
    """The in-process engine: same device and server code, a loop for transport.

    ``roster`` reuses :func:`devices` of the same data (several runs, one generation).
    Contributions stream into the server's sum one device at a time, so memory does not
    grow with the number of devices (100,000 synthetic users: benchmarks/release_scale.py).
    ``step`` is told each stage as it starts (a release's name, then ``evaluate``), for
    progress displays.
    """
    data, clients = devices(cfg) if roster is None else roster
    step = step or (lambda _name: None)

    seed = None if cfg.noise_seed < 0 else cfg.noise_seed
    calls = [0]

    def collect(statistic: str, request: dict) -> Iterator[np.ndarray]:
        step(statistic)
        if cfg.noise == "distributed":          # each device adds its own noise share
            calls[0] += 1
            gone = dropouts(cfg.release_dropout, len(clients), cfg.seed, calls[0])
            return (device.noisy_share(statistic, request, c, device.noise_generator(
                        seed, device.share_stream(calls[0], len(clients), u)))
                    for u, c in enumerate(clients) if u not in gone)
        return (device.contribution(statistic, request, c) for c in clients)

    def evaluate(released: knn.Released) -> tuple[dict[str, float], int]:
        step("evaluate")
        content = item_content(cfg)
        return mean_metrics([device.evaluate(c, released, cfg.knn, content) for c in clients
                             if c.evaluable])

    return run_release(cfg, data, collect, evaluate, engine="inprocess")


#: Simulated failures (``fedrec.client.releases.simulated_dropouts``).
dropouts = device.simulated_dropouts


def read_results(path: str | Path) -> dict[str, Any]:
    return json.loads((Path(path) / "results.json").read_text())


def app_pyproject(cfg: ReleaseConfig, n_users: int) -> dict[str, Any]:
    """The minimal Flower App that ``flower-simulation`` runs: fedrec's installed release
    apps as components, ``cfg`` as the run config (no source checkout needed)."""
    from fedrec.shared import flower_app

    return flower_app.app_pyproject(
        "fedrec-release", flower_app.RELEASE, cfg.to_dict(),
        {"default": "local-simulation",
         "local-simulation": {"options": {"num-supernodes": n_users}}})


def run_flower(cfg: ReleaseConfig, workers: int = 2) -> dict[str, Any]:
    """The Flower engine: ``flower-simulation`` with one virtual SuperNode per user."""
    import subprocess

    from fedrec.shared import flower_app
    from fedrec.shared.errors import FedrecError
    from fedrec.simulations.simulate_launch import backend_config

    out = Path(cfg.out).resolve()
    cfg = cfg.replace(out=str(out))
    fed = load_federation(cfg.dataset, cfg.seed, cfg.synthetic_users, cfg.synthetic_items)
    app = flower_app.write_app(out / "app", app_pyproject(cfg, fed.n_clients))
    exe = flower_app.flower_exe("flower-simulation")
    with (out / "simulation.log").open("a") as log:
        done = subprocess.run([exe, "--app", str(app), "--num-supernodes", str(fed.n_clients),
                               "--backend-config", json.dumps(backend_config(workers))],
                              stdout=log, stderr=subprocess.STDOUT, cwd=str(app),
                              env=flower_app.subprocess_env())
    if done.returncode != 0 or not (out / "results.json").exists():
        raise FedrecError(f"flower-simulation failed (exit {done.returncode}); "
                          f"see {out / 'simulation.log'}")
    return read_results(out)
