"""fedrec: federated, privacy-preserving recommendations.

One import namespace: ``fedrec.shared`` (what both sides use: data, model, privacy
accounting, config), ``fedrec.client`` (device: SDK and Flower ClientApp),
``fedrec.server`` (Flower ServerApp, DP, SecAgg+, run directory) and
``fedrec.simulations`` (the ``fedrec`` CLI, simulations, sweeps, audits).

In a wheel the four subpackages sit inside this folder. In a source checkout they are
the top-level folders ``shared/``, ``client/``, ``server/``, ``simulations/`` next to this
one: then this package's ``__path__`` also holds the checkout root (see
:data:`SOURCE_ROOT`), so ``import fedrec.shared`` resolves to ``./shared`` without
installing (pytest, ``flwr run .``, ``PYTHONPATH=<checkout>``). See docs/packaging.md.

The SDK names below load on first use: importing ``fedrec`` stays free of TensorFlow.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

# TensorFlow's C++ start-up chatter, set once here: every module of the code base is
# imported through this package, before anything imports TensorFlow.
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

SUBPACKAGES = ("shared", "client", "server", "simulations")


def _checkout_root(here: Path) -> Path | None:
    """The source checkout this package belongs to, or None when installed (a wheel).

    A checkout: the folder above ``fedrec/`` holds ``shared/__init__.py`` and
    ``fedrec/shared`` does not exist."""
    root = here.parent
    if (here / "shared").exists() or not (root / "shared" / "__init__.py").is_file():
        return None
    return root


#: The checkout root when fedrec runs from source (None when installed): processes that
#: fedrec starts (Flower's simulation engine, SuperLink, SuperNodes) get it on PYTHONPATH
#: so that they import this same code.
SOURCE_ROOT = _checkout_root(Path(__file__).resolve().parent)
if SOURCE_ROOT is not None:
    __path__.append(str(SOURCE_ROOT))  # noqa: F821 (the package's own __path__)

from fedrec.shared import __version__  # noqa: E402

#: Public SDK names (``from fedrec import EventStore``), by the module that defines them.
_SDK = {"EventStore": "fedrec.client.store", "SdkInputError": "fedrec.client.store",
        "Recommender": "fedrec.client.recommender", "load_catalogue": "fedrec.shared.catalogue"}

__all__ = ["__version__", "SOURCE_ROOT", *_SDK]


def __getattr__(name: str) -> Any:
    """Load an SDK name on first use (``fedrec.client.recommender`` imports TensorFlow)."""
    if name in _SDK:
        import importlib

        value = getattr(importlib.import_module(_SDK[name]), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'fedrec' has no attribute {name!r}")
