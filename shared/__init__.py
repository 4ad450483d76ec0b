"""fedrec: federated, privacy-preserving recommendations.

This package (``shared``) holds the code both sides of a federation use: the event
schema and loaders, splits, the hybrid model and its global/private weight split,
metrics, privacy accounting and configuration.
"""

__version__ = "0.1.0"
