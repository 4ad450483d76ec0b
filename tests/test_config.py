import pytest

from fedrec.shared.config import RunConfig
from fedrec.shared.errors import ConfigError


def test_flower_run_config_round_trips_with_types():
    cfg = RunConfig(rounds=7, learning_rate=0.5, strategy="fedadam", resume=True)
    flat = cfg.to_flower()
    assert flat["rounds"] == 7 and flat["learning-rate"] == 0.5 and flat["resume"] is True
    assert RunConfig.from_mapping(flat) == cfg


def test_from_mapping_coerces_lossless_values_and_rejects_the_rest():
    cfg = RunConfig.from_mapping({"rounds": "4", "learning-rate": 1, "resume": "true"})
    assert cfg.rounds == 4 and cfg.learning_rate == 1.0 and cfg.resume is True
    with pytest.raises(ConfigError, match="rounds must be int"):
        RunConfig.from_mapping({"rounds": 2.5})
    with pytest.raises(ConfigError, match="unknown setting 'roundz'"):
        RunConfig.from_mapping({"roundz": 2})
    with pytest.raises(ConfigError, match="resume must be bool"):
        RunConfig.from_mapping({"resume": "maybe"})


@pytest.mark.parametrize("changes, message", [
    ({"rounds": 0}, "rounds must be >= 1"),
    ({"clients_per_round": -1}, "clients-per-round must be >= 0"),
    ({"learning_rate": 0.0}, "learning-rate must be > 0"),
    ({"strategy": "sgd"}, "strategy must be one of"),
    ({"server_momentum": 1.0}, "server-momentum must be in"),
])
def test_invalid_values_fail_with_the_key_named(changes, message):
    with pytest.raises(ConfigError, match=message):
        RunConfig(**changes)


def test_toml_file_with_a_run_table(tmp_path):
    path = tmp_path / "c.toml"
    path.write_text('[run]\ndataset = "movielens-100k"\nrounds = 12\nclients-per-round = 50\n')
    cfg = RunConfig.from_toml(path)
    assert (cfg.dataset, cfg.rounds, cfg.clients_per_round) == ("movielens-100k", 12, 50)
    with pytest.raises(ConfigError, match="no such file"):
        RunConfig.from_toml(tmp_path / "missing.toml")
    (tmp_path / "bad.toml").write_text("rounds = = 3")
    with pytest.raises(ConfigError, match="invalid TOML"):
        RunConfig.from_toml(tmp_path / "bad.toml")


def test_pyproject_flower_defaults_are_the_run_config_defaults():
    """`flwr run .` and `fedrec simulate` must start from the same configuration."""
    import tomllib
    from pathlib import Path

    pyproject = tomllib.loads((Path(__file__).resolve().parent.parent / "pyproject.toml").read_text())
    assert pyproject["tool"]["flwr"]["app"]["config"] == RunConfig().to_flower()
