"""Diagnostic: a federation that starts from centrally trained NeuMF weights.

    .venv/bin/python benchmarks/warm_start_probe.py --out runs/warm_lr0.01 \\
        --central runs/central_neumf.npz -- dataset=movielens-100k rounds=6 \\
        local-epochs=2 learning-rate=0.01 eval-every=1

Not a way to train (a federation has no central data to pretrain on): it separates two
questions about the gap between federated and centralized HR@10. (1) How good can
Federated Reconstruction be with a good global model? Run it with ``learning-rate=1e-9``
(the global weights stay the central ones; the users' embeddings are fitted on the device
as usual). (2) Is federated averaging's fixed point worse, or only the path to it? Run
it with a normal local learning rate: if HR@10 falls back to the from-scratch plateau,
averaging itself pulls the model down; if it holds, the from-scratch federation is
stuck on its way.

The central model (``--central``, trained once and cached there): the hybrid model of the
run config, trained centrally on every client's training items (train + validation, as
the clients hold them) for ``--epochs`` epochs with Adam (``--central-lr``), batch 32 and
``negatives`` negatives per positive. Its global weights replace the server's initial
ones; everything else is the in-process federation of ``tune_federated.py``.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

from tune_federated import print_evaluations, probe_arguments, probe_config

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")


def central_weights(fed, cfg, epochs: int, lr: float, path: Path) -> dict:
    """The global weights of centrally trained NeuMF (cached at ``path``)."""
    import numpy as np

    if path.exists():
        with np.load(path) as data:
            return dict(data)
    import tensorflow as tf

    from fedrec.shared.model import get_global_weights
    from fedrec.shared.training import keras_dataset, make_rows, shuffled_batches
    from fedrec.simulations.baselines import NeuMFConfig, _compiled_model, training_weights

    split = fed.split.with_validation_in_train()
    config = NeuMFConfig(epochs=epochs, batch_size=32, learning_rate=lr,
                         negatives=cfg.negatives, recency_decay=1.0, model=cfg.model)
    tf.keras.utils.set_random_seed(cfg.seed)
    rng = np.random.default_rng([cfg.seed, 7])
    model = _compiled_model(config, None, fed.inter)
    train, weights = split.train_matrix(), training_weights(split, config)
    for epoch in range(1, epochs + 1):
        rows = make_rows(split.train_users, split.train_items, weights, train,
                         config.negatives, rng)
        batches = shuffled_batches(len(split.train_users), config.batch_size, rng)
        model.fit(keras_dataset(rows, batches, fed.inter.item_features), epochs=1, verbose=0)
        print(f"central epoch {epoch}/{epochs}", flush=True)
    out = get_global_weights(model)
    path.parent.mkdir(parents=True, exist_ok=True)
    np.savez(path, **out)
    return out


def main() -> None:
    parser = probe_arguments(__doc__.splitlines()[0])
    parser.add_argument("--central", type=Path, required=True, help="cache of the central weights")
    parser.add_argument("--epochs", type=int, default=6, help="central training epochs")
    parser.add_argument("--central-lr", type=float, default=0.01)
    args = parser.parse_args()
    cfg = probe_config(args)

    import fedrec.server.app
    from fedrec.shared.federated_data import federation_of
    from fedrec.simulations.inprocess import run_inprocess

    logging.getLogger("flwr").setLevel(logging.WARNING)
    warm = central_weights(federation_of(cfg), cfg, args.epochs, args.central_lr, args.central)
    # the ServerApp asks this for its round-0 weights
    fedrec.server.app.initial_global_weights = lambda *_: {k: v.copy() for k, v in warm.items()}
    run_inprocess(cfg)
    print_evaluations(args.out)


if __name__ == "__main__":
    main()
