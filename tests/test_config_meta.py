"""The field metadata of RunConfig / ReleaseConfig is complete and agrees with what is
derived from it elsewhere (``fedrec.shared.config_meta``; issue #20 part 3)."""

from __future__ import annotations

import math
from dataclasses import fields

import pytest

from fedrec.shared.config import RunConfig
from fedrec.shared.config_meta import GROUPS, RELEASE_GROUPS, base_type, describe, setting
from fedrec.shared.errors import ConfigError
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


# ----- the release-pipeline flags generated from ReleaseConfig's metadata (step 3) -----

#: Every release flag `fedrec simulate` had while they were hand-written, with the
#: ReleaseConfig field it sets (tests, docs, sweeps and the Makefile use these names).
OLD_RELEASE_FLAGS = {flag: flag[2:].replace("-", "_") for flag in (
    "--popularity-share", "--popularity-decay", "--popularity-cap", "--head", "--cap",
    "--knn-rank", "--knn-alpha", "--knn-decay", "--knn-weight", "--knn-top", "--ease-lambda",
    "--ease-weight", "--pair-beta", "--genre-weight", "--year-weight", "--year-window",
    "--year-bandwidth", "--als-rank", "--als-passes", "--als-weight", "--als-negative",
    "--als-lambda", "--als-item-lambda", "--als-min-support", "--contributions", "--noise",
    "--skellam-scale", "--skellam-bits", "--min-survivors", "--release-dropout",
    # shared with the RunConfig group (defined there once)
    "--dataset", "--synthetic-users", "--synthetic-items", "--seed", "--holdout",
    "--target-epsilon", "--delta", "--noise-seed", "--budget-dir", "--out")}
#: Settings that are valid only next to another one.
_NEEDS = {"min_survivors": ["--noise", "distributed"],
          "release_dropout": ["--noise", "distributed"]}


def _release_value_for(name: str) -> tuple[list[str], object]:
    """A flag's argv value and the (valid, non-default) ReleaseConfig value it gives."""
    f = {f.name: f for f in fields(ReleaseConfig)}[name]
    base, _ = base_type(f.type)
    choices = [c for c in describe(f)["choices"] if c != f.default]
    if choices:
        return [choices[-1]], choices[-1]
    if base == "str":
        return ["/tmp/x"], "/tmp/x"
    value = {"int": 3, "float": 0.5}[base]
    value = value + 1 if value == f.default else value
    return [str(value)], value


def _release_config(argv):
    from fedrec.simulations.simulate_args import build_release_config
    return build_release_config(_parser().parse_args(["--pipeline", "knn", *argv]))


@pytest.mark.parametrize("flag", sorted(OLD_RELEASE_FLAGS))
def test_every_old_release_flag_still_sets_its_field(flag):
    name = OLD_RELEASE_FLAGS[flag]
    argv, value = _release_value_for(name)
    assert getattr(_release_config([*_NEEDS.get(name, []), flag, *argv]), name) == value


def test_every_release_config_field_has_a_flag_unless_marked_otherwise():
    """Each cli ReleaseConfig field answers to its flags, one argparse action each
    (a shared one is RunConfig's); unset, the release run keeps ReleaseConfig's default."""
    parser = _parser()
    by_dest = {}
    for action in parser._actions:
        by_dest.setdefault(action.dest, []).extend(action.option_strings)
    no_flag = {f.name for f in fields(ReleaseConfig) if not describe(f)["cli"]}
    # pipeline: hand-written (it also chooses neumf); secagg_transcript: tests only
    assert no_flag == {"pipeline", "secagg_transcript"}
    assert by_dest["pipeline"] == ["--pipeline"]
    defaults = _release_config([])
    for f in fields(ReleaseConfig):
        if f.name in no_flag:
            continue
        assert sorted(by_dest[f.name]) == sorted(describe(f)["flags"]), f.name
        assert getattr(defaults, f.name) == f.default, f.name


def test_shared_release_fields_take_the_run_config_flag_unchanged():
    """Same name => same flags, type and choices: one flag can fill both configs."""
    from fedrec.simulations.simulate_args import _RELEASE_FLAGS, _SHARED_FLAGS
    run = {f.name: f for f in fields(RunConfig)}
    assert set(_SHARED_FLAGS) == {"dataset", "synthetic_users", "synthetic_items", "seed",
                                  "holdout", "target_epsilon", "delta", "noise_seed", "out",
                                  "budget_dir", "skellam_scale", "min_survivors"}
    assert not set(_SHARED_FLAGS) & set(_RELEASE_FLAGS)
    for f in fields(ReleaseConfig):
        if f.name in _SHARED_FLAGS:
            mine, theirs = describe(f), describe(run[f.name])
            assert base_type(f.type) == base_type(run[f.name].type), f.name
            assert (mine["flags"], mine["choices"]) == (theirs["flags"], theirs["choices"])


def test_release_help_is_the_metadata_help_with_the_default():
    """One source: each generated release flag's help is its field's, plus the default;
    --contributions lists the no-DP defaults a raw run takes."""
    from fedrec.shared.release_config import RAW_DEFAULTS
    from fedrec.simulations.simulate_args import _RELEASE_FLAGS
    helps = {a.dest: a.help for a in _parser()._actions}
    release = {f.name: f for f in fields(ReleaseConfig)}
    for name in _RELEASE_FLAGS:
        default = release[name].default
        shown = f"{default:g}" if isinstance(default, float) else str(default)
        assert helps[name] == f"{describe(release[name])['help']} (default {shown})", name
    for key, value in RAW_DEFAULTS.items():
        if key != "target_epsilon":
            assert f"{key.replace('_', '-')} {value:g}" in helps["contributions"]
    assert "--noise distributed" in helps["skellam_scale"]   # one flag, both pipelines


def test_simulate_help_lists_every_release_flag():
    text = " ".join(_parser().format_help().split())
    for flag in [*OLD_RELEASE_FLAGS, "--pipeline", "--engine", "--compare"]:
        assert f"{flag} " in text, flag
    assert "ease-lambda 2000, ease-weight 300" in text


@pytest.mark.parametrize(("users", "epsilon", "chosen"), [
    (943, 3.0, "popularity"), (943, 4.0, "popularity"),   # 3,772 < 4,000
    (943, 5.0, "knn"), (100_000, 1.0, "knn"), (40, math.inf, "knn"), (400, 10.0, "knn"),
    (399, 10.0, "popularity")])
def test_auto_pipeline_picks_knn_from_4000_users_times_epsilon(users, epsilon, chosen):
    from fedrec.shared.release_config import auto_pipeline
    assert auto_pipeline(users, epsilon) == chosen


def test_pipeline_auto_resolves_on_the_roster_of_the_run():
    from fedrec.simulations.simulate_args import build_release_config

    def chosen(users: int, epsilon: str) -> str:
        args = _parser().parse_args(["--pipeline", "auto", "--dataset", "synthetic",
                                     "--synthetic-users", str(users), "--synthetic-items", "30",
                                     "--target-epsilon", epsilon])
        return build_release_config(args).pipeline
    assert chosen(40, "8") == "popularity" and chosen(40, "inf") == "knn"
    assert chosen(600, "8") == "knn"


def test_pipeline_auto_refuses_what_it_cannot_choose_for():
    from fedrec.shared.release_config import auto_pipeline
    with pytest.raises(ConfigError, match="pipeline auto"):
        auto_pipeline(0, 8.0)
