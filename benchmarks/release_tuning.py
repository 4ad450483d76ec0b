"""Choose release settings on the validation item: coordinate search, seeded noise.

Every cell is ``fedrec simulate --pipeline P --holdout validation --noise-seed S`` (run in
process through ``fedrec.simulations.release_sim.run``): the noise is calibrated to the target ε
but seeded, so cells compare on the same draws (paired) and runs are marked not private.
The test item is never looked at. Prints one line per axis with the mean validation HR@10
over the noise seeds, and the final choice.

    python benchmarks/release_tuning.py --dataset movielens-100k --epsilon 8 \\
        --axes '{"knn_weight": [3, 10, 100], "popularity_decay": [0.9, 1.0], ...}'
"""

from __future__ import annotations

import argparse
import json
import shutil
import tempfile
from pathlib import Path

import numpy as np

from fedrec.shared.release_config import ReleaseConfig
from fedrec.simulations import release_sim


def score(base: dict, noise_seeds: list[int], root: Path) -> tuple[float, list[float]]:
    hrs = []
    for s in noise_seeds:
        out = Path(tempfile.mkdtemp(dir=root))
        shutil.rmtree(out)
        cfg = ReleaseConfig(**base, holdout="validation", noise_seed=s, out=str(out))
        hrs.append(release_sim.run(cfg)["metrics"]["hr@10"])
        shutil.rmtree(out)
    return float(np.mean(hrs)), hrs


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dataset", default="movielens-100k")
    parser.add_argument("--pipeline", default="knn")
    parser.add_argument("--epsilon", type=float, default=8.0)
    parser.add_argument("--noise-seeds", default="0,1,2")
    parser.add_argument("--sweeps", type=int, default=2, help="passes over the axes")
    parser.add_argument("--start", default="{}", help="JSON: ReleaseConfig settings to start from")
    parser.add_argument("--axes", required=True, help="JSON: setting -> values to try")
    args = parser.parse_args()
    seeds = [int(s) for s in args.noise_seeds.split(",")]
    best = {"pipeline": args.pipeline, "dataset": args.dataset,
            "target_epsilon": args.epsilon, **json.loads(args.start)}
    with tempfile.TemporaryDirectory() as tmp:
        for _ in range(args.sweeps):
            for name, values in json.loads(args.axes).items():
                res = {v: score({**best, name: v}, seeds, Path(tmp)) for v in values}
                pick = max(values, key=lambda v: res[v][0])
                print(f"ε {args.epsilon:g} {name}: "
                      + ", ".join(f"{v}: {res[v][0]:.4f}" for v in values) + f" -> {pick}",
                      flush=True)
                best[name] = pick
        final = score(best, seeds, Path(tmp))
    print("chosen:", json.dumps(best), f"validation HR@10 {final[0]:.4f}",
          [round(h, 4) for h in final[1]])


if __name__ == "__main__":
    main()
