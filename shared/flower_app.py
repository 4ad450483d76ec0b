"""The Flower App folder that fedrec hands Flower: a ``pyproject.toml`` and nothing else.

Flower runs an *app directory* (``flower-simulation --app DIR``, ``flwr run DIR``) whose
``pyproject.toml`` names the ServerApp and ClientApp as ``module:attribute``. fedrec's
components are importable modules of the ``fedrec`` package, so the folder needs no code:
fedrec writes a minimal ``pyproject.toml`` into the run directory (``<out>/app``) and
Flower imports ``fedrec.server.app:app`` from wherever ``fedrec`` is installed. That works
the same from a wheel (no checkout anywhere) and from a source checkout; the checkout's
own ``pyproject.toml`` names the same components, so ``flwr run .`` keeps working there.

From a checkout that is not installed, the processes Flower starts (simulation engine,
Ray workers, SuperLink, SuperNodes) must import the same code as the fedrec command that
started them: :func:`subprocess_env` puts the checkout root first on their PYTHONPATH.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

#: The DP-FedAvg app (``fedrec simulate``, sweeps, deployments).
FEDAVG = {"serverapp": "fedrec.server.app:app", "clientapp": "fedrec.client.app:app"}
#: The statistics-release app (``fedrec simulate --pipeline popularity|knn --engine flower``).
RELEASE = {"serverapp": "fedrec.server.release_app:app",
           "clientapp": "fedrec.client.release_app:app"}
VERSION = "0.1.0"


def app_pyproject(name: str, components: Mapping[str, str], config: Mapping[str, Any],
                  federations: Mapping[str, Any]) -> dict[str, Any]:
    """A Flower App's ``pyproject.toml`` as a dict: ``components`` (serverapp, clientapp),
    ``config`` (the typed run-config defaults; Flower accepts ``--run-config`` overrides
    only for keys named here) and ``federations`` (``[tool.flwr.federations]``)."""
    return {"project": {"name": name, "version": VERSION,
                        "description": "fedrec: federated, privacy-preserving recommendations",
                        "license": "Apache-2.0"},
            "tool": {"flwr": {"app": {"publisher": "fedrec", "components": dict(components),
                                      "config": dict(config)},
                              "federations": dict(federations)}}}


#: The one file besides ``pyproject.toml``: Flower 1.23 cannot install a FAB (``flwr run``
#: in a deployment) whose content list is empty (``install._verify_hashes`` splits its
#: empty line into one field and raises), and the list leaves ``pyproject.toml`` out.
README = ("# fedrec's Flower App\n\nNo code here: the components in pyproject.toml are "
          "modules of the installed `fedrec` package (docs/packaging.md).\n")


def write_app(folder: str | Path, pyproject: Mapping[str, Any]) -> Path:
    """Write ``folder/pyproject.toml`` and ``folder/README.md`` (the folder is created);
    returns the folder."""
    import tomli_w

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "pyproject.toml").write_text(tomli_w.dumps(dict(pyproject)))
    (folder / "README.md").write_text(README)
    return folder


def source_root() -> Path | None:
    """The source checkout this code runs from, or None when fedrec is installed.

    Installed (a wheel), this module is ``.../fedrec/shared/flower_app.py`` and
    ``.../fedrec/__init__.py`` exists; in a checkout it is ``<root>/shared/flower_app.py``
    and ``<root>`` holds no ``__init__.py`` (``fedrec/__init__.py`` maps it)."""
    top = Path(__file__).resolve().parent.parent
    return None if (top / "__init__.py").is_file() else top


def flower_exe(name: str) -> str:
    """A Flower command (``flower-simulation``, ...) of this interpreter's environment when
    it has one, so that Flower runs the same Python (and the same fedrec) as the command
    that starts it; else the first on PATH."""
    import shutil
    import sys

    own = Path(sys.executable).parent / name
    return str(own) if own.exists() else (shutil.which(name) or str(own))


def subprocess_env(base: Mapping[str, str] | None = None, **extra: str) -> dict[str, str]:
    """``base`` (default ``os.environ``) plus ``extra``, with the checkout root first on
    PYTHONPATH when fedrec runs from source (unchanged when installed)."""
    env = dict(os.environ if base is None else base, **extra)
    root = source_root()
    if root is not None:
        rest = [p for p in env.get("PYTHONPATH", "").split(os.pathsep) if p and p != str(root)]
        env["PYTHONPATH"] = os.pathsep.join([str(root), *rest])
    return env
