"""Field metadata of the run configurations: the one place a setting is described.

Each field of :class:`fedrec.shared.config.RunConfig` (and
:class:`fedrec.shared.release_config.ReleaseConfig`) is declared with :func:`setting`,
which stores its help text, group, flag names, choices and scope in the dataclass
field's ``metadata``. From that metadata ``fedrec simulate`` builds its flags
(``fedrec.simulations.simulate_args``), ``docs/configuration.md`` is generated
(``fedrec.simulations.config_doc``), and tests check that ``pyproject.toml``'s
``[tool.flwr.app.config]`` and the per-round device settings
(``fedrec.shared.protocol.LocalSettings``) agree with it.
"""

from __future__ import annotations

import dataclasses
from types import MappingProxyType
from typing import Any, Mapping

#: The groups of RunConfig, in the order the CLI help and the docs list them.
GROUPS = ("data", "model", "local training", "serving", "server/strategy", "user-level DP",
          "example-level DP", "scenarios", "secure aggregation", "deployment")
#: The groups of ReleaseConfig (the statistics-release pipelines).
RELEASE_GROUPS = ("data", "releases", "user-level DP", "distributed noise", "device scoring",
                  "run directory")
#: ``run``: read from the run config where it is needed; ``device``: also sent by the
#: server to every device with each round's config (``LocalSettings``).
SCOPES = ("run", "device")


def setting(default: Any, group: str, help: str, *, doc: str = "", flags: tuple[str, ...] = (),
            choices: tuple[str, ...] = (), metavar: str | None = None, scope: str = "run",
            cli: bool = True) -> Any:
    """A dataclass field with its description in ``metadata``.

    Args:
        default: the default value (immutable).
        group: one of :data:`GROUPS` or :data:`RELEASE_GROUPS`.
        help: one line for ``--help`` and the docs table.
        doc: the longer explanation (privacy meaning, units, interactions), docs only.
        flags: the flag names; empty: ``--field-name`` (aliases: list it too).
        choices: the fixed set of values the config checks accept, if any.
        metavar: the value's name in ``--help``.
        scope: one of :data:`SCOPES`.
        cli: False where ``fedrec simulate`` has no generated flag for it (a hand-written
            flag with other semantics, or a deployment-only setting).
    """
    if group not in GROUPS + RELEASE_GROUPS:
        raise ValueError(f"unknown settings group {group!r}")
    if scope not in SCOPES:
        raise ValueError(f"unknown scope {scope!r}")
    meta = {"help": help, "group": group, "doc": doc, "flags": tuple(flags),
            "choices": tuple(choices), "metavar": metavar, "scope": scope, "cli": cli}
    return dataclasses.field(default=default, metadata=MappingProxyType(meta))


def describe(field: dataclasses.Field) -> Mapping[str, Any]:
    """A field's metadata with every key present (flags filled in as ``--field-name``)."""
    meta = {"help": "", "group": "", "doc": "", "flags": (), "choices": (), "metavar": None,
            "scope": "run", "cli": True, **field.metadata}
    if not meta["flags"]:
        meta["flags"] = ("--" + field.name.replace("_", "-"),)
    return meta


def base_type(annotation: str) -> tuple[str, bool]:
    """``"float | None"`` -> ``("float", True)``; ``"int"`` -> ``("int", False)``.

    The annotations are strings (``from __future__ import annotations``); accepted are
    ``bool``, ``int``, ``float``, ``str``, each optionally ``| None`` or ``Optional[...]``.
    """
    text = annotation.replace(" ", "")
    if text.startswith("Optional[") and text.endswith("]"):
        text, optional = text[len("Optional["):-1], True
    else:
        parts = text.split("|")
        optional = "None" in parts
        parts = [p for p in parts if p != "None"]
        text = parts[0] if len(parts) == 1 else text
    if text not in ("bool", "int", "float", "str"):
        raise TypeError(f"unsupported setting annotation {annotation!r}")
    return text, optional
