"""The model's sizes (``ModelConfig``), apart from the TensorFlow model itself.

``fedrec.shared.config.RunConfig`` holds a ``ModelConfig``; keeping it here, free of TensorFlow,
lets a command read or validate a run's configuration (``fedrec audit``, ``--help``)
without importing TensorFlow (about 4 s). ``fedrec.shared.model`` re-exports it.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class ModelConfig:
    """Model sizes.

    Attributes:
        gmf_dim: GMF embedding size (user and item).
        mlp_embedding_dim: MLP-branch embedding size (user and item, concatenated).
        mlp_layers: hidden layer sizes of the MLP branch, first to last.
        content_dim: hidden size of the item content tower; 0 disables the tower.
        l2: L2 penalty on embeddings (0 disables; keep 0 under DP-SGD, where
            data-dependent regularisation would need its own accounting).
    """

    gmf_dim: int = 32
    mlp_embedding_dim: int = 32
    mlp_layers: tuple[int, ...] = (64, 32, 16)
    content_dim: int = 32
    l2: float = 0.0

    def __post_init__(self) -> None:
        for name in ("gmf_dim", "mlp_embedding_dim"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        if not self.mlp_layers or min(self.mlp_layers) < 1:
            raise ValueError(f"mlp_layers must be positive sizes, got {self.mlp_layers}")
        if self.content_dim < 0 or self.l2 < 0:
            raise ValueError("content_dim and l2 must be >= 0")
