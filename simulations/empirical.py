"""Empirical privacy: the math of canary estimates and membership-inference bounds.

Pure functions, unit-tested against closed forms:

* :func:`gaussian_pair_epsilon`: ε at δ of telling N(μ1, σ1) from N(μ0, σ0), both ways.
  Andrew et al. (ICLR 2024) fit one Gaussian to the cosines of inserted canaries and one
  to held-out canaries; this turns the pair into their one-shot ε estimate. For equal
  variances it is the Gaussian mechanism with μ = |μ1 - μ0| / σ.
* :func:`auc`, :func:`roc`: a score-threshold membership attack's quality.
* :func:`epsilon_lower_bound`: an (ε, δ)-DP mechanism bounds any attack by
  TPR <= e^ε FPR + δ and TNR <= e^ε FNR + δ; with Clopper-Pearson intervals on the
  attack's TPR and FPR this gives an ε that holds with the stated confidence.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from scipy import stats

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


# ----- membership inference -----

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


def clopper_pearson(successes: int, trials: int, confidence: float) -> tuple[float, float]:
    """Two-sided Clopper-Pearson interval of a binomial proportion."""
    alpha = 1 - confidence
    lo = 0.0 if successes == 0 else float(stats.beta.ppf(alpha / 2, successes,
                                                          trials - successes + 1))
    hi = 1.0 if successes == trials else float(stats.beta.ppf(1 - alpha / 2, successes + 1,
                                                               trials - successes))
    return lo, hi


def epsilon_lower_bound(true_pos: int, members: int, false_pos: int, non_members: int,
                        delta: float, confidence: float = 0.95) -> float:
    """ε that any (ε, δ)-DP training must exceed for this attack outcome to be possible.

    TPR's lower and FPR's upper Clopper-Pearson limits (each two-sided at ``confidence``)
    go into TPR <= e^ε FPR + δ and its mirror TNR <= e^ε FNR + δ; 0 when neither binds.
    """
    tpr_lo, _ = clopper_pearson(true_pos, members, confidence)
    _, fpr_hi = clopper_pearson(false_pos, non_members, confidence)
    bounds = [0.0]
    if tpr_lo - delta > 0 and fpr_hi > 0:
        bounds.append(math.log((tpr_lo - delta) / fpr_hi))
    if (1 - fpr_hi) - delta > 0 and 1 - tpr_lo > 0:
        bounds.append(math.log((1 - fpr_hi - delta) / (1 - tpr_lo)))
    return max(bounds)


def best_threshold(member_scores: np.ndarray, non_member_scores: np.ndarray, delta: float,
                   confidence: float = 0.95) -> float:
    """The threshold with the largest ε lower bound on this (selection) sample."""
    m, n = np.asarray(member_scores, float), np.asarray(non_member_scores, float)
    _, _, thresholds = roc(m, n)
    best, best_t = -1.0, math.inf
    for t in thresholds[1:]:
        eps = epsilon_lower_bound(int((m >= t).sum()), len(m), int((n >= t).sum()), len(n),
                                  delta, confidence)
        if eps > best:
            best, best_t = eps, t
    return float(best_t)


@dataclass(frozen=True)
class MembershipResult:
    auc: float
    advantage: float
    epsilon_lower: float
    confidence: float
    threshold: float
    members: int
    non_members: int


def membership_audit(member_scores: np.ndarray, non_member_scores: np.ndarray, delta: float,
                     rng: np.random.Generator, confidence: float = 0.95) -> MembershipResult:
    """Loss-threshold attack, honestly evaluated.

    The threshold is chosen on a random half of members and non-members and the ε lower
    bound measured on the other half, so the choice cannot overfit the bound. AUC and
    advantage (max TPR - FPR) describe the attack on all of the data.
    """
    m, n = np.asarray(member_scores, float), np.asarray(non_member_scores, float)
    pm, pn = rng.permutation(len(m)), rng.permutation(len(n))
    sel_m, test_m = m[pm[: len(m) // 2]], m[pm[len(m) // 2:]]
    sel_n, test_n = n[pn[: len(n) // 2]], n[pn[len(n) // 2:]]
    t = best_threshold(sel_m, sel_n, delta, confidence)
    eps = epsilon_lower_bound(int((test_m >= t).sum()), len(test_m), int((test_n >= t).sum()),
                              len(test_n), delta, confidence)
    fpr, tpr, _ = roc(m, n)
    return MembershipResult(auc(m, n), float(np.max(tpr - fpr)), eps, confidence, t,
                            len(m), len(n))
