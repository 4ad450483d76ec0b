"""A :class:`~fedrec.shared.config.RunConfig` to and from Flower run configs and TOML:
hyphenated keys (``[tool.flwr.app.config]``, ``--run-config``) and the values Flower
carries (bool/int/float/str), converted only where that is lossless."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import tomllib

from fedrec.shared.config_meta import base_type
from fedrec.shared.errors import ConfigError


def read_toml(path: str | Path) -> dict[str, Any]:
    """A TOML file as a dict; a missing or malformed file is one ConfigError line."""
    path = Path(path)
    try:
        return tomllib.loads(path.read_text())
    except FileNotFoundError:
        raise ConfigError(f"{path}: no such file") from None
    except tomllib.TOMLDecodeError as err:
        raise ConfigError(f"{path}: invalid TOML: {err}") from None



def flower_key(name: str) -> str:
    """A field's key in a Flower run config: ``client_dp`` -> ``client-dp``."""
    return name.replace("_", "-")


def coerce(kind: str, value: Any, key: str, source: str) -> Any:
    """``value`` as a field annotated ``kind`` (``bool``, ``int``, ``float``, ``str``,
    optionally ``| None``); Flower run configs carry bool/int/float/str, so accept only
    what converts losslessly. An optional setting takes ``None`` or the string ``none``."""
    base, optional = base_type(kind)
    if optional and (value is None or str(value).lower() == "none"):
        return None
    try:
        if base == "bool":
            if isinstance(value, bool):
                return value
            if str(value).lower() in ("true", "false"):
                return str(value).lower() == "true"
            raise ValueError
        if base == "int":
            if isinstance(value, bool) or float(value) != int(float(value)):
                raise ValueError
            return int(float(value))
        if base == "float":
            if isinstance(value, bool):
                raise ValueError
            return float(value)
        if value is None:
            raise ValueError
        return str(value)
    except (TypeError, ValueError, OverflowError):
        raise ConfigError(f"{source}: {key} must be {kind}, got {value!r}") from None
