"""The federation's centralized NeuMF reference reuses `fedrec baseline` results for the
same data and seed instead of training again (``make run``)."""

from __future__ import annotations

import json

import pytest

from fedrec.shared.config import RunConfig
from fedrec.shared.errors import ConfigError
from fedrec.shared.federated_data import federation_of
from fedrec.simulations import simulate_cmd


def _config(tmp_path, seed=0):
    return RunConfig(dataset="synthetic", synthetic_users=20, synthetic_items=30, seed=seed,
                     out=str(tmp_path / f"run{seed}"))


def test_a_matching_baseline_is_the_reference_and_nothing_is_trained(tmp_path, monkeypatch):
    cfg = _config(tmp_path)
    (tmp_path / "run0").mkdir()
    fingerprint = federation_of(cfg).fingerprint
    records = [{"model": "neumf", "seed": 1, "data_fingerprint": fingerprint, "metrics": {}},
               {"model": "neumf", "seed": 0, "data_fingerprint": "other", "metrics": {}},
               {"model": "neumf", "seed": 0, "data_fingerprint": fingerprint,
                "metrics": {"hr@10": 0.5, "ndcg@10": 0.3}, "wall_seconds": 12.0}]
    baselines = tmp_path / "baselines.json"
    baselines.write_text(json.dumps(records))

    def no_training(*args, **kwargs):
        raise AssertionError("trained a reference the baselines file already had")

    monkeypatch.setattr("fedrec.simulations.baselines.run_baseline", no_training)
    ref = simulate_cmd.reference(cfg, baselines)
    assert ref == {"metrics": {"hr@10": 0.5, "ndcg@10": 0.3}, "wall_seconds": 12.0}
    assert json.loads((tmp_path / "run0" / "reference_neumf.json").read_text()) == ref
    (tmp_path / "run0" / "reference_neumf.json").unlink()
    with pytest.raises(AssertionError, match="already had"):   # other seed: would train
        simulate_cmd.reference(cfg, _only(tmp_path, records[:2]))


def _only(tmp_path, records):
    path = tmp_path / "partial.json"
    path.write_text(json.dumps(records))
    return path


def test_an_unreadable_baselines_file_is_one_clear_error(tmp_path):
    cfg = _config(tmp_path)
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    with pytest.raises(ConfigError, match="not a readable baselines file"):
        simulate_cmd.reference(cfg, bad)
