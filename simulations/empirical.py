"""Empirical privacy: the math of canary estimates and membership-inference bounds.

Pure functions, unit-tested against closed forms:

* :func:`gaussian_pair_epsilon`: ε at δ of telling N(μ1, σ1) from N(μ0, σ0), both ways.
  Andrew et al. (ICLR 2024) fit one Gaussian to the cosines of inserted canaries and one
  to held-out canaries; this turns the pair into their one-shot ε estimate. For equal
  variances it is the Gaussian mechanism with μ = |μ1 - μ0| / σ.
* :func:`auc`, :func:`roc`: how well a score separates members from non-members
  (descriptive: AUC is not a privacy bound).
* :func:`one_run_audit`: Steinke, Nasr & Jagielski's one-run audit (NeurIPS 2023). m
  canaries, each in or out by its own fair coin drawn before training; the auditor
  guesses r of the coins from the trained model. If training is (ε, δ)-DP with respect
  to each coin, the number of correct guesses W obeys (their Theorem, with δ)
  P[W >= v] <= P[Binomial(r, q) >= v] + 2 m δ α,  q = e^ε / (1 + e^ε),
  α = max_{1<=i<=v} P[v > Binomial(r, q) >= v - i] / i
  (:func:`one_run_p_value`); the largest ε that an outcome rejects at the stated
  confidence is a lower bound on the true ε (:func:`one_run_epsilon`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from scipy import special, stats

#: ε above this is reported as this (the estimate is then "as large as can be measured").
EPSILON_CAP = 100.0


def _region_probabilities(eps: float, m1: float, s1: float, m0: float, s0: float
                          ) -> tuple[float, float]:
    """P1(R), P0(R) for R = {x : log p1(x) - log p0(x) > eps} (p_i = N(m_i, s_i^2) densities).

    The log-likelihood ratio is the quadratic a x^2 + b x + c, so R is a half-line, an
    interval or the complement of one; each probability is then a few CDF terms.
    """
    a = 0.5 / s0**2 - 0.5 / s1**2
    b = m1 / s1**2 - m0 / s0**2
    c = math.log(s0 / s1) - m1**2 / (2 * s1**2) + m0**2 / (2 * s0**2) - eps
    d1, d0 = stats.norm(m1, s1), stats.norm(m0, s0)
    if abs(a) < 1e-12 * max(abs(b), 1e-300):     # equal variances: linear
        if b == 0:
            return (1.0, 1.0) if c > 0 else (0.0, 0.0)
        x = -c / b
        return (d1.sf(x), d0.sf(x)) if b > 0 else (d1.cdf(x), d0.cdf(x))
    disc = b * b - 4 * a * c
    if disc <= 0:
        return (1.0, 1.0) if a > 0 else (0.0, 0.0)
    r = sorted(((-b - math.sqrt(disc)) / (2 * a), (-b + math.sqrt(disc)) / (2 * a)))
    if a > 0:   # outside the roots
        return (d1.cdf(r[0]) + d1.sf(r[1]), d0.cdf(r[0]) + d0.sf(r[1]))
    return (d1.cdf(r[1]) - d1.cdf(r[0]), d0.cdf(r[1]) - d0.cdf(r[0]))


def _delta(eps: float, m1: float, s1: float, m0: float, s0: float) -> float:
    p1, p0 = _region_probabilities(eps, m1, s1, m0, s0)
    return max(0.0, p1 - math.exp(eps) * p0)


def gaussian_pair_epsilon(mu1: float, sigma1: float, mu0: float, sigma0: float,
                          delta: float) -> float:
    """Smallest ε such that N(μ1, σ1²) and N(μ0, σ0²) are (ε, δ)-indistinguishable, both ways.

    Args:
        mu1, sigma1: mean and standard deviation of the statistic with the canary in.
        mu0, sigma0: the same with the canary out (held-out canaries).
        delta: δ of the claim being tested.
    Returns ε in [0, EPSILON_CAP] (natural log).
    """
    if not (sigma1 > 0 and sigma0 > 0):
        raise ValueError("both standard deviations must be > 0")
    if not 0 < delta < 1:
        raise ValueError(f"delta must be in (0, 1), got {delta}")

    def worst(eps: float) -> float:
        return max(_delta(eps, mu1, sigma1, mu0, sigma0), _delta(eps, mu0, sigma0, mu1, sigma1))

    if worst(0.0) <= delta:
        return 0.0
    if worst(EPSILON_CAP) > delta:
        return EPSILON_CAP
    lo, hi = 0.0, EPSILON_CAP
    while hi - lo > 1e-6 * max(1.0, hi):
        mid = (lo + hi) / 2
        lo, hi = (lo, mid) if worst(mid) <= delta else (mid, hi)
    return hi


def gaussian_mechanism_delta(eps: float, mu: float) -> float:
    """Closed form (Balle & Wang 2018): δ(ε) of the Gaussian mechanism with μ = Δ/σ."""
    return stats.norm.cdf(-eps / mu + mu / 2) - math.exp(eps) * stats.norm.cdf(-eps / mu - mu / 2)


@dataclass(frozen=True)
class CanaryEstimate:
    """Andrew et al.'s one-shot estimate from canary cosines (see module docstring)."""

    epsilon: float
    delta: float
    inserted_mean: float
    inserted_std: float
    held_out_mean: float
    held_out_std: float
    inserted: int
    held_out: int


