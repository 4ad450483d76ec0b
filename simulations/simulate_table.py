"""The final table of ``fedrec simulate``: the federated model next to centralized NeuMF."""

from __future__ import annotations

from rich.table import Table


def _eps(privacy: dict | None, level: str, key: str = "epsilon") -> str:
    part = (privacy or {}).get(level) or {}
    value = part.get(key)
    return "-" if value is None else f"{value:.3g}"


def final_table(results: dict, ref: dict | None) -> Table:
    res = results.get("resources") or {}
    caption = (f"{res['seconds_per_round']:.1f} s per round, peak memory "
               f"{res['peak_memory_mb'] / 1024:.2f} GiB" if res.get("seconds_per_round") else None)
    table = Table(title=f"{results['dataset']}: federated vs centralized", caption=caption)
    for col in ("model", "HR@10", "NDCG@10", "full HR@10", "ε user", "ε example (max client)",
                "rounds", "seconds"):
        table.add_column(col, justify="left" if col == "model" else "right")
    m, p = results["metrics"], results.get("privacy")
    table.add_row(results["model"], f"{m.get('hr@10', float('nan')):.4f}",
                  f"{m.get('ndcg@10', float('nan')):.4f}", f"{m.get('full_hr@10', float('nan')):.4f}",
                  _eps(p, "user"), _eps(p, "example", "max_client_epsilon"),
                  str(results["rounds"]), f"{results['wall_seconds']:.0f}")
    if ref is not None:
        r = ref["metrics"]
        table.add_row("centralized NeuMF", f"{r['hr@10']:.4f}", f"{r['ndcg@10']:.4f}",
                      f"{r.get('full_hr@10', float('nan')):.4f}", "-", "-", "-",
                      f"{ref['wall_seconds']:.0f}")
    return table
