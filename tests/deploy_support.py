"""What the deployment test files share: a real federation on 127.0.0.1 (SuperLink +
3 SuperNodes over TLS with SuperNode authentication, each device an app's SDK store),
started once per test file (each file's module-scoped fixture calls
:func:`three_node_federation`) on free ports, so two files can run in two processes at
once."""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from fedrec.client.store import EventStore
from fedrec.server.deployment import LocalDeployment, Ports
from fedrec.server.rundir import RunDir
from fedrec.shared.synthetic import SyntheticConfig, generate

MODEL = {"gmf-dim": 8, "mlp-dim": 8, "content-dim": 8}
HEARTBEAT_HOOK = Path(__file__).resolve().parent / "flwr_heartbeat"


class QuickExpiry(LocalDeployment):
    """The deployment with SuperNodes that declare a 10 s heartbeat (tests/flwr_heartbeat):
    a killed node is offline after ~20 s instead of ~60 s; nothing asserted depends on it."""

    def env(self) -> dict[str, str]:
        env = super().env()
        env["PYTHONPATH"] = os.pathsep.join(
            p for p in (str(HEARTBEAT_HOOK), env.get("PYTHONPATH")) if p)
        return env


@contextmanager
def three_node_federation(root: Path) -> Iterator[tuple[QuickExpiry, Path, list[Path]]]:
    """Yield (federation, root, device stores): the catalogue in ``root``, three SDK
    stores holding three synthetic users' events, SuperLink and three SuperNodes online."""
    data = generate(SyntheticConfig(n_users=3, n_items=60, seed=5))
    data.items.to_csv(root / "catalogue.csv", index=False)
    stores = []
    for k, user in enumerate(dict.fromkeys(data.events["user_id"]), start=1):
        path = root / f"device-{k}.db"
        with EventStore(path) as store:     # what the app recorded on the device
            for row in data.events[data.events["user_id"] == user].itertuples():
                store.record(row.item_id, row.event, int(row.timestamp))
        stores.append(path)
    with QuickExpiry(root / "federation", Ports.free(3)) as fed:
        fed.credentials(3)
        fed.start_superlink()
        for i in (1, 2, 3):
            fed.register(i)
            fed.start_supernode(i, {"store-path": str(stores[i - 1]), "device-index": i})
        fed.wait_online(3)
        yield fed, root, stores


def run_to_end(fed, root: Path, name: str, **changes) -> RunDir:
    """One ``flwr run`` of fedrec's app on the federation, waited for; its run directory."""
    config = {"catalogue": str(root / "catalogue.csv"), "clients": 3, "rounds": 2,
              "out": str(root / name), "dp": "server", "noise-multiplier": 0.3, "clip": 1.0,
              # every device must reply: a generous timeout costs nothing when they do,
              # and keeps a loaded CI machine (three TF processes on two cores) from
              # dropping the slowest one
              "round-timeout": 300.0, **MODEL, **changes}
    proc = fed.run(config)
    assert proc.wait(timeout=900) == 0, (fed.root / "flwr-run.log").read_text()[-3000:]
    return RunDir(root / name)


def wait_for(condition, timeout: float, what: str) -> None:
    end = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > end:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(1)


def trainings_received(fed, index: int) -> int:
    return (fed.root / f"supernode-{index}.log").read_text().count("Received: train message")
