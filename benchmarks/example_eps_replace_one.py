"""Example-level ε of the results pages, recomputed under replace-one (issue #19).

    .venv/bin/python benchmarks/example_eps_replace_one.py               # stored σ
    .venv/bin/python benchmarks/example_eps_replace_one.py --calibrate   # σ recalibrated

About 5 CPU minutes (the max-client rows account every client size of MovieLens-100k);
``--calibrate`` adds a σ search per row.

The runs on the results pages of 2026-11-29/30 calibrated their noise multiplier σ under
add-or-remove-one. Their mechanism (σ, batch, steps, clip) is what fedrec still runs;
only the accounting relation changed: example-level DP is now stated under replace-one,
because a device's example count n is public (docs/privacy-device.md). This script
recomputes every example-level ε figure of those pages from the settings each page
states, with fedrec's own functions (``fedrec.client.local.LocalSettings.dp_plan`` for the
event a device runs, ``fedrec.shared.privacy`` for ε): the old add/remove ε (which must match
the page) next to the replace-one ε that the same σ gives. No run is repeated.

Rows:

- ``median``: one client of n examples taking part in every round (the page's
  "median client");
- ``max-client``: every MovieLens-100k client of the federation (seed 0), each running
  rounds until its add/remove ledger would pass the run's target (the budget the runs
  enforced then; a client declines once the next round would exceed it). The row gives
  the largest ε over clients under each relation (what the audit's "claimed" and
  "recomputed" columns showed) and how many clients declined the last round;
- ``central``: DP-NeuMF (``fedrec.simulations.baselines.plan_dp``): one Poisson DP-SGD run over
  all training rows.

Units: ε in nats at the row's δ; RDP is the claim, PLD the add/remove second opinion
(dp-accounting has no PLD route for Poisson sampling under replace-one).
"""

from __future__ import annotations

import argparse
import functools
from dataclasses import dataclass

from dp_accounting import dp_event as dpe

from fedrec.shared import privacy

AR, RO = "add_or_remove_one", "replace_one"


@dataclass(frozen=True)
class Row:
    """One figure of a results page: the mechanism as the page states it.

    ``sigma`` is the σ the run used: dp-accounting's add/remove calibration to ``target``
    for the median client (DP-NeuMF: its training rows) at the last round, to 4 decimals
    (``--calibrate`` recomputes it). ``page_ar`` and ``page_pld`` are the add/remove ε
    (RDP) and PLD figures the page printed then, as printed (None: not printed).
    """

    key: str
    pages: str
    kind: str                  # "median", "max-client" or "central"
    target: float              # the add/remove ε σ was calibrated for
    sigma: float
    rounds: int = 10           # federated rounds (central: epochs)
    examples: int = 64         # median: the client's n; central: training rows
    batch: int = 32
    page_ar: str | None = None
    page_pld: str | None = None


TRADEOFF = "2026-11-29-dp-tradeoff-ml100k.md"
AUDITS = "2026-11-29-audits-ml100k.md"
LOCAL = "2026-11-30-local-dp-sgd-cost.md"
CENTRAL = "2026-11-29-centralized-baselines-ml100k.md"
#: MovieLens-100k training rows of DP-NeuMF (100,000 ratings less 2 held out per user).
ML100K_ROWS = 98114

ROWS = (
    Row("sweep example ε=8", f"{TRADEOFF}, {AUDITS}, {LOCAL}", "max-client", 8, 3.8798,
        page_ar="8.00", page_pld="7.41"),
    Row("sweep example ε=1", f"{TRADEOFF}, {AUDITS}", "max-client", 1, 24.0241,
        page_ar="1.00", page_pld="0.914"),
    Row("example ε=8, 20 rounds", TRADEOFF, "max-client", 8, 5.4127, rounds=20,
        page_ar="8.00"),
    Row("median client, ε=8", f"{TRADEOFF}, {LOCAL}", "median", 8, 3.8798, page_ar="8.00",
        page_pld="7.41"),
    Row("median client, ε=1", TRADEOFF, "median", 1, 24.0241, page_ar="1.00",
        page_pld="0.914"),
    Row("DP-NeuMF ε=1", CENTRAL, "central", 1, 4.0770, rounds=20, examples=ML100K_ROWS,
        batch=4096, page_ar="1"),
    Row("DP-NeuMF ε=8", CENTRAL, "central", 8, 0.9428, rounds=20, examples=ML100K_ROWS,
        batch=4096, page_ar="8"),
    Row("DP-NeuMF ε=8, batch 256", CENTRAL, "central", 8, 0.5630, rounds=20,
        examples=ML100K_ROWS, batch=256, page_ar="8"),
    Row("DP-NeuMF ε=8, batch 1024", CENTRAL, "central", 8, 0.6920, rounds=20,
        examples=ML100K_ROWS, batch=1024, page_ar="8"),
)
CLIENT_DELTA = 1e-5