def canary_epsilon(inserted: np.ndarray, held_out: np.ndarray, delta: float) -> CanaryEstimate:
    """Fit one Gaussian to each set of cosines and return the pair's ε at ``delta``."""
    inserted, held_out = np.asarray(inserted, float), np.asarray(held_out, float)
    if len(inserted) < 2 or len(held_out) < 2:
        raise ValueError("need at least 2 inserted and 2 held-out canaries")
    m1, s1 = float(inserted.mean()), float(inserted.std(ddof=1))
    m0, s0 = float(held_out.mean()), float(held_out.std(ddof=1))
    floor = 1e-12 * max(abs(m1), abs(m0), s0, s1, 1e-300)   # identical cosines: no spread
    eps = gaussian_pair_epsilon(m1, max(s1, floor), m0, max(s0, floor), delta)
    return CanaryEstimate(eps, delta, m1, s1, m0, s0, len(inserted), len(held_out))


# ----- membership inference: description and the one-run audit -----

def auc(member_scores: np.ndarray, non_member_scores: np.ndarray) -> float:
    """P(member score > non-member score) + P(tie) / 2 (Mann-Whitney U / n1 n0)."""
    m, n = np.asarray(member_scores, float), np.asarray(non_member_scores, float)
    ranks = stats.rankdata(np.concatenate([m, n]))
    u = ranks[:len(m)].sum() - len(m) * (len(m) + 1) / 2
    return float(u / (len(m) * len(n)))


