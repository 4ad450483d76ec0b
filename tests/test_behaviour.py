"""Behaviour unchanged by issue #20's restructuring (namespace, protocol, module splits,
generated settings): the seeded synthetic federation (user-level DP-FedAvg) of
``benchmarks/behaviour_golden.py`` gives the numbers the tree before the restructuring
(commit 62ccd7c, run with ``--old``) wrote to
``tests/data/behaviour_golden.json``: results.json's metrics and ε, each round's train
loss and the final model's per-array norms.

On the machine that wrote the golden file today's tree gives bit-identical checkpoints;
the tolerances only absorb float differences between CPUs (TensorFlow's kernels), far
below what any change of behaviour (another draw, another order, another step) moves.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from benchmarks.behaviour_golden import CONFIG, numbers, run

GOLDEN = Path(__file__).resolve().parent / "data" / "behaviour_golden.json"


@pytest.mark.inprocess
def test_the_seeded_federation_gives_the_numbers_of_the_tree_before_the_restructuring(tmp_path):
    golden = json.loads(GOLDEN.read_text())
    assert golden["config"] == CONFIG                 # the same federation as recorded
    run(str(tmp_path / "run"))
    now = numbers(str(tmp_path / "run"))
    assert now["metrics"] == pytest.approx(golden["metrics"], rel=1e-6)
    assert now["epsilon"] == pytest.approx(golden["epsilon"], rel=1e-12)   # no floats of TF
    assert now["train_loss"] == pytest.approx(golden["train_loss"], rel=1e-5)
    assert set(now["final_norms"]) == set(golden["final_norms"])
    assert now["final_norms"] == pytest.approx(golden["final_norms"], rel=1e-5)