# ----- the events, as fedrec builds them -----

def client_round_event(sigma: float, n: int, batch: int = 32) -> dpe.DpEvent:
    """The DpEvent one device of ``n`` examples runs per round in the sweeps of these
    pages (2 local epochs, batch ``batch``, 10 reconstruction steps, clip 1; the event
    does not depend on the clip)."""
    from fedrec.client.local import LocalSettings
    from fedrec.shared.config import RunConfig

    cfg = RunConfig(dataset="movielens-100k", rounds=10, local_epochs=2, batch_size=batch,
                    learning_rate=0.05, dp="client", client_clip=1.0,
                    client_noise_multiplier=sigma)
    return LocalSettings.from_run_config(cfg).dp_plan(n).event()


def central_event(sigma: float, rows: int, batch: int, epochs: int) -> tuple[dpe.DpEvent, float]:
    """DP-NeuMF's event and δ (``fedrec.simulations.baselines.plan_dp`` with σ given)."""
    from fedrec.simulations.baselines import NeuMFConfig, plan_dp

    plan = plan_dp(NeuMFConfig(dp=True, epochs=epochs, batch_size=batch, recency_decay=1.0,
                               noise_multiplier=sigma), rows)
    return plan.event(), plan.delta


def client_epsilon(sigma: float, n: int, rounds: int, relation: str, kind: str = "rdp",
                   batch: int = 32) -> float:
    """ε (δ = 1e-5) of a device of ``n`` examples after ``rounds`` rounds at σ."""
    if rounds == 0:
        return 0.0
    event = client_round_event(sigma, n, batch)   # steps x Poisson(rate) o Gaussian(σ)
    # cached by (rate, steps): every device of n <= batch runs the same event
    return _epsilon(sigma, event.event.sampling_probability, event.count, rounds, relation,
                    kind)


@functools.lru_cache(maxsize=None)
def _epsilon(sigma: float, rate: float, steps: int, rounds: int, relation: str,
             kind: str) -> float:
    event = dpe.SelfComposedDpEvent(privacy.dpsgd_event(sigma, rate, steps), rounds)
    return privacy.epsilon(event, CLIENT_DELTA, kind, relation)


def rounds_run(sigma: float, n: int, rounds: int, target: float, batch: int = 32) -> int:
    """Rounds a device of ``n`` examples ran under the add/remove budget ``target``: it
    declines a round whose composition would pass the target (``Ledger.would_exceed``),
    and ε grows with every round, so it runs the largest r with ε(r) <= target."""
    lo, hi = 0, rounds                       # ε(lo) <= target; find the largest such r
    if client_epsilon(sigma, n, hi, AR, batch=batch) <= target:
        return hi
    while hi - lo > 1:
        mid = (lo + hi) // 2
        if client_epsilon(sigma, n, mid, AR, batch=batch) <= target:
            lo = mid
        else:
            hi = mid
    return lo


# ----- one row -----

def calibrated_sigma(row: Row) -> float:
    """σ as the run calibrated it: add/remove, for the median client (or DP-NeuMF's rows)
    reaching ``row.target`` at the last round (``fedrec.simulations.calibrate`` then)."""
    if row.kind == "central":
        make = lambda s: central_event(s, row.examples, row.batch, row.rounds)[0]  # noqa: E731
        delta = central_event(1.0, row.examples, row.batch, row.rounds)[1]
    else:
        make = lambda s: dpe.SelfComposedDpEvent(  # noqa: E731
            client_round_event(s, row.examples, row.batch), row.rounds)
        delta = CLIENT_DELTA
    return privacy.calibrate_noise(row.target, delta, make, relation=AR)


def median_row(row: Row, sigma: float) -> dict:
    """ε of one client taking part in all ``row.rounds`` rounds."""
    args = (sigma, row.examples, row.rounds)
    return {"sigma": sigma, "ar": client_epsilon(*args, AR, batch=row.batch),
            "ar_pld": client_epsilon(*args, AR, "pld", batch=row.batch),
            "ro": client_epsilon(*args, RO, batch=row.batch), "n": row.examples,
            "rounds": row.rounds}


