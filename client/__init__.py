"""The fedrec client: SDK and Flower ClientApp (private user embedding stays here).

The SDK: ``from fedrec.client import EventStore, Recommender``. Both load on first use,
so that importing ``fedrec.client.app`` (or a light module) does not pay for the other;
``Recommender`` imports TensorFlow.
"""

from __future__ import annotations

from typing import Any

_SDK = {"EventStore": "fedrec.client.store", "SdkInputError": "fedrec.client.store",
        "Recommender": "fedrec.client.recommender"}

__all__ = list(_SDK)


def __getattr__(name: str) -> Any:
    if name in _SDK:
        import importlib

        value = getattr(importlib.import_module(_SDK[name]), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'fedrec.client' has no attribute {name!r}")
