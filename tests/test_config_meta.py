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
