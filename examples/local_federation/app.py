"""An app's view of fedrec: record events on the device, join a federation, recommend.

    .venv/bin/python examples/local_federation/app.py [--devices 3] [--rounds 2]

Three "phones" each keep their user's clicks and purchases in an SDK store
(``fedrec.client.store.EventStore``). A real Flower federation is started on this machine
(``fedrec.server.deployment``: SuperLink + one SuperNode per phone, TLS, SuperNode
authentication, user-level DP), trains for a few rounds, and then every phone asks its
``Recommender`` for recommendations, scored on the device with its private user
embedding and the newest global model. Nothing about a phone's events leaves it except
clipped, noised model updates. Everything lands in ``runs/example_federation``.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from fedrec.client.recommender import Recommender  # noqa: E402
from fedrec.client.store import EventStore  # noqa: E402
from fedrec.server.deployment import LocalDeployment  # noqa: E402
from fedrec.shared.catalogue import load_catalogue  # noqa: E402
from fedrec.shared.config import RunConfig  # noqa: E402
from fedrec.shared.synthetic import SyntheticConfig, generate  # noqa: E402

MODEL = {"gmf-dim": 8, "mlp-dim": 8, "content-dim": 8}


def record_events(root: Path, devices: int) -> list[Path]:
    """What the app does all day: one ``store.record`` per user action."""
    shop = generate(SyntheticConfig(n_users=devices, n_items=80, seed=11))
    shop.items.to_csv(root / "catalogue.csv", index=False)
    paths = []
    for k, user in enumerate(dict.fromkeys(shop.events["user_id"]), start=1):
        path = root / f"phone-{k}.db"
        path.unlink(missing_ok=True)
        with EventStore(path) as store:
            for e in shop.events[shop.events["user_id"] == user].itertuples():
                store.record(e.item_id, e.event, int(e.timestamp))
            print(f"phone {k}: {store.count()} events recorded on the device")
        paths.append(path)
    return paths


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--devices", type=int, default=3)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--out", type=Path, default=Path("runs/example_federation"))
    args = parser.parse_args()
    root = args.out.resolve()
    root.mkdir(parents=True, exist_ok=True)
    phones = record_events(root, args.devices)
    with LocalDeployment(root / "federation") as fed:
        fed.credentials(args.devices)
        fed.start_superlink()
        for i, phone in enumerate(phones, start=1):
            fed.register(i)
            fed.start_supernode(i, {"store-path": str(phone), "device-index": i})
        fed.wait_online(args.devices)
        print(f"{args.devices} SuperNodes online over TLS; training {args.rounds} rounds...")
        code = fed.run({"catalogue": str(root / "catalogue.csv"), "clients": args.devices,
                        "rounds": args.rounds, "out": str(root / "run"), "dp": "server",
                        "noise-multiplier": 0.5, "clip": 1.0, **MODEL}).wait()
    if code != 0:
        sys.exit(f"the federation failed; see {root / 'federation'}/*.log")
    privacy = json.loads((root / "run" / "privacy.json").read_text())["user"]
    print(f"user-level DP: ε = {privacy['epsilon']:.2f} at δ = {privacy['delta']:.2g} "
          f"after {privacy['rounds']} rounds (fedrec audit {root / 'run'} checks it)")
    catalogue = load_catalogue(str(root / "catalogue.csv"))
    cfg = RunConfig(**{k.replace("-", "_"): v for k, v in MODEL.items()})
    for k, phone in enumerate(phones, start=1):
        with EventStore(phone) as store:
            rec = Recommender(store, catalogue, cfg)
            status = rec.privacy_status()
            user = f"{status['user']['epsilon']:.2f}" if status["user"] else "none"
            print(f"phone {k}: recommends {rec.recommend(k=5)}; joined {status['rounds_joined']} "
                  f"rounds; user-level ε as the server reported it: {user}")


if __name__ == "__main__":
    main()
