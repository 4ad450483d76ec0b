"""The fedrec server: Flower ServerApp, strategies, checkpoints and run records."""
