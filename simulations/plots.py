"""Plots people would rather look at than read (matplotlib, headless)."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402


def curve(rows: list[dict], key: str = "hr@10") -> dict[int, float]:
    """``{round: value}`` of the rounds of ``rows`` (metrics.jsonl lines) that hold ``key``."""
    return {r["round"]: r[key] for r in rows if r.get(key) is not None}


def mean_curve(curves: list[dict[int, float]]) -> dict[int, float]:
    """Mean over runs at each round that *every* run evaluated (other rounds are left
    out, so that no round's mean is over a subset of the runs)."""
    common = set.intersection(*(set(c) for c in curves)) if curves else set()
    return {rnd: sum(c[rnd] for c in curves) / len(curves) for rnd in sorted(common)}


def plot_convergence(rows: list[dict] | dict[str, list[dict]], out: str | Path, title: str,
                     references: dict[str, float] | None = None, key: str = "hr@10") -> Path:
    """HR@10 (or ``key``) per evaluated round, with horizontal reference lines.

    ``rows`` is one run's metrics, or ``{label: metrics}`` of several runs (seeds): one
    line each, thin, and their mean (``mean_curve``) drawn bold.
    """
    runs = rows if isinstance(rows, dict) else {f"federated {key.upper()}": rows}
    curves = {label: curve(r, key) for label, r in runs.items()}
    fig, ax = plt.subplots(figsize=(7, 4), dpi=120)
    several = len(curves) > 1
    for label, points in curves.items():
        if points:
            ax.plot(list(points), list(points.values()), marker="o", markersize=3, label=label,
                    linewidth=1 if several else 1.5, alpha=0.6 if several else 1.0)
    if several and (mean := mean_curve(list(curves.values()))):
        ax.plot(list(mean), list(mean.values()), color="black", linewidth=2.5, marker="o",
                markersize=4, label=f"mean of {len(curves)}")
    for i, (label, value) in enumerate((references or {}).items()):
        ax.axhline(value, linestyle="--", color=f"C{len(curves) + i}",
                   label=f"{label} ({value:.3f})")
    ax.set_xlabel("round")
    ax.set_ylabel(key.upper())
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend(loc="lower right", fontsize=8)
    return _save(fig, out)


def plot_canary_cosines(inserted: list[float], held_out: list[float], out: str | Path,
                        title: str) -> Path:
    """Histograms of canary cosines: inserted (in the model) against held-out (never in)."""
    fig, ax = plt.subplots(figsize=(7, 4), dpi=120)
    bins = 40
    ax.hist(held_out, bins=bins, density=True, alpha=0.6, label=f"held out ({len(held_out)})")
    ax.hist(inserted, bins=max(5, min(bins, len(inserted) // 2)), density=True, alpha=0.6,
            label=f"inserted ({len(inserted)})")
    ax.set_xlabel("cosine(final model change, canary direction)")
    ax.set_ylabel("density")
    ax.set_title(title)
    ax.legend()
    return _save(fig, out)


def plot_roc(fpr: list[float], tpr: list[float], out: str | Path, title: str) -> Path:
    """ROC curve of a membership-inference attack, log-log as privacy audits read it."""
    fig, axes = plt.subplots(1, 2, figsize=(9, 4), dpi=120)
    for ax, log in zip(axes, (False, True)):
        ax.plot(fpr, tpr, label="attack")
        ax.plot([1e-4 if log else 0, 1], [1e-4 if log else 0, 1], "--", color="grey",
                label="chance")
        if log:
            ax.set_xscale("log")
            ax.set_yscale("log")
            ax.set_xlim(1e-3, 1)
            ax.set_ylim(1e-3, 1)
        ax.set_xlabel("false positive rate")
        ax.set_ylabel("true positive rate")
        ax.grid(alpha=0.3)
    axes[0].legend(loc="lower right")
    fig.suptitle(title)
    return _save(fig, out)


def _save(fig, out: str | Path) -> Path:
    fig.tight_layout()
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out)
    plt.close(fig)
    return out