def roc(member_scores: np.ndarray, non_member_scores: np.ndarray
        ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(FPR, TPR, thresholds) of the attack "member when score >= threshold", from the
    strictest threshold to the loosest (starts at (0, 0), ends at (1, 1))."""
    m, n = np.asarray(member_scores, float), np.asarray(non_member_scores, float)
    thresholds = np.unique(np.concatenate([m, n]))[::-1]
    tpr = np.array([0.0] + [(m >= t).mean() for t in thresholds])
    fpr = np.array([0.0] + [(n >= t).mean() for t in thresholds])
    return fpr, tpr, np.concatenate([[np.inf], thresholds])


def one_run_p_value(canaries: int, guesses: int, correct: int, eps: float,
                    delta: float) -> float:
    """Upper bound on P[>= ``correct`` right among ``guesses``] under (ε, δ)-DP (see the
    module docstring; Steinke, Nasr & Jagielski 2023). For 2 m δ <= 1 it is
    non-decreasing in ε, so the ε an outcome rejects form an interval [0, ε_lower).

    Args:
        canaries: m, every canary whose coin was drawn (guessed or not).
        guesses, correct: r and v, 0 <= v <= r <= m.
        eps, delta: the (ε, δ) claim per coin under test (natural log).
    """
    if not 0 <= correct <= guesses <= canaries:
        raise ValueError(f"need 0 <= correct <= guesses <= canaries, got {correct}, "
                         f"{guesses}, {canaries}")
    if not (eps >= 0 and 0 <= delta <= 1):
        raise ValueError(f"need eps >= 0 and delta in [0, 1], got {eps}, {delta}")
    q = float(special.expit(eps))
    beta = float(stats.binom.sf(correct - 1, guesses, q))   # P[Binomial(r, q) >= v]
    if delta == 0 or correct == 0:
        return beta
    i = np.arange(1, correct + 1)
    below = stats.binom.sf(correct - i - 1, guesses, q) - beta   # P[v > Bin >= v - i]
    alpha = max(0.0, float(np.max(below / i)))
    return min(1.0, beta + 2 * canaries * delta * alpha)


def one_run_epsilon(canaries: int, guesses: int, correct: int, delta: float,
                    significance: float) -> float:
    """The largest ε whose (ε, δ) claim this outcome rejects at ``significance``: a lower
    bound on the true ε with confidence 1 - significance. 0 when no claim is rejected,
    and also when 2 m δ > 1 (the δ term then forbids nothing: no power, no bound)."""
    if not 0 < significance < 1:
        raise ValueError(f"significance must be in (0, 1), got {significance}")

    def p(eps: float) -> float:
        return one_run_p_value(canaries, guesses, correct, eps, delta)

    if guesses == 0 or 2 * canaries * delta > 1 or p(0.0) >= significance:
        return 0.0
    if p(EPSILON_CAP) < significance:
        return EPSILON_CAP
    lo, hi = 0.0, 1.0
    while p(hi) < significance:
        lo, hi = hi, 2 * hi
    while hi - lo > 1e-6 * max(1.0, hi):
        mid = (lo + hi) / 2
        lo, hi = (mid, hi) if p(mid) < significance else (lo, mid)
    return lo


#: Fractions of the scored canaries guessed (half on the highest scores as "in", half on
#: the lowest as "out"), fixed in advance; the confidence is split over them (Bonferroni).
GUESS_FRACTIONS = (0.05, 0.1, 0.2, 0.5, 1.0)


@dataclass(frozen=True)
class OneRunResult:
    """A one-run audit: the lower bound and the guess count that gave it."""

    epsilon_lower: float
    confidence: float
    delta: float
    canaries: int
    scored: int
    guesses: int
    correct: int
    tried: tuple[tuple[int, int, float], ...]   # (guesses, correct, ε) per fraction


def one_run_audit(scores: np.ndarray, truth: np.ndarray, canaries: int, delta: float,
                  confidence: float = 0.95,
                  fractions: tuple[float, ...] = GUESS_FRACTIONS) -> OneRunResult:
    """Guess coins from scores, then count against the coins (Steinke et al. 2023).

    Args:
        scores: (k,) one per scored canary, high meaning "in" (a function of the trained
            model only; the coins must not have been looked at to compute it).
        truth: (k,) bool, each scored canary's coin (True: in).
        canaries: m >= k, all canaries whose coins were drawn (unscored ones abstain).
        delta: δ of the per-coin claim under test.
        confidence: of the bound, over all ``fractions`` together.
    """
    scores, truth = np.asarray(scores, float), np.asarray(truth, bool)
    k = len(scores)
    if len(truth) != k or k > canaries:
        raise ValueError(f"{k} scores, {len(truth)} coins, {canaries} canaries")
    order = np.lexsort((np.arange(k), -scores))   # highest first; ties by position
    significance = (1 - confidence) / len(fractions)
    tried = []
    for f in fractions:
        r = min(k, max(1, round(f * k))) if k else 0
        top, bottom = (r + 1) // 2, r // 2
        v = int(truth[order[:top]].sum() + (~truth[order[k - bottom:]]).sum()) if r else 0
        tried.append((r, v, one_run_epsilon(canaries, r, v, delta, significance)))
    best = max(tried, key=lambda t: t[2])
    return OneRunResult(best[2], confidence, delta, canaries, k, best[0], best[1], tuple(tried))
