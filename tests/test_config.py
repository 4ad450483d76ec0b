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
    from pathlib import Path

    import tomllib

    pyproject = tomllib.loads((Path(__file__).resolve().parent.parent / "pyproject.toml").read_text())
    assert pyproject["tool"]["flwr"]["app"]["config"] == RunConfig().to_flower()


# ----- coercion of every annotation the configs use (issue #20 part 3, step 3) -----

def _config_fields():
    from dataclasses import fields

    from fedrec.shared.release_config import ReleaseConfig
    return [(cls.__name__, f) for cls in (RunConfig, ReleaseConfig) for f in fields(cls)]


@pytest.mark.parametrize("owner, field", _config_fields(), ids=lambda x: getattr(x, "name", x))
def test_coercion_handles_every_field_as_toml_and_as_a_string(owner, field):
    """What TOML/Flower carry (the typed default) and what ``--run-config`` strings carry
    (its text) both come back as the default, of the annotated type."""
    from fedrec.shared.config import coerce
    from fedrec.shared.config_meta import base_type

    base, _ = base_type(field.type)   # every annotation is one coercion knows
    default = field.default
    text = str(default).lower() if base == "bool" else str(default)
    for value in (default, text):
        out = coerce(field.type, value, field.name, owner)
        assert out == default and type(out) is type(default)


def test_optional_floats_and_ints_take_none():
    from fedrec.shared.config import coerce
    assert coerce("float | None", None, "k", "s") is None
    assert coerce("float | None", "None", "k", "s") is None
    assert coerce("float | None", "0.25", "k", "s") == 0.25
    assert coerce("Optional[int]", 3.0, "k", "s") == 3
    with pytest.raises(ConfigError, match=r"s: k must be float \| None, got 'x'"):
        coerce("float | None", "x", "k", "s")
    with pytest.raises(ConfigError, match="k must be float, got None"):
        coerce("float", None, "k", "s")      # not optional: None is not a value
    with pytest.raises(ConfigError, match="k must be str, got None"):
        coerce("str", None, "k", "s")


def test_release_config_coerces_as_the_run_config_does():
    """ReleaseConfig.from_mapping uses the same coercion: lossless only, inf as a string."""
    import math

    from fedrec.shared.release_config import ReleaseConfig
    cfg = ReleaseConfig.from_mapping({"head": "300", "target-epsilon": "inf",
                                      "contributions": "raw", "knn-top": 20.0})
    assert cfg.head == 300 and math.isinf(cfg.target_epsilon) and cfg.knn_top == 20
    with pytest.raises(ConfigError, match="head must be int, got 2.5"):
        ReleaseConfig.from_mapping({"head": 2.5})     # was silently truncated to 2
    assert ReleaseConfig.from_mapping(ReleaseConfig().to_dict()) == ReleaseConfig()
