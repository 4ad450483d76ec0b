"""Probe: DP-FedAvg NeuMF whose item GMF embeddings start from a release's item factors.

Issue #21 item 4, variant "DP-FedAvg continues", as a measured probe, not a feature: the
federation's own ledger does NOT start with the release's events here; this script
composes them offline (dp-accounting, PLD and RDP, REPLACE_ONE) and prints the total.

    python benchmarks/warm_fedavg_probe.py --release runs/warm/knn-eps6-validation-seed0 \\
        --total-epsilon 8 --init warm --out runs/warm/fedavg-warm -- dataset=movielens-100k \\
        holdout=validation rounds=5 clients-per-round=0 local-epochs=2 learning-rate=0.05 \\
        dp=server clip=2.0 noise-seed=0 eval-every=1

The release ledger's Gaussians and R full-participation DP-FedAvg rounds (each
``GaussianDpEvent(noise_multiplier / 2)``, fedrec.shared.privacy.user_level_event) compose as
one Gaussian with ``1/z^2 = sum 1/z_k^2``; the round multiplier is the one whose total
meets ``--total-epsilon`` under PLD (the releases' claim accountant). ``--init warm`` puts
the release's unit-RMS item factors (fedrec.shared.warm.item_factors, rank 5) into the
first r columns of the head items' rows of ``item_gmf_embedding``; ``random`` keeps the
seeded random init (the paired control: same settings, same noise seed).
"""

from __future__ import annotations

import logging
import math
import os
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")


def round_multiplier(release_event, total: float, delta: float, rounds: int) -> float:
    """Per-round Gaussian multiplier (sensitivity units) left after ``release_event``."""
    from dp_accounting import dp_event as dpe

    from fedrec.shared import privacy

    def eps(z: float) -> float:
        acc = privacy.make_accountant("pld", "replace_one")
        acc.compose(dpe.GaussianDpEvent(z))
        return acc.get_epsilon(delta)

    lo, hi = 0.05, 50.0
    for _ in range(40):
        mid = math.sqrt(lo * hi)
        lo, hi = (mid, hi) if eps(mid) > total else (lo, mid)
    z_rel = composed_multiplier(release_event)
    left = 1.0 / hi ** 2 - 1.0 / z_rel ** 2
    if left <= 0:
        raise SystemExit(f"the release alone (z {z_rel:.4f}) already spends ε {total}")
    return math.sqrt(rounds / left)


def composed_multiplier(event) -> float:
    """The one Gaussian multiplier of a composition of Gaussians (1/z^2 = sum 1/z_k^2)."""
    events = event.events if hasattr(event, "events") else [event]
    return sum(1.0 / e.noise_multiplier ** 2 for e in events) ** -0.5


def main() -> None:
    from tune_federated import print_evaluations, probe_arguments, probe_config

    parser = probe_arguments(__doc__.splitlines()[0])
    parser.add_argument("--release", type=Path, required=True)
    parser.add_argument("--total-epsilon", type=float, default=8.0)
    parser.add_argument("--init", choices=("warm", "random"), default="warm")
    args = parser.parse_args()
    cfg = probe_config(args)

    import numpy as np
    from dp_accounting import dp_event as dpe

    import fedrec.server.app as server_app
    from fedrec.shared import knn, privacy, warm
    from fedrec.shared.ledger import Ledger
    from fedrec.simulations.inprocess import run_inprocess

    release = Ledger.loads((args.release / "ledger.json").read_text())
    z_round = round_multiplier(release.event(), args.total_epsilon, release.delta, cfg.rounds)
    cfg = cfg.replace(noise_multiplier=2 * z_round, target_epsilon=1e6)
    total = dpe.ComposedDpEvent([release.event()]
                                + [dpe.GaussianDpEvent(z_round)] * cfg.rounds)
    for kind in ("pld", "rdp"):
        acc = privacy.make_accountant(kind, "replace_one")
        acc.compose(total)
        print(f"release + {cfg.rounds} rounds at Flower z {2 * z_round:.3f}: "
              f"{kind} ε {acc.get_epsilon(release.delta):.3f} at δ {release.delta:.3g}")
    released, _ = knn.load_released(args.release / "release.npz")
    factors = warm.item_factors(released, 5)
    fresh = server_app.initial_global_weights

    def initial(*a):
        weights = fresh(*a)
        if args.init == "warm":
            name = next(k for k in weights if k.startswith("item_gmf_embedding"))
            emb = np.array(weights[name])
            emb[released.head, :factors.shape[1]] = factors
            weights[name] = emb
        return weights

    server_app.initial_global_weights = initial
    logging.getLogger("flwr").setLevel(logging.WARNING)
    run_inprocess(cfg)
    print_evaluations(args.out)


if __name__ == "__main__":
    main()
