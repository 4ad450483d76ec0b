"""Where one local DP-SGD step's time goes, against one plain step, on the same batches.

    .venv/bin/python benchmarks/bench_dp_step.py --dataset movielens-100k --optimizer sgd

Builds one client's model as a simulation worker does (one TF thread each for intra- and
inter-op work), draws 50 batches of ``--batch-size`` rows from one user, and times, per
call, traced functions that do successively more of a DP-SGD step:

- ``call``: a traced function that only touches its inputs (the cost of calling a traced
  step with these inputs, which every step pays, plain or DP);
- ``plain``: the plain training step (``LocalModel.global_optimizer``);
- ``clip``: per-example norms and the clipped sum (``DpSgdEngine.clipped_sum``);
- ``clip+apply``: that, applied by the optimiser;
- ``dp``: the whole DP-SGD step (with noise; lazy table noise with ``--optimizer sgd``).

The calls are interleaved over ``--rounds`` rounds so that drift in machine speed hits
all alike.
"""

from __future__ import annotations

import argparse
import os
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dataset", default="movielens-100k")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--optimizer", choices=("adam", "sgd"), default="sgd")
    parser.add_argument("--rounds", type=int, default=20)
    args = parser.parse_args()

    from fedrec.client.local import configure_worker_threads

    configure_worker_threads()   # before TF starts, as in a worker

    import numpy as np
    import tensorflow as tf

    from fedrec.client.local import LocalModel
    from fedrec.server.app import initial_global_weights
    from fedrec.shared.config import RunConfig
    from fedrec.shared.federated_data import federation_of
    from fedrec.shared.protocol import LocalSettings
    from fedrec.shared.training import batch_arrays

    cfg = RunConfig(dataset=args.dataset, local_optimizer=args.optimizer, dp="client")
    fed = federation_of(cfg)
    model = LocalModel(cfg.model, fed.inter.n_items, fed.inter.item_features)
    model.load(initial_global_weights(cfg, fed.inter.n_items, fed.inter.item_features),
               None, (0, 1))
    engine = model.dp
    settings = LocalSettings.from_run_config(cfg)
    optimizer, _, plain = model.global_optimizer(settings)   # the full-batch trace
    rng = np.random.default_rng(0)
    rows = model.rows(fed.client(1), settings, rng)
    batches = [batch_arrays(rows, rng.choice(len(rows), args.batch_size, replace=False),
                            fed.inter.item_features) for _ in range(50)]
    engine._dp_mechanism.assign([1.0, 1.0, float(args.batch_size)])
    dp, _ = engine._dp_step_fn("global", optimizer, args.optimizer == "sgd")
    variables, batch = model.global_vars, float(args.batch_size)

    def clip(x, y, w):
        return engine.clipped_sum(variables, x, y, w, 1.0, batch)[1]

    def clip_apply(x, y, w):
        grads, loss = engine.clipped_sum(variables, x, y, w, 1.0, batch)
        optimizer.apply_gradients(zip(grads, variables))
        return loss

    traced = {name: tf.function(fn) for name, fn in     # traced per static shape, as dp is
              (("call", lambda x, y, w: tf.reduce_sum(w)), ("clip", clip),
               ("clip+apply", clip_apply))}
    calls = {"call": lambda b: traced["call"](*b), "plain": lambda b: plain(*b),
             "clip": lambda b: traced["clip"](*b),
             "clip+apply": lambda b: traced["clip+apply"](*b), "dp": lambda b: dp(*b)}
    for call in calls.values():    # warm-up: tracing
        call(batches[0])
    seconds = dict.fromkeys(calls, 0.0)
    for _ in range(args.rounds):
        for name, call in calls.items():
            start = time.perf_counter()
            for b in batches:
                call(b)
            seconds[name] += time.perf_counter() - start
    n = args.rounds * len(batches)
    print(f"{fed.name}: batches of {args.batch_size} rows of {rows.item.shape[1]} items, "
          f"local {args.optimizer}, {n} calls each")
    for name, value in seconds.items():
        print(f"  {name:10s} {1000 * value / n:6.3f} ms per call "
              f"({value / seconds['plain']:.2f}x plain)")


if __name__ == "__main__":
    main()
