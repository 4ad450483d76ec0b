"""TensorBoard event files from a run's ``metrics.jsonl`` (``tensorboard --logdir RUN_DIR``).

Written from the log after a run rather than from inside the ServerApp, so a resumed or
crashed run never has duplicated or missing steps: the events always equal the log.
"""

from __future__ import annotations

import shutil
from pathlib import Path

#: metrics.jsonl keys written as scalars (tag: key), one step per round
SCALARS = {"eval/hr@10": "hr@10", "eval/ndcg@10": "ndcg@10", "eval/full_hr@10": "full_hr@10",
           "train/loss": "train_loss", "privacy/epsilon_user": "epsilon",
           "privacy/epsilon_example_max_client": "client_epsilon_max",
           "privacy/noise_std": "dp_noise_std", "privacy/clip": "dp_clip",
           "clients/replied": "clients_replied", "clients/failed": "clients_failed",
           "clients/declined": "clients_declined", "time/wall_seconds": "wall_seconds",
           "bytes/up": "bytes_up", "bytes/down": "bytes_down"}


def write_events(run_dir: str | Path) -> Path:
    """(Re)write ``RUN_DIR/tensorboard`` from ``RUN_DIR/metrics.jsonl``; return the folder."""
    import tensorflow as tf

    from fedrec.server.rundir import RunDir

    run = RunDir(run_dir)
    out = run.path / "tensorboard"
    shutil.rmtree(out, ignore_errors=True)
    writer = tf.summary.create_file_writer(str(out))
    with writer.as_default():
        for row in run.read_metrics():
            for tag, key in SCALARS.items():
                if row.get(key) is not None:
                    tf.summary.scalar(tag, float(row[key]), step=int(row["round"]))
    writer.flush()
    writer.close()
    return out