def central_row(row: Row, sigma: float) -> dict:
    event, delta = central_event(sigma, row.examples, row.batch, row.rounds)
    return {"sigma": sigma, "ar": privacy.epsilon(event, delta, "rdp", AR),
            "ar_pld": privacy.epsilon(event, delta, "pld", AR),
            "ro": privacy.epsilon(event, delta, "rdp", RO), "n": row.examples,
            "rounds": row.rounds, "delta": delta}


def client_sizes() -> list[int]:
    """Training examples of every MovieLens-100k client (seed 0, no canaries)."""
    from fedrec.shared.federated_data import load_federation

    return [int(n) for n in load_federation("movielens-100k", 0, 0, 0).train_sizes()]


def max_client_row(row: Row, sigma: float, sizes: list[int]) -> dict:
    """The largest client ε under each relation, each client running the rounds its
    add/remove budget allowed; ``declined`` = clients that declined the last round."""
    ran = {n: rounds_run(sigma, n, row.rounds, row.target, row.batch) for n in set(sizes)}
    ar = {n: client_epsilon(sigma, n, r, AR, batch=row.batch) for n, r in ran.items()}
    ro = {n: client_epsilon(sigma, n, r, RO, batch=row.batch) for n, r in ran.items()}
    worst_ar, worst_ro = max(ar, key=ar.get), max(ro, key=ro.get)
    return {"sigma": sigma, "ar": ar[worst_ar],
            "ar_pld": client_epsilon(sigma, worst_ar, ran[worst_ar], AR, "pld", row.batch),
            "ro": ro[worst_ro], "n": worst_ro, "rounds": ran[worst_ro],
            "declined": sum(ran[n] < row.rounds for n in sizes), "clients": len(sizes)}


def compute(row: Row, sigma: float | None = None, sizes: list[int] | None = None) -> dict:
    """The row's ε under both relations at ``sigma`` (default: the stored σ)."""
    sigma = row.sigma if sigma is None else sigma
    if row.kind == "central":
        return central_row(row, sigma)
    if row.kind == "median":
        return median_row(row, sigma)
    return max_client_row(row, sigma, client_sizes() if sizes is None else sizes)


def matches(value: float, printed: str | None) -> bool:
    """Whether ``value`` rounds to ``printed`` at the decimals printed (None: nothing to
    match)."""
    if printed is None:
        return True
    decimals = len(printed.split(".")[1]) if "." in printed else 0
    return abs(value - float(printed)) <= 0.5 * 10 ** -decimals + 1e-12


def line(row: Row, sigma: float, out: dict) -> str:
    """One markdown line: the row's σ, add/remove ε (against the page), replace-one ε."""
    def old(value: float, printed: str | None) -> str:
        shown = f"{value:.4f} ({printed or '-'})"
        return shown if matches(value, printed) else shown + " **page differs**"

    worst = (f"{out['n']} rows, {out['rounds']} epochs, δ = {out['delta']:.3g}"
             if row.kind == "central" else f"n = {out['n']}, {out['rounds']} rounds")
    declined = f"{out['declined']} of {out['clients']}" if "declined" in out else "-"
    return (f"| {row.key} | {row.pages} | {sigma:.4f} | {old(out['ar'], row.page_ar)} | "
            f"{old(out['ar_pld'], row.page_pld)} | **{out['ro']:.3f}** | {worst} | {declined} |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calibrate", action="store_true",
                        help="recompute each row's σ by dp-accounting's add/remove "
                             "calibration instead of using the stored one (slower)")
    args = parser.parse_args()
    sizes = client_sizes()
    print("| row | pages (docs/results/) | σ | ε add/remove RDP (page) | "
          "ε add/remove PLD (page) | ε replace-one RDP | worst client | "
          "declined the last round |")
    print("|---|---|---|---|---|---|---|---|")
    for row in ROWS:
        sigma = row.sigma
        if args.calibrate:
            sigma = calibrated_sigma(row)
            if abs(sigma - row.sigma) > 5e-5:
                print(f"<!-- {row.key}: stored σ {row.sigma} but calibration gives "
                      f"{sigma:.4f} -->")
        print(line(row, sigma, compute(row, sigma, sizes)), flush=True)


if __name__ == "__main__":
    main()
