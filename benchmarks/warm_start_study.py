"""Score warm-started NeuMF variants offline on existing release runs (issue #21 item 4).

Each RUN is a statistics-release run directory (``fedrec simulate --pipeline knn|als``);
its ``release.npz`` is what devices received, its manifest names the data, seed and
holdout. The ``warm_*`` settings start from the code's defaults, not the file's. Every device is re-scored on its own held-out item (the run's holdout) with the
run's scoring settings plus each variant's overrides of ``KnnSettings`` (JSON objects:
``warm_weight``, ``warm_rank``, ...). Nothing is released again: the ε of every row is
the run's own (``privacy.json``). Prints one line per variant: HR@10 per run and the mean.

    python benchmarks/warm_start_study.py runs/warm/knn-eps8-validation-seed{0,1,2} \\
        --variants '[{}, {"warm_weight": 1000, "knn_weight": 0, "genre_weight": 0, "year_weight": 0}]'
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
from pathlib import Path

import numpy as np

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")


def load_run(run: Path):
    """(release, its settings, the devices, the public content) of a release run."""
    from fedrec.shared import knn
    from fedrec.shared.release_config import ReleaseConfig
    from fedrec.simulations import release_sim

    config = json.loads((run / "manifest.json").read_text())["config"]
    cfg = ReleaseConfig.from_mapping(config)
    released, settings = knn.load_released(run / "release.npz")
    _, clients = release_sim.devices(cfg)
    return released, settings, clients, release_sim.item_content(cfg)


def hr10(loaded, overrides: dict) -> float:
    from fedrec.client import releases as device
    from fedrec.shared.knn import KnnSettings

    released, settings, clients, content = loaded
    # warm_* of the release file are those of the code that wrote it: use today's defaults
    fresh = {f.name: getattr(KnnSettings(), f.name) for f in dataclasses.fields(KnnSettings)
             if f.name.startswith("warm_")}
    settings = dataclasses.replace(settings, **{**fresh, **overrides})
    return float(np.mean([device.evaluate(c, released, settings, content)["hr@10"]
                          for c in clients if c.evaluable]))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("runs", nargs="+", type=Path)
    parser.add_argument("--variants", required=True, help="JSON list of KnnSettings overrides")
    args = parser.parse_args()
    variants = json.loads(args.variants)
    loaded = [load_run(r) for r in args.runs]
    for v in variants:
        hrs = [hr10(x, v) for x in loaded]
        print(f"{json.dumps(v)}: " + " ".join(f"{h:.4f}" for h in hrs)
              + f" mean {np.mean(hrs):.4f}", flush=True)


if __name__ == "__main__":
    main()
