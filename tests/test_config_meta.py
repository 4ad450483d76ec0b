"""The field metadata of RunConfig / ReleaseConfig is complete and agrees with what is
derived from it elsewhere (``fedrec.shared.config_meta``; issue #20 part 3)."""

from __future__ import annotations

from dataclasses import fields

import pytest

from fedrec.shared.config import RunConfig
from fedrec.shared.config_meta import GROUPS, RELEASE_GROUPS, base_type, describe, setting
from fedrec.shared.protocol import LocalSettings
from fedrec.shared.release_config import ReleaseConfig


@pytest.mark.parametrize("cls, groups", [(RunConfig, GROUPS), (ReleaseConfig, RELEASE_GROUPS)])
def test_every_setting_has_help_and_a_known_group(cls, groups):
    for f in fields(cls):
        meta = describe(f)
        assert meta["help"].strip(), f"{cls.__name__}.{f.name} has no help"
        assert meta["group"] in groups, f"{cls.__name__}.{f.name}: group {meta['group']!r}"


def test_every_run_config_group_is_used():
    assert {describe(f)["group"] for f in fields(RunConfig)} == set(GROUPS)


def test_device_scope_is_what_the_server_sends_each_round():
    """``scope = device`` marks exactly the RunConfig fields LocalSettings copies."""
    derived = {"client_dp", "uniform_weight"}   # computed from dp (LocalSettings.from_run_config)
    sent = {f.name for f in fields(LocalSettings)} - derived
    marked = {f.name for f in fields(RunConfig) if describe(f)["scope"] == "device"}
    assert marked == sent


def test_choices_are_the_values_the_checks_accept():
    from fedrec.shared.errors import ConfigError
    for f in fields(RunConfig):
        choices = describe(f)["choices"]
        if not choices:
            continue
        assert getattr(RunConfig(), f.name) in choices
        with pytest.raises(ConfigError, match=f.name.replace("_", "-")):
            RunConfig(**{f.name: "no-such-choice"})


def test_setting_rejects_an_unknown_group_or_scope():
    with pytest.raises(ValueError, match="unknown settings group"):
        setting(1, "misc", "x")
    with pytest.raises(ValueError, match="unknown scope"):
        setting(1, "data", "x", scope="everywhere")


@pytest.mark.parametrize("annotation, expected", [
    ("int", ("int", False)), ("float", ("float", False)), ("bool", ("bool", False)),
    ("str", ("str", False)), ("float | None", ("float", True)), ("None | int", ("int", True)),
    ("Optional[float]", ("float", True)),
])
def test_base_type_by_hand(annotation, expected):
    assert base_type(annotation) == expected


def test_base_type_refuses_what_no_flag_or_toml_can_carry():
    with pytest.raises(TypeError, match="unsupported setting annotation"):
        base_type("tuple[int, ...]")
    with pytest.raises(TypeError):
        base_type("int | str")


# ----- the `fedrec simulate` flags generated from the metadata (step 2) -----

