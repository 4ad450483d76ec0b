"""Simulation harness: baselines, federated simulations, sweeps, reports and audits."""
