"""What a finished federated training run adds to its run directory: the resources it
used (``results.json``) and, under example-level DP, the devices' largest ε
(``privacy.json``)."""

from __future__ import annotations

import json

from fedrec.server.rundir import RunDir
from fedrec.shared.config import RunConfig


def add_resources(run_dir: RunDir, peak_mb: float, nodes: int,
                  ray_address: str | None = None) -> dict:
    """Put what the run used into results.json: peak memory (MiB) of the command that
    finished the run (an earlier, interrupted command's peak is not known), mean seconds
    per round over every round in metrics.jsonl, simulation nodes. On a Ray cluster
    (``ray_address``) the clients' worker processes belong to the cluster, not to this
    command's process tree, so the peak leaves them out (and the measure says so)."""
    from fedrec.shared.runinfo import write_json_atomic

    results = json.loads(run_dir.results_path.read_text())
    rounds = [r["wall_seconds"] for r in run_dir.read_metrics() if "wall_seconds" in r]
    measure = "sum of PSS over the fedrec command's process tree, sampled each second"
    if ray_address:
        measure += (f"; the clients ran on the Ray cluster at {ray_address}, whose worker "
                    "processes are not in that tree")
    results["resources"] = {
        "peak_memory_mb": peak_mb,
        "memory_measure": measure,
        "seconds_per_round": sum(rounds) / len(rounds) if rounds else None,
        "simulation_nodes": nodes}
    write_json_atomic(run_dir.results_path, results)
    return results

def add_ledger_summary(run_dir: RunDir, cfg: RunConfig) -> None:
    """Example level, per accountant: read the simulated devices' own ledgers.

    A real server only hears the ε each client reports; in simulation the devices' storage
    is at hand, so ``privacy.json`` also gets the largest client ε by RDP and PLD. Not
    *which* device that is: privacy.json is released, and the device with the largest ε
    is the one that took part most (for its data size).
    """
    from fedrec.shared.ledger import largest, read_ledgers
    from fedrec.shared.runinfo import write_json_atomic

    ledgers = read_ledgers(cfg.client_state_root)
    worst, rdp = largest(ledgers)
    if worst is None:
        return
    path = run_dir.path / "privacy.json"
    record = json.loads(path.read_text())
    record["example"].update({
        "epsilon_by_accountant": {"rdp": rdp[worst], "pld": ledgers[worst].epsilon("pld")},
        "clients_with_ledger": len(ledgers),
        "median_client_epsilon": float(sorted(rdp.values())[len(rdp) // 2])})
    write_json_atomic(path, record)