#: Every RunConfig flag `fedrec simulate` had before the flags were generated, with the
#: field it sets (tests, docs, sweeps and the Makefile use these names).
OLD_FLAGS = {
    "--dataset": "dataset", "--rounds": "rounds", "--clients-per-round": "clients_per_round",
    "--eval-clients": "eval_clients", "--eval-every": "eval_every",
    "--local-epochs": "local_epochs", "--batch-size": "batch_size", "--lr": "learning_rate",
    "--lr-decay": "lr_decay", "--local-optimizer": "local_optimizer",
    "--local-adam-eps": "local_adam_eps", "--recency-decay": "recency_decay",
    "--reconstruction-steps": "reconstruction_steps", "--serve-passes": "serve_passes",
    "--serve-recency-decay": "serve_recency_decay", "--serve-average": "serve_average",
    "--negatives": "negatives", "--holdout": "holdout", "--strategy": "strategy",
    "--server-lr": "server_learning_rate", "--server-momentum": "server_momentum",
    "--gmf-dim": "gmf_dim", "--mlp-dim": "mlp_dim", "--synthetic-users": "synthetic_users",
    "--synthetic-items": "synthetic_items", "--seed": "seed", "--out": "out",
    "--dp": "dp", "--dp-clipping": "dp_clipping", "--noise-multiplier": "noise_multiplier",
    "--clip": "clip", "--target-epsilon": "target_epsilon", "--delta": "delta",
    "--clip-quantile": "clip_quantile", "--clip-lr": "clip_lr",
    "--clipped-count-stddev": "clipped_count_stddev", "--clip-adapt-range": "clip_adapt_range",
    "--client-noise-multiplier": "client_noise_multiplier", "--client-clip": "client_clip",
    "--client-target-epsilon": "client_target_epsilon", "--client-delta": "client_delta",
    "--noise-seed": "noise_seed", "--canaries": "canaries",
    "--example-canaries": "example_canaries", "--secagg": "secagg",
    "--secagg-shares": "secagg_shares", "--secagg-threshold": "secagg_threshold",
    "--dropout": "dropout", "--straggler-fraction": "straggler_fraction",
    "--straggler-delay": "straggler_delay", "--round-timeout": "round_timeout",
    "--participation-window": "participation_window", "--late-users": "late_users",
    "--join-round": "join_round", "--new-items": "new_items", "--items-round": "items_round",
    "--heterogeneity": "synthetic_heterogeneity",
    "--activity-skew": "synthetic_activity_skew", "--lazy": "lazy_clients",
    "--budget-dir": "budget_dir",
}


def _parser():
    import argparse

    from fedrec.simulations.simulate_args import add_arguments
    parser = argparse.ArgumentParser()
    add_arguments(parser)
    return parser


def _value_for(name: str) -> tuple[list[str], object]:
    """A flag's argv value and the parsed value it should give (not the default)."""
    f = {f.name: f for f in fields(RunConfig)}[name]
    base, _ = base_type(f.type)
    choices = describe(f)["choices"]
    if base == "bool":
        return [], True
    if choices:
        return [choices[-1]], choices[-1]
    return {"int": (["7"], 7), "float": (["0.5"], 0.5), "str": (["x/y"], "x/y")}[base]


@pytest.mark.parametrize("flag", sorted(OLD_FLAGS))
def test_every_old_flag_still_sets_its_field(flag):
    argv, value = _value_for(OLD_FLAGS[flag])
    assert getattr(_parser().parse_args([flag, *argv]), OLD_FLAGS[flag]) == value


def test_every_run_config_field_has_a_flag_unless_marked_otherwise():
    """Generated: each cli field answers to all its flags; the rest have none."""
    parser = _parser()
    by_dest = {}
    for action in parser._actions:
        by_dest.setdefault(action.dest, []).extend(action.option_strings)
    no_flag = {f.name for f in fields(RunConfig) if not describe(f)["cli"]}
    assert no_flag == {"resume", "catalogue", "clients"}   # --resume RUN_DIR is hand-written
    for f in fields(RunConfig):
        if f.name in no_flag:
            assert f.name not in by_dest or f.name == "resume"
            continue
        flags = describe(f)["flags"]
        assert sorted(by_dest[f.name]) == sorted(flags)
        argv, value = _value_for(f.name)
        for flag in flags:
            assert getattr(parser.parse_args([flag, *argv]), f.name) == value


def test_unset_flags_leave_the_config_file_alone(tmp_path):
    from fedrec.simulations.simulate_args import build_config
    path = tmp_path / "c.toml"
    path.write_text('[run]\nrounds = 9\nreconstruction-lr = 0.2\nlazy-clients = false\n')
    cfg = build_config(_parser().parse_args(["--config", str(path), "--out", str(tmp_path),
                                             "--content-dim", "0", "--learning-rate", "0.3"]))
    assert (cfg.rounds, cfg.reconstruction_lr, cfg.content_dim, cfg.learning_rate) == (
        9, 0.2, 0, 0.3)
    assert cfg.out == str(tmp_path.resolve()) and cfg.lazy_clients is False


def test_a_bad_choice_is_one_argparse_line():
    with pytest.raises(SystemExit):
        _parser().parse_args(["--dp-clipping", "sometimes"])
